#include "tailor/models/zoo.hpp"
#include <filesystem>

#include <cmath>

#include <torch/torch.h>

#include "tailor/capture/capture.hpp"
#include "tailor/models/space.hpp"

namespace tailor::models {
namespace nn = torch::nn;
namespace {

// A Sequential with a concrete forward, so that Sequentials can nest (as torchvision's do).
struct SeqImpl : nn::SequentialImpl {
  using nn::SequentialImpl::SequentialImpl;
  torch::Tensor forward(torch::Tensor x) { return nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(Seq);

nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t groups = 1, bool bias = false) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding((k - 1) / 2).groups(groups).bias(bias));
}

// torchvision's Conv2dNormActivation: a Sequential of conv (0), batch norm (1) and optional ReLU6 (2).
Seq conv_bn(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t groups, bool relu6) {
  Seq s(conv(in, out, k, stride, groups), nn::BatchNorm2d(out));
  if (relu6) s->push_back(nn::ReLU6());
  return s;
}

struct BasicBlockImpl : nn::Module {
  BasicBlockImpl(int64_t in, int64_t planes, int64_t stride, int64_t k = 3) {
    conv1 = register_module("conv1", conv(in, planes, k, stride));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv(planes, planes, k));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    if (stride != 1 || in != planes)
      downsample = register_module("downsample", Seq(conv(in, planes, 1, stride), nn::BatchNorm2d(planes)));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = bn2(conv2(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  Seq downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

struct BottleneckImpl : nn::Module {
  BottleneckImpl(int64_t in, int64_t planes, int64_t stride, int64_t k, int64_t expansion) {
    const int64_t out_channels = planes * expansion;
    conv1 = register_module("conv1", conv(in, planes, 1));
    bn1 = register_module("bn1", nn::BatchNorm2d(planes));
    conv2 = register_module("conv2", conv(planes, planes, k, stride));
    bn2 = register_module("bn2", nn::BatchNorm2d(planes));
    conv3 = register_module("conv3", conv(planes, out_channels, 1));
    bn3 = register_module("bn3", nn::BatchNorm2d(out_channels));
    if (stride != 1 || in != out_channels)
      downsample = register_module("downsample", Seq(conv(in, out_channels, 1, stride), nn::BatchNorm2d(out_channels)));
  }
  torch::Tensor forward(torch::Tensor x) {
    auto out = torch::relu(bn1(conv1(x)));
    out = torch::relu(bn2(conv2(out)));
    out = bn3(conv3(out));
    return torch::relu(out + (downsample ? downsample->forward(x) : x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  Seq downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

// The ResNet family: a 7x7 stride-2 stem and max pooling, then stages of basic blocks (expand 1) or bottlenecks
// (expand > 1) named layer1, layer2, ... as torchvision names them.
struct ResNetImpl : nn::Module {
  ResNetImpl(const ArchConfig& a, const ZooOptions& o) : small_input(a.resolution <= 32) {
    conv1 = register_module("conv1", small_input ? conv(o.in_channels_, a.stem, 3)
                                                 : nn::Conv2d(nn::Conv2dOptions(o.in_channels_, a.stem, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(a.stem));
    int64_t in = a.stem;
    for (size_t i = 0; i < a.stages.size(); ++i) {
      const StageConfig& st = a.stages[i];
      Seq stage;
      for (int64_t b = 0; b < st.depth; ++b) {
        const int64_t stride = b == 0 ? st.stride : 1;
        if (st.expand == 1)
          stage->push_back(BasicBlock(in, st.width, stride, st.kernel));
        else
          stage->push_back(Bottleneck(in, st.width, stride, st.kernel, st.expand));
        in = st.width * st.expand;
      }
      stages.push_back(register_module("layer" + std::to_string(i + 1), stage));
    }
    fc = register_module("fc", nn::Linear(in, o.num_classes_));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn1(conv1(x)));
    if (!small_input) x = torch::max_pool2d(x, 3, 2, 1);
    for (auto& s : stages) x = s->forward(x);
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
    return fc(x);
  }
  bool small_input;
  nn::Conv2d conv1{nullptr};
  nn::BatchNorm2d bn1{nullptr};
  std::vector<Seq> stages;
  nn::Linear fc{nullptr};
};

struct InvertedResidualImpl : nn::Module {
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand, int64_t k)
      : use_res(stride == 1 && in == out) {
    const int64_t hidden = in * expand;
    Seq layers;
    if (expand != 1) layers->push_back(conv_bn(in, hidden, 1, 1, 1, true));
    layers->push_back(conv_bn(hidden, hidden, k, stride, hidden, true));
    layers->push_back(conv(hidden, out, 1));
    layers->push_back(nn::BatchNorm2d(out));
    conv_ = register_module("conv", layers);
  }
  torch::Tensor forward(torch::Tensor x) { return use_res ? x + conv_->forward(x) : conv_->forward(x); }
  bool use_res;
  Seq conv_{nullptr};
};
TORCH_MODULE(InvertedResidual);

// The MobileNetV2 family: a 3x3 stride-2 stem, stages of inverted residuals, a 1x1 head, pooling, a classifier.
struct MobileNetV2Impl : nn::Module {
  MobileNetV2Impl(const ArchConfig& a, const ZooOptions& o) {
    int64_t in = a.stem;
    Seq f;
    f->push_back(conv_bn(o.in_channels_, in, 3, a.resolution <= 32 ? 1 : 2, 1, true));
    for (const StageConfig& st : a.stages)
      for (int64_t i = 0; i < st.depth; ++i) {
        f->push_back(InvertedResidual(in, st.width, i == 0 ? st.stride : 1, st.expand, st.kernel));
        in = st.width;
      }
    f->push_back(conv_bn(in, a.head, 1, 1, 1, true));
    features = register_module("features", f);
    classifier = register_module("classifier", Seq(nn::Dropout(0.2), nn::Linear(a.head, o.num_classes_)));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::adaptive_avg_pool2d(features->forward(x), {1, 1}).flatten(1);
    return classifier->forward(x);
  }
  Seq features{nullptr}, classifier{nullptr};
};

// A small CNN for 28x28 Fashion-MNIST: two conv-bn-relu-pool stages and two linear layers.
struct FashionCnnImpl : nn::Module {
  explicit FashionCnnImpl(const ZooOptions& o) {
    const int64_t c1 = static_cast<int64_t>(std::lround(32 * o.width_));
    const int64_t c2 = static_cast<int64_t>(std::lround(64 * o.width_));
    const int64_t hidden = static_cast<int64_t>(std::lround(128 * o.width_));
    conv1 = register_module("conv1", conv(o.in_channels_, c1, 3));
    bn1 = register_module("bn1", nn::BatchNorm2d(c1));
    conv2 = register_module("conv2", conv(c1, c2, 3));
    bn2 = register_module("bn2", nn::BatchNorm2d(c2));
    fc1 = register_module("fc1", nn::Linear(c2 * 7 * 7, hidden));
    dropout = register_module("dropout", nn::Dropout(0.25));
    fc2 = register_module("fc2", nn::Linear(hidden, o.num_classes_));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(bn1(conv1(x))), 2);
    x = torch::max_pool2d(torch::relu(bn2(conv2(x))), 2);
    x = torch::relu(fc1(x.flatten(1)));
    return fc2(dropout(x));
  }
  nn::Conv2d conv1{nullptr}, conv2{nullptr};
  nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  nn::Linear fc1{nullptr}, fc2{nullptr};
  nn::Dropout dropout{nullptr};
};

// A small ResNet for 28x28 Fashion-MNIST: a 3x3 stem and three basic-block stages (16, 32, 64 channels at
// width 1; 28x28, 14x14, 7x7) with residual adds, then global average pooling and a linear classifier.
struct FashionResNetImpl : nn::Module {
  explicit FashionResNetImpl(const ZooOptions& o) {
    const int64_t c = static_cast<int64_t>(std::lround(16 * o.width_));
    stem = register_module("stem", conv_bn(o.in_channels_, c, 3, 1, 1, false));
    layer1 = register_module("layer1", BasicBlock(c, c, 1));
    layer2 = register_module("layer2", BasicBlock(c, 2 * c, 2));
    layer3 = register_module("layer3", BasicBlock(2 * c, 4 * c, 2));
    fc = register_module("fc", nn::Linear(4 * c, o.num_classes_));
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(stem->forward(x));
    x = layer3(layer2(layer1(x)));
    return fc(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
  }
  Seq stem{nullptr};
  BasicBlock layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  nn::Linear fc{nullptr};
};

template <typename M, typename... Args>
ZooModel wrap(std::vector<int64_t> shape, Args&&... args) {
  auto m = std::make_shared<M>(std::forward<Args>(args)...);
  return {m, [m](const torch::Tensor& x) { return m->forward(x); }, std::move(shape)};
}

}  // namespace

std::vector<std::string> model_names() {
  return {"fashion-cnn", "fashion-resnet", "resnet18", "resnet50", "mobilenet_v2"};
}

bool is_model_name(const std::string& name) {
  for (const auto& n : model_names())
    if (n == name) return true;
  return false;
}

ZooModel make_model(const std::string& name, ZooOptions o) {
  torch::manual_seed(o.seed_);
  if (name == "fashion-cnn") {
    if (o.num_classes_ == 1000) o.num_classes_ = 10;
    if (o.in_channels_ == 3) o.in_channels_ = 1;
    return wrap<FashionCnnImpl>({1, o.in_channels_, 28, 28}, o);
  }
  if (name == "fashion-resnet") {
    if (o.num_classes_ == 1000) o.num_classes_ = 10;
    if (o.in_channels_ == 3) o.in_channels_ = 1;
    return wrap<FashionResNetImpl>({1, o.in_channels_, 28, 28}, o);
  }
  if (name == "resnet18") return make_arch(resnet18_config(), o);
  if (name == "resnet50") return make_arch(resnet50_config(), o);
  if (name == "mobilenet_v2") return make_arch(mobilenet_v2_config(o.width_), o);
  std::string valid;
  for (const auto& n : model_names()) valid += (valid.empty() ? "" : ", ") + n;
  TAILOR_FAIL("unknown zoo model '", name, "'; the zoo has: ", valid);
}

ZooModel make_arch(const ArchConfig& config, ZooOptions o) {
  TAILOR_CHECK(!config.stages.empty(), "architecture '", config.str(), "' has no stages");
  torch::manual_seed(o.seed_);
  const std::vector<int64_t> shape = config.input_shape(o.in_channels_);
  if (config.family == "resnet") return wrap<ResNetImpl>(shape, config, o);
  if (config.family == "mobilenet") return wrap<MobileNetV2Impl>(shape, config, o);
  TAILOR_FAIL("unknown architecture family '", config.family, "'; the families are resnet, mobilenet");
}

GraphModule capture_arch(const ArchConfig& config, ZooOptions options) {
  ZooModel z = make_arch(config, options);
  auto fn = z.forward;
  return capture(
      *z.module, [fn](const std::vector<c10::IValue>& in) -> c10::IValue { return fn(in[0].toTensor()); },
      {torch::zeros(z.input_shape)});
}

GraphModule capture_model(const std::string& name, ZooOptions options) {
  ZooModel z = make_model(name, options);
  auto fn = z.forward;
  return capture(
      *z.module, [fn](const std::vector<c10::IValue>& in) -> c10::IValue { return fn(in[0].toTensor()); },
      {torch::zeros(z.input_shape)});
}

GraphModule load_model(const std::string& file_or_name, ZooOptions options) {
  if (is_model_name(file_or_name) && !std::filesystem::exists(file_or_name)) return capture_model(file_or_name, options);
  if (file_or_name.find('@') != std::string::npos && !std::filesystem::exists(file_or_name))
    return capture_arch(ArchConfig::parse(file_or_name), options);
  if (!std::filesystem::exists(file_or_name)) {
    std::string names;
    for (const auto& n : model_names()) names += (names.empty() ? "" : ", ") + n;
    TAILOR_FAIL("model '", file_or_name, "' is neither a file nor a zoo model (", names,
                ") nor an architecture (family@resolution:stem:stages, e.g. ", resnet18_config().str(), ")");
  }
  return load(file_or_name);
}

}  // namespace tailor::models
