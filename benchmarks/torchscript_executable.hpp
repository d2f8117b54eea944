// Shared by the benchmarks: a TorchScript module behind tailor's Executable interface, so that the Profiler's
// loop (warm-up, runs until the median is stable) times the peers exactly as it times tailor's backends.
#pragma once

#include <torch/script.h>

#include <tailor/tailor.hpp>

namespace tailor::bench {

class TorchScriptExecutable final : public Executable {
 public:
  explicit TorchScriptExecutable(torch::jit::Module m) : m_(std::move(m)) {}
  std::string backend() const override { return "torchscript"; }
  c10::Device device() const override { return c10::Device(c10::kCPU); }
  c10::IValue run(const std::vector<c10::IValue>& inputs) override {
    c10::InferenceMode guard;
    return m_.forward(inputs);
  }
  c10::IValue run_timed(const std::vector<c10::IValue>& inputs, std::vector<StepTime>&) override { return run(inputs); }
  int64_t peak_activation_bytes() const override { return 0; }
  int64_t weight_bytes() const override { return 0; }
  std::string summary() const override { return "torch::jit::freeze'd module"; }
  std::vector<Kernel> kernels() const override { return {}; }  // one opaque call: nothing to list

 private:
  torch::jit::Module m_;
};

}  // namespace tailor::bench
