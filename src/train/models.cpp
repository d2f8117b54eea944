// What the trainer trains: GraphModules and plain modules as Models, and their top-1.
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
#include "tailor/capture/capture.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/train/distributed.hpp"

namespace tailor::train {

namespace F = torch::nn::functional;

// ------------------------------------------------------------------------------------------- models

namespace {
Model graph_model(std::shared_ptr<GraphModuleImpl> gm, std::string name) {
  Model m;
  m.module = gm;
  m.name = std::move(name);
  m.forward = [gm](const torch::Tensor& x, const std::vector<std::string>& taps)
      -> std::pair<torch::Tensor, std::map<std::string, torch::Tensor>> {
    if (taps.empty()) return {gm->forward(x), {}};
    auto [out, tapped] = gm->run_with_taps({x}, taps);
    TAILOR_CHECK(out.isTensor(), "the model's output is not a tensor; distillation needs logits");
    return {out.toTensor(), std::move(tapped)};
  };
  return m;
}
}  // namespace

Model as_model(const GraphModule& module, std::string name) { return graph_model(module.ptr(), std::move(name)); }

Model as_model(GraphModuleImpl& module, std::string name) {
  return graph_model(std::shared_ptr<GraphModuleImpl>(std::shared_ptr<GraphModuleImpl>(), &module), std::move(name));
}

Model as_model(std::shared_ptr<torch::nn::Module> module, std::function<torch::Tensor(const torch::Tensor&)> forward,
               std::string name) {
  Model m;
  m.module = std::move(module);
  m.name = name;
  m.forward = [forward = std::move(forward), name](const torch::Tensor& x, const std::vector<std::string>& taps)
      -> std::pair<torch::Tensor, std::map<std::string, torch::Tensor>> {
    TAILOR_CHECK(taps.empty(), "the ", name, " is a plain module without taps (asked for '", taps.front(),
                 "'); capture it as a GraphModule or give a Model whose forward returns its taps");
    return {forward(x), {}};
  };
  return m;
}

double accuracy(Model& model, const data::Dataset& data, int64_t batch_size) {
  model.module->eval();
  return data::top1_accuracy([&](const at::Tensor& x) { return model.forward(x, {}).first; }, data, batch_size);
}

}  // namespace tailor::train
