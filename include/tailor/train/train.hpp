// tailor/train/train.hpp: training and knowledge distillation for C++ loops. Distillation losses (Hinton
// soft targets, FitNets hints with learned adapters, attention transfer) that work on any tensors, and a
// Trainer that fine-tunes or distills a model (GraphModule or any torch::nn::Module) with checkpoints,
// resume, early stopping and learning-rate schedules, on one process or on c10d/Gloo ranks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/types.h>

#include "tailor/data/fashion_mnist.hpp"
#include "tailor/ir/graph_module.hpp"

namespace tailor::train {

class Distributed;

// ---------------------------------------------------------------------------------------------- losses

/// Hinton et al.'s soft-target loss: KL(softmax(teacher/T) || softmax(student/T)) * T^2, averaged over the
/// batch (PyTorch's `kl_div(log_softmax(s/T), softmax(t/T), reduction="batchmean") * T*T`).
torch::Tensor kd_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, double temperature);

/// alpha * kd_loss + (1 - alpha) * cross_entropy(student, labels).
torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                const torch::Tensor& labels, double temperature, double alpha);

/// Zagoruyko & Komodakis' spatial attention map of a [B, C, ...] feature: the mean over channels of |f|^p,
/// flattened per sample and L2-normalized.
torch::Tensor attention_map(const torch::Tensor& feature, double p = 2);

/// Mean squared difference of the two attention maps (the student's feature is resized to the teacher's
/// spatial size when they differ).
torch::Tensor attention_transfer_loss(const torch::Tensor& student_feature, const torch::Tensor& teacher_feature,
                                      double p = 2);

/// A student/teacher pair of taps: node names in a GraphModule, or keys a custom forward returns.
struct TapPair {
  std::string student;
  std::string teacher;
};

/// Options of the combined distillation objective.
/// Defaults from the Fashion-MNIST sweep in docs/distillation.md (T = 2, alpha = 0.7 gave the 10x smaller
/// student +1.8 points; T = 4, alpha = 0.9 lost 1.4): small students learn better from sharper targets.
struct DistillOptions {
  double temperature = 2.0;
  double alpha = 0.7;                 ///< weight of the soft-target loss; 1 - alpha goes to the labels
  std::vector<TapPair> hints;         ///< FitNets: MSE(adapter(student tap), teacher tap)
  double hint_weight = 1.0;
  std::vector<TapPair> attention;     ///< attention transfer between taps
  double attention_weight = 500.0;    ///< beta / 2 with the paper's beta = 1000
};

/// The distillation objective as a module: it owns the hint adapters (1x1 convolutions for [B, C, H, W]
/// taps, linear layers over the last dimension otherwise; none where the shapes already agree), whose
/// parameters train with the student. Usable in any loop: call `init` once with example taps, then
/// `forward` each step.
class DistillationLossImpl : public torch::nn::Module {
 public:
  explicit DistillationLossImpl(DistillOptions options = {});
  /// Creates the adapters from one example of each tap (shapes only). Fails naming a missing tap or shapes
  /// an adapter cannot bridge.
  void init(const std::map<std::string, torch::Tensor>& student_taps,
            const std::map<std::string, torch::Tensor>& teacher_taps);
  struct Terms {
    torch::Tensor total, soft, hard, hint, attention;
  };
  Terms forward(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits, const torch::Tensor& labels,
                const std::map<std::string, torch::Tensor>& student_taps = {},
                const std::map<std::string, torch::Tensor>& teacher_taps = {});
  const DistillOptions& options() const { return options_; }
  std::vector<std::string> student_tap_names() const;
  std::vector<std::string> teacher_tap_names() const;

 private:
  DistillOptions options_;
  std::vector<torch::nn::AnyModule> adapters_;  // per hint; empty AnyModule = identity
  bool initialized_ = false;
};
TORCH_MODULE(DistillationLoss);

// ------------------------------------------------------------------------------------------- models

/// What the trainer needs of a model: its module (parameters, buffers, train/eval, checkpoints) and a
/// forward that returns the logits and the requested taps.
struct Model {
  std::shared_ptr<torch::nn::Module> module;
  std::function<std::pair<torch::Tensor, std::map<std::string, torch::Tensor>>(
      const torch::Tensor& input, const std::vector<std::string>& taps)>
      forward;
  std::string name = "model";
};

/// A GraphModule: taps are node names (any node producing a tensor).
Model as_model(const GraphModule& module, std::string name = "model");
/// The same without owning it (a pass trains the module it was given; keep `module` alive while training).
Model as_model(GraphModuleImpl& module, std::string name = "model");
/// Any module with a tensor -> logits forward; asking it for taps fails (give a custom Model instead).
Model as_model(std::shared_ptr<torch::nn::Module> module, std::function<torch::Tensor(const torch::Tensor&)> forward,
               std::string name = "model");

// ---------------------------------------------------------------------------------------- trainer

/// Learning rate at `step` of `total` steps: warm-up (linear from 0) for `warmup_steps`, then `constant`,
/// `cosine` (to `min_lr`), or `step` (times `gamma` every `step_epochs` epochs).
struct LrSchedule {
  std::string kind = "cosine";
  int64_t warmup_steps = 0;
  double min_lr = 0.0;
  int step_epochs = 1;
  double gamma = 0.1;
  double at(double base_lr, int64_t step, int64_t total_steps, int64_t steps_per_epoch) const;
};

struct EpochLog {
  int epoch = 0;              ///< 1-based
  double train_loss = 0;      ///< mean over the epoch's steps (this rank's batches)
  double eval_accuracy = -1;  ///< top-1 0..1 on the eval data; -1 without eval data
  double lr = 0;              ///< at the epoch's last step
  double seconds = 0;
  double images_per_second = 0;  ///< this rank's training throughput
};

struct TrainOptions {
  int epochs = 5;
  int64_t batch_size = 128;       ///< global: with W ranks each rank takes batch_size / W per step
  std::string optimizer = "sgd";  ///< sgd (momentum, Nesterov) | adam | adamw
  double lr = 0.05;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;
  LrSchedule schedule;
  uint64_t seed = 0;              ///< data order and every random draw (dropout) follow it: runs repeat exactly
  int patience = 0;               ///< early stopping: stop after this many epochs without a better eval (0: off)
  bool restore_best = true;       ///< end with the weights of the best eval epoch
  std::string checkpoint;         ///< file written atomically after every epoch (rank 0); empty: none
  bool resume = true;             ///< continue from `checkpoint` when it exists
  bool progress = true;           ///< progress bar with time left on stderr (rank 0)
  bool cache_teacher = true;      ///< without taps, compute the teacher's logits once per image
  int64_t eval_batch_size = 500;
  /// Runs after every optimizer step with the global step (re-apply sparsity masks here).
  std::function<void(int64_t)> after_step;
  /// Runs after every epoch; returning false stops training there (the checkpoint is already written).
  std::function<bool(const EpochLog&)> on_epoch;
  /// Data-parallel ranks (nullptr: one process).
  std::shared_ptr<Distributed> distributed;
  /// Replaces the student's forward and loss at each step and returns the loss to back-propagate: for objectives
  /// that run the model several times per step (a weight-sharing supernet's sandwich of subnets). No teacher.
  std::function<torch::Tensor(const torch::Tensor& images, const torch::Tensor& labels, int64_t step)> objective;
};

struct TrainResult {
  std::vector<EpochLog> history;
  double best_accuracy = -1;
  int best_epoch = 0;
  int resumed_after_epoch = 0;  ///< epochs that were already done in the checkpoint
  bool stopped_early = false;
  int64_t steps = 0;
  double seconds = 0;
  std::string str() const;
};

/// Trains `student` on the labels alone (teacher == nullptr) or distilled from a frozen `teacher`: the
/// teacher runs in eval mode without gradients and its parameters never change. The student ends in eval
/// mode. Errors (mismatched output sizes, unknown taps, empty data, a failed rank) leave the last
/// checkpoint intact.
TrainResult fit(Model& student, Model* teacher, const data::Dataset& train, const data::Dataset* eval,
                const TrainOptions& options, const DistillOptions& distill = {});

/// Convenience forms on GraphModules.
TrainResult finetune(const GraphModule& student, const data::Dataset& train, const data::Dataset* eval,
                     const TrainOptions& options);
TrainResult distill(const GraphModule& teacher, const GraphModule& student, const data::Dataset& train,
                    const data::Dataset* eval, const TrainOptions& options, const DistillOptions& distill = {});

/// Top-1 accuracy of a model on a dataset (eval mode, no gradients).
double accuracy(Model& model, const data::Dataset& data, int64_t batch_size = 500);

}  // namespace tailor::train
