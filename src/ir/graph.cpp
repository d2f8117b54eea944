#include "tailor/ir/graph.hpp"

#include "attr_json.hpp"
#include "tailor/ir/ops.hpp"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"

namespace tailor {
namespace {
const char* const kTypeNames[] = {"Tensor", "int",   "float",  "bool",     "str",    "None", "Device",
                                  "int[]",  "float[]", "bool[]", "Tensor[]", "tuple", "Any"};

std::string format_double(double v) {
  if (std::isinf(v)) return v > 0 ? "float('inf')" : "float('-inf')";
  if (std::isnan(v)) return "float('nan')";
  std::ostringstream out;
  out << std::setprecision(17) << v;
  std::string s = out.str();
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}
}  // namespace

const char* to_string(ValueType type) { return kTypeNames[static_cast<int>(type)]; }

ValueType value_type_from_string(const std::string& name) {
  for (int i = 0; i < static_cast<int>(std::size(kTypeNames)); ++i)
    if (name == kTypeNames[i]) return static_cast<ValueType>(i);
  TAILOR_FAIL("unknown value type '", name, "'");
}

std::string to_source(const AttrValue& value) {
  struct Printer {
    std::string operator()(std::monostate) const { return "None"; }
    std::string operator()(bool v) const { return v ? "True" : "False"; }
    std::string operator()(int64_t v) const { return std::to_string(v); }
    std::string operator()(double v) const { return format_double(v); }
    std::string operator()(const std::string& v) const {
      std::string out = "'";
      for (char c : v) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
      }
      return out + "'";
    }
    std::string operator()(const std::vector<int64_t>& v) const {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + std::to_string(v[i]);
      return out + "]";
    }
    std::string operator()(const std::vector<double>& v) const {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + format_double(v[i]);
      return out + "]";
    }
  };
  return std::visit(Printer{}, value);
}

const AttrValue& Node::attr(const std::string& key) const {
  auto it = attrs.find(key);
  TAILOR_CHECK(it != attrs.end(), "node '", name, "' (", kind, ") has no attribute '", key, "'");
  return it->second;
}

int64_t Node::i(const std::string& key) const {
  const auto& v = attr(key);
  if (auto p = std::get_if<int64_t>(&v)) return *p;
  if (auto p = std::get_if<bool>(&v)) return *p;
  TAILOR_FAIL("attribute '", key, "' of node '", name, "' is not an int");
}
double Node::f(const std::string& key) const {
  const auto& v = attr(key);
  if (auto p = std::get_if<double>(&v)) return *p;
  if (auto p = std::get_if<int64_t>(&v)) return static_cast<double>(*p);
  TAILOR_FAIL("attribute '", key, "' of node '", name, "' is not a number");
}
bool Node::b(const std::string& key) const {
  const auto& v = attr(key);
  if (auto p = std::get_if<bool>(&v)) return *p;
  if (auto p = std::get_if<int64_t>(&v)) return *p != 0;
  TAILOR_FAIL("attribute '", key, "' of node '", name, "' is not a bool");
}
const std::string& Node::s(const std::string& key) const {
  const auto* p = std::get_if<std::string>(&attr(key));
  TAILOR_CHECK(p, "attribute '", key, "' of node '", name, "' is not a string");
  return *p;
}
const std::vector<int64_t>& Node::ints(const std::string& key) const {
  const auto* p = std::get_if<std::vector<int64_t>>(&attr(key));
  TAILOR_CHECK(p, "attribute '", key, "' of node '", name, "' is not an int list");
  return *p;
}

int Graph::add_input(const std::string& name, ValueType type) {
  Value v;
  v.name = name;
  v.type = type;
  values_.push_back(v);
  inputs_.push_back(num_values() - 1);
  return num_values() - 1;
}

int Graph::add_node(Node node, const std::vector<ValueType>& output_types, std::optional<int> before) {
  const int id = static_cast<int>(nodes_.size());
  if (node.name.empty()) node.name = node.kind;
  node.name = unique_name(node.name);
  for (int in : node.inputs)
    TAILOR_INTERNAL_ASSERT(in >= 0 && in < num_values(), "node ", node.name, " reads unknown value ", in);
  node.outputs.clear();
  for (size_t k = 0; k < output_types.size(); ++k) {
    Value v;
    v.name = output_types.size() == 1 ? node.name : node.name + ":" + std::to_string(k);
    v.type = output_types[k];
    v.producer = id;
    v.index = static_cast<int>(k);
    values_.push_back(v);
    node.outputs.push_back(num_values() - 1);
  }
  by_name_[node.name] = id;
  nodes_.push_back(std::move(node));
  alive_.push_back(true);
  if (before) {
    auto it = std::find(order_.begin(), order_.end(), *before);
    TAILOR_INTERNAL_ASSERT(it != order_.end(), "insertion point ", *before, " is not in the graph");
    order_.insert(it, id);
  } else {
    order_.push_back(id);
  }
  return id;
}

Node& Graph::node(int id) {
  TAILOR_INTERNAL_ASSERT(alive(id), "node id ", id, " is not live");
  return nodes_[id];
}
const Node& Graph::node(int id) const {
  TAILOR_INTERNAL_ASSERT(alive(id), "node id ", id, " is not live");
  return nodes_[id];
}
Value& Graph::value(int id) {
  TAILOR_INTERNAL_ASSERT(id >= 0 && id < num_values(), "value id ", id, " out of range");
  return values_[id];
}
const Value& Graph::value(int id) const {
  TAILOR_INTERNAL_ASSERT(id >= 0 && id < num_values(), "value id ", id, " out of range");
  return values_[id];
}
bool Graph::alive(int node_id) const {
  return node_id >= 0 && node_id < static_cast<int>(nodes_.size()) && alive_[node_id];
}

std::vector<int> Graph::users(int value_id) const {
  std::vector<int> out;
  for (int id : order_) {
    const auto& ins = nodes_[id].inputs;
    if (std::find(ins.begin(), ins.end(), value_id) != ins.end()) out.push_back(id);
  }
  return out;
}

bool Graph::is_graph_output(int value_id) const {
  return std::find(outputs_.begin(), outputs_.end(), value_id) != outputs_.end();
}

void Graph::replace_all_uses(int from, int to) {
  for (int id : order_)
    for (int& in : nodes_[id].inputs)
      if (in == from) in = to;
  for (int& out : outputs_)
    if (out == from) out = to;
}

void Graph::remove_node(int node_id) {
  const Node& n = node(node_id);
  for (int out : n.outputs)
    TAILOR_INTERNAL_ASSERT(users(out).empty() && !is_graph_output(out), "removing node ", n.name,
                           " whose output is still used");
  by_name_.erase(n.name);
  alive_[node_id] = false;
  order_.erase(std::find(order_.begin(), order_.end(), node_id));
}

const Node* Graph::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &nodes_[it->second];
}
int Graph::find_id(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : it->second;
}

std::string Graph::unique_name(const std::string& base) const {
  if (!by_name_.count(base)) return base;
  for (int k = 1;; ++k) {
    std::string candidate = base + "_" + std::to_string(k);
    if (!by_name_.count(candidate)) return candidate;
  }
}

const Node* Graph::producer(int value_id) const {
  const int p = value(value_id).producer;
  return p < 0 ? nullptr : &node(p);
}

void Graph::verify() const {
  std::vector<bool> defined(values_.size(), false);
  for (int in : inputs_) defined[in] = true;
  std::set<std::string> names;
  for (int id : order_) {
    TAILOR_CHECK(alive_[id], "graph order lists removed node ", id);
    const Node& n = nodes_[id];
    TAILOR_CHECK(names.insert(n.name).second, "two nodes are named '", n.name, "'");
    for (int in : n.inputs) {
      TAILOR_CHECK(in >= 0 && in < num_values(), "node '", n.name, "' reads a value id out of range");
      TAILOR_CHECK(defined[in], "node '", n.name, "' reads '", values_[in].name, "' before it is defined");
    }
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const Value& v = values_[n.outputs[k]];
      TAILOR_CHECK(v.producer == id && v.index == static_cast<int>(k), "output ", k, " of node '", n.name,
                   "' does not point back to it");
      defined[n.outputs[k]] = true;
    }
  }
  for (int out : outputs_)
    TAILOR_CHECK(out >= 0 && out < num_values() && defined[out], "a graph output is not defined by any node");
}

std::string Graph::str() const {
  std::ostringstream out;
  auto shape_of = [&](int v) {
    const Value& val = values_[v];
    if (val.type != ValueType::Tensor) return std::string(to_string(val.type));
    if (val.shape.empty()) return std::string("Tensor");
    std::string s;
    for (size_t i = 0; i < val.shape.size(); ++i) s += (i ? "x" : "") + std::to_string(val.shape[i]);
    return s;
  };
  out << "graph(";
  for (size_t i = 0; i < inputs_.size(); ++i)
    out << (i ? ", " : "") << "%" << values_[inputs_[i]].name << ": " << shape_of(inputs_[i]);
  out << "):\n";
  for (int id : order_) {
    const Node& n = nodes_[id];
    out << "  ";
    for (size_t k = 0; k < n.outputs.size(); ++k) out << (k ? ", " : "") << "%" << values_[n.outputs[k]].name;
    if (!n.outputs.empty()) out << " = ";
    out << n.kind;
    if (!n.attrs.empty()) {
      out << "[";
      bool first = true;
      for (const auto& [k, v] : n.attrs) {
        out << (first ? "" : ", ") << k << "=" << to_source(v);
        first = false;
      }
      out << "]";
    }
    out << "(";
    for (size_t k = 0; k < n.inputs.size(); ++k) out << (k ? ", " : "") << "%" << values_[n.inputs[k]].name;
    out << ")";
    if (!n.outputs.empty()) out << "  # " << shape_of(n.outputs[0]);
    out << "\n";
  }
  out << "  return (";
  for (size_t i = 0; i < outputs_.size(); ++i) out << (i ? ", " : "") << "%" << values_[outputs_[i]].name;
  out << ")\n";
  return out.str();
}

using nlohmann::json;

namespace detail {
json attr_to_json(const AttrValue& v) {
  struct Visitor {
    json operator()(std::monostate) const { return json{{"t", "none"}}; }
    json operator()(bool x) const { return json{{"t", "bool"}, {"v", x}}; }
    json operator()(int64_t x) const { return json{{"t", "int"}, {"v", x}}; }
    json operator()(double x) const {
      // JSON has no inf/nan; keep them as strings so nothing is lost.
      if (!std::isfinite(x)) return json{{"t", "float"}, {"s", format_double(x)}};
      return json{{"t", "float"}, {"v", x}};
    }
    json operator()(const std::string& x) const { return json{{"t", "str"}, {"v", x}}; }
    json operator()(const std::vector<int64_t>& x) const { return json{{"t", "ints"}, {"v", x}}; }
    json operator()(const std::vector<double>& x) const { return json{{"t", "floats"}, {"v", x}}; }
  };
  return std::visit(Visitor{}, v);
}

AttrValue attr_from_json(const json& j) {
  const std::string t = j.at("t").get<std::string>();
  if (t == "none") return std::monostate{};
  if (t == "bool") return j.at("v").get<bool>();
  if (t == "int") return tailor::detail::json_whole(j.at("v"), "graph JSON: int attribute");
  if (t == "float") {
    if (j.count("s")) {
      const std::string s = j.at("s").get<std::string>();
      if (s == "float('nan')") return std::numeric_limits<double>::quiet_NaN();
      return s == "float('inf')" ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
    }
    return j.at("v").get<double>();
  }
  if (t == "str") return j.at("v").get<std::string>();
  if (t == "ints") return tailor::detail::json_wholes(j.at("v"), "graph JSON: ints attribute");
  if (t == "floats") return j.at("v").get<std::vector<double>>();
  TAILOR_FAIL("unknown attribute type '", t, "' in serialized graph");
}
}  // namespace detail
using detail::attr_from_json;
using detail::attr_to_json;

std::string Graph::to_json() const {
  json values = json::array();
  for (const Value& v : values_)
    values.push_back({{"name", v.name}, {"type", to_string(v.type)}, {"shape", v.shape}, {"dtype", v.dtype}});
  json nodes = json::array();
  for (int id : order_) {
    const Node& n = nodes_[id];
    json attrs = json::object();
    for (const auto& [k, v] : n.attrs) attrs[k] = attr_to_json(v);
    nodes.push_back({{"kind", n.kind}, {"name", n.name}, {"inputs", n.inputs}, {"outputs", n.outputs}, {"attrs", attrs}});
  }
  json root = {{"format", "tailor-graph"}, {"version", 1}, {"values", values}, {"nodes", nodes},
               {"inputs", inputs_}, {"outputs", outputs_}};
  return root.dump();
}

Graph Graph::from_json(const std::string& text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const std::exception& e) {
    TAILOR_FAIL("embedded tailor graph is not valid JSON: ", e.what());
  }
  TAILOR_CHECK(root.is_object(), "embedded tailor graph is not a JSON object");
  TAILOR_CHECK(root.value("format", "") == "tailor-graph", "embedded file is not a tailor graph");
  const int64_t version = tailor::detail::json_whole_or(root, "version", 0, "embedded tailor graph");
  TAILOR_CHECK(version == 1, "tailor graph format version ", version, " is not supported by this tailor (expects 1)");
  for (const char* key : {"values", "nodes", "inputs", "outputs"})
    TAILOR_CHECK(root.contains(key) && root[key].is_array(), "embedded tailor graph: '", key, "' is missing or not an array");
  std::string where = "the graph's inputs";
  try {
    // Rebuild with fresh, dense ids; old ids map through `remap`. Nodes come in their stored order and may read
    // only values defined before them, which also rules out cycles.
    Graph g;
    const auto& values = root.at("values");
    std::vector<int> remap(values.size(), -1);
    auto value_id = [&](const json& j) {
      const int64_t id = tailor::detail::json_whole(j, detail::concat(where, ": value id"));
      TAILOR_CHECK(id >= 0 && id < static_cast<int64_t>(values.size()), where, ": value id ", id,
                   " is out of range (the graph has ", values.size(), " values)");
      return static_cast<int>(id);
    };
    auto load_value = [&](Value& dst, const json& src) {
      dst.name = src.at("name").get<std::string>();
      dst.type = value_type_from_string(src.at("type").get<std::string>());
      dst.shape = tailor::detail::json_wholes(src.at("shape"), detail::concat(where, ": value shape"));
      dst.dtype = src.at("dtype").get<std::string>();
    };
    auto define = [&](int old) {
      TAILOR_CHECK(remap[old] < 0, where, ": value ", old, " is defined twice");
    };
    for (const auto& j : root.at("inputs")) {
      const int old = value_id(j);
      define(old);
      remap[old] = g.add_input("");
      load_value(g.value(remap[old]), values.at(old));
    }
    size_t index = 0;
    for (const auto& jn : root.at("nodes")) {
      where = "node " + std::to_string(index++);
      TAILOR_CHECK(jn.is_object(), where, " is not an object");
      Node n;
      n.kind = jn.at("kind").get<std::string>();
      n.name = jn.at("name").get<std::string>();
      where = "node '" + n.name + "' (" + n.kind + ")";
      TAILOR_CHECK(ops::is_known(n.kind) || n.kind == ops::kOpaque, where, ": unknown op kind");
      TAILOR_CHECK(jn.at("inputs").is_array() && jn.at("outputs").is_array(), where, ": inputs and outputs must be arrays");
      for (const auto& in : jn.at("inputs")) {
        const int old = value_id(in);
        TAILOR_CHECK(remap[old] >= 0, where, " reads value ", old, " before it is defined (a cycle or a bad order)");
        n.inputs.push_back(remap[old]);
      }
      TAILOR_CHECK(jn.at("attrs").is_object(), where, ": attrs must be an object");
      for (const auto& [k, v] : jn.at("attrs").items()) {
        try {
          n.attrs[k] = attr_from_json(v);
        } catch (const Error& e) {
          TAILOR_FAIL(where, ": attribute '", k, "': ", e.message());
        } catch (const json::exception& e) {
          TAILOR_FAIL(where, ": attribute '", k, "' is malformed: ", e.what());
        }
      }
      std::vector<int> outs;
      for (const auto& o : jn.at("outputs")) outs.push_back(value_id(o));
      const ops::Arity arity = ops::arity(n.kind);
      TAILOR_CHECK(arity.inputs < 0 || static_cast<int>(n.inputs.size()) == arity.inputs, where, " has ",
                   n.inputs.size(), " inputs; a ", n.kind, " node has ", arity.inputs);
      TAILOR_CHECK(static_cast<int>(n.inputs.size()) >= arity.min_inputs, where, " has ", n.inputs.size(),
                   " inputs; a ", n.kind, " node needs at least ", arity.min_inputs);
      TAILOR_CHECK(arity.outputs < 0 || static_cast<int>(outs.size()) == arity.outputs, where, " has ", outs.size(),
                   " outputs; a ", n.kind, " node has ", arity.outputs);
      if (n.kind == ops::kParam) {
        TAILOR_CHECK(n.has("name") && std::holds_alternative<std::string>(n.attr("name")), where,
                     ": a param node needs a text attribute 'name'");
        TAILOR_CHECK(n.has("buffer") && std::holds_alternative<bool>(n.attr("buffer")), where,
                     ": a param node needs a bool attribute 'buffer'");
      }
      if (n.kind == ops::kOpaque)
        TAILOR_CHECK(n.has("schema") && std::holds_alternative<std::string>(n.attr("schema")), where,
                     ": an opaque node needs a text attribute 'schema'");
      std::vector<ValueType> types;
      for (int o : outs) {
        define(o);
        types.push_back(value_type_from_string(values.at(o).at("type").get<std::string>()));
      }
      const std::string wanted = n.name;
      const int id = g.add_node(std::move(n), types);
      TAILOR_CHECK(g.node(id).name == wanted, "serialized graph has two nodes named '", wanted, "'");
      for (size_t k = 0; k < outs.size(); ++k) {
        remap[outs[k]] = g.node(id).outputs[k];
        load_value(g.value(remap[outs[k]]), values.at(outs[k]));
      }
    }
    where = "the graph's outputs";
    std::vector<int> outputs;
    for (const auto& j : root.at("outputs")) {
      const int old = value_id(j);
      TAILOR_CHECK(remap[old] >= 0, where, ": value ", old, " is never defined");
      outputs.push_back(remap[old]);
    }
    g.set_outputs(outputs);
    g.verify();
    return g;
  } catch (const nlohmann::json::exception& e) {
    TAILOR_FAIL("embedded tailor graph is malformed at ", where, ": ", e.what());
  }
}

}  // namespace tailor
