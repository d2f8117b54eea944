// The trainer: schedules, checkpoints written atomically and resumed identically, early stopping, ranks.
#include "tailor/train/train.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/export/export.hpp"
#include "tailor/capture/archive.hpp"
#include "tailor/capture/capture.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/train/distributed.hpp"

namespace tailor::train {

namespace F = torch::nn::functional;

// ---------------------------------------------------------------------------------------- trainer

double LrSchedule::at(double base_lr, int64_t step, int64_t total_steps, int64_t steps_per_epoch) const {
  if (step < warmup_steps) return base_lr * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  if (kind == "constant") return base_lr;
  if (kind == "step") {
    const int64_t epoch = steps_per_epoch > 0 ? step / steps_per_epoch : 0;
    return base_lr * std::pow(gamma, static_cast<double>(epoch / std::max(1, step_epochs)));
  }
  if (kind == "cosine") {
    const double span = static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
    const double t = static_cast<double>(step - warmup_steps) / span;
    return min_lr + 0.5 * (base_lr - min_lr) * (1 + std::cos(M_PI * std::min(1.0, t)));
  }
  TAILOR_FAIL("unknown learning-rate schedule '", kind, "'; valid schedules: constant, cosine, step");
}

std::string TrainResult::str() const {
  std::ostringstream out;
  for (const auto& e : history) {
    char line[200];
    std::snprintf(line, sizeof line, "epoch %d: loss %.4f, top-1 %s, lr %.5f, %.1f s, %.0f images/s\n", e.epoch,
                  e.train_loss, e.eval_accuracy < 0 ? "n/a" : (std::to_string(100 * e.eval_accuracy).substr(0, 5) + "%").c_str(),
                  e.lr, e.seconds, e.images_per_second);
    out << line;
  }
  if (best_epoch > 0) out << "best top-1 " << 100 * best_accuracy << "% at epoch " << best_epoch << "\n";
  if (stopped_early) out << "stopped early (no improvement)\n";
  return out.str();
}

namespace {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const std::vector<torch::Tensor>& params,
                                                        const TrainOptions& o) {
  if (o.optimizer == "sgd")
    return std::make_unique<torch::optim::SGD>(
        params, torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov && o.momentum > 0).weight_decay(o.weight_decay));
  if (o.optimizer == "adam")
    return std::make_unique<torch::optim::Adam>(params, torch::optim::AdamOptions(o.lr).weight_decay(o.weight_decay));
  if (o.optimizer == "adamw")
    return std::make_unique<torch::optim::AdamW>(params, torch::optim::AdamWOptions(o.lr).weight_decay(o.weight_decay));
  TAILOR_FAIL("unknown optimizer '", o.optimizer, "'; valid optimizers: sgd, adam, adamw");
}

// Teacher parameters never change: no gradients flow into them while training, whatever the caller set.
struct FreezeGuard {
  std::vector<std::pair<torch::Tensor, bool>> saved;
  explicit FreezeGuard(torch::nn::Module* m) {
    if (!m) return;
    for (auto& p : m->parameters()) {
      saved.emplace_back(p, p.requires_grad());
      p.set_requires_grad(false);
    }
  }
  ~FreezeGuard() {
    for (auto& [p, r] : saved) p.set_requires_grad(r);
  }
};

using StateMap = std::vector<std::pair<std::string, torch::Tensor>>;

StateMap state_of(torch::nn::Module& m, const std::string& prefix) {
  StateMap out;
  for (const auto& item : m.named_parameters()) out.emplace_back(prefix + item.key(), item.value());
  for (const auto& item : m.named_buffers()) out.emplace_back(prefix + item.key(), item.value());
  return out;
}

std::map<std::string, torch::Tensor> snapshot(const StateMap& state) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, v] : state) out[k] = v.detach().clone();
  return out;
}

void restore(const StateMap& state, const std::map<std::string, torch::Tensor>& saved) {
  torch::NoGradGuard g;
  for (const auto& [k, v] : state) {
    const auto it = saved.find(k);
    if (it != saved.end()) v.copy_(it->second);
  }
}

struct Progress {
  bool enabled, tty;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  int64_t total_steps = 0, done_at_start = 0;
  static std::string clock(double s) {
    const auto t = static_cast<int64_t>(s + 0.5);
    char b[32];
    std::snprintf(b, sizeof b, "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
    return b;
  }
  double left(int64_t done) const {
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const int64_t ran = done - done_at_start;
    return ran > 0 ? el / static_cast<double>(ran) * static_cast<double>(total_steps - done) : 0;
  }
  void step(int epoch, int epochs, int64_t in_epoch, int64_t per_epoch, int64_t done, double loss) const {
    if (!enabled || !tty) return;
    if (in_epoch % 5 != 0 && in_epoch != per_epoch) return;
    const int width = 24;
    const int filled = static_cast<int>(width * in_epoch / std::max<int64_t>(1, per_epoch));
    std::fprintf(stderr, "\r  epoch %d/%d [%s%s] %lld/%lld loss %.4f, %s left   ", epoch, epochs,
                 std::string(filled, '#').c_str(), std::string(width - filled, '.').c_str(),
                 static_cast<long long>(in_epoch), static_cast<long long>(per_epoch), loss, clock(left(done)).c_str());
    std::fflush(stderr);
  }
  void epoch_done(const EpochLog& e, int epochs, int64_t done) const {
    if (!enabled) return;
    std::fprintf(stderr, "%sepoch %d/%d: loss %.4f", tty ? "\r" : "", e.epoch, epochs, e.train_loss);
    if (e.eval_accuracy >= 0) std::fprintf(stderr, ", top-1 %.2f%%", 100 * e.eval_accuracy);
    std::fprintf(stderr, ", %.1f s, %.0f images/s, %s left%s\n", e.seconds, e.images_per_second,
                 clock(left(done)).c_str(), tty ? "                    " : "");
  }
};

struct Checkpoint {
  int epoch = 0;
  int64_t step = 0;
  double best_accuracy = -1;
  int best_epoch = 0;
  int bad_epochs = 0;
  std::vector<EpochLog> history;
};

void save_checkpoint(const std::string& path, const StateMap& state, const std::map<std::string, torch::Tensor>& best,
                     torch::optim::Optimizer& opt, const Checkpoint& c) {
  torch::serialize::OutputArchive ar;
  for (const auto& [k, v] : state) ar.write("state/" + k, v.detach(), true);
  for (const auto& [k, v] : best) ar.write("best/" + k, v, true);
  torch::serialize::OutputArchive opt_ar;
  opt.save(opt_ar);
  ar.write("optimizer", opt_ar);
  ar.write("meta", torch::tensor({static_cast<double>(c.epoch), static_cast<double>(c.step), c.best_accuracy,
                                  static_cast<double>(c.best_epoch), static_cast<double>(c.bad_epochs)},
                                 torch::kFloat64), true);
  auto hist = torch::zeros({static_cast<int64_t>(c.history.size()), 6}, torch::kFloat64);
  for (size_t i = 0; i < c.history.size(); ++i) {
    const auto& e = c.history[i];
    const double row[6] = {static_cast<double>(e.epoch), e.train_loss, e.eval_accuracy, e.lr, e.seconds,
                           e.images_per_second};
    for (int j = 0; j < 6; ++j) hist[static_cast<int64_t>(i)][j] = row[j];
  }
  ar.write("history", hist, true);
  std::ostringstream bytes;
  ar.save_to(bytes);
  write_file_atomically(path, bytes.str());
}

Checkpoint load_checkpoint(const std::string& path, const StateMap& state, std::map<std::string, torch::Tensor>& best,
                           torch::optim::Optimizer& opt) {
  torch::serialize::InputArchive ar;
  try {
    check_archive(path);
    ar.load_from(path);
  } catch (const std::exception& e) {
    TAILOR_FAIL("cannot read checkpoint '", path, "': ", e.what());
  }
  auto read = [&](const std::string& key) {
    torch::Tensor t;
    TAILOR_CHECK(ar.try_read(key, t, true), "checkpoint '", path, "' has no '", key,
                 "': it was written for another model or is not a tailor checkpoint");
    return t;
  };
  // Read everything before changing anything, so a mismatched checkpoint leaves the model as it was.
  std::vector<torch::Tensor> loaded;
  for (const auto& [k, v] : state) {
    auto t = read("state/" + k);
    TAILOR_CHECK(t.sizes() == v.sizes(), "checkpoint '", path, "': '", k, "' has shape ", t.sizes(),
                 " but the model's is ", v.sizes());
    loaded.push_back(t);
  }
  const auto meta = read("meta");
  const auto hist = read("history");
  torch::serialize::InputArchive opt_ar;
  TAILOR_CHECK(ar.try_read("optimizer", opt_ar), "checkpoint '", path, "' has no optimizer state");
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < state.size(); ++i) state[i].second.copy_(loaded[i]);
  }
  opt.load(opt_ar);
  best.clear();
  for (const auto& [k, v] : state) {
    torch::Tensor t;
    if (ar.try_read("best/" + k, t, true)) best[k] = t;
  }
  Checkpoint c;
  c.epoch = static_cast<int>(meta[0].item<double>());
  c.step = static_cast<int64_t>(meta[1].item<double>());
  c.best_accuracy = meta[2].item<double>();
  c.best_epoch = static_cast<int>(meta[3].item<double>());
  c.bad_epochs = static_cast<int>(meta[4].item<double>());
  for (int64_t i = 0; i < hist.size(0); ++i) {
    EpochLog e;
    e.epoch = static_cast<int>(hist[i][0].item<double>());
    e.train_loss = hist[i][1].item<double>();
    e.eval_accuracy = hist[i][2].item<double>();
    e.lr = hist[i][3].item<double>();
    e.seconds = hist[i][4].item<double>();
    e.images_per_second = hist[i][5].item<double>();
    c.history.push_back(e);
  }
  return c;
}

// The teacher's logits for every training image, computed once in a fixed order (so a resumed run sees the
// same values as an uninterrupted one).
torch::Tensor teacher_logits_for(Model& teacher, const data::Dataset& train, int64_t batch) {
  torch::NoGradGuard g;
  teacher.module->eval();
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < train.size(); s += batch)
    parts.push_back(teacher.forward(train.images.slice(0, s, std::min(train.size(), s + batch)), {}).first);
  return torch::cat(parts);
}

// One epoch's minibatches for this rank: a seeded permutation cut into minibatches of `rank_batch`, rank r
// taking minibatches r, r + W, ...; a global step covers the same images as one process with the full batch.
struct IndexedBatch {
  torch::Tensor images, labels, indices;
};
std::vector<IndexedBatch> epoch_batches(const data::Dataset& d, int64_t rank_batch, uint64_t seed, int rank, int world,
                                        int64_t steps) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const auto order = torch::randperm(d.size(), gen, torch::kLong);
  std::vector<IndexedBatch> out;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t start = (s * world + rank) * rank_batch;
    const auto idx = order.slice(0, start, std::min(d.size(), start + rank_batch));
    out.push_back({d.images.index_select(0, idx), d.labels.index_select(0, idx), idx});
  }
  return out;
}

}  // namespace

TrainResult fit(Model& student, Model* teacher, const data::Dataset& train, const data::Dataset* eval,
                const TrainOptions& o, const DistillOptions& distill_options) {
  torch::AutoGradMode grad_on(true);  // callers inside a no-grad scope (a pass driver) still train
  TAILOR_CHECK(student.module && student.forward, "the student model is empty");
  TAILOR_CHECK(!teacher || (teacher->module && teacher->forward), "the teacher model is empty");
  TAILOR_CHECK(train.size() > 0, "the training data is empty");
  TAILOR_CHECK(o.epochs > 0, "epochs must be positive, got ", o.epochs);
  TAILOR_CHECK(o.batch_size > 0, "batch size must be positive, got ", o.batch_size);
  TAILOR_CHECK(o.lr > 0, "learning rate must be positive, got ", o.lr);
  TAILOR_CHECK(o.patience >= 0, "patience must be >= 0, got ", o.patience);
  TAILOR_CHECK(!(o.objective && teacher), "a training objective and a teacher cannot be given together");
  o.schedule.at(o.lr, 0, 1, 1);  // validates the schedule's kind
  const int world = o.distributed ? o.distributed->world_size() : 1;
  const int rank = o.distributed ? o.distributed->rank() : 0;
  TAILOR_CHECK(o.batch_size % world == 0, "batch size ", o.batch_size, " does not split evenly over ", world,
               " ranks");
  const int64_t rank_batch = o.batch_size / world;
  const int64_t minibatches = (train.size() + rank_batch - 1) / rank_batch;
  // Every rank must take the same number of steps (each step is a collective): the last < world minibatches
  // of an epoch are dropped when they do not fill a step.
  const int64_t steps_per_epoch = world == 1 ? minibatches : minibatches / world;
  TAILOR_CHECK(steps_per_epoch > 0, "the training data (", train.size(), " images) is smaller than one step of ",
               o.batch_size, " over ", world, " ranks");
  const int64_t total_steps = steps_per_epoch * o.epochs;

  DistillationLoss loss_fn(teacher ? distill_options : DistillOptions{});
  const auto student_taps = teacher ? loss_fn->student_tap_names() : std::vector<std::string>{};
  const auto teacher_taps = teacher ? loss_fn->teacher_tap_names() : std::vector<std::string>{};
  FreezeGuard freeze(teacher ? teacher->module.get() : nullptr);

  // Check the pair on one batch and build the adapters before the optimizer sees their parameters.
  const auto probe = train.images.slice(0, 0, std::min<int64_t>(2, train.size()));
  {
    torch::NoGradGuard g;
    student.module->eval();
    auto [s_logits, s_taps] = student.forward(probe, student_taps);
    TAILOR_CHECK(s_logits.dim() == 2 && s_logits.size(0) == probe.size(0), "the student returns ", s_logits.sizes(),
                 " for a batch of ", probe.size(0), "; training needs logits [batch, classes]");
    if (teacher) {
      teacher->module->eval();
      auto [t_logits, t_taps] = teacher->forward(probe, teacher_taps);
      TAILOR_CHECK(t_logits.sizes() == s_logits.sizes(), "teacher and student outputs differ: the teacher '",
                   teacher->name, "' returns ", t_logits.sizes(), " and the student '", student.name, "' returns ",
                   s_logits.sizes(), " for the same batch");
      loss_fn->init(s_taps, t_taps);
    }
  }

  std::vector<torch::Tensor> params;
  for (auto& p : student.module->parameters())
    if (p.requires_grad()) params.push_back(p);
  for (auto& p : loss_fn->parameters()) params.push_back(p);
  TAILOR_CHECK(!params.empty(), "the student has no trainable parameters");
  auto opt = make_optimizer(params, o);

  StateMap state = state_of(*student.module, "student/");
  for (auto& kv : state_of(*loss_fn, "distill/")) state.push_back(kv);
  if (o.distributed) {
    o.distributed->broadcast_module(*student.module);
    o.distributed->broadcast_module(*loss_fn);
  }

  if (!o.checkpoint.empty() && rank == 0) {
    const auto parent = std::filesystem::path(o.checkpoint).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
  }
  TrainResult result;
  Checkpoint ck;
  std::map<std::string, torch::Tensor> best;
  if (!o.checkpoint.empty() && o.resume && std::filesystem::exists(o.checkpoint)) {
    ck = load_checkpoint(o.checkpoint, state, best, *opt);
    TAILOR_CHECK(ck.epoch <= o.epochs, "checkpoint '", o.checkpoint, "' is at epoch ", ck.epoch, " of a run longer than ",
                 o.epochs, " epochs");
    result.resumed_after_epoch = ck.epoch;
    if (o.progress && rank == 0)
      std::fprintf(stderr, "resuming from '%s' after epoch %d\n", o.checkpoint.c_str(), ck.epoch);
  }
  result.history = ck.history;

  torch::Tensor cached_teacher;
  const bool use_cache = teacher && o.cache_teacher && teacher_taps.empty();

  Progress progress{o.progress && rank == 0, isatty(2) != 0};
  progress.total_steps = total_steps;
  progress.done_at_start = ck.step;
  const auto run_start = std::chrono::steady_clock::now();
  int64_t step = ck.step;
  bool stop = ck.bad_epochs > 0 && o.patience > 0 && ck.bad_epochs >= o.patience;
  result.stopped_early = stop;
  for (int epoch = ck.epoch + 1; epoch <= o.epochs && !stop; ++epoch) {
    const auto epoch_start = std::chrono::steady_clock::now();
    torch::manual_seed(o.seed * 1000003ULL + static_cast<uint64_t>(epoch));
    const auto batches = epoch_batches(train, rank_batch, o.seed * 1000ULL + static_cast<uint64_t>(epoch), rank, world,
                                       steps_per_epoch);
    if (use_cache && !cached_teacher.defined()) cached_teacher = teacher_logits_for(*teacher, train, o.eval_batch_size);
    student.module->train();
    loss_fn->train();
    if (teacher) teacher->module->eval();
    double loss_sum = 0;
    int64_t images = 0, in_epoch = 0;
    double lr = o.lr;
    for (const auto& b : batches) {
      lr = o.schedule.at(o.lr, step, total_steps, steps_per_epoch);
      for (auto& group : opt->param_groups()) group.options().set_lr(lr);
      opt->zero_grad();
      torch::Tensor loss;
      if (o.objective) {
        loss = o.objective(b.images, b.labels, step);
      } else if (teacher) {
        auto [s_logits, s_taps] = student.forward(b.images, student_taps);
        torch::Tensor t_logits;
        std::map<std::string, torch::Tensor> t_taps;
        if (use_cache) {
          t_logits = cached_teacher.index_select(0, b.indices);
        } else {
          torch::NoGradGuard g;
          std::tie(t_logits, t_taps) = teacher->forward(b.images, teacher_taps);
        }
        loss = loss_fn->forward(s_logits, t_logits, b.labels, s_taps, t_taps).total;
      } else {
        loss = F::cross_entropy(student.forward(b.images, student_taps).first, b.labels);
      }
      TAILOR_CHECK(std::isfinite(loss.item<double>()), "the training loss became ", loss.item<double>(), " at epoch ",
                   epoch, " step ", step + 1, " (learning rate ", lr, "); lower it");
      loss.backward();
      if (o.distributed) {
        o.distributed->allreduce_gradients(*student.module);
        o.distributed->allreduce_gradients(*loss_fn);
      }
      opt->step();
      if (o.after_step) o.after_step(step);
      loss_sum += loss.item<double>();
      images += b.images.size(0);
      ++step;
      ++in_epoch;
      progress.step(epoch, o.epochs, in_epoch, steps_per_epoch, step, loss_sum / static_cast<double>(in_epoch));
    }
    if (o.distributed) o.distributed->allreduce_buffers(*student.module);
    EpochLog log;
    log.epoch = epoch;
    log.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, in_epoch));
    if (o.distributed) log.train_loss = o.distributed->allreduce_mean(log.train_loss);
    log.lr = lr;
    const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    log.images_per_second = static_cast<double>(images) / std::max(1e-9, train_seconds);
    if (eval) {
      log.eval_accuracy = accuracy(student, *eval, o.eval_batch_size);
      if (log.eval_accuracy > ck.best_accuracy) {
        ck.best_accuracy = log.eval_accuracy;
        ck.best_epoch = epoch;
        ck.bad_epochs = 0;
        if (o.restore_best) best = snapshot(state);
      } else {
        ++ck.bad_epochs;
      }
    }
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    result.history.push_back(log);
    ck.epoch = epoch;
    ck.step = step;
    ck.history = result.history;
    if (!o.checkpoint.empty() && rank == 0) save_checkpoint(o.checkpoint, state, best, *opt, ck);
    progress.epoch_done(log, o.epochs, step);
    if (o.patience > 0 && ck.bad_epochs >= o.patience) {
      stop = true;
      result.stopped_early = epoch < o.epochs;
    }
    if (o.on_epoch && !o.on_epoch(log)) break;
  }
  if (o.distributed) o.distributed->barrier();
  result.best_accuracy = ck.best_accuracy;
  result.best_epoch = ck.best_epoch;
  result.steps = step;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  const bool finished = ck.epoch >= o.epochs || result.stopped_early;
  if (finished && o.restore_best && !best.empty()) restore(state, best);
  student.module->eval();
  return result;
}

TrainResult finetune(const GraphModule& student, const data::Dataset& train, const data::Dataset* eval,
                     const TrainOptions& options) {
  Model s = as_model(student, "student");
  return fit(s, nullptr, train, eval, options);
}

TrainResult distill(const GraphModule& teacher, const GraphModule& student, const data::Dataset& train,
                    const data::Dataset* eval, const TrainOptions& options, const DistillOptions& distill_options) {
  Model s = as_model(student, "student");
  Model t = as_model(teacher, "teacher");
  return fit(s, &t, train, eval, options, distill_options);
}

}  // namespace tailor::train
