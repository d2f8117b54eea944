#include "tailor/ir/op_table.hpp"

#include <map>
#include <numeric>

#include "ops/families.hpp"
#include "tailor/core/error.hpp"

namespace tailor::ops {

namespace {
struct Table {
  std::vector<OpDef> defs;
  std::map<std::string, size_t> by_kind;
};

const Table& table() {
  static const Table t = [] {
    Table out;
    detail::add_structure_ops(out.defs);
    detail::add_matmul_ops(out.defs);
    detail::add_normalization_ops(out.defs);
    detail::add_activation_ops(out.defs);
    detail::add_arithmetic_ops(out.defs);
    detail::add_shape_ops(out.defs);
    detail::add_pooling_ops(out.defs);
    detail::add_quantization_ops(out.defs);
    for (size_t i = 0; i < out.defs.size(); ++i) {
      const bool fresh = out.by_kind.emplace(out.defs[i].kind, i).second;
      TAILOR_INTERNAL_ASSERT(fresh, "op kind ", out.defs[i].kind, " defined twice");
    }
    return out;
  }();
  return t;
}
}  // namespace

const OpDef& op_def(const std::string& kind) {
  const Table& t = table();
  auto it = t.by_kind.find(kind);
  TAILOR_CHECK(it != t.by_kind.end(), "op kind '", kind, "' is not in tailor's op table");
  return t.defs[it->second];
}

std::vector<std::string> defined_kinds() {
  std::vector<std::string> out;
  for (const auto& d : table().defs) out.push_back(d.kind);
  return out;
}

int64_t numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

int64_t output_elements(const Graph& g, const Node& n) {
  if (n.outputs.empty()) return 0;
  const Value& out = g.value(n.outputs[0]);
  return out.type == ValueType::Tensor ? numel(out.shape) : 0;
}

int64_t no_cost(const Graph&, const Node&) { return 0; }

}  // namespace tailor::ops
