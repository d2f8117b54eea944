// Cross-layer equalization (Nagel et al., 2019).
#include "tailor/quant/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "tailor/ir/ops.hpp"
#include "tailor/prune/prune.hpp"
#include "tailor/transforms/transforms.hpp"
#include "tailor/runtime/isa.hpp"
#include "../ir/program.hpp"
#include "internal.hpp"

namespace tailor::quant {

using namespace detail;

// ---------------------------------------------------------------------------------------------------------
// Cross-layer equalization

namespace {

struct EqualizePair {
  int first = -1, second = -1;
  int relu6 = -1;  // a hardtanh(0, 6) node between them, to become relu
};

// Reads through one ReLU/ReLU6 whose input has no other reader.
std::vector<EqualizePair> equalize_pairs(const Graph& g, bool relu6_to_relu) {
  std::vector<EqualizePair> pairs;
  for (int id : g.order()) {
    const Node& a = g.node(id);
    if (!is_layer(g, a) || a.kind != ops::kConv) continue;
    int v = a.outputs[0];
    if (g.is_graph_output(v)) continue;
    auto users = g.users(v);
    if (users.size() != 1) continue;
    EqualizePair p;
    p.first = id;
    const Node* u = &g.node(users[0]);
    if (u->kind == ops::kRelu || u->kind == ops::kHardtanh) {
      if (u->kind == ops::kHardtanh) {
        if (!relu6_to_relu || u->f("min_val") != 0.0) continue;
        p.relu6 = users[0];
      }
      v = u->outputs[0];
      if (g.is_graph_output(v)) continue;
      users = g.users(v);
      if (users.size() != 1) continue;
      u = &g.node(users[0]);
    }
    if (!is_layer(g, *u) || u->kind != ops::kConv || u->inputs[0] != v) continue;
    p.second = users[0];
    pairs.push_back(p);
  }
  return pairs;
}

}  // namespace

int64_t equalize_cross_layer(GraphModuleImpl& module, bool relu6_to_relu, int iterations) {
  Graph& g = module.mutable_graph();
  for (int id : g.order())
    TAILOR_CHECK(g.node(id).kind != ops::kBatchNorm, "cross-layer equalization needs batch norm folded first (node '",
                 g.node(id).name, "')");
  const auto pairs = equalize_pairs(g, relu6_to_relu);
  torch::NoGradGuard no_grad;
  for (int it = 0; it < iterations; ++it) {
    double change = 0;
    for (const auto& p : pairs) {
      const Node& a = g.node(p.first);
      const Node& b = g.node(p.second);
      torch::Tensor w1 = module.tensor(weight_name(g, a));
      torch::Tensor w2 = module.tensor(weight_name(g, b));
      const int64_t channels = w1.size(0);
      const int64_t groups = b.i("groups", 1);
      const int64_t per_group_in = w2.size(1);
      TAILOR_CHECK(per_group_in * groups == channels, "cross-layer equalization: '", b.name, "' reads ",
                   per_group_in * groups, " channels, '", a.name, "' writes ", channels);
      const torch::Tensor r1 = w1.abs().reshape({channels, -1}).amax(1);
      // Input channel c of a grouped conv is column c % per_group_in of its group's output rows.
      const int64_t out_per_group = w2.size(0) / groups;
      const torch::Tensor r2 = w2.abs().reshape({groups, out_per_group, per_group_in, -1}).amax({1, 3}).reshape({channels});
      torch::Tensor s = torch::sqrt(r1 * r2) / r2;
      s = torch::where((r1 > 0) & (r2 > 0), s, torch::ones_like(s)).clamp(1e-4, 1e4);
      change = std::max(change, (s - 1).abs().max().item<double>());
      std::vector<int64_t> view1(static_cast<size_t>(w1.dim()), 1);
      view1[0] = channels;
      w1.div_(s.reshape(view1));
      const Node* bias = g.producer(a.inputs[2]);
      if (bias && bias->kind == ops::kParam) module.tensor(bias->s("name")).div_(s);
      torch::Tensor s2 = s.reshape({groups, 1, per_group_in}).expand({groups, out_per_group, per_group_in}).reshape({w2.size(0), per_group_in});
      std::vector<int64_t> view2 = {w2.size(0), per_group_in};
      for (int64_t d = 2; d < w2.dim(); ++d) view2.push_back(1);
      w2.mul_(s2.reshape(view2));
    }
    if (change < 1e-3) break;
  }
  for (const auto& p : pairs) {
    if (p.relu6 < 0) continue;
    Node& n = g.node(p.relu6);
    n.kind = ops::kRelu;
    n.attrs.clear();
    n.inputs.resize(1);
  }
  eliminate_dead_code(g);
  module.recompile();
  return static_cast<int64_t>(pairs.size());
}

}  // namespace tailor::quant
