#include "tailor/capture/capture.hpp"
#include "tailor/capture/archive.hpp"

#include <cerrno>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <functional>
#include <set>
#include <unordered_map>

#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/inliner.h>
#include <torch/csrc/jit/passes/remove_mutation.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/script.h>

#include "../ir/attr_ivalue.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {
namespace {
namespace jit = torch::jit;

ValueType value_type_of(const c10::TypePtr& t) {
  using K = c10::TypeKind;
  switch (t->kind()) {
    case K::TensorType: return ValueType::Tensor;
    case K::IntType: return ValueType::Int;
    case K::FloatType: return ValueType::Float;
    case K::BoolType: return ValueType::Bool;
    case K::StringType: return ValueType::Str;
    case K::NoneType: return ValueType::None;
    case K::DeviceObjType: return ValueType::Device;
    case K::TupleType: return ValueType::Tuple;
    case K::ListType: {
      const auto elem = t->expectRef<c10::ListType>().getElementType()->kind();
      if (elem == K::IntType) return ValueType::IntList;
      if (elem == K::FloatType) return ValueType::FloatList;
      if (elem == K::BoolType) return ValueType::BoolList;
      if (elem == K::TensorType) return ValueType::TensorList;
      return ValueType::Any;
    }
    default: return ValueType::Any;
  }
}

// Converts a non-tensor constant to an attribute; nullopt when the IR cannot hold it. Capture also keeps devices
// (as text, for `to`), and leaves bool lists to the paths that keep their type: as ints they would lose it.
std::optional<AttrValue> to_attr(const c10::IValue& v) {
  if (v.isDevice()) return AttrValue{v.toDevice().str()};
  if (v.isBoolList()) return std::nullopt;
  return detail::attr_from_ivalue(v);
}

// How one source argument of an ATen op maps onto a native node.
struct ArgRole {
  enum Kind { Input, Attr, Require, Ignore } kind;
  std::string attr;      // for Attr
  AttrValue required{};  // for Require: the op is native only if the argument has this value
};
ArgRole in() { return {ArgRole::Input, "", {}}; }
ArgRole at(const char* name) { return {ArgRole::Attr, name, {}}; }
ArgRole req(AttrValue v) { return {ArgRole::Require, "", std::move(v)}; }
ArgRole ign() { return {ArgRole::Ignore, "", {}}; }

struct Mapping {
  const char* kind;
  std::vector<ArgRole> args;
  std::map<std::string, AttrValue> fixed;  // attributes implied by the source op
  int spatial = 0;  // 1 or 2 for *1d/*2d ops: one-element size lists are expanded to this many
};

const std::unordered_map<std::string, Mapping>& mappings() {
  using V = AttrValue;
  auto unary = [](const char* k) { return Mapping{k, {in()}, {}}; };
  static const std::unordered_map<std::string, Mapping> table = [&] {
    std::unordered_map<std::string, Mapping> m;
    m["aten::_convolution"] = {ops::kConv, {in(), in(), in(), at("stride"), at("padding"), at("dilation"),
                                            req(V{false}), ign(), at("groups"), ign(), ign(), ign(), ign()}, {}};
    m["aten::conv1d"] = {ops::kConv, {in(), in(), in(), at("stride"), at("padding"), at("dilation"), at("groups")}, {}};
    m["aten::conv1d"].spatial = 1;
    m["aten::conv2d"] = m["aten::conv1d"];
    m["aten::conv2d"].spatial = 2;
    m["aten::linear"] = {ops::kLinear, {in(), in(), in()}, {}};
    m["aten::matmul"] = {ops::kMatmul, {in(), in()}, {}};
    m["aten::bmm"] = m["aten::matmul"];
    m["aten::mm"] = m["aten::matmul"];
    m["aten::batch_norm"] = {ops::kBatchNorm,
                             {in(), in(), in(), in(), in(), ign(), at("momentum"), at("eps"), ign()}, {}};
    m["aten::layer_norm"] = {ops::kLayerNorm, {in(), at("normalized_shape"), in(), in(), at("eps"), ign()}, {}};
    m["aten::group_norm"] = {ops::kGroupNorm, {in(), at("num_groups"), in(), in(), at("eps"), ign()}, {}};
    for (const char* k : {"relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid"}) {
      m[std::string("aten::") + k] = unary(k);
      m[std::string("aten::") + k + "_"] = unary(k);
    }
    m["aten::relu6"] = {ops::kHardtanh, {in()}, {{"min_val", V{0.0}}, {"max_val", V{6.0}}}};
    m["aten::relu6_"] = m["aten::relu6"];
    m["aten::hardtanh"] = {ops::kHardtanh, {in(), at("min_val"), at("max_val")}, {}};
    m["aten::hardtanh_"] = m["aten::hardtanh"];
    m["aten::gelu"] = {ops::kGelu, {in(), at("approximate")}, {}};
    m["aten::softmax"] = {ops::kSoftmax, {in(), at("dim"), req(V{})}, {}};
    m["aten::log_softmax"] = {ops::kLogSoftmax, {in(), at("dim"), req(V{})}, {}};
    for (const char* k : {"add", "sub"}) {
      m[std::string("aten::") + k] = {k, {in(), in(), at("alpha")}, {}};
      m[std::string("aten::") + k + "_"] = m[std::string("aten::") + k];
    }
    for (const char* k : {"mul", "div"}) {
      m[std::string("aten::") + k] = {k, {in(), in()}, {}};
      m[std::string("aten::") + k + "_"] = m[std::string("aten::") + k];
    }
    m["aten::flatten"] = {ops::kFlatten, {in(), at("start_dim"), at("end_dim")}, {}};
    m["aten::view"] = {ops::kReshape, {in(), in()}, {}};
    m["aten::reshape"] = m["aten::view"];
    m["aten::permute"] = {ops::kPermute, {in(), at("dims")}, {}};
    m["aten::transpose"] = {ops::kTranspose, {in(), at("dim0"), at("dim1")}, {}};
    m["aten::contiguous"] = {ops::kContiguous, {in(), ign()}, {}};
    m["aten::max_pool1d"] = {ops::kMaxPool, {in(), at("kernel_size"), at("stride"), at("padding"), at("dilation"),
                                             at("ceil_mode")}, {}};
    m["aten::max_pool1d"].spatial = 1;
    m["aten::max_pool2d"] = m["aten::max_pool1d"];
    m["aten::max_pool2d"].spatial = 2;
    m["aten::avg_pool1d"] = {ops::kAvgPool, {in(), at("kernel_size"), at("stride"), at("padding"), at("ceil_mode"),
                                             at("count_include_pad")}, {}};
    m["aten::avg_pool2d"] = {ops::kAvgPool, {in(), at("kernel_size"), at("stride"), at("padding"), at("ceil_mode"),
                                             at("count_include_pad"), req(V{})}, {}};
    m["aten::avg_pool1d"].spatial = 1;
    m["aten::avg_pool2d"].spatial = 2;
    m["aten::adaptive_avg_pool1d"] = {ops::kAdaptiveAvgPool, {in(), at("output_size")}, {}, 1};
    m["aten::adaptive_avg_pool2d"] = m["aten::adaptive_avg_pool1d"];
    m["aten::adaptive_avg_pool2d"].spatial = 2;
    m["aten::mean"] = {ops::kMean, {in(), at("dims"), at("keepdim"), req(V{})}, {}};
    for (const char* k : {"dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout"})
      m[std::string("aten::") + k] = {ops::kDropout, {in(), at("p"), ign()}, {}};
    m["aten::channel_shuffle"] = {ops::kChannelShuffle, {in(), at("groups")}, {}};
    m["aten::native_channel_shuffle"] = m["aten::channel_shuffle"];
    return m;
  }();
  return table;
}

// Attributes that must be int lists even when the source wrote one int.
bool wants_int_list(const std::string& attr) {
  static const std::set<std::string> names = {"stride", "padding", "dilation", "kernel_size", "output_size",
                                              "dims", "normalized_shape"};
  return names.count(attr) != 0;
}

std::string describe(const jit::Node* node) {
  std::ostringstream out;
  out << node->kind().toQualString();
  if (auto loc = node->sourceRange().file_line_col())
    out << " at " << std::get<0>(*loc) << ":" << std::get<1>(*loc);
  return out.str();
}

// Dotted module path of an inlined node, from its inline call stack.
std::string module_path(const jit::Node* node) {
  std::string path;
  if (auto cs = node->callstack()) {
    for (const auto& entry : (*cs)->vec()) {
      const auto& info = std::get<2>(entry);
      if (info && !info->instance_name().empty()) path += (path.empty() ? "" : ".") + info->instance_name();
    }
  }
  return path;
}

class Converter {
 public:
  // A JIT value is either a known constant, a value of the tailor graph, or a module object.
  struct Slot {
    enum Kind { Const, Val, Module } kind = Val;
    c10::IValue constant;
    int value = -1;
    std::string path;  // Module: dotted path
  };

  std::map<std::string, torch::Tensor> tensors;
  std::vector<std::string> buffers;
  Graph graph;

  void bind_module(const jit::Value* v, const jit::Module& root) {
    Slot s;
    s.kind = Slot::Module;
    s.constant = root._ivalue();
    env_[v] = s;
    for (const auto& p : root.named_parameters(true)) param_names_.insert(p.name);
  }
  void bind_input(const jit::Value* v, const std::string& name) {
    Slot s;
    s.value = graph.add_input(name, value_type_of(v->type()));
    env_[v] = s;
  }
  // A traced C++ module passes its parameters as graph inputs.
  void bind_tensor(const jit::Value* v, const std::string& name, const torch::Tensor& t, bool buffer) {
    env_[v] = Slot{Slot::Val, {}, param_node(name, t, buffer), ""};
  }

  void convert_block(const jit::Block* block) {
    for (const jit::Node* node : block->nodes()) convert_node(node);
  }

  std::vector<int> outputs_of(const jit::Block* block) {
    std::vector<int> out;
    for (const jit::Value* v : block->outputs()) out.push_back(materialize(v));
    return out;
  }

 private:
  std::unordered_map<const jit::Value*, Slot> env_;
  std::unordered_map<const jit::Value*, int> materialized_;
  std::set<std::string> param_names_;
  std::map<std::string, int> param_values_;         // dotted name -> value id
  std::map<const c10::TensorImpl*, std::string> constant_names_;
  std::map<int, std::vector<int>> elements_;        // list/tuple value -> its element values
  int none_value_ = -1;

  Slot& slot(const jit::Value* v) {
    auto it = env_.find(v);
    TAILOR_INTERNAL_ASSERT(it != env_.end(), "JIT value %", v->debugName(), " used before definition");
    return it->second;
  }

  int param_node(const std::string& name, const torch::Tensor& t, bool buffer) {
    auto it = param_values_.find(name);
    if (it != param_values_.end()) return it->second;
    Node n;
    n.kind = ops::kParam;
    n.name = name;
    n.attrs["name"] = name;
    n.attrs["buffer"] = buffer;
    const int id = graph.add_node(std::move(n), {ValueType::Tensor});
    const int v = graph.node(id).outputs[0];
    graph.value(v).shape = t.sizes().vec();
    graph.value(v).dtype = std::string(c10::toString(t.scalar_type()));
    tensors[name] = t;
    if (buffer) buffers.push_back(name);
    param_values_[name] = v;
    return v;
  }

  int constant_node(const AttrValue& value, ValueType type) {
    const bool is_none = std::holds_alternative<std::monostate>(value);
    if (is_none && none_value_ >= 0) return none_value_;
    Node n;
    n.kind = ops::kConstant;
    n.name = "const";
    n.attrs["value"] = value;
    const int v = graph.node(graph.add_node(std::move(n), {type})).outputs[0];
    if (is_none) none_value_ = v;
    return v;
  }

  // Turns a constant IValue into graph values (tensors become buffers, lists of tensors become lists).
  int materialize_constant(const c10::IValue& c, const c10::TypePtr& type, const std::string& where) {
    if (c.isTensor()) {
      const torch::Tensor t = c.toTensor();
      auto it = constant_names_.find(t.unsafeGetTensorImpl());
      std::string name;
      if (it != constant_names_.end()) {
        name = it->second;
      } else {
        name = "_constants." + std::to_string(constant_names_.size());
        constant_names_[t.unsafeGetTensorImpl()] = name;
      }
      return param_node(name, t, /*buffer=*/true);
    }
    if (c.isTensorList() || (c.isList() && !c.isIntList() && !c.isDoubleList())) {
      std::vector<int> elems;
      for (const c10::IValue& e : c.toListRef()) elems.push_back(materialize_constant(e, e.type(), where));
      return make_list(elems, ValueType::TensorList, "list");
    }
    if (c.isTuple()) {
      std::vector<int> elems;
      for (const c10::IValue& e : c.toTupleRef().elements()) elems.push_back(materialize_constant(e, e.type(), where));
      return make_list(elems, ValueType::Tuple, "tuple");
    }
    auto attr = to_attr(c);
    TAILOR_CHECK(attr, "cannot capture constant of type ", type->str(), " used by ", where);
    ValueType vt = value_type_of(type);
    if (c.isNone()) vt = ValueType::None;
    return constant_node(*attr, vt);
  }

  int make_list(const std::vector<int>& elems, ValueType type, const std::string& name) {
    Node n;
    n.kind = type == ValueType::Tuple ? ops::kTuple : ops::kList;
    n.name = name;
    n.inputs = elems;
    const int v = graph.node(graph.add_node(std::move(n), {type})).outputs[0];
    elements_[v] = elems;
    return v;
  }

  int materialize(const jit::Value* v) {
    Slot& s = slot(v);
    if (s.kind == Slot::Val) return s.value;
    TAILOR_CHECK(s.kind == Slot::Const, "module object %", v->debugName(),
                 " is used as a value; tailor captures tensors and scalars only");
    // The slot stays a constant (later folds still see it); the graph value is cached beside it.
    auto it = materialized_.find(v);
    if (it != materialized_.end()) return it->second;
    const int id = materialize_constant(s.constant, v->type(), "%" + v->debugName());
    materialized_[v] = id;
    return id;
  }

  void bind_const(const jit::Value* v, c10::IValue c) { env_[v] = Slot{Slot::Const, std::move(c), -1, ""}; }

  static bool has_tensor(const c10::IValue& v) {
    if (v.isTensor() || v.isTensorList()) return true;
    if (v.isList())
      for (const auto& e : v.toListRef())
        if (has_tensor(e)) return true;
    if (v.isTuple())
      for (const auto& e : v.toTupleRef().elements())
        if (has_tensor(e)) return true;
    return false;
  }

  // Evaluates a node now when all its inputs are known constants and it computes no tensor.
  bool try_fold(const jit::Node* node) {
    if (node->kind() == c10::prim::Constant || !node->maybeOperator()) return false;
    if (node->hasSideEffects() || node->kind() == c10::prim::RaiseException) return false;
    for (const jit::Value* in : node->inputs()) {
      const Slot& s = slot(in);
      if (s.kind != Slot::Const || has_tensor(s.constant)) return false;
    }
    for (const jit::Value* out : node->outputs()) {
      const auto k = out->type()->kind();
      if (k == c10::TypeKind::TensorType || value_type_of(out->type()) == ValueType::TensorList) return false;
    }
    jit::Stack stack;
    for (const jit::Value* in : node->inputs()) stack.push_back(slot(in).constant);
    try {
      node->getOperation()(stack);
    } catch (const std::exception&) {
      return false;  // leave it to run time, where the error (if any) belongs
    }
    TAILOR_INTERNAL_ASSERT(stack.size() == node->outputs().size(), "folded ", describe(node));
    for (size_t i = 0; i < stack.size(); ++i) bind_const(node->outputs()[i], stack[i]);
    return true;
  }

  std::string name_for(const jit::Node* node, const std::string& kind, const std::vector<int>& inputs) {
    // Layers with weights take the module path of their weight; others their module path plus kind.
    if (inputs.size() >= 2 && (kind == ops::kConv || kind == ops::kLinear || kind == ops::kBatchNorm ||
                               kind == ops::kLayerNorm || kind == ops::kGroupNorm)) {
      const Node* p = graph.producer(inputs[1]);
      if (p && p->kind == ops::kParam) {
        const std::string& pname = p->s("name");
        const auto dot = pname.rfind('.');
        if (dot != std::string::npos) return pname.substr(0, dot);
      }
    }
    const std::string path = module_path(node);
    std::string k = kind;
    if (kind == ops::kOpaque) {
      k = node->kind().toUnqualString();
    }
    return path.empty() ? k : path + "." + k;
  }

  void emit(const jit::Node* node, Node n) {
    std::vector<ValueType> types;
    for (const jit::Value* out : node->outputs()) types.push_back(value_type_of(out->type()));
    if (n.name.empty()) n.name = name_for(node, n.kind, n.inputs);
    const int id = graph.add_node(std::move(n), types);
    for (size_t i = 0; i < node->outputs().size(); ++i)
      env_[node->outputs()[i]] = Slot{Slot::Val, {}, graph.node(id).outputs[i], ""};
  }

  bool try_native(const jit::Node* node) {
    const std::string kind = node->kind().toQualString();
    auto it = mappings().find(kind);
    if (it == mappings().end()) return false;
    if (node->outputs().size() != 1 || value_type_of(node->output()->type()) != ValueType::Tensor) return false;
    const Mapping& m = it->second;
    if (node->inputs().size() != m.args.size()) return false;
    Node n;
    n.kind = m.kind;
    n.attrs = m.fixed;
    std::vector<const jit::Value*> inputs;
    for (size_t i = 0; i < m.args.size(); ++i) {
      const ArgRole& role = m.args[i];
      const jit::Value* v = node->inputs()[i];
      if (role.kind == ArgRole::Input) {
        inputs.push_back(v);
        continue;
      }
      if (role.kind == ArgRole::Ignore) continue;
      const Slot& s = slot(v);
      if (s.kind != Slot::Const) return false;
      auto attr = to_attr(s.constant);
      if (!attr) return false;
      if (role.kind == ArgRole::Require) {
        if (*attr != role.required) return false;
        continue;
      }
      if (wants_int_list(role.attr) && std::holds_alternative<int64_t>(*attr))
        attr = std::vector<int64_t>{std::get<int64_t>(*attr)};
      if (wants_int_list(role.attr) && !std::holds_alternative<std::vector<int64_t>>(*attr)) return false;
      n.attrs[role.attr] = *attr;
    }
    if (m.spatial > 0) {
      // ATen broadcasts one-element size lists and reads an empty pooling stride as the kernel size.
      if (n.has("stride") && n.has("kernel_size") && n.ints("stride").empty()) n.attrs["stride"] = n.attr("kernel_size");
      for (const char* key : {"kernel_size", "stride", "padding", "dilation", "output_size"}) {
        if (!n.has(key)) continue;
        const auto& v = n.ints(key);
        if (v.size() == 1 && m.spatial > 1) n.attrs[key] = std::vector<int64_t>(m.spatial, v[0]);
        else if (static_cast<int>(v.size()) != m.spatial) return false;
      }
    }
    for (const jit::Value* v : inputs) n.inputs.push_back(materialize(v));
    emit(node, std::move(n));
    return true;
  }

  void emit_opaque(const jit::Node* node) {
    const auto* schema = node->maybeSchema();
    TAILOR_CHECK(schema, "cannot capture ", describe(node), ": it has no operator schema");
    Node n;
    n.kind = ops::kOpaque;
    const auto& op = schema->operator_name();
    n.attrs["schema"] = op.overload_name.empty() ? op.name : op.name + "." + op.overload_name;
    for (const jit::Value* in : node->inputs()) n.inputs.push_back(materialize(in));
    emit(node, std::move(n));
  }

  void convert_node(const jit::Node* node) {
    const auto kind = node->kind();
    if (kind == c10::prim::Constant) {
      bind_const(node->output(), jit::toIValue(node->output()).value());
      return;
    }
    if (kind == c10::prim::GetAttr) {
      const Slot& owner = slot(node->input());
      TAILOR_CHECK(owner.kind == Slot::Module, "cannot capture ", describe(node), ": attribute of a non-module");
      const std::string& attr = node->s(c10::attr::name);
      const c10::IValue value = owner.constant.toObject()->getAttr(attr);
      const std::string path = owner.path.empty() ? attr : owner.path + "." + attr;
      if (value.isModule() || (value.isObject() && value.toObject()->type()->is_module())) {
        env_[node->output()] = Slot{Slot::Module, value, -1, path};
      } else if (value.isTensor()) {
        const int v = param_node(path, value.toTensor(), param_names_.count(path) == 0);
        env_[node->output()] = Slot{Slot::Val, {}, v, ""};
      } else {
        bind_const(node->output(), value);
      }
      return;
    }
    if (kind == c10::prim::If) {
      const Slot& cond = slot(node->input());
      if (cond.kind == Slot::Const) {
        const jit::Block* taken = node->blocks()[cond.constant.toBool() ? 0 : 1];
        convert_block(taken);
        for (size_t i = 0; i < node->outputs().size(); ++i) env_[node->outputs()[i]] = slot(taken->outputs()[i]);
        return;
      }
      // An input check (`if x.dim() != 4: raise ...`) has no outputs and only raises: it is not part of
      // the computation, and the ops after it check their inputs themselves.
      if (node->outputs().empty() && raises_only(node)) return;
      TAILOR_FAIL("cannot capture data-dependent control flow: ", describe(node),
                  " branches on a value computed from the inputs. Trace the model instead of scripting it, or "
                  "move the branch out of forward.");
    }
    if (kind == c10::prim::Loop) {
      convert_loop(node);
      return;
    }
    if (kind == c10::prim::RaiseException) {
      TAILOR_FAIL("cannot capture ", describe(node), ": the model raises an exception unconditionally");
    }
    if (kind == c10::aten::warn || kind == c10::prim::Print || kind == c10::prim::AutogradZero) return;
    if (kind == c10::prim::CallMethod || kind == c10::prim::CallFunction) {
      TAILOR_FAIL("cannot capture ", describe(node), ": a call that could not be inlined");
    }
    if (kind == c10::prim::unchecked_cast || kind == c10::aten::detach) {
      env_[node->output()] = slot(node->input());
      return;
    }
    if (try_fold(node)) return;
    if ((kind == c10::prim::ListConstruct || kind == c10::prim::TupleConstruct) && fold_construct(node)) return;
    if (kind == c10::prim::ListConstruct || kind == c10::prim::TupleConstruct) {
      std::vector<int> elems;
      for (const jit::Value* in : node->inputs()) elems.push_back(materialize(in));
      const int v = make_list(elems, value_type_of(node->output()->type()),
                              kind == c10::prim::TupleConstruct ? "tuple" : "list");
      env_[node->output()] = Slot{Slot::Val, {}, v, ""};
      return;
    }
    if (kind == c10::prim::ListUnpack || kind == c10::prim::TupleUnpack) {
      const Slot& src = slot(node->input());
      if (src.kind == Slot::Val && elements_.count(src.value)) {
        const auto& elems = elements_.at(src.value);
        TAILOR_CHECK(elems.size() == node->outputs().size(), "cannot capture ", describe(node),
                     ": unpacks ", node->outputs().size(), " values from ", elems.size());
        for (size_t i = 0; i < elems.size(); ++i) env_[node->outputs()[i]] = Slot{Slot::Val, {}, elems[i], ""};
        return;
      }
      if (src.kind == Slot::Val && try_multi_output(node, src.value)) return;
      Node n;
      n.kind = kind == c10::prim::ListUnpack ? ops::kListUnpack : ops::kTupleUnpack;
      n.inputs = {materialize(node->input())};
      emit(node, std::move(n));
      return;
    }
    if (kind == c10::prim::TupleIndex) {
      const Slot& src = slot(node->inputs()[0]);
      const Slot& idx = slot(node->inputs()[1]);
      if (src.kind == Slot::Val && elements_.count(src.value) && idx.kind == Slot::Const) {
        env_[node->output()] = Slot{Slot::Val, {}, elements_.at(src.value).at(idx.constant.toInt()), ""};
        return;
      }
    }
    if (kind == c10::aten::append && try_append(node)) return;
    if (kind == c10::aten::cat && try_cat(node)) return;
    if (try_native(node)) return;
    emit_opaque(node);
  }

  // Lists and tuples of known scalars (kernel sizes, strides, shapes) are constants themselves.
  bool fold_construct(const jit::Node* node) {
    std::vector<c10::IValue> elems;
    for (const jit::Value* in : node->inputs()) {
      const Slot& s = slot(in);
      if (s.kind != Slot::Const || has_tensor(s.constant)) return false;
      elems.push_back(s.constant);
    }
    if (node->kind() == c10::prim::TupleConstruct) {
      bind_const(node->output(), c10::ivalue::Tuple::create(std::move(elems)));
      return true;
    }
    const ValueType t = value_type_of(node->output()->type());
    if (t == ValueType::TensorList || t == ValueType::Any) return false;  // may be appended to later
    if (t == ValueType::IntList) {
      std::vector<int64_t> v;
      for (const auto& e : elems) v.push_back(e.toInt());
      bind_const(node->output(), v);
    } else if (t == ValueType::FloatList) {
      std::vector<double> v;
      for (const auto& e : elems) v.push_back(e.toDouble());
      bind_const(node->output(), v);
    } else if (t == ValueType::BoolList) {
      c10::List<bool> v;
      for (const auto& e : elems) v.push_back(e.toBool());
      bind_const(node->output(), v);
    } else {
      c10::impl::GenericList v(node->output()->type()->expectRef<c10::ListType>().getElementType());
      for (const auto& e : elems) v.push_back(e);
      bind_const(node->output(), v);
    }
    return true;
  }

  // `features.append(x)` on a list whose elements are known: the list value becomes a new list with one
  // more element (the mutation is followed in program order, which is how the interpreter sees it).
  bool try_append(const jit::Node* node) {
    const jit::Value* list = node->inputs()[0];
    const Slot& s = slot(list);
    if (s.kind != Slot::Val || !elements_.count(s.value)) return false;
    std::vector<int> elems = elements_.at(s.value);
    elems.push_back(materialize(node->inputs()[1]));
    const int v = make_list(elems, graph.value(s.value).type, "list");
    env_[list] = Slot{Slot::Val, {}, v, ""};
    env_[node->output()] = Slot{Slot::Val, {}, v, ""};
    return true;
  }

  bool try_cat(const jit::Node* node) {
    const Slot& list = slot(node->inputs()[0]);
    const Slot& dim = slot(node->inputs()[1]);
    if (list.kind != Slot::Val || !elements_.count(list.value) || dim.kind != Slot::Const) return false;
    Node n;
    n.kind = ops::kCat;
    n.attrs["dim"] = dim.constant.toInt();
    n.inputs = elements_.at(list.value);
    emit(node, std::move(n));
    return true;
  }

  // chunk/split followed by ListUnpack becomes one node with an output per piece.
  bool try_multi_output(const jit::Node* unpack, int list_value) {
    const Node* producer = graph.producer(list_value);
    if (!producer || producer->kind != ops::kOpaque || graph.users(list_value).size() != 0) return false;
    if (producer->s("schema") != "aten::chunk") return false;
    const Node* chunks = graph.producer(producer->inputs[1]);
    const Node* dim = graph.producer(producer->inputs[2]);
    if (!chunks || chunks->kind != ops::kConstant || !dim || dim->kind != ops::kConstant) return false;
    Node n;
    n.kind = ops::kChunk;
    n.name = producer->name;
    n.inputs = {producer->inputs[0]};
    n.attrs["chunks"] = chunks->i("value");
    n.attrs["dim"] = dim->i("value");
    const int old = graph.value(list_value).producer;
    graph.remove_node(old);
    std::vector<ValueType> types(unpack->outputs().size(), ValueType::Tensor);
    const int id = graph.add_node(std::move(n), types);
    for (size_t i = 0; i < unpack->outputs().size(); ++i)
      env_[unpack->outputs()[i]] = Slot{Slot::Val, {}, graph.node(id).outputs[i], ""};
    return true;
  }

  // True when the branches compute no tensors and one of them raises: an input check.
  static bool raises_only(const jit::Node* node) {
    bool raises = false;
    std::function<bool(const jit::Block*)> scan = [&](const jit::Block* b) {
      for (const jit::Node* n : b->nodes()) {
        if (n->kind() == c10::prim::RaiseException) raises = true;
        for (const jit::Value* out : n->outputs())
          if (out->type()->kind() == c10::TypeKind::TensorType) return false;
        for (const jit::Block* inner : n->blocks())
          if (!scan(inner)) return false;
      }
      return true;
    };
    for (const jit::Block* b : node->blocks())
      if (!scan(b)) return false;
    return raises;
  }

  void convert_loop(const jit::Node* node) {
    // prim::Loop(max_trip_count, initial_condition, carried...): unrolled when the trip count and the
    // condition are known while capturing (loops over module lists, fixed repeats).
    const Slot& trips = slot(node->inputs()[0]);
    const Slot& cond = slot(node->inputs()[1]);
    TAILOR_CHECK(trips.kind == Slot::Const && cond.kind == Slot::Const,
                 "cannot capture data-dependent control flow: ", describe(node),
                 " loops a number of times computed from the inputs");
    const int64_t n = trips.constant.toInt();
    TAILOR_CHECK(n <= 100000, "cannot capture ", describe(node), ": ", n, " iterations are too many to unroll");
    const jit::Block* body = node->blocks()[0];
    std::vector<Slot> carried;
    for (size_t i = 2; i < node->inputs().size(); ++i) carried.push_back(slot(node->inputs()[i]));
    bool go = cond.constant.toBool();
    for (int64_t it = 0; it < n && go; ++it) {
      env_[body->inputs()[0]] = Slot{Slot::Const, c10::IValue(it), -1, ""};
      for (size_t i = 0; i < carried.size(); ++i) env_[body->inputs()[i + 1]] = carried[i];
      convert_block(body);
      const Slot& c = slot(body->outputs()[0]);
      TAILOR_CHECK(c.kind == Slot::Const, "cannot capture data-dependent control flow: ", describe(node),
                   " stops on a value computed from the inputs");
      go = c.constant.toBool();
      for (size_t i = 0; i < carried.size(); ++i) carried[i] = slot(body->outputs()[i + 1]);
    }
    for (size_t i = 0; i < carried.size(); ++i) env_[node->outputs()[i]] = carried[i];
  }
};

std::shared_ptr<jit::Graph> prepare(std::shared_ptr<jit::Graph> graph) {
  jit::Inline(*graph);
  jit::RemoveTensorMutation(graph);
  jit::EliminateDeadCode(graph);
  return graph;
}

GraphModule finish(Converter& conv, std::vector<int> outputs) {
  conv.graph.set_outputs(std::move(outputs));
  eliminate_dead_code(conv.graph);
  canonicalize(conv.graph);
  conv.graph.verify();
  GraphModule gm(std::move(conv.graph), conv.tensors, conv.buffers);
  gm->eval();
  return gm;
}

}  // namespace

GraphModule capture(const torch::jit::Module& source) {
  jit::Module module = source.clone();
  module.eval();
  auto method = module.find_method("forward");
  TAILOR_CHECK(method, "the TorchScript module has no forward method");
  auto graph = prepare(method->graph()->copy());
  Converter conv;
  const auto inputs = graph->inputs();
  conv.bind_module(inputs[0], module);
  for (size_t i = 1; i < inputs.size(); ++i) {
    std::string name = inputs[i]->debugName();
    conv.bind_input(inputs[i], name.empty() || std::isdigit(name[0]) ? "input" + std::to_string(i - 1) : name);
  }
  conv.convert_block(graph->block());
  return finish(conv, conv.outputs_of(graph->block()));
}

GraphModule capture(torch::nn::Module& module,
                    const std::function<c10::IValue(const std::vector<c10::IValue>&)>& forward,
                    const std::vector<c10::IValue>& example_inputs) {
  const bool was_training = module.is_training();
  module.eval();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::set<std::string> buffer_names;
  for (const auto& p : module.named_parameters(true)) named.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(true)) {
    named.emplace_back(b.key(), b.value());
    buffer_names.insert(b.key());
  }
  jit::Stack stack(example_inputs.begin(), example_inputs.end());
  for (const auto& [name, t] : named) stack.emplace_back(t);
  const size_t num_inputs = example_inputs.size();
  std::shared_ptr<jit::tracer::TracingState> state;
  try {
    torch::NoGradGuard no_grad;
    state = jit::tracer::trace(
                stack,
                [&](jit::Stack in) -> jit::Stack {
                  in.resize(num_inputs);
                  return {forward(in)};
                },
                [](const torch::autograd::Variable&) { return std::string(); }, /*strict=*/false,
                /*force_outplace=*/false)
                .first;
  } catch (const std::exception& e) {
    if (was_training) module.train();
    TAILOR_FAIL("tracing the C++ module failed: ", e.what());
  }
  if (was_training) module.train();
  auto graph = prepare(state->graph);
  Converter conv;
  const auto inputs = graph->inputs();
  TAILOR_INTERNAL_ASSERT(inputs.size() == num_inputs + named.size(), "trace inputs");
  for (size_t i = 0; i < num_inputs; ++i) conv.bind_input(inputs[i], "input" + std::to_string(i));
  for (size_t i = 0; i < named.size(); ++i)
    conv.bind_tensor(inputs[num_inputs + i], named[i].first, named[i].second, buffer_names.count(named[i].first) != 0);
  conv.convert_block(graph->block());
  return finish(conv, conv.outputs_of(graph->block()));
}

GraphModule load(const std::string& path) {
  {
    TAILOR_CHECK(!std::filesystem::is_directory(path), "model file '", path, "' is a folder");
    std::ifstream probe(path, std::ios::binary);
    TAILOR_CHECK(probe.good(), "cannot open model file '", path, "': ", std::strerror(errno));
    char magic[2] = {0, 0};
    probe.read(magic, 2);
    TAILOR_CHECK(magic[0] == 'P' && magic[1] == 'K', "'", path,
                 "' is not a TorchScript archive (expected a zip file written by torch.jit.save or "
                 "torch::jit::Module::save)");
  }
  check_archive(path);
  jit::ExtraFilesMap extra{{kEmbeddedGraphFile, ""}, {kProvenanceFile, ""}};
  jit::Module module;
  try {
    module = jit::load(path, c10::nullopt, extra);
  } catch (const c10::Error& e) {
    TAILOR_FAIL("cannot load TorchScript archive '", path, "': ", e.what_without_backtrace());
  } catch (const std::exception& e) {  // the TorchScript compiler's own errors (damaged code in the archive)
    TAILOR_FAIL("cannot load TorchScript archive '", path, "': ", e.what());
  }
  const std::string& embedded = extra[kEmbeddedGraphFile];
  if (!embedded.empty()) {
    Graph graph;
    std::vector<PassRecord> provenance;
    try {
      graph = Graph::from_json(embedded);
      if (!extra[kProvenanceFile].empty()) provenance = provenance_from_json(extra[kProvenanceFile]);
    } catch (const Error& e) {
      TAILOR_FAIL("'", path, "': ", e.message());
    }
    std::map<std::string, torch::Tensor> tensors;
    std::vector<std::string> buffers;
    // The exported module mangles dotted names (see export); the graph's param nodes hold the originals.
    std::map<std::string, torch::Tensor> stored;
    for (const auto& p : module.named_parameters(true)) stored[p.name] = p.value;
    for (const auto& b : module.named_buffers(true)) stored[b.name] = b.value;
    for (int id : graph.order()) {
      const Node& n = graph.node(id);
      if (n.kind != ops::kParam) continue;
      const std::string& name = n.s("name");
      auto it = stored.find(name);
      TAILOR_CHECK(it != stored.end(), "'", path, "': the embedded graph names tensor '", name,
                   "' that the archive does not hold");
      tensors[name] = it->second.detach().clone();
      if (n.b("buffer")) buffers.push_back(name);
    }
    GraphModule gm{nullptr};
    try {
      gm = GraphModule(std::move(graph), tensors, buffers);
    } catch (const Error& e) {
      TAILOR_FAIL("'", path, "': the embedded graph does not compile: ", e.message());
    }
    gm->mutable_provenance() = std::move(provenance);
    gm->eval();
    return gm;
  }
  try {
    return capture(module);
  } catch (const Error& e) {
    TAILOR_FAIL("'", path, "': ", e.message());
  }
}

}  // namespace tailor
