// Pass prune-channels: conv/linear channels removed physically, following residual, concat and depthwise
// dependencies (tailor::prune_channels).
#include "tailor/pass/pass.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor {
namespace {

class ChannelPrunePass : public Pass {
 public:
  Option<double> ratio{this, "ratio", ChannelPruneOptions{}.ratio,
                       "fraction of channels to remove from each group (or overall with global)"};
  EnumOption criterion{this, "criterion", "l1", {"l1", "l2", "bn", "taylor", "random"},
                       "importance: l1, l2, bn (batch-norm scale), taylor (|w * dL/dw| on the calibration data), random"};
  Option<bool> global{this, "global", ChannelPruneOptions{}.global, "rank channels across groups (group-normalized importance)"};
  Option<double> max_ratio{this, "max_ratio", ChannelPruneOptions{}.max_ratio, "no group loses more than this fraction"};
  Option<int64_t> round_to{this, "round_to", ChannelPruneOptions{}.round_to,
                           "kept channel counts are multiples of this (8 suits SIMD widths)"};
  ListOption<std::string> ignore{this, "ignore", {}, "producer layers whose channel groups are left alone"};
  Option<int64_t> seed{this, "seed", static_cast<int64_t>(ChannelPruneOptions{}.seed), "seed of the random criterion"};

  PassInfo info() const override {
    PassInfo i{"prune-channels", "remove conv/linear channels physically, following residual and concat dependencies"};
    i.needs.input_shapes = true;
    i.needs.calibration = *criterion == "taylor";
    return i;
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    ChannelPruneOptions o;
    o.ratio = ratio;
    o.criterion = criterion_from_string(criterion);
    o.global = global;
    o.max_ratio = max_ratio;
    o.round_to = round_to;
    o.ignore = ignore;
    o.seed = static_cast<uint64_t>(*seed);
    GradientFn gradients;
    if (o.criterion == Criterion::Taylor) {
      // Labels when the data has them; otherwise the model's own predictions stand in.
      const bool labelled = context.calibration_labels.size() == context.calibration.size();
      gradients = gradients_from_batches(context.calibration,
                                         labelled ? context.calibration_labels : std::vector<torch::Tensor>{});
    }
    const ChannelPruneResult r = prune_channels(module, context.input_shapes, o, gradients);
    context.stat("channels_removed", r.channels_removed);
    context.stat("layers_changed", static_cast<int64_t>(r.layers.size()));
    return r.channels_removed > 0;
  }
};
}  // namespace
}  // namespace tailor

TAILOR_REGISTER_PASS(prune_channels, tailor::ChannelPrunePass);
