// Shared by the benchmarks: a plain SGD trainer (Nesterov momentum, cosine learning rate) over Debian's
// Fashion-MNIST, and top-1 on its test split. The library's own Distiller/trainer is issue 7's.
#pragma once

#include <cmath>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include <tailor/tailor.hpp>

namespace tailor::bench {

// Mean and sample standard deviation of per-seed results (0 for an empty list / fewer than two).
inline double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

inline double stdev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

struct Trainer {
  data::Dataset train, test;
  int64_t batch = 128;

  // SGD with momentum and a cosine learning rate; `after_step` runs after every optimizer step (masks).
  void fit(GraphModuleImpl& m, int epochs, double lr, uint64_t seed, const std::function<void(int64_t)>& after_step) {
    m.train();
    torch::optim::SGD opt(m.parameters(), torch::optim::SGDOptions(lr).momentum(0.9).weight_decay(5e-4).nesterov(true));
    const int64_t steps_per_epoch = (train.size() + batch - 1) / batch;
    const int64_t total = steps_per_epoch * epochs;
    int64_t step = 0;
    for (int e = 0; e < epochs; ++e) {
      for (const auto& b : data::batches(train, batch, true, seed * 1000 + static_cast<uint64_t>(e))) {
        const double cur = 0.5 * lr * (1 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
        for (auto& group : opt.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(cur);
        opt.zero_grad();
        torch::nn::functional::cross_entropy(m.forward(b.images), b.labels).backward();
        opt.step();
        if (after_step) after_step(step);
        ++step;
      }
    }
    m.eval();
  }
  double accuracy(GraphModuleImpl& m) {
    m.eval();
    return data::top1_accuracy([&](const at::Tensor& x) { return m.forward(x); }, test, 500);
  }
};

}  // namespace tailor::bench
