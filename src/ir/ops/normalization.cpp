// Op family: normalization (batch, layer and group norm).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {
int64_t two_per_element(const Graph& g, const Node& n) { return 2 * output_elements(g, n); }
}  // namespace

void add_normalization_ops(std::vector<OpDef>& t) {
  t.push_back({kBatchNorm, Arity{5, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.batch_norm(" + a.args() + ", self.training, " + a.attr("momentum") + ", " + a.attr("eps") +
                        ", True)";
               },
               ChannelRule::BatchNorm, OnednnLowering::Norm});
  t.push_back({kLayerNorm, Arity{3, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.layer_norm(" + a.in(0) + ", " + a.attr("normalized_shape") + ", " + a.in(1) + ", " +
                        a.in(2) + ", " + a.attr("eps") + ", True)";
               },
               ChannelRule::LayerNorm, OnednnLowering::Norm});
  t.push_back({kGroupNorm, Arity{3, 1}, no_cost, two_per_element,
               [](const TorchScriptArgs& a) {
                 return "torch.group_norm(" + a.in(0) + ", " + a.attr("num_groups") + ", " + a.in(1) + ", " + a.in(2) +
                        ", " + a.attr("eps") + ", True)";
               },
               ChannelRule::PinAndPassThrough, OnednnLowering::Aten});
}

}  // namespace tailor::ops::detail
