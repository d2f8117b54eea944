// The options and the run that the finetune and distill passes share (private to src/train/passes).
#pragma once

#include "tailor/data/fashion_mnist.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/train/distributed.hpp"
#include "tailor/train/train.hpp"

namespace tailor::train::detail {


/// A pass that trains the module on a labelled dataset; the subclass says whether a teacher takes part.
class TrainingPass : public Pass {
 public:
  EnumOption data{this, "data", "fashion-mnist", {"fashion-mnist"}, "training data (its training split)"};
  Option<int64_t> limit{this, "limit", -1, "train on the first N images (-1: all)"};
  Option<int64_t> epochs{this, "epochs", TrainOptions{}.epochs, "epochs"};
  Option<int64_t> batch_size{this, "batch_size", TrainOptions{}.batch_size, "global batch size (split over ranks)"};
  EnumOption optimizer{this, "optimizer", TrainOptions{}.optimizer, {"sgd", "adam", "adamw"}, "optimizer"};
  Option<double> lr{this, "lr", TrainOptions{}.lr, "peak learning rate"};
  Option<double> momentum{this, "momentum", TrainOptions{}.momentum, "sgd momentum"};
  Option<double> weight_decay{this, "weight_decay", TrainOptions{}.weight_decay, "weight decay"};
  EnumOption schedule{this, "schedule", TrainOptions{}.schedule.kind, {"constant", "cosine", "step"}, "learning-rate schedule"};
  Option<int64_t> warmup_steps{this, "warmup_steps", TrainOptions{}.schedule.warmup_steps, "linear warm-up steps"};
  Option<int64_t> step_epochs{this, "step_epochs", TrainOptions{}.schedule.step_epochs, "step schedule: epochs per decay"};
  Option<double> gamma{this, "gamma", TrainOptions{}.schedule.gamma, "step schedule: decay factor"};
  Option<int64_t> seed{this, "seed", static_cast<int64_t>(TrainOptions{}.seed), "data order, initialization and dropout"};
  Option<int64_t> eval_limit{this, "eval_limit", 0,
                             "evaluate each epoch on the first N test images (-1: all; 0: no evaluation)"};
  Option<int64_t> patience{this, "patience", TrainOptions{}.patience,
                           "stop after N epochs without a better top-1 (0: never; needs evaluation)"};
  Option<bool> restore_best{this, "restore_best", TrainOptions{}.restore_best, "end with the best evaluated epoch"};
  Option<std::string> checkpoint{this, "checkpoint", "", "checkpoint file, written after every epoch; resumed when present"};
  Option<bool> resume{this, "resume", TrainOptions{}.resume, "continue from the checkpoint when it exists"};

 protected:
  /// The training options these pass options describe (ranks and quietness from the context).
  TrainOptions train_options(const PassContext& context) const {
    TrainOptions o;
    o.epochs = static_cast<int>(*epochs);
    o.batch_size = batch_size;
    o.optimizer = optimizer;
    o.lr = lr;
    o.momentum = momentum;
    o.weight_decay = weight_decay;
    o.schedule.kind = schedule;
    o.schedule.warmup_steps = warmup_steps;
    o.schedule.step_epochs = static_cast<int>(*step_epochs);
    o.schedule.gamma = gamma;
    o.seed = static_cast<uint64_t>(*seed);
    o.patience = static_cast<int>(*patience);
    o.restore_best = restore_best;
    o.checkpoint = checkpoint;
    o.resume = resume;
    o.distributed = context.distributed;
    o.progress = !context.quiet && (!o.distributed || o.distributed->rank() == 0);
    return o;
  }
  /// The training split (the first `limit` images).
  tailor::data::Dataset training_set() const {
    return tailor::data::load_fashion_mnist(tailor::data::Split::Train, tailor::data::fashion_mnist_root(), limit);
  }
  /// The per-epoch evaluation data (the first `eval_limit` test images); empty without evaluation.
  tailor::data::Dataset eval_set() const {
    if (*eval_limit == 0) return {};
    return tailor::data::load_fashion_mnist(tailor::data::Split::Test, tailor::data::fashion_mnist_root(), eval_limit);
  }

  /// Trains `module` (with `teacher` when not null) and reports the run as statistics.
  void train_module(GraphModuleImpl& module, Model* teacher, const DistillOptions& distill, PassContext& context) const {
    const TrainOptions o = train_options(context);
    const auto train_set = training_set();
    const auto evaluation = eval_set();
    Model student = as_model(module, teacher ? "student" : "model");
    const TrainResult r = fit(student, teacher, train_set, *eval_limit != 0 ? &evaluation : nullptr, o, distill);
    report(r, o, context);
  }

  /// The run's statistics: epochs, steps, time, losses, learning rates, speed, and top-1 with evaluation.
  void report(const TrainResult& r, const TrainOptions& o, PassContext& context) const {
    context.stat("epochs", static_cast<int64_t>(r.history.size()));
    context.stat("steps", r.steps);
    context.stat("train_seconds", r.seconds);
    context.stat("resumed_after_epoch", static_cast<int64_t>(r.resumed_after_epoch));
    context.stat("stopped_early", r.stopped_early);
    context.stat("ranks", static_cast<int64_t>(o.distributed ? o.distributed->world_size() : 1));
    std::vector<double> loss, top1, lrs, seconds, speed;
    for (const auto& e : r.history) {
      loss.push_back(e.train_loss);
      top1.push_back(e.eval_accuracy);
      lrs.push_back(e.lr);
      seconds.push_back(e.seconds);
      speed.push_back(e.images_per_second);
    }
    context.stat("loss", loss);
    context.stat("lr_by_epoch", lrs);
    context.stat("seconds_by_epoch", seconds);
    context.stat("images_per_second_by_epoch", speed);
    if (*eval_limit != 0 && !r.history.empty()) {
      context.stat("top1_by_epoch", top1);
      context.stat("best_epoch", static_cast<int64_t>(r.best_epoch));
      context.stat("top1", r.best_epoch > 0 && o.restore_best ? r.best_accuracy : r.history.back().eval_accuracy);
    }
  }
};

}  // namespace tailor::train::detail
