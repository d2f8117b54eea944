// Pruning, measured.
//
//   bench_prune speed [--threads N] [MODEL ...]        channel-pruned latency next to the MAC reduction
//   bench_prune fmnist [--seeds 3] [--epochs E] [--finetune F] [--limit N]
//
// speed: each model (default resnet18, mobilenet_v2) pruned 30% and 50% (L1, kept channels rounded to 8), and
// profiled at batch 1 on libtorch-cpu and onednn-cpu in the same run as the dense model.
// fmnist: fashion-resnet trained on Debian's Fashion-MNIST for E epochs per seed, then from that dense model:
// 50% channel pruning + F epochs fine-tuning, 2:4 sparsity + F epochs, and 90% unstructured sparsity reached
// by the gradual (cubic) schedule over F epochs. Test accuracy per seed, mean and spread.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <tailor/tailor.hpp>

#include "trainer.hpp"

using namespace tailor;
using tailor::bench::Trainer;

namespace {

using tailor::bench::mean;
using tailor::bench::stdev;

// Zhu & Gupta inside a training loop: masks recomputed by magnitude at the schedule's steps, re-applied
// after every other optimizer step.
std::function<void(int64_t)> gradual_masks(GraphModuleImpl& m, SparsityMasks& masks, const GradualSchedule& sched) {
  return [&m, &masks, sched](int64_t step) {
    if (!sched.updates_at(step)) {
      masks.apply();
      return;
    }
    std::map<std::string, torch::Tensor> cur;
    for (const auto& n : prunable_weights(m)) cur[n] = m.tensor(n);
    masks.update(magnitude_masks(cur, sched.sparsity_at(step), true));
  };
}

int speed(const std::vector<std::string>& names, int threads) {
  std::printf("| model | variant | params | MACs | MACs vs dense | libtorch-cpu p50 ms | speed-up | onednn-cpu p50 ms "
              "| speed-up |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& name : names) {
    GraphModule dense = models::capture_model(name);
    dense->eval();
    const auto shape = models::make_model(name).input_shape;
    ProfileOptions po;
    po.threads = threads;
    po.max_seconds = 6;
    po.node_runs = 0;
    double base_lt = 0, base_dn = 0;
    int64_t base_macs = 0;
    for (double ratio : {0.0, 0.3, 0.5}) {
      GraphModule m = clone_module(*dense);
      ChannelPruneOptions o;
      o.ratio = ratio;
      o.round_to = 8;
      prune_channels(*m, {shape}, o);
      torch::NoGradGuard g;
      const CostReport c = analyze(*m, {shape});
      const double lt = profile(*m, "libtorch-cpu", shape, po).latency.p50_ms;
      const double dn = profile(*m, "onednn-cpu", shape, po).latency.p50_ms;
      if (ratio == 0) {
        base_lt = lt;
        base_dn = dn;
        base_macs = c.macs;
      }
      std::printf("| %s | %s | %.2fM | %.1fM | %.2f | %.2f | %.2fx | %.2f | %.2fx |\n", name.c_str(),
                  ratio == 0 ? "dense" : (std::to_string(static_cast<int>(ratio * 100)) + "% channels").c_str(),
                  static_cast<double>(c.params) / 1e6, static_cast<double>(c.macs) / 1e6,
                  static_cast<double>(c.macs) / static_cast<double>(base_macs), lt, base_lt / lt, dn, base_dn / dn);
      std::fflush(stdout);
    }
  }
  return 0;
}

int fmnist(int seeds, int epochs, int finetune, int64_t limit) {
  Trainer t;
  t.train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), limit);
  t.test = data::load_fashion_mnist(data::Split::Test);
  std::map<std::string, std::vector<double>> acc;
  std::map<std::string, std::vector<double>> macs;
  const auto start = std::chrono::steady_clock::now();
  for (int s = 0; s < seeds; ++s) {
    torch::manual_seed(static_cast<uint64_t>(s));
    GraphModule dense = models::capture_model("fashion-resnet", models::ZooOptions().seed(static_cast<uint64_t>(s)));
    t.fit(*dense, epochs, 0.1, static_cast<uint64_t>(s), nullptr);
    acc["dense"].push_back(t.accuracy(*dense));
    const std::vector<std::vector<int64_t>> shape = {{1, 1, 28, 28}};
    {
      torch::NoGradGuard g;
      macs["dense"].push_back(static_cast<double>(analyze(*dense, shape).macs));
    }

    // 50% of channels removed (L1), then fine-tuned.
    GraphModule ch = clone_module(*dense);
    ChannelPruneOptions o;
    o.ratio = 0.5;
    prune_channels(*ch, shape, o);
    acc["channel 50% (no fine-tuning)"].push_back(t.accuracy(*ch));
    t.fit(*ch, finetune, 0.02, static_cast<uint64_t>(s) + 100, nullptr);
    acc["channel 50% + fine-tuning"].push_back(t.accuracy(*ch));
    {
      torch::NoGradGuard g;
      macs["channel 50% + fine-tuning"].push_back(static_cast<double>(analyze(*ch, shape).macs));
    }

    // The same pruned model recovered by distillation from the dense one, same budget and learning rate.
    train::TrainOptions kd;
    kd.epochs = finetune;
    kd.lr = 0.02;
    kd.seed = static_cast<uint64_t>(s) + 100;
    kd.progress = false;
    GraphModule ch_kd = clone_module(*dense);
    prune_channels(*ch_kd, shape, o);
    train::distill(dense, ch_kd, t.train, nullptr, kd);
    acc["channel 50% + KD"].push_back(t.accuracy(*ch_kd));

    // 2:4 on every conv/linear whose inputs divide by 4 (the 1-channel stem does not), then fine-tuned.
    GraphModule nm = clone_module(*dense);
    std::map<std::string, torch::Tensor> w;
    for (const auto& n : prunable_weights(*nm))
      if (nm->tensor(n).size(1) % 4 == 0) w[n] = nm->tensor(n);
    SparsityMasks nm_masks_;
    nm_masks_.attach(*nm, nm_masks(w, 2, 4));
    acc["2:4 (no fine-tuning)"].push_back(t.accuracy(*nm));
    t.fit(*nm, finetune, 0.02, static_cast<uint64_t>(s) + 200, [&](int64_t) { nm_masks_.apply(); });
    acc["2:4 + fine-tuning"].push_back(t.accuracy(*nm));

    // 90% unstructured, reached gradually (Zhu & Gupta) over the first 3/4 of the fine-tuning steps.
    GraphModule gr = clone_module(*dense);
    std::map<std::string, torch::Tensor> all;
    for (const auto& n : prunable_weights(*gr)) all[n] = gr->tensor(n);
    SparsityMasks gm_masks;
    gm_masks.attach(*gr, magnitude_masks(all, 0.0, true));
    const int64_t steps = finetune * ((t.train.size() + t.batch - 1) / t.batch);
    GradualSchedule sched;
    sched.final = 0.9;
    sched.begin = 0;
    sched.end = steps * 3 / 4;
    sched.every = std::max<int64_t>(1, sched.end / 30);
    t.fit(*gr, finetune, 0.02, static_cast<uint64_t>(s) + 300, gradual_masks(*gr, gm_masks, sched));
    acc["90% unstructured, gradual"].push_back(t.accuracy(*gr));

    // The same gradual schedule with distillation from the dense model instead of the labels alone.
    GraphModule gr_kd = clone_module(*dense);
    SparsityMasks gk_masks;
    gk_masks.attach(*gr_kd, magnitude_masks(all, 0.0, true));
    kd.seed = static_cast<uint64_t>(s) + 300;
    kd.after_step = gradual_masks(*gr_kd, gk_masks, sched);
    train::distill(dense, gr_kd, t.train, nullptr, kd);
    acc["90% unstructured, gradual + KD"].push_back(t.accuracy(*gr_kd));
    std::fprintf(stderr, "seed %d done after %.0f s (sparsity %.3f)\n", s,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), gm_masks.sparsity());
  }
  std::printf("fashion-resnet on Fashion-MNIST (%lld training images, 10k test), %d seed(s), %d epoch(s) dense, %d "
              "epoch(s) fine-tuning\n\n| variant | top-1 %% (mean +- std) | vs dense (points) | per seed |\n"
              "|---|---|---|---|\n",
              static_cast<long long>(t.train.size()), seeds, epochs, finetune);
  const double d = mean(acc["dense"]);
  for (const auto& key : {"dense", "channel 50% (no fine-tuning)", "channel 50% + fine-tuning", "2:4 (no fine-tuning)",
                          "2:4 + fine-tuning", "90% unstructured, gradual", "channel 50% + KD",
                          "90% unstructured, gradual + KD"}) {
    const auto& v = acc[key];
    std::string per;
    for (double x : v) per += (per.empty() ? "" : ", ") + std::to_string(x * 100).substr(0, 5);
    std::printf("| %s | %.2f +- %.2f | %+.2f | %s |\n", key, 100 * mean(v), 100 * stdev(v), 100 * (mean(v) - d),
                per.c_str());
  }
  std::printf("\nMACs per image: dense %.2fM, channel 50%% %.2fM\n", mean(macs["dense"]) / 1e6,
              mean(macs["channel 50% + fine-tuning"]) / 1e6);
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_prune speed [--threads N] [MODEL ...] | fmnist [--seeds S] [--epochs E] "
                         "[--finetune F] [--limit N]\n");
    return 2;
  }
  const std::string mode = argv[1];
  int threads = 1, seeds = 3, epochs = 4, finetune = 2;
  int64_t limit = -1;
  std::vector<std::string> names;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (a == "--seeds" && i + 1 < argc) seeds = std::stoi(argv[++i]);
    else if (a == "--epochs" && i + 1 < argc) epochs = std::stoi(argv[++i]);
    else if (a == "--finetune" && i + 1 < argc) finetune = std::stoi(argv[++i]);
    else if (a == "--limit" && i + 1 < argc) limit = std::stoll(argv[++i]);
    else names.push_back(a);
  }
  if (mode == "speed") {
    if (names.empty()) names = {"resnet18", "mobilenet_v2"};
    return speed(names, threads);
  }
  if (mode == "fmnist") {
    set_threads(2);
    return fmnist(seeds, epochs, finetune, limit);
  }
  std::fprintf(stderr, "bench_prune: unknown mode '%s' (speed or fmnist)\n", mode.c_str());
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_prune: %s\n", e.what());
  return 1;
}
