#include "tailor/transforms/transforms.hpp"

#include <set>

#include <torch/torch.h>

#include "tailor/ir/ops.hpp"

namespace tailor {
namespace {

bool is_none(const Graph& g, int value) {
  const Node* p = g.producer(value);
  return p && p->kind == ops::kConstant && std::holds_alternative<std::monostate>(p->attr("value"));
}

const Node* param_of(const Graph& g, int value) {
  const Node* p = g.producer(value);
  return p && p->kind == ops::kParam ? p : nullptr;
}

bool is_constant(const Graph& g, int value, const AttrValue& expected) {
  const Node* p = g.producer(value);
  return p && p->kind == ops::kConstant && p->attr("value") == expected;
}

}  // namespace

bool eliminate_dead_code(Graph& graph) {
  bool changed = false;
  std::vector<int> order = graph.order();
  std::set<int> used(graph.outputs().begin(), graph.outputs().end());
  // Walk backwards: a node is live when any of its outputs is used.
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const Node& n = graph.node(*it);
    bool live = false;
    for (int out : n.outputs) live = live || used.count(out);
    if (live) {
      used.insert(n.inputs.begin(), n.inputs.end());
    } else {
      graph.remove_node(*it);
      changed = true;
    }
  }
  return changed;
}

bool canonicalize(Graph& graph) {
  bool changed = false;
  const std::vector<int> order = graph.order();
  for (int id : order) {
    if (!graph.alive(id)) continue;
    const Node& n = graph.node(id);
    if (n.kind != ops::kOpaque) continue;
    const int old_out = n.outputs[0];
    const std::string& schema = n.s("schema");
    // C++ nn::Linear traces as addmm(bias, x, t(weight), beta=1, alpha=1) or matmul(x, t(weight)).
    int x = -1, wt = -1, bias = -1;
    if (schema == "aten::addmm" && n.inputs.size() == 5 && is_constant(graph, n.inputs[3], int64_t{1}) &&
        is_constant(graph, n.inputs[4], int64_t{1})) {
      bias = n.inputs[0];
      x = n.inputs[1];
      wt = n.inputs[2];
    } else if (schema == "aten::matmul" || schema == "aten::mm") {
      x = n.inputs[0];
      wt = n.inputs[1];
    } else {
      continue;
    }
    const Node* t = graph.producer(wt);
    if (!t || t->kind != ops::kOpaque || t->s("schema") != "aten::t" || !param_of(graph, t->inputs[0])) continue;
    if (bias >= 0 && !param_of(graph, bias)) continue;
    Node lin;
    lin.kind = ops::kLinear;
    const std::string& wname = param_of(graph, t->inputs[0])->s("name");
    const auto dot = wname.rfind('.');
    lin.name = dot == std::string::npos ? "linear" : wname.substr(0, dot);
    const int weight = t->inputs[0];
    if (bias < 0) {
      Node none;
      none.kind = ops::kConstant;
      none.name = "const";
      none.attrs["value"] = std::monostate{};
      bias = graph.node(graph.add_node(std::move(none), {ValueType::None}, id)).outputs[0];
    }
    lin.inputs = {x, weight, bias};
    const int new_id = graph.add_node(std::move(lin), {ValueType::Tensor}, id);
    graph.replace_all_uses(old_out, graph.node(new_id).outputs[0]);
    graph.remove_node(id);
    changed = true;
  }
  if (changed) eliminate_dead_code(graph);
  return changed;
}

bool fold_batch_norm(GraphModuleImpl& module) {
  Graph& g = module.mutable_graph();
  bool changed = false;
  const std::vector<int> order = g.order();
  for (int id : order) {
    if (!g.alive(id)) continue;
    const Node& bn = g.node(id);
    if (bn.kind != ops::kBatchNorm) continue;
    const Node* layer = g.producer(bn.inputs[0]);
    if (!layer || (layer->kind != ops::kConv && layer->kind != ops::kLinear)) continue;
    const int layer_out = layer->outputs[0];
    if (g.users(layer_out).size() != 1 || g.is_graph_output(layer_out)) continue;
    const Node* w_node = param_of(g, layer->inputs[1]);
    if (!w_node || (!is_none(g, layer->inputs[2]) && !param_of(g, layer->inputs[2]))) continue;
    const Node* mean_node = param_of(g, bn.inputs[3]);
    const Node* var_node = param_of(g, bn.inputs[4]);
    if (!mean_node || !var_node) continue;
    if ((!is_none(g, bn.inputs[1]) && !param_of(g, bn.inputs[1])) ||
        (!is_none(g, bn.inputs[2]) && !param_of(g, bn.inputs[2])))
      continue;
    // A weight shared with another layer cannot be rewritten for this one alone.
    if (g.users(layer->inputs[1]).size() != 1) continue;
    if (!is_none(g, layer->inputs[2]) && g.users(layer->inputs[2]).size() != 1) continue;

    // Copy what is needed: adding a node below may move the node storage.
    const int layer_id = g.value(layer_out).producer;
    const int bn_out = bn.outputs[0];
    const double eps = bn.f("eps");
    const std::string wname = w_node->s("name");
    const std::string bias_name = is_none(g, layer->inputs[2]) ? "" : param_of(g, layer->inputs[2])->s("name");
    const std::string gamma_name = is_none(g, bn.inputs[1]) ? "" : param_of(g, bn.inputs[1])->s("name");
    const std::string beta_name = is_none(g, bn.inputs[2]) ? "" : param_of(g, bn.inputs[2])->s("name");
    const std::string weight_dtype = g.value(layer->inputs[1]).dtype;

    torch::NoGradGuard no_grad;
    const torch::Tensor w = module.tensor(wname);
    const torch::Tensor mean = module.tensor(mean_node->s("name")).to(torch::kDouble);
    const torch::Tensor var = module.tensor(var_node->s("name")).to(torch::kDouble);
    const int64_t channels = mean.size(0);
    if (w.size(0) != channels) continue;
    auto opts = torch::TensorOptions().dtype(torch::kDouble).device(w.device());
    const torch::Tensor gamma =
        gamma_name.empty() ? torch::ones({channels}, opts) : module.tensor(gamma_name).to(torch::kDouble);
    const torch::Tensor beta =
        beta_name.empty() ? torch::zeros({channels}, opts) : module.tensor(beta_name).to(torch::kDouble);
    const torch::Tensor scale = gamma / torch::sqrt(var + eps);
    std::vector<int64_t> bshape(w.dim(), 1);
    bshape[0] = channels;
    // The per-channel factors in double, the weight scaled in its own type: one new tensor, not three (each
    // new tensor of weights costs page faults, which a VM makes slow: through double, a ResNet of the search
    // space at 64-160 px compiled in 0.45-0.5 s on this project's VMs, 0.2 s this way).
    const torch::Tensor new_w = w * scale.to(w.scalar_type()).reshape(bshape);
    const bool had_bias = !bias_name.empty();
    const torch::Tensor old_b = had_bias ? module.tensor(bias_name).to(torch::kDouble) : torch::zeros({channels}, opts);
    const torch::Tensor new_b = ((old_b - mean) * scale + beta).to(w.scalar_type());

    module.set_tensor(wname, new_w);
    if (had_bias) {
      module.set_tensor(bias_name, new_b);
    } else {
      const auto dot = wname.rfind('.');
      std::string bname = (dot == std::string::npos ? std::string() : wname.substr(0, dot + 1)) + "bias";
      for (int k = 1; module.has_tensor(bname); ++k) bname = wname + "_folded_bias" + std::to_string(k);
      module.add_tensor(bname, new_b, /*buffer=*/false);
      Node p;
      p.kind = ops::kParam;
      p.name = bname;
      p.attrs["name"] = bname;
      p.attrs["buffer"] = false;
      const int pid = g.add_node(std::move(p), {ValueType::Tensor}, layer_id);
      const int pv = g.node(pid).outputs[0];
      g.value(pv).shape = {channels};
      g.value(pv).dtype = weight_dtype;
      g.node(layer_id).inputs[2] = pv;
    }
    g.replace_all_uses(bn_out, layer_out);
    g.remove_node(id);
    changed = true;
  }
  if (changed) {
    eliminate_dead_code(g);
    module.drop_unused_tensors();
    module.recompile();
  }
  return changed;
}

bool remove_dropout(GraphModuleImpl& module) {
  Graph& g = module.mutable_graph();
  bool changed = false;
  for (int id : std::vector<int>(g.order())) {
    const Node& n = g.node(id);
    if (n.kind != ops::kDropout) continue;
    g.replace_all_uses(n.outputs[0], n.inputs[0]);
    g.remove_node(id);
    changed = true;
  }
  if (changed) {
    eliminate_dead_code(g);
    module.recompile();
  }
  return changed;
}

}  // namespace tailor
