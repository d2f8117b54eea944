// tailor/nas/nas.hpp: hardware-aware architecture search. A weight-sharing Supernet runs any configuration of a
// search space (first channels, centre sub-kernels through learned kernel transforms, first blocks) and trains with
// the sandwich rule and in-place distillation; subnets come out as standalone GraphModules with re-estimated batch
// norm; evolution or random search finds the most accurate ones under latency budgets predicted per target and then
// re-measured; NetAdapt shrinks an already-trained model, group by group, to a latency budget.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "tailor/data/fashion_mnist.hpp"
#include "tailor/ir/graph_module.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/models/space.hpp"
#include "tailor/train/train.hpp"

namespace tailor::nas {

// ------------------------------------------------------------------------------------------------ supernet

/// A named search space (models::SearchSpace::names) or a JSON file of one (models::SearchSpace::to_json).
models::SearchSpace load_space(const std::string& name_or_file);

/// Every configuration of a search space in one network. The weights are those of the space's largest
/// configuration (plus the shortcut convolutions any configuration may need); a configuration uses the first
/// channels of each layer, the centre of each kernel passed through a learned transform (Once-for-All's
/// kernel transform, one matrix per layer and size step, starting as identity) and the first blocks of each
/// stage. Parameter names are those of models::make_arch's networks, so a subnet's weights slice out by name.
class SupernetImpl : public torch::nn::Module {
 public:
  /// Fails when the space cannot share weights: a stage mixing ResNet basic blocks and bottlenecks, or
  /// MobileNet blocks with and without expansion, or resolutions on both sides of the small-input stem.
  explicit SupernetImpl(models::SearchSpace space, uint64_t seed = 0);
  const models::SearchSpace& space() const { return space_; }
  /// Logits of subnet `config`, which must be in the space (the error says which part is not).
  torch::Tensor forward(const torch::Tensor& input, const models::ArchConfig& config);
  /// Tensor `name` of subnet `config`'s network (as models::make_arch names it) at `shape`, sliced from the shared
  /// weights (differentiable: training through it trains the supernet).
  torch::Tensor subnet_tensor(const models::ArchConfig& config, const std::string& name,
                              const std::vector<int64_t>& shape) const;
  /// The subnet as a standalone GraphModule with its sliced weights; batch-norm statistics are the supernet's
  /// (shared by every subnet), so re-estimate them with recalibrate_batch_norm before judging it.
  GraphModule extract(const models::ArchConfig& config) const;
  /// Written to a temporary name and renamed: the space (as JSON) and every tensor.
  void save(const std::string& file) const;
  /// Fails naming the file when it is missing or not a supernet.
  static std::shared_ptr<SupernetImpl> load(const std::string& file);

 private:
  std::string stored_name(const models::ArchConfig& config, const std::string& name) const;
  void add_tensor(const std::string& dotted, torch::Tensor value, bool buffer);
  int stage_of(const std::string& stored) const;

  models::SearchSpace space_;
  models::ArchConfig largest_;
  std::map<std::string, torch::Tensor> tensors_;     // stored (largest) tensors by dotted name
  std::map<std::string, torch::Tensor> transforms_;  // "<stored weight>@<from>" -> [(from-2)^2, (from-2)^2]
  std::vector<int64_t> first_block_;  // MobileNet: index in `features` of each stage's first stored block
};
TORCH_MODULE(Supernet);

struct SupernetTrainOptions {
  train::TrainOptions train;  ///< epochs, optimizer, schedule, checkpoint and resume, progress, ranks
  /// The sandwich rule: each step trains the largest subnet on the labels, then the smallest and this many
  /// random ones on the largest's soft predictions (in-place distillation).
  int random_subnets = 2;
  double temperature = 1.0;  ///< of the in-place distillation
};

/// Trains every subnet at once; evaluation (each epoch, when `eval` is given) is of the largest subnet with the
/// batch-norm statistics as trained.
train::TrainResult train_supernet(Supernet& supernet, const data::Dataset& train, const data::Dataset* eval,
                                  const SupernetTrainOptions& options);

// ---------------------------------------------------------------------------------------------- evaluation

/// Re-estimates every batch-norm layer's running mean and variance as the exact average over the first
/// `batches` batches of `data` (the layers before it already re-estimated), as OFA does for each subnet.
void recalibrate_batch_norm(GraphModuleImpl& module, const data::Dataset& data, int64_t batches,
                            int64_t batch_size = 256);

/// A training split cut in two: the last `validation_size` images become the validation split that search and
/// NetAdapt judge by, so the test set stays unseen.
struct Split {
  data::Dataset train, validation;
};
Split split_validation(const data::Dataset& train, int64_t validation_size);

/// Accuracy of one configuration (validation top-1, 0..1).
using Evaluator = std::function<double(const models::ArchConfig&)>;

/// The subnet of `config`: extracted, batch norm re-estimated on `calibration_batches` batches of `train`,
/// with a provenance record naming the supernet file and the configuration.
GraphModule subnet(const Supernet& supernet, const models::ArchConfig& config, const data::Dataset& train,
                   int64_t calibration_batches = 8, const std::string& supernet_file = "");

/// Evaluates subnets of `supernet`: `subnet` and then top-1 on `validation`.
Evaluator supernet_evaluator(Supernet supernet, const data::Dataset& train, const data::Dataset& validation,
                             int64_t calibration_batches = 8);

// ----------------------------------------------------------------------------------- targets and budgets

/// "backend[:threads[:isa]]", e.g. `onednn-cpu` (1 thread), `onednn-cpu:2`, `onednn-cpu:1:avx2`,
/// `onednn-cpu:1:int8` (int8 variants); an unknown backend, bad thread count or ISA fails naming the text.
latency::Target parse_target(const std::string& text);

/// One latency budget: at most `ms` on `table`'s target, as `table` predicts.
struct LatencyBudget {
  double ms = 0;
  std::shared_ptr<const latency::Model> table;
  std::string name;  ///< the target text it was given as
};

/// A latency table for `target_text` on this machine: loaded from `file` (which must be of this target and
/// fitted), or, without a file, built here by measuring `minutes` worth of `workload`'s models (architectures of
/// a named space, or channel-pruned variants of a model file).
std::shared_ptr<const latency::Model> latency_table(const std::string& target_text, const std::string& file,
                                                    const latency::Workload& workload, double minutes = 2.0,
                                                    bool progress = true);

/// Budgets from parallel lists: `ms` per target (one value applies to all), `tables` per target or none (then
/// each is built from `workload`). Mismatched lengths fail naming them.
std::vector<LatencyBudget> latency_budgets(const std::vector<double>& ms, const std::vector<std::string>& targets,
                                           const std::vector<std::string>& tables, const latency::Workload& workload,
                                           double minutes = 2.0, bool progress = true);

/// What a returned architecture must satisfy; 0 means no limit.
struct Constraints {
  std::vector<LatencyBudget> latency;
  double max_macs = 0, max_params = 0, max_weight_bytes = 0;
  std::string str() const;
};

/// One architecture the search looked at.
struct Candidate {
  models::ArchConfig config;
  double accuracy = -1;               ///< validation top-1; -1 until evaluated
  std::vector<double> predicted_ms;   ///< per latency budget
  std::vector<double> measured_ms;    ///< per latency budget, once re-measured (front members)
  double macs = 0, params = 0, weight_bytes = 0;
  std::string json() const;
};

/// Costs and predicted latencies of `config` (compiling it for each budget's target).
Candidate describe(const models::SearchSpace& space, const models::ArchConfig& config, const Constraints& constraints);
/// Whether a described candidate meets every limit (latency as predicted).
bool feasible(const Candidate& candidate, const Constraints& constraints);

// --------------------------------------------------------------------------------------------------- search

struct SearchOptions {
  std::string algorithm = "evolution";  ///< "evolution" (regularized, aging) or "random"
  int evaluations = 100;                ///< subnets whose accuracy is measured, population included
  int population = 20;                  ///< evolution: the population's size (the first ones are random)
  int tournament = 5;                   ///< evolution: the parent is the best of this many members (at most all)
  double mutation = 0.2;                ///< probability that each choice is re-drawn in a child
  /// Evolution: each child is the most promising of this many feasible mutants (each from its own tournament's
  /// parent), ranked by an AccuracyPredictor fitted on every subnet evaluated so far; screening costs predictions
  /// of latency, not evaluations. 0 or 1: the first mutant, as plain regularized evolution.
  int screen = 16;
  int max_tries = 300;                  ///< draws per candidate before giving up on the budget
  uint64_t seed = 0;
  /// JSON file of the evaluations so far, rewritten after each; a run with the same space, constraints and
  /// options resumes from it (the same draws replay, evaluated ones are not evaluated again).
  std::string state;
  bool remeasure = true;           ///< time the front members on each target (interleaved) and drop over-budget ones
  double seconds_per_model = 1.0;  ///< re-measurement time per member and target
  std::function<void(int done, int total, double seconds_left, const Candidate& last)> progress;
};

/// Accuracy predicted from a configuration, trained on evaluated subnets: ridge regression over the choices (per
/// stage depth, width, kernel and expansion; stem, head, resolution) and log MACs and parameters, standardized,
/// with the ridge strength picked by leave-one-out error. Few evaluations are enough to rank children by (larger
/// subnets of a supernet are more accurate, and which choices buy the most accuracy per latency shows early).
class AccuracyPredictor {
 public:
  /// Fits on candidates with an accuracy (at least 3 of them; fails otherwise).
  void fit(const std::vector<Candidate>& evaluated);
  bool fitted() const { return !weights_.empty(); }
  double predict(const Candidate& candidate) const;
  double ridge() const { return ridge_; }                ///< the strength chosen
  double loo_rmse() const { return loo_rmse_; }          ///< its leave-one-out error (accuracy as a fraction)

 private:
  std::vector<double> features(const Candidate& c) const;
  size_t stages_ = 0;
  std::vector<double> mean_, scale_, weights_;
  double intercept_ = 0, ridge_ = 0, loo_rmse_ = 0;
};

struct SearchResult {
  std::vector<Candidate> evaluated;  ///< in evaluation order
  /// Pareto front of accuracy against the first budget's latency (or MACs without one), most accurate first;
  /// with re-measurement, members whose measured latency exceeds a budget are moved to `over_budget`.
  std::vector<Candidate> front;
  std::vector<Candidate> over_budget;
  double max_measured_over_predicted = 0;  ///< over re-measured members and targets
  int resumed = 0;                         ///< evaluations taken from the state file
  int screened = 0;                        ///< evolution: mutants ranked by the accuracy predictor, in all
  double predictor_loo_rmse = 0;           ///< the predictor's leave-one-out error at its last fit (0: not used)
  double seconds = 0;
  const Candidate& best() const;  ///< the front's most accurate member; fails when the front is empty
  std::string json() const;
};

/// Searches `space` for the most accurate architectures that meet `constraints`. When no draw meets them (the
/// smallest architecture is tried first), fails naming the fastest architecture found and its latency.
SearchResult search(const models::SearchSpace& space, const Constraints& constraints, const Evaluator& evaluate,
                    const SearchOptions& options);

/// Times `modules` (inputs of `input_shapes`) on `target` interleaved; p50 in ms each.
std::vector<double> measure_latency(const std::vector<GraphModule>& modules,
                                    const std::vector<std::vector<int64_t>>& input_shapes,
                                    const latency::Target& target, double seconds_per_model = 1.0);

// -------------------------------------------------------------------------------------------------- NetAdapt

struct NetAdaptOptions {
  double budget_ms = 0;                         ///< the latency to reach, as `table` predicts
  std::shared_ptr<const latency::Model> table;  ///< of the target
  std::vector<int64_t> input_shape;             ///< batch 1
  /// Each iteration cuts the predicted latency by this fraction of the starting latency (NetAdapt's resource
  /// reduction schedule), or less when that reaches the budget; when no single channel group can reach the cut,
  /// it is halved (up to three times) before one group is cut as far as max_ratio allows.
  double step = 0.1;
  int64_t round_to = 1;       ///< kept channel counts are multiples of this
  double max_ratio = 0.9;     ///< no group loses more than this fraction of its channels in total
  int max_iterations = 30;
  train::TrainOptions short_term;  ///< brief fine-tuning of every proposal (NetAdapt's short-term)
  int64_t short_term_images = 500;  ///< short-term fine-tuning: this many images (once); 0: none
  /// true: every proposal is fine-tuned short-term and then judged (NetAdapt's way). false: proposals are judged
  /// as cut and only the one kept is fine-tuned, which costs a sixth of the images and ranked cuts better in
  /// docs/nas.md's probe (Kendall tau-b 0.70 against a 1-epoch fine-tuning, 0.57 for 500 images of fine-tuning each).
  bool fine_tune_every_proposal = true;
  train::TrainOptions long_term;   ///< fine-tuning of the result (epochs 0: none)
  /// Once the prediction meets the budget, the model is timed on the target for this long (between two timings
  /// of the table's reference model, which divide out a slow spell of the machine); while the measurement is over
  /// the budget, the predicted goal is lowered by the measured/predicted ratio and pruning goes on (at most 3
  /// times), so that the result meets the budget when measured. 0: the prediction is trusted.
  double remeasure_seconds = 1.0;
  /// Every iteration times the current model and its proposals interleaved on the target, this long each, and
  /// drops the proposals whose measured cut is under half the cut the table promised: keeping the most accurate
  /// proposal otherwise favours the groups whose savings the table overstates (they lose the fewest channels), and
  /// those errors pile up over the iterations. 0: proposals are judged by the table alone.
  double proposal_seconds = 0.2;
  std::function<void(int iteration, double predicted_ms, double accuracy, const std::string& group)> progress;
};

struct NetAdaptIteration {
  int iteration = 0;
  std::string group;  ///< producers of the channel group pruned, joined by '+'
  int64_t channels_before = 0, channels_after = 0;
  double predicted_ms = 0, accuracy = 0;
  double measured_ms = 0;  ///< the chosen proposal timed beside the others (0: proposal_seconds was 0)
  int proposals = 0;
  int dropped = 0;  ///< proposals dropped because their measured cut fell short of the predicted one
};

struct NetAdaptResult {
  double start_ms = 0, predicted_ms = 0;  ///< predicted before and after
  double measured_ms = 0;                 ///< after, timed on the target (0: not measured)
  /// The table's reference model timed around that measurement, over its time in the table (1: no reference):
  /// above 1 the machine was slower than usual; the budget is checked against measured_ms / machine_slowdown.
  double machine_slowdown = 1;
  double start_accuracy = 0, short_term_accuracy = 0, accuracy = 0;  ///< validation top-1
  std::vector<NetAdaptIteration> iterations;
  std::string json() const;
};

/// NetAdapt (Yang et al. 2018) on a trained model, in place: while the predicted latency is over the budget,
/// propose for each prunable channel group the fewest channels to remove that cut the latency by the step,
/// fine-tune each proposal briefly, and keep the most accurate on `validation`; then fine-tune longer. Fails
/// (the module untouched) when pruning every group as far as allowed cannot reach the budget.
NetAdaptResult netadapt(GraphModuleImpl& module, const data::Dataset& train, const data::Dataset& validation,
                        const NetAdaptOptions& options);

}  // namespace tailor::nas
