// tailor/pass/pass.hpp: the pass machinery. A Pass transforms a GraphModule; a Pipeline is itself a
// Pass that runs others in order with instruments around each (timing, params/MACs/bytes before and
// after, graph verification), and prints as text that parses back into the same pipeline.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tailor/ir/analysis.hpp"
#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// One declared option of a pass: its key, its default (which fixes its type) and what it does.
struct OptionSpec {
  std::string key;
  AttrValue default_value;
  std::string help;
};

/// Typed, declared options. Setting an undeclared key fails and lists the valid ones.
/// Example: `PassOptions().declare("ratio", 0.5, "fraction of channels to remove")`
class PassOptions {
 public:
  PassOptions& declare(const std::string& key, AttrValue default_value, const std::string& help);
  /// Parses `text` as the declared type of `key` ("0.5", "true", "l1", "[1,2]").
  void set(const std::string& key, const std::string& text);
  void set_value(const std::string& key, AttrValue value);
  const AttrValue& get(const std::string& key) const;
  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;
  bool b(const std::string& key) const;
  std::string s(const std::string& key) const;
  const std::vector<OptionSpec>& specs() const { return specs_; }
  /// "key=value,key=value" for every option, in declaration order.
  std::string str() const;

 private:
  const OptionSpec& spec(const std::string& key) const;
  std::vector<OptionSpec> specs_;
  std::map<std::string, AttrValue> values_;
};

/// What a pass is, apart from what it does.
struct PassInfo {
  std::string name;
  std::string description;
};

struct PassContext;

/// Base of every pass. Contract for pass authors:
/// - keep no state between runs; everything a run needs comes from the options and the context;
/// - return true exactly when the graph or its tensors changed (the pipeline then recompiles the module
///   and drops cached analyses);
/// - leave a graph that verifies; report bad input with tailor::Error naming the node.
class Pass {
 public:
  virtual ~Pass() = default;
  virtual PassInfo info() const = 0;
  virtual bool run(GraphModuleImpl& module, PassContext& context) = 0;
  PassOptions& options() { return options_; }
  const PassOptions& options() const { return options_; }
  /// The pass as pipeline text: `name` or `name{key=value,...}`.
  virtual std::string str() const;

 protected:
  PassOptions options_;
};

/// Provenance of one pass run, written by the pipeline's recording instrument.
struct PassRecord {
  std::string pass;     ///< the pass as pipeline text, options included
  bool changed = false;
  double seconds = 0;
  int64_t params_before = 0, params_after = 0;
  int64_t macs_before = 0, macs_after = 0;
  int64_t weight_bytes_before = 0, weight_bytes_after = 0;
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
  std::vector<std::shared_ptr<PassInstrument>> instruments;

  /// Cost analysis of the module, computed once and reused until a pass changes the graph.
  const CostReport& costs(GraphModuleImpl& module);
  void invalidate_analyses() { costs_.reset(); }

 private:
  std::optional<CostReport> costs_;
};

/// Runs passes in order; itself a Pass, so pipelines nest.
class Pipeline : public Pass {
 public:
  Pipeline() = default;
  explicit Pipeline(std::vector<std::shared_ptr<Pass>> passes) : passes_(std::move(passes)) {}
  Pipeline& add(std::shared_ptr<Pass> pass);
  PassInfo info() const override { return {"pipeline", "runs passes in order"}; }
  bool run(GraphModuleImpl& module, PassContext& context) override;
  /// Comma-separated passes; a nested pipeline is written in parentheses.
  std::string str() const override;
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

/// Registers a named pass for the CLI and recipe files (built-in passes are registered already).
void register_pass(const std::string& name, PassFactory factory);
/// Names and descriptions of every registered pass.
std::vector<PassInfo> registered_passes();
/// Builds a registered pass with its default options; unknown names fail and list the valid ones.
std::shared_ptr<Pass> make_pass(const std::string& name);
/// Parses pipeline text, e.g. "fold-batch-norm,remove-dropout,dce" or "a{k=v},(b,c)".
std::shared_ptr<Pipeline> parse_pipeline(const std::string& text);

}  // namespace tailor
