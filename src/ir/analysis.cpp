#include "tailor/ir/analysis.hpp"

#include <functional>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/ir/op_table.hpp"
#include "tailor/ir/ops.hpp"

namespace tailor {
namespace {

using ops::numel;

int64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "Double" || dtype == "Long" || dtype == "ComplexFloat") return 8;
  if (dtype == "Half" || dtype == "BFloat16" || dtype == "Short") return 2;
  if (dtype == "Byte" || dtype == "Char" || dtype == "Bool" || dtype == "QInt8" || dtype == "QUInt8") return 1;
  return 4;
}

int64_t tensor_bytes(const Value& v) {
  if (v.type != ValueType::Tensor || (v.shape.empty() && v.dtype.empty())) return 0;
  return numel(v.shape) * dtype_bytes(v.dtype);
}

int64_t macs_of(const Graph& g, const Node& n) { return ops::op_def(n.kind).macs(g, n); }

int64_t flops_of(const Graph& g, const Node& n, int64_t macs) {
  if (ops::output_elements(g, n) == 0) return 0;
  return 2 * macs + ops::op_def(n.kind).flops(g, n);
}

}  // namespace

CostReport count_costs(const GraphModuleImpl& module) {
  const Graph& g = module.graph();
  CostReport report;
  for (int in : g.inputs()) report.input_shapes.push_back(g.value(in).shape);
  std::set<std::string> counted;
  std::map<int, int> remaining_readers;
  for (int id : g.order())
    for (int in : g.node(id).inputs) remaining_readers[in]++;
  int64_t live = 0;
  for (int in : g.inputs()) live += tensor_bytes(g.value(in));
  report.peak_activation_bytes = live;
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (n.kind == ops::kParam || n.kind == ops::kConstant) continue;
    NodeCost c;
    c.name = n.name;
    c.kind = n.kind == ops::kOpaque ? n.s("schema") : n.kind;
    if (!n.outputs.empty()) c.output_shape = g.value(n.outputs[0]).shape;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const Node* p = g.producer(n.inputs[k]);
      if (!p || p->kind != ops::kParam || !counted.insert(p->s("name")).second) continue;
      const torch::Tensor t = module.tensor(p->s("name"));
      // A weight read only through a fake_quant node is stored at that node's bit width once deployed.
      const auto readers = g.users(n.inputs[k]);
      if (n.kind == ops::kFakeQuant && k == 0 && readers.size() == 1) {
        const int64_t levels = n.i("qmax") - n.i("qmin") + 1;
        int64_t bits = 1;
        while ((int64_t{1} << bits) < levels) ++bits;
        c.weight_bytes += (t.numel() * bits + 7) / 8;
      } else {
        c.weight_bytes += static_cast<int64_t>(t.numel() * t.element_size());
      }
      if (!p->b("buffer")) c.params += t.numel();
    }
    c.macs = macs_of(g, n);
    c.flops = flops_of(g, n, c.macs);
    for (int out : n.outputs) c.output_bytes += tensor_bytes(g.value(out));
    // Liveness: outputs become live, inputs whose last reader this is die (params never count).
    live += c.output_bytes;
    report.peak_activation_bytes = std::max(report.peak_activation_bytes, live);
    for (int in : n.inputs) {
      if (--remaining_readers[in] == 0 && !g.is_graph_output(in)) {
        const Node* p = g.producer(in);
        if (!p || (p->kind != ops::kParam && p->kind != ops::kConstant)) live -= tensor_bytes(g.value(in));
      }
    }
    report.params += c.params;
    report.macs += c.macs;
    report.flops += c.flops;
    report.weight_bytes += c.weight_bytes;
    report.activation_bytes += c.output_bytes;
    report.nodes.push_back(std::move(c));
  }
  return report;
}

CostReport analyze(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes) {
  module.infer_shapes(input_shapes);
  return count_costs(module);
}

std::string CostReport::to_json() const {
  nlohmann::json nodes_json = nlohmann::json::array();
  for (const NodeCost& c : nodes)
    nodes_json.push_back({{"name", c.name},
                          {"op", c.kind},
                          {"output_shape", c.output_shape},
                          {"params", c.params},
                          {"macs", c.macs},
                          {"flops", c.flops},
                          {"weight_bytes", c.weight_bytes},
                          {"output_bytes", c.output_bytes}});
  nlohmann::json root = {{"input_shapes", input_shapes},
                         {"params", params},
                         {"macs", macs},
                         {"flops", flops},
                         {"weight_bytes", weight_bytes},
                         {"activation_bytes", activation_bytes},
                         {"peak_activation_bytes", peak_activation_bytes},
                         {"nodes", nodes_json}};
  return root.dump(2);
}

}  // namespace tailor
