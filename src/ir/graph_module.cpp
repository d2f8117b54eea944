#include "tailor/ir/graph_module.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <set>

#include <torch/csrc/jit/runtime/operator.h>
#include <torch/torch.h>

#include "tailor/ir/ops.hpp"
#include "program.hpp"

namespace tailor {

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  std::string cur;
  auto flush = [&] {
    TAILOR_CHECK(!cur.empty(), "input shape '", text, "' is not of the form 1x3x224x224");
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(cur, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    TAILOR_CHECK(used == cur.size() && v > 0, "input shape '", text, "' has a bad dimension '", cur,
                 "' (dimensions are positive integers: 1x3x224x224)");
    shape.push_back(v);
    cur.clear();
  };
  for (char c : text) {
    if (c == 'x' || c == 'X' || c == ',') flush();
    else if (!std::isspace(static_cast<unsigned char>(c))) cur += c;
  }
  flush();
  // An input larger than the machine's memory cannot run; refuse it here, before a multiplication overflows or
  // an allocation fails somewhere deep in a kernel.
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGESIZE));
  double elements = 1;
  for (int64_t d : shape) elements *= static_cast<double>(d);
  TAILOR_CHECK(elements * 4 <= memory, "input shape '", text, "' holds ", elements, " elements (",
               elements * 4 / (1 << 30), " GiB as float32), more than this machine's memory (",
               memory / (1 << 30), " GiB)");
  return shape;
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

namespace detail {

c10::OperatorName parse_operator_name(const std::string& schema) {
  const auto dot = schema.find('.');
  return {schema.substr(0, dot), dot == std::string::npos ? "" : schema.substr(dot + 1)};
}


Code code_of(const std::string& kind) {
  static const std::map<std::string, Code> codes = {
      {ops::kConstant, Code::Constant}, {ops::kParam, Code::Param}, {ops::kList, Code::List},
      {ops::kListUnpack, Code::ListUnpack}, {ops::kTuple, Code::Tuple}, {ops::kTupleUnpack, Code::TupleUnpack},
      {ops::kOpaque, Code::Opaque}, {ops::kConv, Code::Conv}, {ops::kLinear, Code::Linear},
      {ops::kMatmul, Code::Matmul}, {ops::kBatchNorm, Code::BatchNorm}, {ops::kLayerNorm, Code::LayerNorm},
      {ops::kGroupNorm, Code::GroupNorm}, {ops::kRelu, Code::Relu}, {ops::kHardtanh, Code::Hardtanh},
      {ops::kGelu, Code::Gelu}, {ops::kSilu, Code::Silu}, {ops::kSigmoid, Code::Sigmoid},
      {ops::kHardsigmoid, Code::Hardsigmoid}, {ops::kHardswish, Code::Hardswish}, {ops::kTanh, Code::Tanh},
      {ops::kSoftmax, Code::Softmax}, {ops::kLogSoftmax, Code::LogSoftmax}, {ops::kAdd, Code::Add},
      {ops::kSub, Code::Sub}, {ops::kMul, Code::Mul}, {ops::kDiv, Code::Div}, {ops::kCat, Code::Cat},
      {ops::kChunk, Code::Chunk}, {ops::kFlatten, Code::Flatten}, {ops::kReshape, Code::Reshape},
      {ops::kPermute, Code::Permute}, {ops::kTranspose, Code::Transpose}, {ops::kContiguous, Code::Contiguous},
      {ops::kMaxPool, Code::MaxPool}, {ops::kAvgPool, Code::AvgPool}, {ops::kAdaptiveAvgPool, Code::AdaptiveAvgPool},
      {ops::kMean, Code::Mean}, {ops::kDropout, Code::Dropout}, {ops::kChannelShuffle, Code::ChannelShuffle},
      {ops::kFakeQuant, Code::FakeQuant}};
  auto it = codes.find(kind);
  TAILOR_CHECK(it != codes.end(), "unknown op kind '", kind, "'");
  return it->second;
}

c10::IValue to_ivalue(const AttrValue& v) {
  struct Visitor {
    c10::IValue operator()(std::monostate) const { return {}; }
    c10::IValue operator()(bool x) const { return x; }
    c10::IValue operator()(int64_t x) const { return x; }
    c10::IValue operator()(double x) const { return x; }
    c10::IValue operator()(const std::string& x) const { return x; }
    c10::IValue operator()(const std::vector<int64_t>& x) const { return x; }
    c10::IValue operator()(const std::vector<double>& x) const { return x; }
  };
  return std::visit(Visitor{}, v);
}

torch::Tensor fake_quant(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& zero_point,
                         const std::vector<int64_t>& qp, bool learnable) {
  const int64_t qmin = qp[0], qmax = qp[1], axis = qp[2], group = qp[3];
  if (group > 0) {
    TAILOR_CHECK(x.numel() % group == 0, "fake_quant: ", x.numel(), " elements do not split into groups of ", group);
    const torch::Tensor rows = x.reshape({-1, group});
    return fake_quant(rows, scale, zero_point, {qmin, qmax, 0, 0}, learnable).reshape(x.sizes());
  }
  const double grad_factor = 1.0 / std::sqrt(static_cast<double>(std::max<int64_t>(1, x.numel() / std::max<int64_t>(1, scale.numel()))) * static_cast<double>(std::max<int64_t>(1, qmax)));
  if (axis < 0) {
    if (learnable) return at::_fake_quantize_learnable_per_tensor_affine(x, scale.clamp_min(1e-8), zero_point.to(at::kFloat), qmin, qmax, grad_factor);
    return at::fake_quantize_per_tensor_affine(x, scale, zero_point, qmin, qmax);
  }
  if (learnable)
    return at::_fake_quantize_learnable_per_channel_affine(x, scale.clamp_min(1e-8), zero_point.to(at::kFloat), axis, qmin, qmax, grad_factor);
  return at::fake_quantize_per_channel_affine(x, scale, zero_point, axis, qmin, qmax);
}

}  // namespace detail

using detail::Code;
using detail::Instr;

namespace {

std::vector<std::string> split_dotted(const std::string& name) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : name) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  for (const auto& p : parts) TAILOR_CHECK(!p.empty(), "tensor name '", name, "' has an empty component");
  return parts;
}

torch::Tensor scalar_or_tensor_binary(Code code, const c10::IValue& a, const c10::IValue& b, const c10::Scalar& alpha) {
  const torch::Tensor& x = a.toTensor();
  if (b.isTensor()) {
    switch (code) {
      case Code::Add: return at::add(x, b.toTensor(), alpha);
      case Code::Sub: return at::sub(x, b.toTensor(), alpha);
      case Code::Mul: return at::mul(x, b.toTensor());
      default: return at::div(x, b.toTensor());
    }
  }
  const c10::Scalar s = b.toScalar();
  switch (code) {
    case Code::Add: return at::add(x, s, alpha);
    case Code::Sub: return at::sub(x, s, alpha);
    case Code::Mul: return at::mul(x, s);
    default: return at::div(x, s);
  }
}

}  // namespace

GraphModuleImpl::GraphModuleImpl(Graph graph, const std::map<std::string, torch::Tensor>& tensors,
                                 const std::vector<std::string>& buffers)
    : torch::nn::Module("tailor::GraphModule"), graph_(std::move(graph)) {
  std::set<std::string> buffer_set(buffers.begin(), buffers.end());
  for (const auto& [name, t] : tensors) add_tensor(name, t, buffer_set.count(name) != 0);
  recompile();
}

GraphModuleImpl::~GraphModuleImpl() = default;

torch::nn::Module& GraphModuleImpl::owner_of(const std::string& dotted, std::string& leaf, bool create) {
  auto parts = split_dotted(dotted);
  leaf = parts.back();
  parts.pop_back();
  torch::nn::Module* cur = this;
  for (const auto& p : parts) {
    auto children = cur->named_children();
    if (auto* child = children.find(p)) {
      cur = child->get();
      continue;
    }
    TAILOR_CHECK(create, "no tensor named '", dotted, "'");
    cur = cur->register_module(p, std::make_shared<torch::nn::Module>(p)).get();
  }
  return *cur;
}

void GraphModuleImpl::add_tensor(const std::string& name, const torch::Tensor& value, bool buffer) {
  TAILOR_CHECK(!tensors_.count(name), "tensor '", name, "' is already registered");
  std::string leaf;
  torch::nn::Module& owner = owner_of(name, leaf, /*create=*/true);
  if (buffer) {
    tensors_[name] = {owner.register_buffer(leaf, value), true};
  } else {
    // Parameters captured from a frozen/traced model may come without requires_grad; a GraphModule
    // trains them, so they get it back (integer tensors cannot).
    torch::Tensor p = value.detach();
    tensors_[name] = {owner.register_parameter(leaf, p, /*requires_grad=*/p.is_floating_point()), false};
  }
}

bool GraphModuleImpl::has_tensor(const std::string& name) const { return tensors_.count(name) != 0; }

bool GraphModuleImpl::is_buffer(const std::string& name) const {
  auto it = tensors_.find(name);
  TAILOR_CHECK(it != tensors_.end(), "no tensor named '", name, "'");
  return it->second.buffer;
}

torch::Tensor GraphModuleImpl::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  TAILOR_CHECK(it != tensors_.end(), "no tensor named '", name, "' in this GraphModule");
  return it->second.tensor;
}

void GraphModuleImpl::set_tensor(const std::string& name, const torch::Tensor& value) {
  // set_data keeps the tensor object, so the compiled program (which holds it) needs no rebuild.
  torch::Tensor t = tensor(name);
  torch::NoGradGuard no_grad;
  const bool reshaped = t.sizes() != value.sizes();
  t.set_data(value.detach().to(t.device()));
  // A gradient of the old shape would fail the next backward or optimizer step (pruning changes shapes).
  if (reshaped && t.grad().defined()) t.mutable_grad() = torch::Tensor();
}

std::map<std::string, torch::Tensor> GraphModuleImpl::tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, entry] : tensors_) out[name] = entry.tensor;
  return out;
}

std::vector<std::string> GraphModuleImpl::buffer_names() const {
  std::vector<std::string> out;
  for (const auto& [name, entry] : tensors_)
    if (entry.buffer) out.push_back(name);
  return out;
}

void GraphModuleImpl::drop_unused_tensors() {
  std::set<std::string> used;
  for (int id : graph_.order())
    if (graph_.node(id).kind == ops::kParam) used.insert(graph_.node(id).s("name"));
  std::map<std::string, TensorEntry> keep;
  for (const auto& [name, entry] : tensors_)
    if (used.count(name)) keep[name] = entry;
  if (keep.size() == tensors_.size()) return;
  // LibTorch cannot unregister a child's tensor, so each child subtree is rebuilt from what is kept;
  // top-level parameters are erased in place.
  for (const auto& [name, entry] : tensors_)
    if (name.find('.') == std::string::npos && !used.count(name) && !entry.buffer) parameters_.erase(name);
  for (const auto& child : named_children())
    replace_module(child.key(), std::make_shared<torch::nn::Module>(child.key()));
  tensors_.clear();
  for (const auto& [name, entry] : keep) {
    if (name.find('.') == std::string::npos) tensors_[name] = entry;
    else add_tensor(name, entry.tensor, entry.buffer);
  }
}

namespace detail {

Instr make_instr(const Graph& graph, int node_id, const TensorLookup& tensor_of) {
  const Node& n = graph.node(node_id);
  Instr ins;
  ins.code = code_of(n.kind);
  ins.node = node_id;
  ins.in = n.inputs;
  ins.out = n.outputs;
  switch (ins.code) {
    case Code::Constant: ins.constant = detail::to_ivalue(n.attr("value")); break;
    case Code::Param: ins.tensor = tensor_of(n.s("name")); break;
    case Code::Opaque: {
      const std::string& schema = n.s("schema");
      ins.op = torch::jit::findOperatorFor(detail::parse_operator_name(schema));
      TAILOR_CHECK(ins.op, "node '", n.name, "': LibTorch has no operator '", schema, "'");
      ins.b0 = schema == "aten::_native_multi_head_attention";
      break;
    }
    case Code::Conv:
      ins.i0 = n.ints("stride");
      ins.i1 = n.ints("padding");
      ins.i2 = n.ints("dilation");
      ins.n0 = n.i("groups");
      break;
    case Code::BatchNorm:
      ins.d0 = n.f("momentum");
      ins.d1 = n.f("eps");
      break;
    case Code::LayerNorm:
      ins.i0 = n.ints("normalized_shape");
      ins.d1 = n.f("eps");
      break;
    case Code::GroupNorm:
      ins.n0 = n.i("num_groups");
      ins.d1 = n.f("eps");
      break;
    case Code::Hardtanh:
      ins.d0 = n.f("min_val");
      ins.d1 = n.f("max_val");
      break;
    case Code::Gelu: ins.s0 = n.has("approximate") ? n.s("approximate") : "none"; break;
    case Code::Softmax:
    case Code::LogSoftmax:
    case Code::Cat: ins.n0 = n.i("dim"); break;
    case Code::Add:
    case Code::Sub: ins.d0 = n.f("alpha", 1.0); ins.b0 = !n.has("alpha") || std::holds_alternative<int64_t>(n.attr("alpha")); break;
    case Code::Chunk:
      ins.n0 = n.i("chunks");
      ins.i0 = {n.i("dim")};
      break;
    case Code::Flatten: ins.i0 = {n.i("start_dim"), n.i("end_dim")}; break;
    case Code::Permute: ins.i0 = n.ints("dims"); break;
    case Code::Transpose: ins.i0 = {n.i("dim0"), n.i("dim1")}; break;
    case Code::MaxPool:
      ins.i0 = n.ints("kernel_size");
      ins.i1 = n.ints("stride");
      ins.i2 = n.ints("padding");
      ins.i3 = n.ints("dilation");
      ins.b0 = n.b("ceil_mode");
      break;
    case Code::AvgPool:
      ins.i0 = n.ints("kernel_size");
      ins.i1 = n.ints("stride");
      ins.i2 = n.ints("padding");
      ins.b0 = n.b("ceil_mode");
      ins.b1 = n.b("count_include_pad");
      break;
    case Code::AdaptiveAvgPool: ins.i0 = n.ints("output_size"); break;
    case Code::Mean:
      ins.i0 = n.ints("dims");
      ins.b0 = n.b("keepdim");
      break;
    case Code::Dropout: ins.d0 = n.f("p"); break;
    case Code::ChannelShuffle: ins.n0 = n.i("groups"); break;
    case Code::FakeQuant:
      ins.i0 = {n.i("qmin"), n.i("qmax"), n.i("axis", -1), n.i("group_size", 0)};
      ins.b0 = n.has("learnable") && n.b("learnable");
      break;
    default: break;
  }
  return ins;
}

std::unique_ptr<Program> build_program(const Graph& graph, const TensorLookup& tensor_of) {
  auto program = std::make_unique<Program>();
  program->inputs = graph.inputs();
  program->outputs = graph.outputs();
  program->num_values = graph.num_values();
  std::vector<int> last_use(graph.num_values(), -1);
  for (int id : graph.order()) {
    const Node& n = graph.node(id);
    for (int in : n.inputs) last_use[in] = static_cast<int>(program->instrs.size());
    program->instrs.push_back(make_instr(graph, id, tensor_of));
  }
  // Free each intermediate after its last reader, so memory stays at the live set (outputs are kept).
  for (int v = 0; v < graph.num_values(); ++v)
    if (last_use[v] >= 0 && !graph.is_graph_output(v)) program->instrs[last_use[v]].release.push_back(v);
  return program;
}

}  // namespace detail

void GraphModuleImpl::recompile() {
  program_ = detail::build_program(graph_, [this](const std::string& name) { return tensor(name); });
}

namespace {

// aten::_native_multi_head_attention (what a ViT traced for inference contains) has no derivative;
// when gradients are wanted it runs as the same computation in differentiable ops.
void mha_with_autograd(const Instr& ins, std::vector<c10::IValue>& slots) {
  auto T = [&](size_t k) { return slots[ins.in[k]].toTensor(); };
  const torch::Tensor q_in = T(0), k_in = T(1), v_in = T(2);
  const int64_t e = slots[ins.in[3]].toInt(), heads = slots[ins.in[4]].toInt();
  const torch::Tensor w = T(5), b = T(6), wp = T(7), bp = T(8);
  TAILOR_CHECK(slots[ins.in[9]].isNone(), "training through masked native attention is not supported");
  const bool need_weights = slots[ins.in[10]].toBool(), average = slots[ins.in[11]].toBool();
  const auto ws = w.chunk(3, 0);
  const auto bs = b.chunk(3, 0);
  const int64_t batch = q_in.size(0), l = q_in.size(1), s = k_in.size(1), d = e / heads;
  auto split_heads = [&](const torch::Tensor& t, int64_t len) { return t.reshape({batch, len, heads, d}).transpose(1, 2); };
  const auto q = split_heads(at::linear(q_in, ws[0], bs[0]), l);
  const auto k = split_heads(at::linear(k_in, ws[1], bs[1]), s);
  const auto v = split_heads(at::linear(v_in, ws[2], bs[2]), s);
  const auto attn = at::softmax(at::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d)), -1);
  const auto out = at::linear(at::matmul(attn, v).transpose(1, 2).reshape({batch, l, e}), wp, bp);
  slots[ins.out[0]] = out;
  if (ins.out.size() > 1)
    slots[ins.out[1]] = need_weights ? (average ? attn.mean(1) : attn) : torch::empty({0}, out.options());
}

}  // namespace

namespace detail {

void execute_instr(const Instr& ins, std::vector<c10::IValue>& slots, bool training, torch::jit::Stack& stack) {
  auto T = [&](size_t k) -> const torch::Tensor& { return slots[ins.in[k]].toTensor(); };
  auto opt = [&](size_t k) -> c10::optional<torch::Tensor> {
    const c10::IValue& v = slots[ins.in[k]];
    if (v.isNone()) return c10::nullopt;
    return v.toTensor();
  };
  c10::IValue& out = slots[ins.out.empty() ? 0 : ins.out[0]];
  switch (ins.code) {
    case Code::Constant: out = ins.constant; break;
    case Code::Param: out = ins.tensor; break;
    case Code::List: {
      bool all_tensors = !ins.in.empty();
      for (int v : ins.in) all_tensors = all_tensors && slots[v].isTensor();
      if (all_tensors) {
        std::vector<torch::Tensor> l;
        for (int v : ins.in) l.push_back(slots[v].toTensor());
        out = l;
      } else {
        bool all_ints = true;
        for (int v : ins.in) all_ints = all_ints && slots[v].isInt();
        if (all_ints) {
          std::vector<int64_t> l;
          for (int v : ins.in) l.push_back(slots[v].toInt());
          out = l;
        } else {
          bool all_doubles = true;
          for (int v : ins.in) all_doubles = all_doubles && slots[v].isDouble();
          if (all_doubles && !ins.in.empty()) {
            std::vector<double> l;
            for (int v : ins.in) l.push_back(slots[v].toDouble());
            out = l;
          } else {
            c10::impl::GenericList l(c10::AnyType::get());
            for (int v : ins.in) l.push_back(slots[v]);
            out = l;
          }
        }
      }
      break;
    }
    case Code::Tuple: {
      std::vector<c10::IValue> elems;
      for (int v : ins.in) elems.push_back(slots[v]);
      out = c10::ivalue::Tuple::create(std::move(elems));
      break;
    }
    case Code::ListUnpack:
    case Code::TupleUnpack: {
      const c10::IValue& src = slots[ins.in[0]];
      std::vector<c10::IValue> elems;
      if (src.isTuple()) {
        for (const auto& e : src.toTupleRef().elements()) elems.push_back(e);
      } else {
        for (const auto& e : src.toListRef()) elems.push_back(e);
      }
      TAILOR_CHECK(elems.size() == ins.out.size(), "unpacking ", elems.size(), " values into ", ins.out.size());
      for (size_t k = 0; k < elems.size(); ++k) slots[ins.out[k]] = elems[k];
      break;
    }
    case Code::Opaque: {
      if (ins.b0 && at::GradMode::is_enabled()) {
        mha_with_autograd(ins, slots);
        break;
      }
      stack.clear();
      for (int v : ins.in) stack.push_back(slots[v]);
      ins.op->getOperation()(stack);
      TAILOR_CHECK(stack.size() == ins.out.size(), "operator ", ins.op->schema().name(), " returned ", stack.size(),
                   " values, the graph expects ", ins.out.size());
      for (size_t k = 0; k < ins.out.size(); ++k) slots[ins.out[k]] = std::move(stack[k]);
      break;
    }
    case Code::Conv: out = at::convolution(T(0), T(1), opt(2), ins.i0, ins.i1, ins.i2, false, std::vector<int64_t>(ins.i0.size(), 0), ins.n0); break;
    case Code::Linear: out = at::linear(T(0), T(1), opt(2)); break;
    case Code::Matmul: out = at::matmul(T(0), T(1)); break;
    case Code::BatchNorm:
      out = at::batch_norm(T(0), opt(1), opt(2), opt(3), opt(4), training, ins.d0, ins.d1, true);
      break;
    case Code::LayerNorm: out = at::layer_norm(T(0), ins.i0, opt(1), opt(2), ins.d1, true); break;
    case Code::GroupNorm: out = at::group_norm(T(0), ins.n0, opt(1), opt(2), ins.d1, true); break;
    case Code::Relu: out = at::relu(T(0)); break;
    case Code::Hardtanh: out = at::hardtanh(T(0), ins.d0, ins.d1); break;
    case Code::Gelu: out = at::gelu(T(0), ins.s0); break;
    case Code::Silu: out = at::silu(T(0)); break;
    case Code::Sigmoid: out = at::sigmoid(T(0)); break;
    case Code::Hardsigmoid: out = at::hardsigmoid(T(0)); break;
    case Code::Hardswish: out = at::hardswish(T(0)); break;
    case Code::Tanh: out = at::tanh(T(0)); break;
    case Code::Softmax: out = at::softmax(T(0), ins.n0); break;
    case Code::LogSoftmax: out = at::log_softmax(T(0), ins.n0); break;
    case Code::Add:
    case Code::Sub:
    case Code::Mul:
    case Code::Div: {
      const c10::Scalar alpha = ins.b0 ? c10::Scalar(static_cast<int64_t>(ins.d0)) : c10::Scalar(ins.d0);
      out = scalar_or_tensor_binary(ins.code, slots[ins.in[0]], slots[ins.in[1]], alpha);
      break;
    }
    case Code::Cat: {
      std::vector<torch::Tensor> parts;
      parts.reserve(ins.in.size());
      for (int v : ins.in) parts.push_back(slots[v].toTensor());
      out = at::cat(parts, ins.n0);
      break;
    }
    case Code::Chunk: {
      auto pieces = at::chunk(T(0), ins.n0, ins.i0[0]);
      TAILOR_CHECK(pieces.size() == ins.out.size(), "chunk produced ", pieces.size(), " pieces, the graph expects ",
                   ins.out.size());
      for (size_t k = 0; k < pieces.size(); ++k) slots[ins.out[k]] = pieces[k];
      break;
    }
    case Code::Flatten: out = at::flatten(T(0), ins.i0[0], ins.i0[1]); break;
    case Code::Reshape: out = at::reshape(T(0), slots[ins.in[1]].toIntVector()); break;
    case Code::Permute: out = T(0).permute(ins.i0); break;
    case Code::Transpose: out = T(0).transpose(ins.i0[0], ins.i0[1]); break;
    case Code::Contiguous: out = T(0).contiguous(); break;
    case Code::MaxPool:
      out = ins.i0.size() == 1 ? at::max_pool1d(T(0), ins.i0, ins.i1, ins.i2, ins.i3, ins.b0)
                               : at::max_pool2d(T(0), ins.i0, ins.i1, ins.i2, ins.i3, ins.b0);
      break;
    case Code::AvgPool:
      out = ins.i0.size() == 1 ? at::avg_pool1d(T(0), ins.i0, ins.i1, ins.i2, ins.b0, ins.b1)
                               : at::avg_pool2d(T(0), ins.i0, ins.i1, ins.i2, ins.b0, ins.b1);
      break;
    case Code::AdaptiveAvgPool:
      out = ins.i0.size() == 1 ? at::adaptive_avg_pool1d(T(0), ins.i0) : at::adaptive_avg_pool2d(T(0), ins.i0);
      break;
    case Code::Mean: out = at::mean(T(0), ins.i0, ins.b0); break;
    case Code::Dropout: out = training ? at::dropout(T(0), ins.d0, true) : slots[ins.in[0]]; break;
    case Code::ChannelShuffle: out = at::channel_shuffle(T(0), ins.n0); break;
    case Code::FakeQuant: out = detail::fake_quant(T(0), T(1), T(2), ins.i0, ins.b0); break;
  }
}

void execute(const Program& prog, std::vector<c10::IValue>& slots, bool training, const std::set<int>* keep,
             const InstrClock* clock) {
  torch::jit::Stack stack;
  for (const Instr& ins : prog.instrs) {
    if (clock) {
      const auto start = std::chrono::steady_clock::now();
      execute_instr(ins, slots, training, stack);
      (*clock)(ins, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    } else {
      execute_instr(ins, slots, training, stack);
    }
    for (int v : ins.release)
      if (!keep || !keep->count(v)) slots[v] = c10::IValue();
  }
}

}  // namespace detail

namespace {

c10::IValue collect_outputs(const detail::Program& prog, std::vector<c10::IValue>& slots) {
  if (prog.outputs.size() == 1) return slots[prog.outputs[0]];
  std::vector<c10::IValue> outs;
  for (int v : prog.outputs) outs.push_back(slots[v]);
  return c10::ivalue::Tuple::create(std::move(outs));
}

}  // namespace

c10::IValue GraphModuleImpl::run(const std::vector<c10::IValue>& inputs) {
  TAILOR_CHECK(inputs.size() == program_->inputs.size(), "the graph takes ", program_->inputs.size(),
               " inputs, got ", inputs.size());
  std::vector<c10::IValue> slots(program_->num_values);
  for (size_t i = 0; i < inputs.size(); ++i) slots[program_->inputs[i]] = inputs[i];
  detail::execute(*program_, slots, is_training(), nullptr);
  return collect_outputs(*program_, slots);
}

torch::Tensor GraphModuleImpl::forward(const torch::Tensor& input) {
  c10::IValue out = run({input});
  TAILOR_CHECK(out.isTensor(), "this graph returns ", out.tagKind(), ", not one Tensor; use run()");
  return out.toTensor();
}

std::pair<c10::IValue, std::map<std::string, torch::Tensor>> GraphModuleImpl::run_with_taps(
    const std::vector<c10::IValue>& inputs, const std::vector<std::string>& taps) {
  std::map<std::string, int> tap_values;
  for (const auto& name : taps) {
    const int id = graph_.find_id(name);
    if (id < 0) {
      std::string some;
      int shown = 0;
      for (int nid : graph_.order()) {
        const Node& n = graph_.node(nid);
        if (n.kind == ops::kParam || n.kind == ops::kConstant) continue;
        if (shown++ == 8) break;
        some += (some.empty() ? "" : ", ") + n.name;
      }
      TAILOR_FAIL("no node named '", name, "' to tap; nodes include: ", some);
    }
    const Node& n = graph_.node(id);
    TAILOR_CHECK(!n.outputs.empty() && graph_.value(n.outputs[0]).type == ValueType::Tensor, "node '", name,
                 "' does not produce a tensor to tap");
    tap_values[name] = n.outputs[0];
  }
  std::vector<int> values;
  for (const auto& entry : tap_values) values.push_back(entry.second);
  auto [out, by_value] = run_with_value_taps(inputs, values);
  std::map<std::string, torch::Tensor> tapped;
  for (const auto& [name, v] : tap_values) tapped[name] = by_value.at(v);
  return {out, tapped};
}

std::pair<c10::IValue, std::map<int, torch::Tensor>> GraphModuleImpl::run_with_value_taps(
    const std::vector<c10::IValue>& inputs, const std::vector<int>& values) {
  TAILOR_CHECK(inputs.size() == program_->inputs.size(), "the graph takes ", program_->inputs.size(),
               " inputs, got ", inputs.size());
  const std::set<int> keep(values.begin(), values.end());
  std::vector<c10::IValue> slots(program_->num_values);
  for (size_t i = 0; i < inputs.size(); ++i) slots[program_->inputs[i]] = inputs[i];
  detail::execute(*program_, slots, is_training(), &keep);
  std::map<int, torch::Tensor> tapped;
  for (int v : values) {
    TAILOR_CHECK(v >= 0 && v < program_->num_values && slots[v].isTensor(), "value %", v,
                 " is not a tensor computed by this graph");
    tapped[v] = slots[v].toTensor();
  }
  return {collect_outputs(*program_, slots), tapped};
}

std::vector<c10::IValue> GraphModuleImpl::run_all_values(const std::vector<c10::IValue>& inputs) {
  TAILOR_CHECK(inputs.size() == program_->inputs.size(), "the graph takes ", program_->inputs.size(),
               " inputs, got ", inputs.size());
  std::vector<c10::IValue> slots(program_->num_values);
  for (size_t i = 0; i < inputs.size(); ++i) slots[program_->inputs[i]] = inputs[i];
  std::set<int> keep;
  for (int v = 0; v < program_->num_values; ++v) keep.insert(v);
  detail::execute(*program_, slots, is_training(), &keep);
  return slots;
}

void GraphModuleImpl::infer_shapes(const std::vector<std::vector<int64_t>>& input_shapes) {
  TAILOR_CHECK(input_shapes.size() == program_->inputs.size(), "the graph takes ", program_->inputs.size(),
               " inputs, ", input_shapes.size(), " shapes were given");
  torch::NoGradGuard no_grad;
  std::vector<c10::IValue> slots(program_->num_values);
  const auto device = [&] {
    auto ps = parameters();
    return ps.empty() ? torch::Device(torch::kCPU) : ps.front().device();
  }();
  for (size_t i = 0; i < input_shapes.size(); ++i)
    slots[program_->inputs[i]] = torch::zeros(input_shapes[i], torch::TensorOptions().device(device));
  std::set<int> keep;
  for (int v = 0; v < graph_.num_values(); ++v) keep.insert(v);
  try {
    detail::execute(*program_, slots, false, &keep);
  } catch (const c10::Error& e) {
    TAILOR_FAIL("running the model on inputs of shape ", shape_to_string(input_shapes[0]),
                " failed (wrong input shape or rank?): ", e.what_without_backtrace());
  }
  for (int v = 0; v < graph_.num_values(); ++v) {
    Value& val = graph_.value(v);
    if (slots[v].isTensor()) {
      val.shape = slots[v].toTensor().sizes().vec();
      val.dtype = std::string(c10::toString(slots[v].toTensor().scalar_type()));
    }
  }
}

}  // namespace tailor
