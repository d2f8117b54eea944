// Op family: binary arithmetic with broadcasting (add, sub, mul, div).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

// a (+|-) alpha * b
void add_sub_onnx(OnnxArgs& a) {
  const Node& n = a.node();
  std::string b = a.in(1);
  const double alpha = n.f("alpha", 1.0);
  if (alpha != 1.0) {
    const std::string scaled = a.fresh(n.name + "/alpha_b");
    a.emit("Mul", {b, a.floats({alpha}, a.dtype(0))}, {scaled});
    b = scaled;
  }
  a.emit(n.kind == kAdd ? "Add" : "Sub", {a.in(0), b}, {a.out(0)});
}

}  // namespace

void add_arithmetic_ops(std::vector<OpDef>& t) {
  for (const char* kind : {kAdd, kSub})
    t.push_back({kind, Arity{2, 1}, no_cost, output_elements,
                 [](const TorchScriptArgs& a) {
                   const Node& n = a.node();
                   return "torch." + n.kind + "(" + a.args() + (n.has("alpha") ? ", alpha=" + a.attr("alpha") : "") + ")";
                 },
                 ChannelRule::Binary, OnednnLowering::Binary, add_sub_onnx});
  for (const char* kind : {kMul, kDiv})
    t.push_back({kind, Arity{2, 1}, no_cost, output_elements,
                 [](const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.args() + ")"; },
                 ChannelRule::Binary, OnednnLowering::Binary, onnx_binary(kind == std::string(kMul) ? "Mul" : "Div")});
}

}  // namespace tailor::ops::detail
