// tailor/models/space.hpp: architecture families as data. An ArchConfig names a ResNet-style or
// MobileNetV2-style network by its resolution, stem and per-stage depth, width, kernel, expansion and stride; a
// SearchSpace says which values each may take and samples or mutates configurations. The zoo's resnet18/50 and
// mobilenet_v2 are configurations of these families; the latency model and architecture search share them.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tailor/ir/graph_module.hpp"
#include "tailor/models/zoo.hpp"

namespace tailor::models {

struct StageConfig {
  int64_t depth = 1;   ///< blocks in the stage
  int64_t width = 64;  ///< ResNet: planes (output = planes x expand); MobileNet: output channels
  int64_t kernel = 3;  ///< ResNet: the 3x3 convolutions' size; MobileNet: the depthwise kernel
  int64_t expand = 1;  ///< ResNet: 1 basic block, 4 bottleneck; MobileNet: the inverted residual's expansion
  int64_t stride = 1;  ///< of the stage's first block
  bool operator==(const StageConfig& o) const {
    return depth == o.depth && width == o.width && kernel == o.kernel && expand == o.expand && stride == o.stride;
  }
};

/// One architecture. Text form: `family@resolution:stem:stages[:head]`, stages comma-separated as
/// `{depth}x{width}k{kernel}[e{expand}][s{stride}]`, e.g. resnet18 is
/// `resnet@224:64:2x64k3,2x128k3s2,2x256k3s2,2x512k3s2`; the head is MobileNet's last 1x1 width (default 1280).
/// Resolutions of 32 and below get a small-input stem, as CIFAR-style networks have: ResNet's 7x7 stride-2
/// convolution and max pooling become one 3x3 stride-1 convolution, MobileNet's first convolution has stride 1.
struct ArchConfig {
  std::string family = "resnet";  ///< "resnet" or "mobilenet"
  int64_t resolution = 224;
  int64_t stem = 64;
  std::vector<StageConfig> stages;
  int64_t head = 1280;

  std::string str() const;
  /// Parses the text form; errors name the token and what was expected.
  static ArchConfig parse(const std::string& text);
  std::string to_json() const;
  static ArchConfig from_json(const std::string& text);
  bool operator==(const ArchConfig& o) const {
    return family == o.family && resolution == o.resolution && stem == o.stem && stages == o.stages &&
           (family != "mobilenet" || head == o.head);
  }
  /// Input shape at batch 1 for `in_channels` channels.
  std::vector<int64_t> input_shape(int64_t in_channels = 3) const { return {1, in_channels, resolution, resolution}; }
};

/// The configurations of the zoo's ImageNet models (mobilenet_v2 at a width multiplier).
ArchConfig resnet18_config();
ArchConfig resnet50_config();
ArchConfig mobilenet_v2_config(double width = 1.0);

/// Builds the network of a configuration with freshly initialized weights (options: classes, input channels,
/// seed; width is ignored, the configuration holds the widths).
ZooModel make_arch(const ArchConfig& config, ZooOptions options = {});
/// Builds and captures it at its resolution.
GraphModule capture_arch(const ArchConfig& config, ZooOptions options = {});

/// The values each part of a configuration may take, per stage.
struct SearchSpace {
  struct Stage {
    std::vector<int64_t> depths, widths, kernels, expands;
    int64_t stride = 1;
  };
  std::string name;
  std::string family;
  std::vector<int64_t> resolutions, stems, heads;
  std::vector<Stage> stages;
  int64_t in_channels = 3;   ///< of the input images
  int64_t classes = 1000;    ///< of the classifier

  /// "resnet" (ResNet-18/50-style: depth 1-4, widths 0.25-1x of 64..512, kernels 3/5, basic or bottleneck,
  /// resolution 64-160) or "mobilenet" (MobileNetV2-style: depth 1-4, width 0.5-1.25x, kernels 3/5/7,
  /// expansion 3/4/6, resolution 64-160), and for 28x28 grey images with 10 classes (Fashion-MNIST)
  /// "fashion-resnet" (3 stages of basic blocks, depth 1-2, widths 8-64, kernels 3/5) and "fashion-mobilenet"
  /// (3 stages, depth 1-3, widths 8-64, kernels 3/5/7, expansion 3/4/6). Unknown names fail listing these.
  static SearchSpace named(const std::string& name);
  static std::vector<std::string> names();
  /// Every choice uniformly at random.
  ArchConfig sample(std::mt19937_64& rng) const;
  /// Each choice re-drawn with probability `p` (at least one changes).
  ArchConfig mutate(const ArchConfig& parent, std::mt19937_64& rng, double p = 0.2) const;
  /// Whether every value of `config` is one of this space's choices.
  bool contains(const ArchConfig& config) const;
  /// Why `config` is not in the space ("" when it is): the first part whose value is not a choice, and the choices.
  std::string why_not(const ArchConfig& config) const;
  /// Every choice at its largest (or smallest) value.
  ArchConfig largest() const;
  ArchConfig smallest() const;
  /// The zoo options that build this space's networks (input channels, classes) from `seed`.
  ZooOptions zoo_options(uint64_t seed = 0) const;
  /// JSON form (every field), so that spaces built in code travel with what was made from them.
  std::string to_json() const;
  /// Reads the JSON form; a missing or mistyped field fails naming it.
  static SearchSpace from_json(const std::string& text);
};

}  // namespace tailor::models
