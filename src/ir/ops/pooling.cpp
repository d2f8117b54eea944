// Op family: pooling and reductions (max/avg/adaptive pooling, mean).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

// "2d" for a 2-d pooling: the TorchScript function names carry the rank.
std::string rank_suffix(const Node& n) {
  if (!n.has("kernel_size") && !n.has("output_size")) return "";
  return std::to_string(n.ints(n.has("kernel_size") ? "kernel_size" : "output_size").size()) + "d";
}

int64_t window_flops(const Graph& g, const Node& n) { return output_elements(g, n) * numel(n.ints("kernel_size")); }
int64_t input_flops(const Graph& g, const Node& n) { return numel(g.value(n.inputs[0]).shape); }

}  // namespace

void add_pooling_ops(std::vector<OpDef>& t) {
  t.push_back({kMaxPool, Arity{1, 1}, no_cost, window_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.max_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("kernel_size") + ", " +
                        a.attr("stride") + ", " + a.attr("padding") + ", " + a.attr("dilation") + ", " +
                        a.attr("ceil_mode") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool});
  t.push_back({kAvgPool, Arity{1, 1}, no_cost, window_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.avg_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("kernel_size") + ", " +
                        a.attr("stride") + ", " + a.attr("padding") + ", " + a.attr("ceil_mode") + ", " +
                        a.attr("count_include_pad") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool});
  t.push_back({kAdaptiveAvgPool, Arity{1, 1}, no_cost, input_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.adaptive_avg_pool" + rank_suffix(a.node()) + "(" + a.in(0) + ", " + a.attr("output_size") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Pool});
  t.push_back({kMean, Arity{1, 1}, no_cost, input_flops,
               [](const TorchScriptArgs& a) {
                 return "torch.mean(" + a.in(0) + ", " + a.attr("dims") + ", " + a.attr("keepdim") + ")";
               },
               ChannelRule::Mean, OnednnLowering::Mean});
}

}  // namespace tailor::ops::detail
