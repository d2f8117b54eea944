// Op family: structure (constants, parameters, lists and tuples) and opaque LibTorch operators.
#include <torch/csrc/jit/runtime/operator.h>

#include "families.hpp"
#include "tailor/core/error.hpp"
#include "tailor/ir/graph_module.hpp"

namespace tailor::ops::detail {
namespace {

// Attention is the one opaque operator with MACs worth counting (ViT, transformers); others count 0.
int64_t opaque_macs(const Graph& g, const Node& n) {
  auto shape = [&](size_t k) -> const std::vector<int64_t>& { return g.value(n.inputs[k]).shape; };
  const std::string& schema = n.s("schema");
  if (schema == "aten::_native_multi_head_attention") {
    // (query [B, L, E], key [B, S, E], value, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, ...)
    const auto& q = shape(0);
    const auto& k = shape(1);
    if (q.size() != 3 || k.size() != 3) return 0;
    const int64_t b = q[0], l = q[1], s = k[1], e = q[2];
    return b * (l + 2 * s) * e * e  // q, k, v projections
           + 2 * b * l * s * e      // scores and weighted sum
           + b * l * e * e;         // output projection
  }
  if (schema == "aten::scaled_dot_product_attention") {
    const auto& q = shape(0);
    const auto& k = shape(1);
    if (q.size() < 2 || k.size() < 2) return 0;
    const int64_t l = q[q.size() - 2], s = k[k.size() - 2], e = q.back();
    return 2 * numel(std::vector<int64_t>(q.begin(), q.end() - 2)) * l * s * e;
  }
  return 0;  // addmm/bmm normally become linear/matmul and are counted there
}

// Any LibTorch operator, called the way TorchScript's own printer does: aten ops through `torch.`, keyword-only
// arguments by name.
std::string opaque_torchscript(const TorchScriptArgs& a) {
  const Node& n = a.node();
  const std::string& schema = n.s("schema");
  const c10::OperatorName op = tailor::detail::parse_operator_name(schema);
  const auto sep = op.name.find("::");
  const std::string ns = op.name.substr(0, sep), name = op.name.substr(sep + 2);
  if (ns == "prim") {
    if (name == "NumToTensor") return "torch.tensor(" + a.in(0) + ")";
    if (name == "device" || name == "dtype") return a.in(0) + "." + name;
    if (name == "min" || name == "max") return name + "(" + a.args() + ")";
  }
  TAILOR_CHECK(ns == "aten", "cannot export node '", n.name, "': operator ", schema,
               " has no TorchScript spelling tailor knows");
  auto oper = torch::jit::findOperatorFor(op);
  TAILOR_CHECK(oper, "cannot export node '", n.name, "': LibTorch has no operator ", schema);
  const auto& arguments = oper->schema().arguments();
  std::string call;
  for (size_t i = 0; i < n.inputs.size(); ++i) {
    std::string arg = a.in(i);
    if (i < arguments.size() && arguments[i].kwarg_only()) arg = arguments[i].name() + "=" + arg;
    call += (i ? ", " : "") + arg;
  }
  return "torch." + name + "(" + call + ")";
}

std::string unpack(const TorchScriptArgs& a) { return a.node().outputs.size() == 1 ? a.in(0) + "[0]" : a.in(0); }

}  // namespace

// Constants, parameters, lists, tuples and their unpacking have no ONNX spelling: the exporter folds them,
// writes parameters as initializers and follows lists of tensors to their elements.
void add_structure_ops(std::vector<OpDef>& t) {
  t.push_back({kConstant, Arity{0, 1}, no_cost, no_cost, [](const TorchScriptArgs&) { return std::string(); },
               ChannelRule::NoChannels, OnednnLowering::CompileTime, nullptr});
  t.push_back({kParam, Arity{0, 1}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return a.attribute_path(a.node().s("name")); }, ChannelRule::NoChannels,
               OnednnLowering::CompileTime});
  t.push_back({kList, Arity{-1, 1, 0}, no_cost, no_cost,
               [](const TorchScriptArgs& a) {
                 return a.node().inputs.empty() ? "annotate(" + a.output_type() + ", [])" : "[" + a.args() + "]";
               },
               ChannelRule::Barrier, OnednnLowering::Aten, nullptr});
  t.push_back({kTuple, Arity{-1, 1, 0}, no_cost, no_cost,
               [](const TorchScriptArgs& a) { return "(" + a.args() + (a.node().inputs.size() == 1 ? ",)" : ")"); },
               ChannelRule::Barrier, OnednnLowering::Aten, nullptr});
  t.push_back({kListUnpack, Arity{1, -1}, no_cost, no_cost, unpack, ChannelRule::Barrier, OnednnLowering::Aten, nullptr});
  t.push_back({kTupleUnpack, Arity{1, -1}, no_cost, no_cost, unpack, ChannelRule::Barrier, OnednnLowering::Aten, nullptr});
  t.push_back({kOpaque, Arity{-1, -1, 0}, opaque_macs, no_cost, opaque_torchscript, ChannelRule::Barrier,
               OnednnLowering::Aten, opaque_onnx});
}

}  // namespace tailor::ops::detail
