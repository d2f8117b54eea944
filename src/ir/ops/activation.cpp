// Op family: activations (elementwise), softmax, and the identities at inference (dropout, contiguous).
#include "families.hpp"

namespace tailor::ops::detail {
namespace {

std::string plain_call(const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.args() + ")"; }

}  // namespace

void add_activation_ops(std::vector<OpDef>& t) {
  for (const char* kind : {kRelu, kSilu, kSigmoid, kHardsigmoid, kHardswish, kTanh})
    t.push_back({kind, Arity{1, 1}, no_cost, output_elements, plain_call, ChannelRule::PassThrough, OnednnLowering::Eltwise});
  t.push_back({kHardtanh, Arity{1, 1}, no_cost, output_elements,
               [](const TorchScriptArgs& a) {
                 return "torch.hardtanh(" + a.in(0) + ", " + a.attr("min_val") + ", " + a.attr("max_val") + ")";
               },
               ChannelRule::PassThrough, OnednnLowering::Eltwise});
  t.push_back({kGelu, Arity{1, 1}, no_cost, output_elements,
               [](const TorchScriptArgs& a) { return "torch.gelu(" + a.in(0) + ", approximate=" + a.attr("approximate") + ")"; },
               ChannelRule::PassThrough, OnednnLowering::Eltwise});
  for (const char* kind : {kSoftmax, kLogSoftmax})
    t.push_back({kind, Arity{1, 1}, no_cost, [](const Graph& g, const Node& n) { return 3 * output_elements(g, n); },
                 [](const TorchScriptArgs& a) { return "torch." + a.node().kind + "(" + a.in(0) + ", " + a.attr("dim") + ")"; },
                 ChannelRule::Softmax, OnednnLowering::Softmax});
  // Backends fold dropout away before lowering; contiguous is a layout no-op for the graph.
  t.push_back({kDropout, Arity{1, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "torch.dropout(" + a.in(0) + ", " + a.attr("p") + ", self.training)"; },
               ChannelRule::PassThrough, OnednnLowering::Aten});
  t.push_back({kContiguous, Arity{1, 1}, no_cost, no_cost, plain_call, ChannelRule::PassThrough, OnednnLowering::Aten});
}

}  // namespace tailor::ops::detail
