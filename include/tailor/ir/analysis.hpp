// tailor/ir/analysis.hpp: shapes, parameters, MACs, FLOPs and bytes of a graph for given input shapes.
// `macs` counts multiply-accumulates of convolutions, linear layers and matrix products only (the thop,
// ptflops and fvcore convention); `flops` counts every op (2 per MAC, 1 per elementwise result, ...).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tailor/ir/graph_module.hpp"

namespace tailor {

/// Cost of one compute node (structure nodes such as `param` and `constant` are not listed).
struct NodeCost {
  std::string name;
  std::string kind;  ///< op kind; for opaque nodes the schema name
  std::vector<int64_t> output_shape;
  int64_t params = 0;        ///< elements of the trainable parameters this node reads first
  int64_t weight_bytes = 0;  ///< bytes of the parameters and buffers this node reads first
  int64_t macs = 0;
  int64_t flops = 0;
  int64_t output_bytes = 0;  ///< bytes of the tensors this node writes (the activation on its out edges)
};

/// Totals plus one entry per compute node, in topological order.
struct CostReport {
  std::vector<std::vector<int64_t>> input_shapes;
  std::vector<NodeCost> nodes;
  int64_t params = 0;        ///< trainable parameter elements (what PyTorch's parameters() sums)
  int64_t macs = 0;
  int64_t flops = 0;
  int64_t weight_bytes = 0;  ///< parameters and buffers the graph reads
  int64_t activation_bytes = 0;  ///< sum of all intermediate tensors' bytes
  int64_t peak_activation_bytes = 0;  ///< most bytes alive at once when run in graph order
  std::string to_json() const;
};

/// Infers shapes (runs the module once on zeros of `input_shapes`) and counts costs.
CostReport analyze(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes);

/// Costs of a graph whose value shapes are already set (e.g. by infer_shapes); no execution.
CostReport count_costs(const GraphModuleImpl& module);

}  // namespace tailor
