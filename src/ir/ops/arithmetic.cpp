// Op family: binary arithmetic with broadcasting (add, sub, mul, div).
#include "families.hpp"

namespace tailor::ops::detail {

void add_arithmetic_ops(std::vector<OpDef>& t) {
  for (const char* kind : {kAdd, kSub})
    t.push_back({kind, Arity{2, 1}, no_cost, output_elements,
                 [](const TorchScriptArgs& a) {
                   const Node& n = a.node();
                   return "torch." + n.kind + "(" + a.args() + (n.has("alpha") ? ", alpha=" + a.attr("alpha") : "") + ")";
                 },
                 ChannelRule::Binary, OnednnLowering::Binary});
  for (const char* kind : {kMul, kDiv})
    t.push_back({kind, Arity{2, 1}, no_cost, output_elements,
                 [](const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.args() + ")"; },
                 ChannelRule::Binary, OnednnLowering::Binary});
}

}  // namespace tailor::ops::detail
