// Op family: the matrix products (conv, linear, matmul): where the MACs are.
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

const std::vector<int64_t>& input_shape(const Graph& g, const Node& n, size_t k) { return g.value(n.inputs[k]).shape; }

int64_t bias_flops(const Graph& g, const Node& n) {
  return g.value(n.inputs[2]).type == ValueType::Tensor ? output_elements(g, n) : 0;
}

}  // namespace

void add_matmul_ops(std::vector<OpDef>& t) {
  t.push_back({kConv, Arity{3, 1},
               [](const Graph& g, const Node& n) {
                 const auto& w = input_shape(g, n, 1);  // [Cout, Cin/groups, k...]
                 return output_elements(g, n) * numel(std::vector<int64_t>(w.begin() + 1, w.end()));
               },
               bias_flops,
               [](const TorchScriptArgs& a) {
                 const size_t dims = a.node().ints("stride").size();
                 return "torch.convolution(" + a.args() + ", " + a.attr("stride") + ", " + a.attr("padding") + ", " +
                        a.attr("dilation") + ", False, " + to_source(std::vector<int64_t>(dims, 0)) + ", " +
                        a.attr("groups") + ")";
               },
               ChannelRule::Conv, OnednnLowering::Conv});
  t.push_back({kLinear, Arity{3, 1},
               [](const Graph& g, const Node& n) { return output_elements(g, n) * input_shape(g, n, 1).back(); },
               bias_flops, [](const TorchScriptArgs& a) { return "torch.linear(" + a.args() + ")"; },
               ChannelRule::Linear, OnednnLowering::Linear});
  t.push_back({kMatmul, Arity{2, 1},
               [](const Graph& g, const Node& n) {
                 const auto& x = input_shape(g, n, 0);
                 return x.empty() ? 0 : output_elements(g, n) * x.back();
               },
               no_cost, [](const TorchScriptArgs& a) { return "torch.matmul(" + a.args() + ")"; }, ChannelRule::Barrier,
               OnednnLowering::Aten});
}

}  // namespace tailor::ops::detail
