// Graph -> ONNX. The op table spells each kind (OpDef::onnx); this file supplies what the spellings read: value
// names, parameters as initializers, non-tensor values folded at the export shape (evaluated twice, at batch B and
// B + 1, so that entries growing with the batch are known when the batch is dynamic), and the ModelProto itself.
#include "tailor/export/onnx.hpp"
#include "../ir/attr_ivalue.hpp"

#include <filesystem>
#include <map>
#include <set>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/op_table.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/ir/provenance.hpp"
#include "tailor/version.hpp"

#if TAILOR_WITH_ONNX
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#endif

namespace tailor {

#if TAILOR_WITH_ONNX
namespace {

using ValueProtoType = onnx::TensorProto_DataType;

ValueProtoType onnx_type(c10::ScalarType t, const std::string& what) {
  switch (t) {
    case c10::kFloat: return onnx::TensorProto_DataType_FLOAT;
    case c10::kDouble: return onnx::TensorProto_DataType_DOUBLE;
    case c10::kHalf: return onnx::TensorProto_DataType_FLOAT16;
    case c10::kBFloat16: return onnx::TensorProto_DataType_BFLOAT16;
    case c10::kLong: return onnx::TensorProto_DataType_INT64;
    case c10::kInt: return onnx::TensorProto_DataType_INT32;
    case c10::kByte: return onnx::TensorProto_DataType_UINT8;
    case c10::kChar: return onnx::TensorProto_DataType_INT8;
    case c10::kBool: return onnx::TensorProto_DataType_BOOL;
    default: TAILOR_FAIL("cannot export ", what, ": ONNX export has no element type for ", c10::toString(t));
  }
}

bool is_sequence_type(ValueType t) { return t == ValueType::TensorList || t == ValueType::Tuple; }

class Exporter final : public ops::OnnxArgs {
 public:
  Exporter(const GraphModuleImpl& module, const OnnxExportOptions& options)
      : m_(module), g_(module.graph()), opts_(options) {}

  onnx::ModelProto build() {
    TAILOR_CHECK(opts_.opset() == 17, "ONNX export writes opset 17 only (asked for ", opts_.opset(), ")");
    evaluate();
    graph_ = model_.mutable_graph();
    graph_->set_name("tailor");
    add_inputs();
    mark_static();
    for (int id : g_.order()) emit_node(g_.node(id));
    add_outputs();
    quantize_biases();
    model_.set_ir_version(8);
    model_.set_producer_name("tailor");
    model_.set_producer_version(TAILOR_VERSION_STRING);
    auto* opset = model_.add_opset_import();
    opset->set_domain("");
    opset->set_version(opts_.opset());
    auto* prov = model_.add_metadata_props();
    prov->set_key("tailor.provenance");
    prov->set_value(provenance_to_json(m_.provenance()));
    auto* shapes = model_.add_metadata_props();
    shapes->set_key("tailor.input_shapes");
    std::string text;
    for (const auto& s : opts_.input_shapes()) text += (text.empty() ? "" : ",") + shape_to_string(s);
    shapes->set_value(text);
    return std::move(model_);
  }

  // ---- OnnxArgs
  const Node& node() const override { return *cur_; }

  std::string in(size_t k) override { return name_of(input_id(k)); }

  bool is_none(size_t k) const override {
    const Value& v = g_.value(input_id(k));
    return v.type == ValueType::None;
  }

  bool is_param(size_t k) const override {
    const Node* p = g_.producer(input_id(k));
    return p && p->kind == ops::kParam;
  }

  std::string out(size_t k) const override {
    TAILOR_INTERNAL_ASSERT(k < cur_->outputs.size(), "node ", cur_->name, " has no output ", k);
    return out_names_.at(cur_->outputs[k]);
  }
  size_t num_outputs() const override { return cur_->outputs.size(); }

  const std::vector<int64_t>& shape(size_t k) const override { return shapes_.at(input_id(k)); }
  std::string dtype(size_t k) const override { return dtypes_.at(input_id(k)); }
  const std::vector<int64_t>& out_shape(size_t k) const override { return shapes_.at(cur_->outputs.at(k)); }

  AttrValue value(size_t k) const override { return attr_of(at_b_[input_id(k)], input_id(k)); }

  std::string shape_tensor(size_t k, bool minus_one_keeps) override {
    const int v = input_id(k);
    const AttrValue a = value(k);
    const auto* list = std::get_if<std::vector<int64_t>>(&a);
    if (!list) refuse("input " + std::to_string(k) + " is not a list of ints");
    std::vector<int64_t> l1 = *list;
    if (minus_one_keeps)
      for (auto& x : l1)
        if (x == -1) x = 1;
    if (!dynamic()) return ints(l1);
    const AttrValue b = attr_of(at_b2_[v], v);
    std::vector<int64_t> l2 = std::get<std::vector<int64_t>>(b);
    if (minus_one_keeps)
      for (auto& x : l2)
        if (x == -1) x = 1;
    if (l1 == l2) return ints(l1);
    if (l1.size() != l2.size()) refuse("the length of its shape argument changes with the batch");
    const int64_t b1 = batch_size(), b2 = b1 + 1;
    std::vector<std::string> pieces;
    std::vector<int64_t> run;
    for (size_t i = 0; i < l1.size(); ++i) {
      if (l1[i] == l2[i]) {
        run.push_back(l1[i]);
        continue;
      }
      if (l1[i] % b1 != 0 || l2[i] % b2 != 0 || l1[i] / b1 != l2[i] / b2)
        refuse("entry " + std::to_string(i) + " of its shape argument changes with the batch but is not a multiple of it");
      if (!run.empty()) pieces.push_back(ints(run));
      run.clear();
      const int64_t factor = l1[i] / b1;
      if (factor == 1) {
        pieces.push_back(batch());
      } else {
        const std::string scaled = fresh(cur_->name + "/batch_x" + std::to_string(factor));
        emit("Mul", {batch(), ints({factor})}, {scaled});
        pieces.push_back(scaled);
      }
    }
    if (!run.empty()) pieces.push_back(ints(run));
    if (pieces.size() == 1) return pieces[0];
    const std::string shape = fresh(cur_->name + "/shape");
    emit("Concat", pieces, {shape}, {{"axis", int64_t{0}}});
    return shape;
  }

  at::Tensor tensor(size_t k) const override {
    const Node* p = g_.producer(input_id(k));
    TAILOR_INTERNAL_ASSERT(p && p->kind == ops::kParam, "input ", k, " of ", cur_->name, " is not a parameter");
    return m_.tensor(p->s("name")).detach().cpu();
  }

  std::string ints(const std::vector<int64_t>& values) override {
    return initializer(torch::tensor(values, torch::kLong), cur_ ? cur_->name + "/ints" : "ints");
  }

  std::string floats(const std::vector<double>& values, const std::string& like) override {
    at::Tensor t = torch::tensor(values, torch::kDouble).to(scalar_type_of(like));
    if (values.size() == 1) t = t.reshape({});
    return initializer(t, cur_ ? cur_->name + "/const" : "const");
  }

  std::string initializer(const at::Tensor& t, const std::string& hint) override {
    const std::string name = fresh(hint);
    add_initializer(name, t);
    return name;
  }

  std::string fresh(const std::string& hint) override {
    std::string name = hint;
    for (int i = 1; used_.count(name); ++i) name = hint + "_" + std::to_string(i);
    used_.insert(name);
    return name;
  }

  void emit(const std::string& op_type, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
            const std::map<std::string, AttrValue>& attrs = {}) override {
    auto* n = graph_->add_node();
    n->set_op_type(op_type);
    n->set_name(fresh((cur_ ? cur_->name : std::string("graph")) + "/" + op_type));
    for (const auto& i : inputs) n->add_input(i);
    for (const auto& o : outputs) n->add_output(o);
    for (const auto& [key, v] : attrs) {
      auto* a = n->add_attribute();
      a->set_name(key);
      std::visit(
          [&](const auto& x) {
            using T = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, int64_t>) {
              a->set_type(onnx::AttributeProto_AttributeType_INT);
              a->set_i(static_cast<int64_t>(x));
            } else if constexpr (std::is_same_v<T, double>) {
              a->set_type(onnx::AttributeProto_AttributeType_FLOAT);
              a->set_f(static_cast<float>(x));
            } else if constexpr (std::is_same_v<T, std::string>) {
              a->set_type(onnx::AttributeProto_AttributeType_STRING);
              a->set_s(x);
            } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
              a->set_type(onnx::AttributeProto_AttributeType_INTS);
              for (int64_t e : x) a->add_ints(e);
            } else if constexpr (std::is_same_v<T, std::vector<double>>) {
              a->set_type(onnx::AttributeProto_AttributeType_FLOATS);
              for (double e : x) a->add_floats(static_cast<float>(e));
            } else {
              TAILOR_INTERNAL_ASSERT(false, "attribute ", key, " of ", op_type, " is None");
            }
          },
          v);
    }
  }

  [[noreturn]] void refuse(const std::string& why) const override {
    std::string op = cur_->kind;
    if (cur_->kind == ops::kOpaque) op += " " + cur_->s("schema");
    TAILOR_FAIL("cannot export node '", cur_->name, "' (", op, ") to ONNX: ", why);
  }

 private:
  const GraphModuleImpl& m_;
  const Graph& g_;
  const OnnxExportOptions& opts_;
  onnx::ModelProto model_;
  onnx::GraphProto* graph_ = nullptr;
  const Node* cur_ = nullptr;
  std::vector<c10::IValue> at_b_, at_b2_;    // every value at the export shape, and at batch + 1
  std::vector<bool> static_;                 // known without the input's data (folded)
  std::map<int, std::string> names_;         // tensors already in the ONNX graph
  std::map<int, std::string> out_names_;     // names reserved for node outputs
  std::map<int, int> alias_;                 // unpacked elements -> the value they are
  std::map<int, std::vector<int>> sequences_;  // lists and tuples of values
  std::map<std::string, at::Tensor> init_values_;
  std::set<std::string> used_;
  std::vector<std::vector<int64_t>> shapes_;
  std::vector<std::string> dtypes_;
  std::string batch_;

  // The model input's batch as a 1-d int64 tensor, computed once where first needed.
  std::string batch() {
    if (batch_.empty()) {
      batch_ = fresh("batch");
      emit("Shape", {names_.at(g_.inputs().at(0))}, {batch_}, {{"start", int64_t{0}}, {"end", int64_t{1}}});
    }
    return batch_;
  }

  bool dynamic() const { return opts_.dynamic_batch(); }
  int64_t batch_size() const { return opts_.input_shapes().at(0).at(0); }

  int resolve(int v) const {
    for (auto it = alias_.find(v); it != alias_.end(); it = alias_.find(v)) v = it->second;
    return v;
  }
  int input_id(size_t k) const {
    TAILOR_INTERNAL_ASSERT(k < cur_->inputs.size(), "node ", cur_->name, " has no input ", k);
    return resolve(cur_->inputs[k]);
  }

  static c10::ScalarType scalar_type_of(const std::string& dtype) {
    if (dtype == "Double") return c10::kDouble;
    if (dtype == "Long") return c10::kLong;
    if (dtype == "Int") return c10::kInt;
    if (dtype == "Half") return c10::kHalf;
    return c10::kFloat;
  }

  AttrValue attr_of(const c10::IValue& v, int id) const {
    if (auto a = detail::attr_from_ivalue(v)) return *a;
    const Value& val = g_.value(id);
    refuse("its input '" + val.name + "' (" + to_string(val.type) + ") has no static value ONNX can hold");
  }

  void evaluate() {
    const auto& shapes = opts_.input_shapes();
    TAILOR_CHECK(shapes.size() == g_.inputs().size(), "ONNX export needs one input shape per graph input (",
                 g_.inputs().size(), "), got ", shapes.size());
    auto& module = const_cast<GraphModuleImpl&>(m_);
    const bool was_training = module.is_training();
    module.eval();
    torch::NoGradGuard no_grad;
    auto run_at = [&](int64_t extra) {
      std::vector<c10::IValue> inputs;
      torch::Generator gen = at::detail::createCPUGenerator(1234);
      for (auto s : shapes) {
        TAILOR_CHECK(!s.empty(), "ONNX export needs input shapes with a batch dimension");
        s[0] += extra;
        inputs.emplace_back(torch::randn(s, gen));
      }
      try {
        return module.run_all_values(inputs);
      } catch (const c10::Error& e) {
        TAILOR_FAIL("ONNX export: the model does not run at input shape ", shape_to_string(s_of(shapes, extra)), ": ",
                    e.what_without_backtrace());
      }
    };
    at_b_ = run_at(0);
    if (dynamic()) at_b2_ = run_at(1);
    // Shapes of every tensor at the export shape, for the spellings that read them.
    shapes_.assign(g_.num_values(), {});
    dtypes_.assign(g_.num_values(), "");
    for (int v = 0; v < g_.num_values(); ++v)
      if (at_b_[v].isTensor()) {
        shapes_[v] = at_b_[v].toTensor().sizes().vec();
        dtypes_[v] = std::string(c10::toString(at_b_[v].toTensor().scalar_type()));
      }
    if (was_training) module.train();
  }

  static std::vector<int64_t> s_of(const std::vector<std::vector<int64_t>>& shapes, int64_t extra) {
    auto s = shapes.at(0);
    s[0] += extra;
    return s;
  }

  void add_value_info(onnx::ValueInfoProto* info, const std::string& name, int v) {
    info->set_name(name);
    const at::Tensor& t = at_b_[v].toTensor();
    auto* tt = info->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx_type(t.scalar_type(), "value '" + name + "'"));
    auto* shape = tt->mutable_shape();
    const auto sizes = t.sizes();
    for (size_t d = 0; d < sizes.size(); ++d) {
      auto* dim = shape->add_dim();
      const bool grows = dynamic() && at_b2_[v].isTensor() && at_b2_[v].toTensor().dim() == t.dim() &&
                         at_b2_[v].toTensor().size(static_cast<int64_t>(d)) != sizes[d];
      if (grows) dim->set_dim_param("batch");
      else dim->set_dim_value(sizes[d]);
    }
  }

  void add_inputs() {
    for (int v : g_.inputs()) {
      const Value& val = g_.value(v);
      TAILOR_CHECK(val.type == ValueType::Tensor, "cannot export to ONNX: graph input '", val.name, "' is ",
                   to_string(val.type), ", not a tensor");
      const std::string name = fresh(val.name.empty() ? "input" : val.name);
      names_[v] = name;
      add_value_info(graph_->add_input(), name, v);
    }
  }

  // Folded: non-tensor values, and tensors computed from folded values and scalar constants alone (a traced
  // `size // 8` is NumToTensor(size) floor-divided by a one-element tensor constant).
  void mark_static() {
    static_.assign(g_.num_values(), false);
    for (int id : g_.order()) {
      const Node& n = g_.node(id);
      if (n.kind == ops::kParam) {
        static_[n.outputs.at(0)] = m_.tensor(n.s("name")).numel() <= 1;
        continue;
      }
      bool inputs_static = true;
      for (int in : n.inputs) inputs_static = inputs_static && static_[resolve(in)];
      for (int out : n.outputs) {
        const ValueType t = g_.value(out).type;
        if (t == ValueType::Tensor) static_[out] = inputs_static && at_b_[out].isTensor();
        else if (!is_sequence_type(t)) static_[out] = true;
      }
    }
  }

  std::string name_of(int v) {
    v = resolve(v);
    if (auto it = names_.find(v); it != names_.end()) return it->second;
    const Value& val = g_.value(v);
    const Node* p = g_.producer(v);
    if (p && p->kind == ops::kParam) {
      const std::string name = fresh(p->s("name"));
      add_initializer(name, m_.tensor(p->s("name")).detach().cpu());
      names_[v] = name;
      return name;
    }
    if (static_[v] && at_b_[v].isTensor()) {
      if (dynamic() && (!at_b2_[v].isTensor() || !at_b2_[v].toTensor().equal(at_b_[v].toTensor())))
        refuse("its input '" + val.name + "' is computed from the input's shape and changes with the batch");
      return names_[v] = initializer(at_b_[v].toTensor(), val.name.empty() ? "const" : val.name);
    }
    if (static_[v] && (val.type == ValueType::Int || val.type == ValueType::Float || val.type == ValueType::Bool)) {
      // A scalar operand takes the node's tensor dtype, as ATen's type promotion does for Python scalars.
      std::string like = "Float";
      for (int in : cur_->inputs)
        if (!dtypes_[resolve(in)].empty()) {
          like = dtypes_[resolve(in)];
          break;
        }
      const AttrValue a = attr_of(at_b_[v], v);
      const double x = std::holds_alternative<double>(a) ? std::get<double>(a)
                       : std::holds_alternative<bool>(a) ? static_cast<double>(std::get<bool>(a))
                                                           : static_cast<double>(std::get<int64_t>(a));
      if (dynamic() && attr_of(at_b2_[v], v) != a)
        refuse("its scalar input '" + val.name + "' is computed from the input's shape and changes with the batch");
      return floats({x}, like);
    }
    if (sequences_.count(v)) refuse("it reads a list or tuple ('" + val.name + "') where ONNX needs one tensor");
    TAILOR_INTERNAL_ASSERT(false, "ONNX export: value '", val.name, "' read by node '", cur_->name,
                           "' is not produced yet");
    return {};
  }

  void add_initializer(const std::string& name, const at::Tensor& value) {
    at::Tensor t = value.detach().cpu().contiguous();
    auto* init = graph_->add_initializer();
    init->set_name(name);
    init->set_data_type(onnx_type(t.scalar_type(), "initializer '" + name + "'"));
    for (int64_t d : t.sizes()) init->add_dims(d);
    init->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
    init_values_[name] = t;
  }

  void emit_node(const Node& n) {
    cur_ = &n;
    if (n.kind == ops::kConstant || n.kind == ops::kParam) return;  // written where they are read
    if (n.kind == ops::kList || n.kind == ops::kTuple) {
      std::vector<int> elems;
      for (int in : n.inputs) elems.push_back(resolve(in));
      for (int out : n.outputs) sequences_[out] = elems;
      return;
    }
    if (n.kind == ops::kListUnpack || n.kind == ops::kTupleUnpack) {
      const int seq = resolve(n.inputs.at(0));
      auto it = sequences_.find(seq);
      if (it != sequences_.end() && it->second.size() == n.outputs.size()) {
        for (size_t k = 0; k < n.outputs.size(); ++k) alias_[n.outputs[k]] = it->second[k];
        return;
      }
    }
    bool all_static = !n.outputs.empty();
    for (int out : n.outputs) all_static = all_static && static_[out];
    if (all_static) return;  // folded; read through value() or as an initializer
    const ops::OpDef* def = nullptr;
    try {
      def = &ops::op_def(n.kind);
    } catch (const Error&) {
      refuse("op kind '" + n.kind + "' is not in tailor's op table");
    }
    if (!def->onnx) refuse("ONNX has no spelling of this op in tailor");
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const int out = n.outputs[k];
      const Value& val = g_.value(out);
      if (val.type != ValueType::Tensor) refuse("output " + std::to_string(k) + " is " + to_string(val.type) +
                                                ", which ONNX export does not carry between nodes");
      out_names_[out] = fresh(n.outputs.size() == 1 ? n.name : n.name + ":" + std::to_string(k));
    }
    def->onnx(*this);
    for (int out : n.outputs) names_[out] = out_names_.at(out);
  }

  void flatten_output(int v, std::vector<int>& tensors) {
    v = resolve(v);
    if (auto it = sequences_.find(v); it != sequences_.end()) {
      for (int e : it->second) flatten_output(e, tensors);
      return;
    }
    const Value& val = g_.value(v);
    // An absent optional output (scripted GoogLeNet's auxiliary logits in eval mode) is no output at all.
    if (val.type == ValueType::None || (at_b_[v].isNone() && val.type != ValueType::Tensor)) return;
    TAILOR_CHECK(val.type == ValueType::Tensor, "cannot export to ONNX: the model returns '", val.name, "' of type ",
                 to_string(val.type), "; ONNX outputs are tensors");
    tensors.push_back(v);
  }

  void add_outputs() {
    std::vector<int> tensors;
    for (int v : g_.outputs()) flatten_output(v, tensors);
    cur_ = nullptr;
    for (size_t k = 0; k < tensors.size(); ++k) {
      const int v = tensors[k];
      const std::string name = fresh(tensors.size() == 1 ? "output" : "output_" + std::to_string(k));
      std::string source;
      if (names_.count(v) || g_.producer(v)) {
        Node placeholder;
        placeholder.name = "output";
        placeholder.kind = "output";
        cur_ = &placeholder;
        source = name_of(v);
        cur_ = nullptr;
      }
      emit("Identity", {source}, {name}, {});
      add_value_info(graph_->add_output(), name, v);
    }
  }

  const onnx::NodeProto* producer_of(const std::string& name) const {
    for (const auto& n : graph_->node())
      for (const auto& o : n.output())
        if (o == name) return &n;
    return nullptr;
  }

  // ONNX Runtime turns DequantizeLinear -> Conv/Gemm -> QuantizeLinear into an int8 kernel only when the bias is
  // int32 behind its own DequantizeLinear (scale = input scale x weight scale), as ONNX's QDQ convention has it.
  void quantize_biases() {
    cur_ = nullptr;
    const int count = graph_->node_size();
    for (int i = 0; i < count; ++i) {
      onnx::NodeProto* n = graph_->mutable_node(i);
      if ((n->op_type() != "Conv" && n->op_type() != "Gemm") || n->input_size() < 3) continue;
      const onnx::NodeProto* dq_x = producer_of(n->input(0));
      const onnx::NodeProto* dq_w = producer_of(n->input(1));
      if (!dq_x || !dq_w || dq_x->op_type() != "DequantizeLinear" || dq_w->op_type() != "DequantizeLinear") continue;
      auto bias = init_values_.find(n->input(2));
      auto sx = init_values_.find(dq_x->input(1));
      auto sw = init_values_.find(dq_w->input(1));
      auto w = init_values_.find(dq_w->input(0));
      if (bias == init_values_.end() || sx == init_values_.end() || sw == init_values_.end() || w == init_values_.end())
        continue;
      if (sx->second.numel() != 1 || bias->second.scalar_type() != c10::kFloat) continue;
      const int64_t channels = bias->second.numel();
      if (sw->second.numel() != 1 && sw->second.numel() != channels) continue;  // grouped weights: keep float bias
      const at::Tensor scale = (sx->second.reshape({}).to(torch::kFloat) * sw->second.reshape({-1}).to(torch::kFloat))
                                   .expand({channels}).contiguous();
      const at::Tensor q = torch::round(bias->second / scale).clamp(-2147483648.0, 2147483647.0).to(torch::kInt);
      const std::string base = n->input(2);
      const std::string qname = fresh(base + "_quantized"), sname = fresh(base + "_scale"),
                        zname = fresh(base + "_zero_point"), out = fresh(base + "_dequantized");
      add_initializer(qname, q);
      add_initializer(sname, scale);
      add_initializer(zname, torch::zeros({channels}, torch::kInt));
      auto* dq = graph_->add_node();
      dq->set_op_type("DequantizeLinear");
      dq->set_name(fresh(base + "/DequantizeLinear"));
      dq->add_input(qname);
      dq->add_input(sname);
      dq->add_input(zname);
      dq->add_output(out);
      auto* axis = dq->add_attribute();
      axis->set_name("axis");
      axis->set_type(onnx::AttributeProto_AttributeType_INT);
      axis->set_i(0);
      graph_->mutable_node(i)->set_input(2, out);
    }
    // The new DequantizeLinear nodes were appended; ONNX wants nodes in topological order.
    topological_sort();
    // Unused initializers (a float bias replaced, a weight quantized by its own node) are dropped.
    std::set<std::string> read;
    for (const auto& n : graph_->node())
      for (const auto& i : n.input()) read.insert(i);
    auto* inits = graph_->mutable_initializer();
    for (int i = inits->size() - 1; i >= 0; --i)
      if (!read.count(inits->Get(i).name())) inits->DeleteSubrange(i, 1);
  }

  void topological_sort() {
    std::set<std::string> ready;
    for (const auto& i : graph_->input()) ready.insert(i.name());
    for (const auto& i : graph_->initializer()) ready.insert(i.name());
    ready.insert("");
    std::vector<onnx::NodeProto> pending(graph_->node().begin(), graph_->node().end()), sorted;
    while (!pending.empty()) {
      const size_t before = pending.size();
      std::vector<onnx::NodeProto> rest;
      for (auto& n : pending) {
        bool ok = true;
        for (const auto& i : n.input()) ok = ok && ready.count(i);
        if (ok) {
          for (const auto& o : n.output()) ready.insert(o);
          sorted.push_back(std::move(n));
        } else {
          rest.push_back(std::move(n));
        }
      }
      pending = std::move(rest);
      TAILOR_INTERNAL_ASSERT(pending.size() < before, "ONNX export produced a node whose input is never computed");
    }
    graph_->clear_node();
    for (auto& n : sorted) *graph_->add_node() = std::move(n);
  }
};

void check(onnx::ModelProto& model) {
  try {
    onnx::checker::check_model(model);
    onnx::ShapeInferenceOptions strict{/*check_type=*/true, /*error_mode=*/1, /*enable_data_propagation=*/false};
    onnx::ModelProto copy = model;
    onnx::shape_inference::InferShapes(copy, onnx::OpSchemaRegistry::Instance(), strict);
  } catch (const std::exception& e) {
    TAILOR_FAIL("the ONNX checker rejects the exported model (a tailor bug; please report it with the model): ",
                e.what());
  }
}

}  // namespace

std::string to_onnx(const GraphModuleImpl& module, const OnnxExportOptions& options, OnnxExportReport* report) {
  onnx::ModelProto model = Exporter(module, options).build();
  if (options.check()) check(model);
  std::string bytes;
  TAILOR_CHECK(model.SerializeToString(&bytes), "serializing the ONNX model failed (over 2 GiB?)");
  if (report) {
    const auto& g = model.graph();
    report->nodes = g.node_size();
    report->initializers = g.initializer_size();
    for (const auto& n : g.node()) {
      report->quantize_nodes += n.op_type() == "QuantizeLinear";
      report->dequantize_nodes += n.op_type() == "DequantizeLinear";
    }
    for (const auto& i : g.input()) report->inputs.push_back(i.name());
    for (const auto& o : g.output()) report->outputs.push_back(o.name());
    report->bytes = static_cast<int64_t>(bytes.size());
  }
  return bytes;
}

bool onnx_export_available() { return true; }

#else

std::string to_onnx(const GraphModuleImpl&, const OnnxExportOptions&, OnnxExportReport*) {
  TAILOR_FAIL("this tailor was built without ONNX export (install libonnx-dev and rebuild)");
}

bool onnx_export_available() { return false; }

#endif

OnnxExportReport export_onnx(const GraphModuleImpl& module, const std::string& path, const OnnxExportOptions& options) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  // Checked before the work, so that a typo costs nothing; write_file_atomically checks again.
  TAILOR_CHECK(fs::is_directory(dir), "cannot write '", path, "': folder '", dir.string(), "' does not exist");
  TAILOR_CHECK(!fs::is_directory(target), "cannot write '", path, "': it is a folder");
  OnnxExportReport report;
  const std::string bytes = to_onnx(module, options, &report);
  write_file_atomically(path, bytes);
  return report;
}

}  // namespace tailor
