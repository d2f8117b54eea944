// Op family: the matrix products (conv, linear, matmul): where the MACs are.
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

const std::vector<int64_t>& input_shape(const Graph& g, const Node& n, size_t k) { return g.value(n.inputs[k]).shape; }

int64_t bias_flops(const Graph& g, const Node& n) {
  return g.value(n.inputs[2]).type == ValueType::Tensor ? output_elements(g, n) : 0;
}

void conv_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  std::vector<std::string> inputs = {a.in(0), a.in(1)};
  if (!a.is_none(2)) inputs.push_back(a.in(2));
  const auto& w = a.shape(1);
  a.emit("Conv", inputs, {a.out(0)},
         {{"strides", n.ints("stride")},
          {"pads", onnx_pads(n.ints("padding"))},
          {"dilations", n.ints("dilation")},
          {"group", n.i("groups")},
          {"kernel_shape", std::vector<int64_t>(w.begin() + 2, w.end())}});
}

// Gemm for 2-d inputs (ONNX Runtime's QDQ rules recognise it with transB); MatMul with the transposed weight
// otherwise.
void linear_onnx(OnnxArgs& a) {
  if (a.shape(0).size() == 2) {
    std::vector<std::string> inputs = {a.in(0), a.in(1)};
    if (!a.is_none(2)) inputs.push_back(a.in(2));
    a.emit("Gemm", inputs, {a.out(0)}, {{"transB", int64_t{1}}});
    return;
  }
  const std::string wt = a.fresh(a.node().name + "/weight_t");
  a.emit("Transpose", {a.in(1)}, {wt}, {{"perm", std::vector<int64_t>{1, 0}}});
  if (a.is_none(2)) {
    a.emit("MatMul", {a.in(0), wt}, {a.out(0)});
    return;
  }
  const std::string product = a.fresh(a.node().name + "/matmul");
  a.emit("MatMul", {a.in(0), wt}, {product});
  a.emit("Add", {product, a.in(2)}, {a.out(0)});
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
               ChannelRule::Conv, OnednnLowering::Conv, conv_onnx});
  t.push_back({kLinear, Arity{3, 1},
               [](const Graph& g, const Node& n) { return output_elements(g, n) * input_shape(g, n, 1).back(); },
               bias_flops, [](const TorchScriptArgs& a) { return "torch.linear(" + a.args() + ")"; },
               ChannelRule::Linear, OnednnLowering::Linear, linear_onnx});
  t.push_back({kMatmul, Arity{2, 1},
               [](const Graph& g, const Node& n) {
                 const auto& x = input_shape(g, n, 0);
                 return x.empty() ? 0 : output_elements(g, n) * x.back();
               },
               no_cost, [](const TorchScriptArgs& a) { return "torch.matmul(" + a.args() + ")"; }, ChannelRule::Barrier,
               OnednnLowering::Aten, onnx_binary("MatMul")});
}

}  // namespace tailor::ops::detail
