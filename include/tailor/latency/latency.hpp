// tailor/latency/latency.hpp: a latency model of one target. It reads the kernels a backend really runs (from the
// compiled executable, fusions and reorders included), looks each up in a table measured on the target, predicts
// kernels the table lacks with a regressor per kernel type, and adds a per-run overhead fitted to end-to-end
// measurements. Search and placement ask it instead of measuring every candidate.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tailor/ir/graph_module.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/runtime/kernel.hpp"

namespace tailor::latency {

/// Where a table was measured; a table answers only for the target it was built on.
struct Target {
  std::string backend;          ///< onednn-cpu, libtorch-cpu, libtorch-cuda
  int threads = 1;
  std::string dtype = "float32";  ///< "float32", or "int8": variants quantized by quantize_static (7-bit activations)
  std::string isa;              ///< the x86 ISA level kernels run with (the CPU's best or the cap in force)
  std::string cpu_model, gpu;
  std::string torch_version, onednn_version;
  /// The revision of tailor's lowering for the backend (lowering_revision): the kernels an executable runs change
  /// with it, so a table measured under another revision refuses to predict.
  int lowering = 0;

  /// This machine for a backend, thread count, dtype and ISA cap (empty: the level in force).
  static Target here(const std::string& backend, int threads, const std::string& dtype = "float32",
                     const std::string& isa_cap = "");
  /// Empty when `other` is the same target; else which fields differ, as "field: this vs other" lines.
  std::string differences(const Target& other) const;
  std::string str() const;  ///< "onednn-cpu 2 threads float32 avx2 on AMD EPYC ..."
};

/// The revision of tailor's lowering for a backend, bumped whenever it changes the kernels executables run
/// (onednn-cpu 2: convolution kernels wider than their input are cropped). Tables written before the field existed
/// read as revision 1.
int lowering_revision(const std::string& backend);

/// What the latency model reads from a compiled executable: the kernels it runs, in order, and the bytes it keeps
/// between runs (weights and planned activations). The same kernel runs faster in a model whose data stays in
/// cache from one run to the next, and in a short model than in a long one (less of its data is evicted between
/// two runs), so the table keys and the regressors see the working set and the model's total work too.
struct KernelList {
  std::vector<Kernel> kernels;
  double working_set_bytes = 0;
  /// Sum over the kernels of MACs + bytes / 4: how long the model runs, in the regressors' unit of work.
  double total_work() const;
};
KernelList kernels_of(const Executable& exe);

/// How the latency model compiles a model for `target` (its threads; the ISA cap is process-wide, set by
/// Target::here): measurement, prediction and re-measurement after search all compile this way.
inline CompileOptions compile_options(const std::vector<int64_t>& input_shape, const Target& target) {
  CompileOptions c;
  c.input_shapes = {input_shape};
  c.threads = target.threads;
  return c;
}

/// A kernel measured in the context of a whole model.
struct KernelSample {
  Kernel kernel;
  double ms = 0;  ///< median over the timed runs
  double working_set_bytes = 0;  ///< of the model it ran in
};

/// A model measured end to end, with its kernels measured one by one in the same runs.
struct ModelSample {
  std::string name;     ///< architecture text or file, and variant
  double p50_ms = 0;    ///< end to end, run()
  double kernel_sum_ms = 0;  ///< sum of its kernels' medians
  int kernels = 0;
  double macs = 0;
  double predicted_ms = 0;   ///< what the model predicted before this sample was added (0 for the first round)
  double reference_ms = 0;   ///< the reference model's p50 just before and after (0: not measured)
};

/// A fixed model timed next to every measured model: its time says how fast the machine is at that moment. A
/// shared or throttled machine has slow spells of seconds; a table that divides them out describes the machine
/// in its usual state, and a prediction can be calibrated to the state of the moment by timing the reference.
struct Reference {
  static constexpr const char* kArchitecture =
      "mobilenet@64:16:1x16k3,2x24k3e6s2,2x32k5e6s2,2x64k3e6s2,1x96k3e6,1x160k5e6s2,1x320k3e6:640";
  std::string architecture;
  std::unique_ptr<Executable> executable;
  std::vector<c10::IValue> inputs;
  /// The architecture compiled for the target (prepared for its dtype) and warmed up.
  static Reference compile_for(const Target& target, const std::string& architecture = kArchitecture);
  /// p50 of `runs` timed runs after two untimed ones.
  double time_ms(int runs = 11);
};

/// How a kernel's time was obtained.
enum class Source { Table, Regressor, Uncovered };
const char* to_string(Source s);

struct KernelPrediction {
  std::string node, kind, op;
  std::vector<std::string> fused;
  double ms = 0;
  double cumulative_ms = 0;  ///< overhead + this and every earlier kernel: the latency up to this point of the run
  Source source = Source::Table;
};

struct Prediction {
  double total_ms = 0;
  double overhead_ms = 0;
  double scale = 1;  ///< the fitted factor on the kernel sum
  std::vector<KernelPrediction> kernels;
  int from_table = 0, from_regressor = 0, uncovered = 0;
  /// Latency up to and including graph node `node` (the placement planner's cut points); fails naming the node.
  double up_to(const std::string& node) const;
  std::string to_json() const;
};

/// Regressors are gradient-boosted trees (XGBoost) per kernel type over Kernel::features(), predicting the log
/// of the time per unit of work (MACs + bytes / 4), so that a size outside the sampled range scales rather than
/// saturating.
class Regressor;

/// A kernel table with its regressors and overhead model: the latency model of one target.
class Model {
 public:
  explicit Model(Target target);
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  ~Model();

  const Target& target() const { return target_; }
  /// Adds a measured model: its kernel samples and its end-to-end time. Table lookups see it at once; the
  /// regressors and the overhead keep their last fit until fit() is called again.
  void add(const ModelSample& model, const std::vector<KernelSample>& kernels);
  /// Refits the regressors and the overhead from every sample so far (and forgets remembered answers).
  void fit();
  bool fitted() const { return fitted_; }

  /// Predicts a kernel list (kernels_of an executable, or detect_kernels). Needs fit().
  Prediction predict(const KernelList& kernels) const;
  /// Many at once (regressor queries batched per kernel type): what search loops call. Regressor answers are
  /// remembered by kernel, so a kernel that recurs across candidates is predicted once. Thread-safe.
  /// Without `breakdown`, predictions hold totals and counts only (no per-kernel entries): faster.
  std::vector<Prediction> predict_many(const std::vector<KernelList>& kernel_lists, bool breakdown = true) const;
  /// The same kernels as if each graph node ran alone: fused nodes split out, reorders and conversions dropped.
  /// The baseline without kernel detection that docs/latency-model.md compares against.
  static KernelList without_fusion(const KernelList& kernels);

  size_t table_size() const { return table_.size(); }
  size_t sample_count() const { return samples_.size(); }
  const std::vector<ModelSample>& models() const { return models_; }
  /// The median measured time of a kernel in models of this total work (KernelList::total_work; 0: the kernel's
  /// own, as in a model of that one kernel), when the table has it.
  std::optional<double> lookup(const Kernel& kernel, double model_work = 0) const;
  /// Forgets remembered regressor answers (to time cold predictions).
  void clear_memo() const;
  /// Fitted overhead: total = scale x (sum of kernels) + overhead.
  double overhead_ms() const { return overhead_ms_; }
  double scale() const { return scale_; }

  /// The reference model of this table and its median time over the table's models: the machine's usual state,
  /// which every measurement is normalized to (0 when the table was measured without a reference, or when the
  /// reference's times spread too widely on this target to tell the machine's state).
  const std::string& reference_architecture() const { return reference_architecture_; }
  double reference_ms() const { return reference_ms_; }
  void set_reference_architecture(const std::string& architecture) { reference_architecture_ = architecture; }
  /// The factor that brings the measurements of models()[model] to the machine's usual state (1 without a
  /// reference time).
  double normalization(size_t model) const;
  /// Scales every later prediction to the machine's state now, given the reference's time now (Reference::time_ms);
  /// 0 undoes it. Predictions are for the usual state otherwise. Not while another thread predicts.
  void calibrate(double reference_ms_now);
  double calibration() const { return calibration_; }
  /// Kernel types that have a regressor, with their sample counts.
  std::map<std::string, size_t> regressor_types() const;

  /// Versioned JSON (format "tailor-latency-table", version 1): target, samples, table, overhead, regressors.
  std::string to_json() const;
  /// Parses a table file's text; `file` names it in errors (corrupt, truncated, wrong format or version).
  static Model from_json(const std::string& text, const std::string& file = "<table>");
  /// Reads a table and checks it was built for `expected` (when given); a mismatch fails listing the fields.
  static Model load(const std::string& file, const Target* expected = nullptr);
  /// Writes to a temporary name and renames, so an interrupted write leaves the old file.
  void save(const std::string& file) const;

 private:
  struct Entry {
    Kernel kernel;
    std::vector<double> ms;
    double median = 0;
  };
  Target target_;
  std::vector<KernelSample> samples_;
  std::vector<size_t> sample_model_;  // the model each sample ran in
  std::vector<ModelSample> models_;
  std::vector<double> model_work_;    // KernelList::total_work of each model
  std::unordered_map<std::string, Entry> table_;
  std::map<std::string, std::unique_ptr<Regressor>> regressors_;  // by Kernel::op, plus "*" over every kernel
  Entry& add_entry(const KernelSample& sample, double model_work, double factor);
  std::vector<double> normalizations() const;  // normalization() of every model
  void rebuild_entries(const std::vector<double>& factors);
  double overhead_ms_ = 0, scale_ = 1;
  std::string reference_architecture_;
  double reference_ms_ = 0, calibration_ = 1;
  bool fitted_ = false;
  mutable std::mutex memo_mutex_;
  mutable std::unordered_map<std::string, std::pair<double, Source>> memo_;  // regressor answers by entry key
};

/// A model prepared for a target: quantized with quantize_static (random calibration) when the target's dtype
/// is int8 and the graph has no fake_quant yet; the module itself otherwise.
GraphModule prepare_for_target(GraphModule module, const std::vector<int64_t>& input_shape, const Target& target,
                               uint64_t seed = 0);

/// Compiles a module for the target and returns the kernels it runs.
KernelList detect_kernels(const GraphModuleImpl& module, const std::vector<int64_t>& input_shape,
                                   const Target& target);

/// How a model is measured for a table: warm-up, then `rounds` rounds of per-kernel runs (run_timed) and
/// end-to-end runs interleaved, so that drift falls on both alike; medians over all rounds.
struct MeasureOptions {
  int warmup = 5;
  int rounds = 5;
  int kernel_runs = 3;  ///< run_timed() calls per round
  int model_runs = 8;   ///< timed run() calls per round
  uint64_t seed = 0;
  Reference* reference = nullptr;  ///< timed before and after the model when given (ModelSample::reference_ms)
};
/// Measures a compiled executable: its end-to-end p50 and each kernel's median.
std::pair<ModelSample, std::vector<KernelSample>> measure(Executable& exe, const std::vector<int64_t>& input_shape,
                                                          const MeasureOptions& options = {});

/// Models to build or validate a table on: architectures sampled from search spaces ("resnet", "mobilenet")
/// and channel-pruned variants (random ratios) of model files or zoo names.
struct Workload {
  std::vector<std::string> spaces;
  std::vector<std::string> models;
  std::vector<int64_t> model_input = {1, 3, 224, 224};  ///< input shape of `models`
};
struct WorkloadItem {
  std::string name;
  GraphModule module;
  std::vector<int64_t> input_shape;
};
/// Draws item number `index` of a workload deterministically from `seed` (spaces and models in turn).
/// With `parent`, an architecture mutated from that one (adaptive sampling).
WorkloadItem draw(const Workload& workload, uint64_t seed, int64_t index, const std::string* parent = nullptr);

struct BuildOptions {
  Target target;
  Workload workload;
  int models = 300;          ///< measured models in the table (stops earlier at max_minutes)
  double max_minutes = 10;
  int round_size = 25;       ///< models per adaptive round; each round refits and samples near the worst errors
  double adaptive_share = 0.5;  ///< of each round after the first: mutations of the worst-predicted models
  uint64_t seed = 1;
  MeasureOptions measure;
  /// Called after each model: models done, the goal, seconds elapsed, and the last sample.
  std::function<void(int, int, double, const ModelSample&)> progress;
  /// Called after each round with the table so far (the CLI saves it there, which makes builds resumable).
  std::function<void(const Model&)> checkpoint;
};
/// Builds (or continues, when `model` already holds samples) a table by adaptive sampling.
void build(Model& model, const BuildOptions& options);

struct ValidationRow {
  std::string name;
  double measured_ms = 0, repeat_ms = 0;  ///< p50, median over rounds; two measurements in alternating rounds
  double predicted_ms = 0;                ///< the latency model
  double reference_ms = 0;                ///< the reference model in the same rounds as `measured_ms`
  double calibrated_ms = 0;               ///< the prediction calibrated by that reference time
  double macs_ms = 0;                     ///< MACs-proportional baseline
  double op_sum_ms = 0;                   ///< per-node sum without kernel detection
  double macs = 0;
  int kernels = 0, from_regressor = 0, uncovered = 0;
};
struct Accuracy {
  double within_10 = 0, within_5 = 0;  ///< shares of models within ±10% / ±5% of measured
  double rmse_ms = 0, rmse_pct = 0;    ///< root mean square error, in ms and relative to measured
  double kendall_tau = 0;              ///< rank correlation with measured (tau-b)
};
/// Accuracy of `predicted` against `measured`.
Accuracy accuracy(const std::vector<double>& predicted, const std::vector<double>& measured);

struct ValidationReport {
  Target target;
  std::vector<ValidationRow> rows;
  Accuracy model, macs, op_sum, noise;  ///< noise: the repeat measurement against the first
  Accuracy calibrated;                  ///< the model calibrated by the reference timed in the same rounds
  double predict_per_second = 0;        ///< architectures per second from their kernel lists (answers remembered)
  double predict_cold_per_second = 0;   ///< the first pass, every regressor answer computed
  double detect_ms = 0;                 ///< mean time to list an architecture's kernels (prepare, kernels-only compile)
  int detect_mismatches = 0;            ///< architectures whose listed kernels differ from the compiled ones (0)
  std::string to_json() const;
};
struct ValidateOptions {
  Workload workload;
  int count = 200;
  uint64_t seed = 1000;  ///< different from the build's, so validation models are new
  /// Models compiled and timed interleaved with each other (0: all of them). Tried once on onednn-cpu: all 100
  /// of a run at once measured every model ~25% slower than groups of 10 just after, with a noise floor of 75%
  /// within 10% (94% in groups); the cause (memory of 100 compiled models, or the machine) was not separated.
  int group = 10;
  int rounds = 5;        ///< per measurement; the two measurements alternate round by round
  double seconds_per_model = 1.0;  ///< both measurements together
  std::function<void(int, int, double)> progress;
};
/// Predicts and measures (interleaved) new models; skips any architecture the table was built on.
ValidationReport validate(const Model& model, const ValidateOptions& options);

}  // namespace tailor::latency
