// tailor/models/zoo.hpp: reference architectures in LibTorch's C++ frontend, with parameter names that
// match torchvision's (resnet18/50, mobilenet_v2) so that state dicts line up, plus a small CNN for
// Fashion-MNIST. Each can be captured into a GraphModule by name.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

#include "tailor/ir/graph_module.hpp"

namespace tailor::models {

/// A zoo model: the C++ module, its forward, and the input shape it expects (batch 1).
struct ZooModel {
  std::shared_ptr<torch::nn::Module> module;
  std::function<torch::Tensor(const torch::Tensor&)> forward;
  std::vector<int64_t> input_shape;
};

/// Options for zoo models. Example: `ZooOptions().num_classes(10).in_channels(1)`
struct ZooOptions {
  ZooOptions& num_classes(int64_t v) { num_classes_ = v; return *this; }
  ZooOptions& in_channels(int64_t v) { in_channels_ = v; return *this; }
  ZooOptions& width(double v) { width_ = v; return *this; }
  ZooOptions& seed(uint64_t v) { seed_ = v; return *this; }
  int64_t num_classes_ = 1000;  ///< default 1000 (ImageNet); the fashion-* models use 10
  int64_t in_channels_ = 3;     ///< default 3; the fashion-* models use 1
  double width_ = 1.0;          ///< channel multiplier (MobileNetV2 width_mult, CNN widths)
  uint64_t seed_ = 0;           ///< weights are initialized from this seed
};

/// Names accepted by `make_model`: fashion-cnn, fashion-resnet, resnet18, resnet50, mobilenet_v2.
std::vector<std::string> model_names();
bool is_model_name(const std::string& name);

/// Builds a freshly initialized model. Unknown names fail and list the valid ones.
ZooModel make_model(const std::string& name, ZooOptions options = {});

/// Builds and captures a zoo model (traced at its input shape).
GraphModule capture_model(const std::string& name, ZooOptions options = {});

/// A model file (TorchScript or tailor export) when `file_or_name` exists, else the zoo model of that name
/// (freshly initialized with `options`); neither fails naming both choices.
GraphModule load_model(const std::string& file_or_name, ZooOptions options = {});

}  // namespace tailor::models
