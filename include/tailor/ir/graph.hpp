// tailor/ir/graph.hpp: the one graph IR every tailor pass, backend and analysis works on.
// A Graph is a DAG of Nodes (op kind, static attributes, value inputs/outputs) over Values (type, shape,
// dtype). It holds no tensors: parameters are `param` nodes that name a tensor owned by a GraphModule.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tailor/core/error.hpp"

namespace tailor {

/// What a Value carries at run time.
enum class ValueType { Tensor, Int, Float, Bool, Str, None, Device, IntList, FloatList, BoolList, TensorList, Tuple, Any };

const char* to_string(ValueType type);
ValueType value_type_from_string(const std::string& name);

/// A static value: a node attribute or the payload of a `constant` node. The monostate means None.
using AttrValue = std::variant<std::monostate, bool, int64_t, double, std::string, std::vector<int64_t>,
                               std::vector<double>>;

/// Prints an attribute as TorchScript source would write it (None, True, 3, 0.5, 'str', [1, 2]).
std::string to_source(const AttrValue& value);

/// An edge of the graph: produced by one node output (or a graph input), read by any number of nodes.
struct Value {
  std::string name;
  ValueType type = ValueType::Tensor;
  std::vector<int64_t> shape;  ///< empty until shape analysis (or capture) sets it
  std::string dtype;           ///< "float32", "int64"...; empty when unknown or not a tensor
  int producer = -1;           ///< node id; -1 for a graph input
  int index = 0;               ///< which output of the producer
};

/// One operation. `kind` is a tailor op kind ("conv", "relu", "param", "opaque", ...; see ops.hpp).
struct Node {
  std::string kind;
  std::string name;  ///< unique; keeps the source model's module path where there is one
  std::vector<int> inputs;
  std::vector<int> outputs;
  std::map<std::string, AttrValue> attrs;

  bool has(const std::string& key) const { return attrs.count(key) != 0; }
  const AttrValue& attr(const std::string& key) const;
  int64_t i(const std::string& key) const;
  double f(const std::string& key) const;  ///< accepts an int attribute too
  bool b(const std::string& key) const;
  const std::string& s(const std::string& key) const;
  const std::vector<int64_t>& ints(const std::string& key) const;
  int64_t i(const std::string& key, int64_t fallback) const { return has(key) ? i(key) : fallback; }
  double f(const std::string& key, double fallback) const { return has(key) ? f(key) : fallback; }
};

/// A DAG of nodes in a kept topological order. Node and value ids are stable across edits.
class Graph {
 public:
  /// Adds a graph input and returns its value id.
  int add_input(const std::string& name, ValueType type = ValueType::Tensor);
  /// Creates a node with `num_outputs` fresh output values, appended at the end of the order (or
  /// before node `before` when given). Returns the node id.
  int add_node(Node node, const std::vector<ValueType>& output_types, std::optional<int> before = std::nullopt);
  void set_outputs(std::vector<int> outputs) { outputs_ = std::move(outputs); }

  Node& node(int id);
  const Node& node(int id) const;
  Value& value(int id);
  const Value& value(int id) const;
  int num_values() const { return static_cast<int>(values_.size()); }
  int num_node_slots() const { return static_cast<int>(nodes_.size()); }
  bool alive(int node_id) const;

  const std::vector<int>& inputs() const { return inputs_; }
  const std::vector<int>& outputs() const { return outputs_; }
  /// Live node ids in topological order.
  const std::vector<int>& order() const { return order_; }

  /// Node ids that read value `value_id`, in order; a graph output is not a node user.
  std::vector<int> users(int value_id) const;
  bool is_graph_output(int value_id) const;
  /// Redirects every reader of `from` (and the graph outputs) to `to`.
  void replace_all_uses(int from, int to);
  /// Removes a node; its outputs must have no users left.
  void remove_node(int node_id);
  /// The node with this name, or nullptr.
  const Node* find(const std::string& name) const;
  int find_id(const std::string& name) const;  ///< -1 when absent
  /// Makes `base` unique among node names by appending _1, _2, ...
  std::string unique_name(const std::string& base) const;
  /// The producer node of a value, or nullptr for a graph input.
  const Node* producer(int value_id) const;

  /// Checks the invariants (every input defined before use, outputs consistent, names unique); throws
  /// tailor::Error naming the node that breaks them.
  void verify() const;
  /// One line per node: `%out = kind[attrs](%in, ...)  # name  shape`.
  std::string str() const;

  /// The lossless text form embedded in exported files.
  std::string to_json() const;
  static Graph from_json(const std::string& text);

 private:
  std::vector<Node> nodes_;
  std::vector<bool> alive_;
  std::vector<Value> values_;
  std::vector<int> order_;
  std::vector<int> inputs_;
  std::vector<int> outputs_;
  std::map<std::string, int> by_name_;
};

}  // namespace tailor
