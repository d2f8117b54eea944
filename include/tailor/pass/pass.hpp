// tailor/pass/pass.hpp: the pass machinery. A Pass transforms a GraphModule; a Pipeline is itself a
// Pass that runs others in order with instruments around each (timing, params/MACs/bytes before and
// after, graph verification), and prints as text that parses back into the same pipeline.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <vector>

#include "tailor/ir/analysis.hpp"
#include "tailor/ir/graph_module.hpp"
#include "tailor/ir/provenance.hpp"
#include "tailor/pass/options.hpp"

namespace tailor {

namespace train {
class Distributed;
}

/// What a pass needs besides the graph, so that the CLI and the recipe runner check and supply it without
/// knowing pass names. A pass may compute it from its options (prune-channels needs data only for taylor).
struct PassNeeds {
  bool input_shapes = false;   ///< PassContext::input_shapes
  bool calibration = false;    ///< PassContext::calibration batches
  bool labels = false;         ///< PassContext::calibration_labels (with calibration)
  bool training_data = false;  ///< a labelled dataset the pass loads itself (its `data` option)
  bool teacher = false;        ///< a teacher model: the pass's `teacher` option or PassContext::teacher
};

/// What a pass is, apart from what it does.
struct PassInfo {
  std::string name;
  std::string description;
  PassNeeds needs = {};
};

struct PassContext;

/// Base of every pass. Contract for pass authors:
/// - keep no state between runs; everything a run needs comes from the options and the context;
/// - return true exactly when the graph or its tensors changed (the pipeline then recompiles the module
///   and drops cached analyses);
/// - leave a graph that verifies; report bad input with tailor::Error naming the node.
/// - declare options as members (`Option<double> ratio{this, "ratio", 0.5, "help"}`), never by string;
/// - register with TAILOR_REGISTER_PASS(id, Class) in the pass's own file (see the end of this header).
class Pass {
 public:
  Pass() = default;
  Pass(const Pass&) = delete;
  Pass& operator=(const Pass&) = delete;
  virtual ~Pass() = default;
  virtual PassInfo info() const = 0;
  virtual bool run(GraphModuleImpl& module, PassContext& context) = 0;
  PassOptions& options() { return options_; }
  const PassOptions& options() const { return options_; }
  /// The pass as pipeline text: `name` or `name{key=value,...}` with every option (or only the changed ones).
  virtual std::string str(bool only_changed = false) const;

 private:
  PassOptions options_;
};

/// Hooks around every pass a pipeline runs.
class PassInstrument {
 public:
  virtual ~PassInstrument() = default;
  virtual void before(const Pass& pass, GraphModuleImpl& module, PassContext& context) {}
  virtual void after(const Pass& pass, GraphModuleImpl& module, PassContext& context, bool changed) {}
};

/// What passes need besides the graph. Later issues add data loaders, a teacher, an evaluator and
/// target backends here.
struct PassContext {
  /// Input shapes for cost analysis (batch included); empty disables the params/MACs record.
  std::vector<std::vector<int64_t>> input_shapes;
  uint64_t seed = 0;
  bool quiet = false;
  /// Verify the graph after every pass (cheap; on by default).
  bool verify = true;
  std::vector<PassRecord> records;
  /// Input batches for passes that calibrate (quantization, GPTQ); empty when no data was given.
  std::vector<torch::Tensor> calibration;
  /// Class labels of the calibration batches when the data has them (the taylor pruning criterion uses them).
  std::vector<torch::Tensor> calibration_labels;
  /// The teacher model file for passes that need one and were not given one (a recipe's baseline).
  std::string teacher;
  /// Data-parallel ranks for passes that train (nullptr: one process).
  std::shared_ptr<train::Distributed> distributed;
  std::vector<std::shared_ptr<PassInstrument>> instruments;

  /// Adds a statistic to the record of the pass now running (channels removed, final top-1, ...).
  void stat(const std::string& key, AttrValue value) { stats_.emplace_back(key, std::move(value)); }

  /// Cost analysis of the module, computed once and reused until a pass changes the graph.
  const CostReport& costs(GraphModuleImpl& module);
  void invalidate_analyses() { costs_.reset(); }

 private:
  friend class Pipeline;
  std::optional<CostReport> costs_;
  std::vector<std::pair<std::string, AttrValue>> stats_;
};

/// What `pass` needs that `context` lacks, as a sentence naming the pass ("" when nothing is missing).
std::string missing_needs(const Pass& pass, const PassContext& context);
/// The needs of every pass of a pipeline together.
PassNeeds needs_of(const Pass& pass);

/// Runs passes in order; itself a Pass, so pipelines nest.
class Pipeline : public Pass {
 public:
  Pipeline() = default;
  explicit Pipeline(std::vector<std::shared_ptr<Pass>> passes) : passes_(std::move(passes)) {}
  Pipeline& add(std::shared_ptr<Pass> pass);
  PassInfo info() const override { return {"pipeline", "runs passes in order"}; }
  /// Runs each pass after checking its needs; appends a PassRecord to the context and to the module's
  /// provenance for each.
  bool run(GraphModuleImpl& module, PassContext& context) override;
  /// Comma-separated passes; a nested pipeline is written in parentheses.
  std::string str(bool only_changed = false) const override;
  const std::vector<std::shared_ptr<Pass>>& passes() const { return passes_; }

 private:
  std::vector<std::shared_ptr<Pass>> passes_;
};

/// A pass built from a function, for small passes and tests.
class FunctionPass : public Pass {
 public:
  FunctionPass(PassInfo info, std::function<bool(GraphModuleImpl&, PassContext&)> fn)
      : info_(std::move(info)), fn_(std::move(fn)) {}
  PassInfo info() const override { return info_; }
  bool run(GraphModuleImpl& module, PassContext& context) override { return fn_(module, context); }

 private:
  PassInfo info_;
  std::function<bool(GraphModuleImpl&, PassContext&)> fn_;
};

using PassFactory = std::function<std::shared_ptr<Pass>()>;

/// Registers a named pass for the CLI and recipe files. Registering the same pass class twice under its
/// name is harmless; another class under a taken name is an error.
void register_pass(const std::string& name, PassFactory factory);
namespace detail {
void register_pass_type(const std::string& name, PassFactory factory, const std::type_info& type);
}
template <class P>
void register_pass_class() {
  detail::register_pass_type(P().info().name, [] { return std::make_shared<P>(); }, typeid(P));
}
/// Names, descriptions and needs of every registered pass.
std::vector<PassInfo> registered_passes();
/// Builds a registered pass with its default options; unknown names fail and list the valid ones.
std::shared_ptr<Pass> make_pass(const std::string& name);
/// Parses pipeline text, e.g. "fold-batch-norm,remove-dropout,dce" or "a{k=v},(b,c)". Text values holding
/// ",{}[]()=" are written in double quotes.
std::shared_ptr<Pipeline> parse_pipeline(const std::string& text);

}  // namespace tailor

/// Registers pass class `...` under its info().name. Put it at global scope in the pass's own file: the
/// library's build collects every src/*/passes/*.cpp and calls these functions (so a static library keeps
/// them), and in an executable or shared library the static initializer registers the pass at start-up.
#define TAILOR_REGISTER_PASS(id, ...)                                         \
  void tailor_register_pass_##id() { ::tailor::register_pass_class<__VA_ARGS__>(); } \
  static const bool tailor_pass_registered_##id = (tailor_register_pass_##id(), true)
