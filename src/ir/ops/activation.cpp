// Op family: activations (elementwise), softmax, and the identities at inference (dropout, contiguous).
#include "families.hpp"
#include "tailor/core/error.hpp"

namespace tailor::ops::detail {
namespace {

std::string plain_call(const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.args() + ")"; }

std::function<void(OnnxArgs&)> activation_onnx(const std::string& kind) {
  if (kind == kRelu) return onnx_unary("Relu");
  if (kind == kSigmoid) return onnx_unary("Sigmoid");
  if (kind == kTanh) return onnx_unary("Tanh");
  if (kind == kHardswish) return onnx_unary("HardSwish");
  if (kind == kHardsigmoid)  // PyTorch's relu6(x + 3) / 6
    return [](OnnxArgs& a) {
      a.emit("HardSigmoid", {a.in(0)}, {a.out(0)}, {{"alpha", 1.0 / 6.0}, {"beta", 0.5}});
    };
  if (kind == kSilu)
    return [](OnnxArgs& a) {
      const std::string gate = a.fresh(a.node().name + "/sigmoid");
      a.emit("Sigmoid", {a.in(0)}, {gate});
      a.emit("Mul", {a.in(0), gate}, {a.out(0)});
    };
  TAILOR_INTERNAL_ASSERT(false, "no ONNX spelling for activation ", kind);
  return {};
}

void hardtanh_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  a.emit("Clip", {a.in(0), a.floats({n.f("min_val")}, a.dtype(0)), a.floats({n.f("max_val")}, a.dtype(0))}, {a.out(0)});
}

// Opset 17 has no Gelu (20 has): the erf form, which ONNX Runtime fuses back into its Gelu kernel; tanh
// approximation written out.
void gelu_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  const std::string base = n.name + "/", x = a.in(0), like = a.dtype(0);
  const std::string inner = a.fresh(base + "inner"), t = a.fresh(base + "t"), one_plus = a.fresh(base + "one_plus"),
                    half_x = a.fresh(base + "half_x");
  if (n.s("approximate") == "tanh") {
    const std::string cube = a.fresh(base + "cube"), scaled_cube = a.fresh(base + "scaled_cube"),
                      sum = a.fresh(base + "sum");
    a.emit("Pow", {x, a.floats({3.0}, like)}, {cube});
    a.emit("Mul", {cube, a.floats({0.044715}, like)}, {scaled_cube});
    a.emit("Add", {x, scaled_cube}, {sum});
    a.emit("Mul", {sum, a.floats({0.7978845608028654}, like)}, {inner});  // sqrt(2 / pi)
    a.emit("Tanh", {inner}, {t});
  } else {
    a.emit("Div", {x, a.floats({1.4142135623730951}, like)}, {inner});
    a.emit("Erf", {inner}, {t});
  }
  a.emit("Add", {t, a.floats({1.0}, like)}, {one_plus});
  a.emit("Mul", {x, a.floats({0.5}, like)}, {half_x});
  a.emit("Mul", {half_x, one_plus}, {a.out(0)});
}

void softmax_onnx(OnnxArgs& a) {
  a.emit(a.node().kind == kSoftmax ? "Softmax" : "LogSoftmax", {a.in(0)}, {a.out(0)}, {{"axis", a.node().i("dim")}});
}

}  // namespace

void add_activation_ops(std::vector<OpDef>& t) {
  for (const char* kind : {kRelu, kSilu, kSigmoid, kHardsigmoid, kHardswish, kTanh})
    t.push_back({kind, Arity{1, 1}, no_cost, output_elements, plain_call, ChannelRule::PassThrough, OnednnLowering::Eltwise,
                 activation_onnx(kind)});
  t.push_back({kHardtanh, Arity{1, 1}, no_cost, output_elements,
               [](const TorchScriptArgs& a) {
                 return "torch.hardtanh(" + a.in(0) + ", " + a.attr("min_val") + ", " + a.attr("max_val") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Eltwise, hardtanh_onnx});
  t.push_back({kGelu, Arity{1, 1}, no_cost, output_elements,
               [](const TorchScriptArgs& a) { return "torch.gelu(" + a.in(0) + ", approximate=" + a.attr("approximate") + ")"; },
               ChannelRule::PassThrough, OnednnLowering::Eltwise, gelu_onnx});
  for (const char* kind : {kSoftmax, kLogSoftmax})
    t.push_back({kind, Arity{1, 1}, no_cost, [](const Graph& g, const Node& n) { return 3 * output_elements(g, n); },
                 [](const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.in(0) + ", " + a.attr("dim") + ")"; },
                 ChannelRule::Softmax, OnednnLowering::Softmax, softmax_onnx});
  // Backends fold dropout away before lowering; contiguous is a layout no-op for the graph.
  t.push_back({kDropout, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.dropout(" + a.in(0) + ", " + a.attr("p") + ", self.training)"; },
               ChannelRule::PassThrough, OnednnLowering::Aten, onnx_unary("Identity")});
  t.push_back({kContiguous, Arity{1, 1}, no_cost, no_cost, plain_call, ChannelRule::PassThrough, OnednnLowering::Aten,
               onnx_unary("Identity")});
}

}  // namespace tailor::ops::detail
