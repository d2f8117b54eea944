// The onednn-cpu backend: lowers the IR to oneDNN primitives, specialized for fixed input shapes.
//
// Every graph value lives either in oneDNN memory (a descriptor, possibly a blocked layout such as nChw8c,
// over a buffer of a pool planned from value lifetimes) or as an ATen IValue for the nodes oneDNN does not
// run, which fall back to the ATen interpreter GraphModule uses. Convolutions choose their layouts
// (format_tag::any) and the ops after them (eltwise, binary, pooling, concat, batch norm) keep those layouts,
// so reorders happen only where the graph enters or leaves oneDNN. Weights are reordered once, at compile
// time. Post-ops fuse activations into convolutions and inner products, and a residual add (with an optional
// ReLU after it) into the convolution that produces one of its operands (the `sum` post-op).
//
// Quantized graphs (fake_quant nodes from tailor::quant) run in real int8: a convolution or linear layer whose
// input is a per-tensor unsigned fake_quant (qmin >= 0, qmax <= 255) and whose weight is a symmetric int8
// fake_quant of a parameter becomes a u8 x s8 primitive (source zero point, per-channel output scales, int32
// accumulation, the same post-ops). When every reader of its result is the same activation quantizer (directly
// or through max pooling), the primitive writes u8 itself: the requantization is its last post-ops (x / s + z,
// clipped to [qmin, qmax]), so activations stay u8 from one int8 layer to the next and max pooling runs on u8.
// Elsewhere a float value is quantized once (a scaling reorder into the layout the primitive wants) and u8
// values are dequantized only for float readers. CPUs without VNNI saturate u8 x s8 pairs above 7 bits, so
// when the ISA in force lacks it, 8-bit activation quantizers are requantized to 7 bits over the same range
// (the summary says how many). Fake-quantized weights of any other scheme (weight-only int4, ...) are
// constants folded at compile time.
#include <chrono>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include <torch/torch.h>

#include "../ir/program.hpp"
#include "backends.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/runtime/isa.hpp"

#if TAILOR_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace tailor::detail {

#if TAILOR_WITH_ONEDNN

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

tag plain_tag(size_t rank) {
  switch (rank) {
    case 1: return tag::a;
    case 2: return tag::ab;
    case 3: return tag::abc;
    case 4: return tag::abcd;
    case 5: return tag::abcde;
    case 6: return tag::abcdef;
    default: TAILOR_FAIL("onednn-cpu: tensors of rank ", rank, " are not supported");
  }
}

memory::desc plain_desc(const std::vector<int64_t>& shape) {
  return memory::desc(memory::dims(shape.begin(), shape.end()), dt::f32, plain_tag(shape.size()));
}

// A reference to where a value's bytes are at run time.
struct MemRef {
  memory::desc desc;
  int pool = -1;  ///< buffer of the planned pool
  int slot = -1;  ///< or: an ATen tensor in this slot (its data pointer is read at run time)
  std::shared_ptr<torch::Tensor> owned;  ///< or: a tensor the executable owns (reordered weights, biases)
};

struct DnnlStep {
  dnnl::primitive prim;
  std::vector<std::pair<int, MemRef>> args;
  std::unordered_map<int, memory> mems;  // built by finalize()
  std::vector<std::pair<int, int>> slot_args;  // (arg, slot) rebound each run
};

struct Step {
  std::string node, kind;
  std::vector<std::string> fused;
  enum class Type { Dnnl, Aten, ToAten, FromAten } type = Type::Dnnl;
  DnnlStep dnnl;
  Instr instr;     // Aten
  int value = -1;  // ToAten / FromAten: the graph value converted
  std::vector<int64_t> shape;
  std::vector<int> release;  // ATen slots freed after this step
};

// Buffers assigned by lifetime: a buffer returns to the free list when the last value homed in it dies.
class Pool {
 public:
  int acquire(size_t bytes) {
    int best = -1;
    for (int b : free_)
      if (sizes_[b] >= bytes && (best < 0 || sizes_[b] < sizes_[best])) best = b;
    if (best < 0) {
      // Grow the largest free buffer rather than adding one, so the pool stays small.
      for (int b : free_)
        if (best < 0 || sizes_[b] > sizes_[best]) best = b;
    }
    if (best < 0) {
      sizes_.push_back(bytes);
      refs_.push_back(0);
      best = static_cast<int>(sizes_.size()) - 1;
    } else {
      free_.erase(best);
      sizes_[best] = std::max(sizes_[best], bytes);
    }
    refs_[best] = 1;
    return best;
  }
  void retain(int b) { ++refs_[b]; }
  void release(int b) {
    if (--refs_[b] == 0) free_.insert(b);
  }
  void allocate() {
    for (size_t b = 0; b < sizes_.size(); ++b)
      storage_.push_back(torch::empty({static_cast<int64_t>(std::max<size_t>(sizes_[b], 64))}, torch::kUInt8));
  }
  void* ptr(int b) const { return storage_[b].data_ptr(); }
  int64_t total_bytes() const {
    return std::accumulate(sizes_.begin(), sizes_.end(), int64_t{0}, [](int64_t a, size_t s) { return a + (int64_t)s; });
  }

 private:
  std::vector<size_t> sizes_;
  std::vector<int> refs_;
  std::set<int> free_;
  std::vector<torch::Tensor> storage_;
};

// An activation quantizer as the lowering runs it (after any requantization for the ISA).
struct QAct {
  float scale = 1;
  int32_t zero_point = 0;
  int64_t qmin = 0, qmax = 255;
  bool operator==(const QAct& o) const {
    return scale == o.scale && zero_point == o.zero_point && qmin == o.qmin && qmax == o.qmax;
  }
};

struct Home {
  enum class Where { Nowhere, Dnnl, Aten } where = Where::Nowhere;
  MemRef ref;          // Dnnl
  bool has_aten = false;  // an ATen copy is in slots (for fallback readers)
  // The value quantized to u8 by `q`, in oneDNN memory: written so by an int8 producer, or quantized once for
  // int8 readers. A value may have only this form (then float readers get a dequantized copy).
  bool has_q = false;
  MemRef q_ref;
  QAct q;
};

// The same memory descriptor (dims and layout) with another data type.
memory::desc with_type(const memory::desc& d, dt type) {
  dnnl_memory_desc_t c = d.data;
  c.data_type = memory::convert_to_c(type);
  return memory::desc(c);
}


// oneDNN's reference implementations are correct but far slower than ATen's kernels; a node whose only oneDNN
// implementation is a reference one runs on ATen instead.
bool is_reference(const dnnl::primitive_desc_base& pd) {
  const std::string impl = pd.impl_info_str();
  return impl.rfind("ref", 0) == 0;
}

class OnednnExecutable final : public Executable {
 public:
  OnednnExecutable(std::shared_ptr<GraphModuleImpl> module, const CompileOptions& options)
      : module_(std::move(module)), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), graph_(module_->graph()) {
    options_ = options;
    act_ = options.dtype == "bfloat16" ? dt::bf16 : dt::f32;
    isa_ = onednn_isa();
    int8_dot_ = isa_has_int8_dot(isa_);
    lower();
  }

  std::string backend() const override { return "onednn-cpu"; }
  c10::Device device() const override { return c10::Device(c10::kCPU); }

  c10::IValue run(const std::vector<c10::IValue>& inputs) override {
    std::vector<StepTime>* none = nullptr;
    return execute(inputs, none);
  }
  c10::IValue run_timed(const std::vector<c10::IValue>& inputs, std::vector<StepTime>& steps) override {
    steps.clear();
    std::vector<StepTime>* out = &steps;
    return execute(inputs, out);
  }
  int64_t peak_activation_bytes() const override { return pool_.total_bytes() + fallback_peak_; }
  int64_t weight_bytes() const override { return weight_bytes_; }
  std::string summary() const override { return summary_; }

 private:
  // --- compile -------------------------------------------------------------------------------------------------
  const std::vector<int64_t>& shape(int v) const { return graph_.value(v).shape; }
  // Activations inside oneDNN are act_ (f32, or bf16 when compiled for bfloat16); ATen sees f32 at the boundary.
  memory::desc act_desc(const std::vector<int64_t>& s) const {
    return memory::desc(memory::dims(s.begin(), s.end()), act_, plain_tag(s.size()));
  }
  bool is_f32_tensor(int v) const {
    const Value& val = graph_.value(v);
    return val.type == ValueType::Tensor && val.dtype == "Float" && !val.shape.empty();
  }
  const Node* param_of(int v) const {
    const Node* p = graph_.producer(v);
    return p && p->kind == ops::kParam ? p : nullptr;
  }
  bool is_none(int v) const {
    const Node* p = graph_.producer(v);
    return p && p->kind == ops::kConstant && std::holds_alternative<std::monostate>(p->attr("value"));
  }
  // The only reader of v, when v has exactly one and is not a graph output.
  const Node* sole_user(int v) const {
    if (graph_.is_graph_output(v)) return nullptr;
    const auto users = graph_.users(v);
    if (users.size() != 1) return nullptr;
    // Reading the same value twice (x * x) is not a sole use for fusion purposes.
    const Node& u = graph_.node(users[0]);
    if (std::count(u.inputs.begin(), u.inputs.end(), v) != 1) return nullptr;
    return &u;
  }
  torch::Tensor weight(const Node& param) const { return module_->tensor(param.s("name")).detach().contiguous(); }
  // A tensor known at compile time: a parameter, or a fake_quant of parameters (quantized weights).
  const Node* fq_of_params(int v) const {
    const Node* p = graph_.producer(v);
    if (!p || p->kind != ops::kFakeQuant) return nullptr;
    for (int in : p->inputs)
      if (!param_of(in)) return nullptr;
    return p;
  }
  bool is_const(int v) const { return param_of(v) || fq_of_params(v); }
  torch::Tensor const_tensor(int v) {
    if (const Node* p = param_of(v)) return weight(*p);
    auto it = folded_.find(v);
    if (it != folded_.end()) return it->second;
    const Node* fq = fq_of_params(v);
    TAILOR_INTERNAL_ASSERT(fq, "value ", graph_.value(v).name, " is not a compile-time constant");
    torch::NoGradGuard no_grad;
    const torch::Tensor t =
        fake_quant(weight(*param_of(fq->inputs[0])), weight(*param_of(fq->inputs[1])), weight(*param_of(fq->inputs[2])),
                   {fq->i("qmin"), fq->i("qmax"), fq->i("axis", -1), fq->i("group_size", 0)}, false)
            .contiguous();
    folded_[v] = t;
    return t;
  }
  // An activation fake_quant that int8 primitives can take: per tensor, unsigned (within 0..255), on an f32
  // tensor, with constant parameters.
  bool is_u8_activation_quant(const Node& n) const {
    return n.kind == ops::kFakeQuant && act_ == dt::f32 && !param_of(n.inputs[0]) && is_f32_tensor(n.inputs[0]) &&
           n.i("axis", -1) < 0 && n.i("group_size", 0) == 0 && n.i("qmin") >= 0 && n.i("qmax") <= 255 &&
           n.i("qmin") < n.i("qmax") && param_of(n.inputs[1]) && param_of(n.inputs[2]);
  }
  // Why an activation fake_quant is not one int8 primitives can take (for the summary).
  std::string why_not_u8_quant(const Node& n) const {
    if (act_ != dt::f32) return "int8 layers run in fp32 executables only";
    if (n.i("axis", -1) >= 0 || n.i("group_size", 0) > 0) return "per-channel activation quantization";
    if (n.i("qmin") < 0 || n.i("qmax") > 255) return "signed or wider than 8 bits";
    if (!param_of(n.inputs[1]) || !param_of(n.inputs[2])) return "its scale is computed at run time";
    return "its input is not a float tensor";
  }
  // The quantizer an int8 primitive applies for fake_quant node n. Without VNNI, u8 x s8 pairs above 7 bits
  // saturate: an 8-bit quantizer is requantized to 7 bits over the same range.
  QAct act_q(const Node& n) {
    const int id = graph_.find_id(n.name);
    auto it = qact_.find(id);
    if (it != qact_.end()) return it->second;
    QAct q;
    q.scale = weight(*param_of(n.inputs[1])).item<float>();
    q.zero_point = weight(*param_of(n.inputs[2])).item<int32_t>();
    q.qmin = n.i("qmin");
    q.qmax = n.i("qmax");
    if (!int8_dot_ && q.qmax > 127) {
      const double lo = (q.qmin - q.zero_point) * static_cast<double>(q.scale);
      const double hi = (q.qmax - q.zero_point) * static_cast<double>(q.scale);
      QAct r;
      r.qmin = 0;
      r.qmax = 127;
      r.scale = static_cast<float>((hi - lo) / 127.0);
      r.zero_point = static_cast<int32_t>(std::clamp<double>(std::nearbyint(-lo / r.scale), 0, 127));
      q = r;
      ++requantized_;
    }
    qact_[id] = q;
    return q;
  }
  // The quantizer every reader of v applies, directly or after max pooling (which commutes with a monotonic
  // quantizer exactly): then v's producer may write u8.
  std::optional<QAct> target_quant(int v) {
    if (graph_.is_graph_output(v)) return std::nullopt;
    const auto users = graph_.users(v);
    if (users.empty()) return std::nullopt;
    std::optional<QAct> q;
    for (int u : users) {
      const Node& un = graph_.node(u);
      std::optional<QAct> uq;
      if (un.inputs.empty() || un.inputs[0] != v || std::count(un.inputs.begin(), un.inputs.end(), v) != 1)
        return std::nullopt;
      if (is_u8_activation_quant(un)) uq = act_q(un);
      else if (un.kind == ops::kMaxPool && un.outputs.size() == 1) uq = target_quant(un.outputs[0]);
      if (!uq || (q && !(*q == *uq))) return std::nullopt;
      q = uq;
    }
    return q;
  }
  // A weight fake_quant that int8 primitives can take: symmetric int8 of a parameter, per tensor or per
  // output channel.
  bool is_s8_weight_quant(int v) const {
    const Node* fq = fq_of_params(v);
    if (!fq || fq->i("group_size", 0) != 0 || fq->i("qmin") < -128 || fq->i("qmax") > 127 || fq->i("axis", -1) > 0)
      return false;
    return module_->tensor(param_of(fq->inputs[2])->s("name")).eq(0).all().item<bool>();
  }

  MemRef own(const torch::Tensor& t, const memory::desc& desc) {
    MemRef r;
    r.desc = desc;
    r.owned = std::make_shared<torch::Tensor>(t);
    weight_bytes_ += static_cast<int64_t>(desc.get_size());
    return r;
  }
  // Reorders a plain float tensor into the layout a primitive chose, once.
  MemRef own_reordered(const torch::Tensor& plain, const memory::desc& plain_d, const memory::desc& want) {
    if (plain_d == want) return own(plain, want);
    auto out = torch::empty({static_cast<int64_t>(want.get_size())}, torch::kUInt8);
    memory src(plain_d, engine_, plain.data_ptr());
    memory dst(want, engine_, out.data_ptr());
    dnnl::reorder(src, dst).execute(stream_, src, dst);
    stream_.wait();
    return own(out, want);
  }

  MemRef new_buffer(const memory::desc& desc) {
    MemRef r;
    r.desc = desc;
    r.pool = pool_.acquire(desc.get_size());
    return r;
  }

  void set_home_dnnl(int v, const MemRef& ref) {
    homes_[v].where = Home::Where::Dnnl;
    homes_[v].ref = ref;
  }

  // The value in oneDNN memory, in its current layout (imported from ATen when it lives there).
  void emit_pending(int v) {
    auto it = pending_.find(v);
    if (it == pending_.end()) return;
    const int id = it->second;
    pending_.erase(it);
    if (deferred_quant_.count(v) && reading_node_)
      fake_quant_on_aten_.push_back(graph_.node(id).name + " (read by " + reading_node_->name + ", " +
                                    reading_node_->kind + ", which runs in float)");
    // A deferred fake_quant reads other values; they are made available to ATen first.
    for (int in : graph_.node(id).inputs) ensure_aten(in);
    Step s;
    s.type = Step::Type::Aten;
    s.node = graph_.node(id).name;
    s.kind = graph_.node(id).kind;
    s.instr = make_instr(graph_, id, [this](const std::string& name) { return module_->tensor(name); });
    steps_.push_back(std::move(s));
  }

  MemRef dnnl_ref(int v) {
    emit_pending(v);
    Home& h = homes_[v];
    if (h.where == Home::Where::Dnnl) return h.ref;
    if (h.where == Home::Where::Nowhere && h.has_q) {
      // Float readers of a value that exists only as u8: dequantize once, (q - z) * s, in the same layout.
      MemRef out = new_buffer(with_type(h.q_ref.desc, act_));
      dnnl::primitive_attr attr;
      attr.set_output_scales(0, {h.q.scale});
      attr.set_zero_points(DNNL_ARG_SRC, 0, {h.q.zero_point});
      add_dnnl_step(graph_.value(v).name, "dequantize", {},
                    dnnl::reorder(dnnl::reorder::primitive_desc(engine_, h.q_ref.desc, engine_, out.desc, attr)),
                    {{DNNL_ARG_FROM, h.q_ref}, {DNNL_ARG_TO, out}});
      ++dequantized_;
      set_home_dnnl(v, out);
      alive_in_pool_.insert({v, out.pool});
      return out;
    }
    TAILOR_INTERNAL_ASSERT(h.where == Home::Where::Aten, "value ", graph_.value(v).name, " has no home");
    Step s;
    s.type = Step::Type::FromAten;
    s.value = v;
    s.node = graph_.value(v).name;
    s.kind = "from_aten";
    steps_.push_back(std::move(s));
    MemRef r;
    r.desc = plain_desc(shape(v));
    r.slot = v;
    h.ref = r;
    h.where = Home::Where::Dnnl;
    h.has_aten = true;
    if (act_ != dt::f32) {
      MemRef cast = new_buffer(act_desc(shape(v)));
      add_dnnl_step(graph_.value(v).name, "reorder", {},
                    dnnl::reorder(dnnl::reorder::primitive_desc(engine_, r.desc, engine_, cast.desc)),
                    {{DNNL_ARG_FROM, r}, {DNNL_ARG_TO, cast}});
      ++reorders_;
      define(v, cast);
      homes_[v].has_aten = true;
      return cast;
    }
    return r;
  }
  // The value in a given layout; adds a reorder into a new buffer when its layout differs.
  MemRef dnnl_ref_as(int v, const memory::desc& want, const std::string& node) {
    MemRef cur = dnnl_ref(v);
    if (cur.desc == want) return cur;
    MemRef out = new_buffer(want);
    add_dnnl_step(node, "reorder", {}, dnnl::reorder(dnnl::reorder::primitive_desc(engine_, cur.desc, engine_, want)),
                  {{DNNL_ARG_FROM, cur}, {DNNL_ARG_TO, out}});
    ++reorders_;
    temps_.push_back(out);
    return out;
  }
  // The value as an ATen tensor in its slot (a plain copy made when it lives in a oneDNN buffer).
  void ensure_aten(int v) {
    emit_pending(v);
    Home& h = homes_[v];
    if (h.where == Home::Where::Nowhere && h.has_q) dnnl_ref(v);
    if (h.where == Home::Where::Aten || h.has_aten || h.where == Home::Where::Nowhere) return;
    Step s;
    s.type = Step::Type::ToAten;
    s.value = v;
    s.shape = shape(v);
    s.node = graph_.value(v).name;
    s.kind = "to_aten";
    MemRef src = h.ref;
    MemRef dst;
    dst.desc = plain_desc(shape(v));
    dst.slot = v;
    s.dnnl.prim = dnnl::reorder(dnnl::reorder::primitive_desc(engine_, src.desc, engine_, dst.desc));
    s.dnnl.args = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
    steps_.push_back(std::move(s));
    h.has_aten = true;
    if (!(src.desc == dst.desc)) ++reorders_;
  }

  void add_dnnl_step(const std::string& node, const std::string& kind, std::vector<std::string> fused,
                     dnnl::primitive prim, std::vector<std::pair<int, MemRef>> args) {
    Step s;
    s.type = Step::Type::Dnnl;
    s.node = node;
    s.kind = kind;
    s.fused = std::move(fused);
    s.dnnl.prim = std::move(prim);
    s.dnnl.args = std::move(args);
    steps_.push_back(std::move(s));
  }

  struct EltOp {
    dnnl::algorithm alg;
    float alpha = 0, beta = 0;
  };
  // An activation as oneDNN eltwise operations (hardsigmoid takes two); empty when it is not one.
  std::vector<EltOp> eltwise_of(const Node& n) const {
    using A = dnnl::algorithm;
    if (n.inputs.size() != 1) return {};
    if (n.kind == ops::kRelu) return {{A::eltwise_relu}};
    if (n.kind == ops::kHardtanh)
      return {{A::eltwise_clip, static_cast<float>(n.f("min_val")), static_cast<float>(n.f("max_val"))}};
    if (n.kind == ops::kGelu)
      return {{n.has("approximate") && n.s("approximate") == "tanh" ? A::eltwise_gelu_tanh : A::eltwise_gelu_erf}};
    if (n.kind == ops::kSilu) return {{A::eltwise_swish, 1.f}};
    if (n.kind == ops::kSigmoid) return {{A::eltwise_logistic}};
    if (n.kind == ops::kHardswish) return {{A::eltwise_hardswish}};
    if (n.kind == ops::kTanh) return {{A::eltwise_tanh}};
    if (n.kind == ops::kHardsigmoid) return {{A::eltwise_linear, 1.f / 6.f, 0.5f}, {A::eltwise_clip, 0.f, 1.f}};
    return {};
  }
  bool is_eltwise(const Node& n) const { return !eltwise_of(n).empty(); }

  // The value a node writes last: follows fused nodes.
  struct Fusion {
    std::vector<const Node*> eltwise_before_sum;  // (none: post-ops before sum unsupported here)
    const Node* add = nullptr;
    int add_other = -1;
    std::vector<const Node*> eltwise;  // in order, after the sum when there is one
    int out = -1;
  };
  // `chain`: eltwise post-ops the primitive already carries (a standalone hardsigmoid's clip).
  Fusion plan_fusion(const Node& n, bool allow_sum, std::vector<EltOp> chain = {}) const {
    Fusion f;
    f.out = n.outputs[0];
    if (allow_sum) {
      const Node* u = sole_user(f.out);
      if (u && u->kind == ops::kAdd && !used_.count(graph_.find_id(u->name)) && u->f("alpha", 1.0) == 1.0) {
        const int other = u->inputs[0] == f.out ? u->inputs[1] : u->inputs[0];
        if (is_f32_tensor(other) && shape(other) == shape(f.out) && (homes_[other].where != Home::Where::Nowhere || homes_[other].has_q)) {
          f.add = u;
          f.add_other = other;
          f.out = u->outputs[0];
        }
      }
    }
    while (true) {
      const Node* u = sole_user(f.out);
      if (!u || !is_eltwise(*u)) break;
      const std::vector<EltOp> ops = eltwise_of(*u);
      std::vector<EltOp> longer = chain;
      longer.insert(longer.end(), ops.begin(), ops.end());
      if (repeats_algorithm(longer)) break;  // runs as its own primitive instead
      chain = std::move(longer);
      f.eltwise.push_back(u);
      f.out = u->outputs[0];
    }
    return f;
  }
  // oneDNN 2.6's jit kernels compute wrong results when one post-op chain holds the same eltwise algorithm
  // twice with different parameters (two clips, two linears: seen on avx2 and sse41 int8 convolutions).
  static bool repeats_algorithm(const std::vector<EltOp>& chain) {
    for (size_t i = 0; i < chain.size(); ++i)
      for (size_t j = i + 1; j < chain.size(); ++j)
        if (chain[i].alg == chain[j].alg && (chain[i].alpha != chain[j].alpha || chain[i].beta != chain[j].beta))
          return true;
    return false;
  }
  dnnl::post_ops post_ops_of(const Fusion& f) const {
    dnnl::post_ops po;
    if (f.add) po.append_sum(1.0f);
    for (const Node* e : f.eltwise)
      for (const EltOp& op : eltwise_of(*e)) po.append_eltwise(1.0f, op.alg, op.alpha, op.beta);
    return po;
  }
  std::vector<std::string> fused_names(const Fusion& f) {
    std::vector<std::string> names;
    if (f.add) {
      names.push_back(f.add->name);
      used_.insert(graph_.find_id(f.add->name));
    }
    for (const Node* e : f.eltwise) {
      names.push_back(e->name);
      used_.insert(graph_.find_id(e->name));
    }
    return names;
  }
  // The destination of a fused primitive: the other addend's buffer when it dies here (in place), else a
  // new buffer that a reorder fills with the addend first.
  MemRef sum_destination(const Fusion& f, const memory::desc& dst_desc, const MemRef& src, const std::string& node) {
    MemRef other = dnnl_ref(f.add_other);
    // In place only when nothing else reads the addend's buffer, the primitive's own input included.
    const bool dies_here = last_reader_[f.add_other] == graph_.find_id(f.add->name) && other.pool != src.pool &&
                           !graph_.is_graph_output(f.add_other) && other.pool >= 0 && other.desc == dst_desc &&
                           buffer_values(other.pool) == 1;
    if (dies_here) {
      pool_.retain(other.pool);
      return other;
    }
    MemRef dst = new_buffer(dst_desc);
    add_dnnl_step(node, "reorder", {}, dnnl::reorder(dnnl::reorder::primitive_desc(engine_, other.desc, engine_, dst_desc)),
                  {{DNNL_ARG_FROM, other}, {DNNL_ARG_TO, dst}});
    ++reorders_;
    return dst;
  }
  int buffer_values(int pool) const {
    int n = 0;
    for (const auto& entry : alive_in_pool_)
      if (entry.second == pool) ++n;
    return n;
  }

  struct Int8Layer {
    torch::Tensor weight;  // s8, the layer's own layout
    torch::Tensor bias;    // f32, divided by the output scales (oneDNN adds it before scaling)
    std::vector<float> output_scales;
    bool per_channel = false;
    int32_t src_zero_point = 0;
  };
  Int8Layer int8_layer(const QAct& xq, int weight_value, const torch::Tensor& w, const torch::Tensor& bias) {
    const Node* wq = fq_of_params(weight_value);
    const float sx = xq.scale;
    const torch::Tensor sw = weight(*param_of(wq->inputs[1])).to(torch::kFloat);
    Int8Layer q;
    q.src_zero_point = xq.zero_point;
    q.per_channel = wq->i("axis", -1) == 0 && sw.numel() > 1;
    std::vector<int64_t> view(static_cast<size_t>(w.dim()), 1);
    view[0] = -1;
    const torch::Tensor inv = sw.reciprocal().reshape(q.per_channel ? view : std::vector<int64_t>{1});
    q.weight = (w * inv).round().clamp(wq->i("qmin"), wq->i("qmax")).to(torch::kChar).contiguous();
    const torch::Tensor out_scales = (sw * sx).reshape({-1}).contiguous();
    q.output_scales.assign(out_scales.data_ptr<float>(), out_scales.data_ptr<float>() + out_scales.numel());
    if (bias.defined()) q.bias = (bias.reshape({-1}) / out_scales).contiguous();
    return q;
  }
  // Post-ops, output scales and zero points of a conv/linear primitive: float post-ops for a float layer, the
  // int8 scales for an int8 one, and the requantization when it writes u8 of `out_q`. False when that cannot be.
  bool set_int8_attr(dnnl::primitive_attr& attr, const Fusion& f, const Int8Layer& q, bool int8, const QAct* out_q) const {
    if (!out_q) {
      attr.set_post_ops(post_ops_of(f));
      if (int8) {
        attr.set_output_scales(q.per_channel ? 1 << 1 : 0, q.output_scales);
        attr.set_zero_points(DNNL_ARG_SRC, 0, {q.src_zero_point});
      }
      return true;
    }
    const auto rq = requantizing(f, *out_q);
    if (!rq) return false;
    attr.set_post_ops(rq->po);
    std::vector<float> scales = q.output_scales;
    for (float& v : scales) v *= rq->output_factor;
    attr.set_output_scales(q.per_channel ? 1 << 1 : 0, scales);
    attr.set_zero_points(DNNL_ARG_SRC, 0, {q.src_zero_point});
    attr.set_zero_points(DNNL_ARG_DST, 0, {out_q->zero_point});
    return true;
  }
  // A conv/linear primitive descriptor that writes u8 of out_q when oneDNN has a non-reference kernel for it,
  // else one that writes float (out_q is then cleared); nullopt when neither exists.
  template <typename PrimitiveDesc, typename Make>
  std::optional<PrimitiveDesc> u8_or_float(std::optional<QAct>& out_q, const Fusion& f, const Int8Layer& q, bool int8,
                                           const Make& make) const {
    auto attempt = [&](const QAct* target) -> std::optional<PrimitiveDesc> {
      dnnl::primitive_attr attr;
      if (!set_int8_attr(attr, f, q, int8, target)) return std::nullopt;
      try {
        PrimitiveDesc pd = make(attr, target ? dt::u8 : act_);
        if (is_reference(pd)) return std::nullopt;
        return pd;
      } catch (const dnnl::error&) {
        return std::nullopt;
      }
    };
    if (out_q)
      if (auto pd = attempt(&*out_q)) return pd;
    out_q.reset();
    return attempt(nullptr);
  }
  // The input of an int8 layer, u8 in the layout `want`: the u8 form of the fake_quant output vq when it has
  // one (reordered if the layout differs), else its f32 source quantized now, once for all int8 readers.
  MemRef quantized_ref(int vq, const memory::desc& want, const std::string& node) {
    Home& h = homes_[vq];
    if (!h.has_q) {
      const Node& fq = *graph_.producer(vq);
      const QAct q = act_q(fq);
      MemRef cur = dnnl_ref(fq.inputs[0]);
      const bool clip = q.qmin > 0 || q.qmax < 255;  // u8 saturation clips to [0, 255] by itself
      if (clip) {
        // One pass where oneDNN has a fast kernel for it (plain and channels-last layouts): x + 0 written as u8
        // with the requantizing post-ops, then a u8 reorder if the reader wants another layout.
        const memory::desc u8_same = with_type(cur.desc, dt::u8);
        dnnl::post_ops po;
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f / q.scale, static_cast<float>(q.zero_point));
        po.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, static_cast<float>(q.qmin), static_cast<float>(q.qmax));
        dnnl::primitive_attr attr;
        attr.set_post_ops(po);
        const memory::desc zero_d(memory::dims(cur.desc.dims().size(), 1), dt::f32, plain_tag(cur.desc.dims().size()));
        try {
          dnnl::binary::primitive_desc pd(dnnl::binary::desc(dnnl::algorithm::binary_add, cur.desc, zero_d, u8_same),
                                          attr, engine_);
          if (!is_reference(pd)) {
            MemRef out = new_buffer(u8_same);
            add_dnnl_step(node, "quantize", {}, dnnl::binary(pd),
                          {{DNNL_ARG_SRC_0, cur}, {DNNL_ARG_SRC_1, own(torch::zeros({1}), zero_d)}, {DNNL_ARG_DST, out}});
            ++quantized_;
            define_q(vq, out, q);
            return quantized_ref(vq, want, node);
          }
        } catch (const dnnl::error&) {
        }
        // Clip in float to the range the quantizer covers, so the scaling reorder lands in [qmin, qmax].
        const float lo = (q.qmin - q.zero_point) * q.scale, hi = (q.qmax - q.zero_point) * q.scale;
        dnnl::eltwise_forward::primitive_desc pd(
            dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_clip, cur.desc, lo, hi),
            engine_);
        MemRef clipped = new_temp(cur.desc);
        add_dnnl_step(node, "clip", {}, dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, cur}, {DNNL_ARG_DST, clipped}});
        cur = clipped;
      }
      MemRef out = new_buffer(want);
      dnnl::primitive_attr attr;
      attr.set_output_scales(0, {1.0f / q.scale});
      attr.set_zero_points(DNNL_ARG_DST, 0, {q.zero_point});
      add_dnnl_step(node, "quantize", {}, dnnl::reorder(dnnl::reorder::primitive_desc(engine_, cur.desc, engine_, want, attr)),
                    {{DNNL_ARG_FROM, cur}, {DNNL_ARG_TO, out}});
      ++quantized_;
      define_q(vq, out, q);
      return out;
    }
    if (h.q_ref.desc == want) return h.q_ref;
    MemRef out = new_temp(want);
    add_dnnl_step(node, "reorder", {}, dnnl::reorder(dnnl::reorder::primitive_desc(engine_, h.q_ref.desc, engine_, want)),
                  {{DNNL_ARG_FROM, h.q_ref}, {DNNL_ARG_TO, out}});
    ++reorders_;
    return out;
  }
  // How a fused layer writes u8 of quantizer q: its post-ops, a factor for its output scales, and the zero point
  // as the destination's (oneDNN adds it after the post-ops, then rounds and saturates). A chain of ReLUs and
  // clips commutes with the positive scale 1 / s: it becomes one clip in the quantized domain, merged with the
  // quantizer's [qmin, qmax]. Other chains stay in float and their last op scales by 1 / s. nullopt when
  // oneDNN cannot express it (see repeats_algorithm).
  struct Requant {
    dnnl::post_ops po;
    float output_factor = 1;
  };
  std::optional<Requant> requantizing(const Fusion& f, const QAct& q) const {
    using A = dnnl::algorithm;
    std::vector<EltOp> chain;
    for (const Node* e : f.eltwise)
      for (const EltOp& op : eltwise_of(*e)) chain.push_back(op);
    const float inv = 1.0f / q.scale;
    const float lo_q = static_cast<float>(q.qmin - q.zero_point), hi_q = static_cast<float>(q.qmax - q.zero_point);
    const bool clamp = q.qmin > 0 || q.qmax < 255;  // else u8 saturation is the clamp
    const float inf = std::numeric_limits<float>::infinity();
    Requant r;
    bool homogeneous = true;
    float lo = -inf, hi = inf;
    for (const EltOp& op : chain) {
      float l, h;
      if (op.alg == A::eltwise_relu && op.alpha == 0) l = 0, h = inf;
      else if (op.alg == A::eltwise_clip) l = op.alpha, h = op.beta;
      else {
        homogeneous = false;
        break;
      }
      lo = std::max(lo, l);
      hi = std::min(hi, h);
    }
    if (homogeneous && lo <= hi) {
      r.output_factor = inv;
      lo *= inv;
      hi *= inv;
      if (clamp) {
        lo = std::max(lo, lo_q);
        hi = std::min(hi, hi_q);
      }
      if (lo == 0 && hi == inf) r.po.append_eltwise(1.0f, A::eltwise_relu, 0.f, 0.f);
      else if (lo > -inf || hi < inf) r.po.append_eltwise(1.0f, A::eltwise_clip, lo, std::min(hi, 3e38f));
      return r;
    }
    if (repeats_algorithm(chain)) return std::nullopt;
    const bool has_clip = std::any_of(chain.begin(), chain.end(), [](const EltOp& op) { return op.alg == A::eltwise_clip; });
    if (clamp && has_clip) return std::nullopt;
    for (size_t k = 0; k < chain.size(); ++k)
      r.po.append_eltwise(k + 1 == chain.size() ? inv : 1.0f, chain[k].alg, chain[k].alpha, chain[k].beta);
    if (clamp) r.po.append_eltwise(1.0f, A::eltwise_clip, lo_q, hi_q);
    return r;
  }


  bool lower_conv(const Node& n) {
    const int x = n.inputs[0];
    if (!is_const(n.inputs[1]) || !is_f32_tensor(x) || !(is_const(n.inputs[2]) || is_none(n.inputs[2]))) return false;
    const auto& xs = shape(x);
    const auto& os = shape(n.outputs[0]);
    const size_t spatial = xs.size() - 2;
    if (spatial < 1 || spatial > 3) return false;
    const Node* xq = graph_.producer(x);
    const bool int8 = xq && deferred_quant_.count(x) && is_s8_weight_quant(n.inputs[1]);
    const torch::Tensor w = int8 ? weight(*param_of(fq_of_params(n.inputs[1])->inputs[0])) : const_tensor(n.inputs[1]);
    const int64_t groups = n.i("groups");
    memory::dims strides, dil, pad_l, pad_r, kernel;
    for (size_t k = 0; k < spatial; ++k) {
      strides.push_back(n.ints("stride")[k]);
      dil.push_back(n.ints("dilation")[k] - 1);
      pad_l.push_back(n.ints("padding")[k]);
      kernel.push_back(w.size(2 + k));
      // Right padding that gives exactly the output size (floor division drops what does not fit).
      const int64_t span = (kernel[k] - 1) * (dil[k] + 1) + 1;
      pad_r.push_back((os[2 + k] - 1) * strides[k] + span - xs[2 + k] - pad_l[k]);
    }
    memory::dims wdims(w.sizes().begin(), w.sizes().end());
    if (groups > 1) {
      wdims[0] /= groups;
      wdims.insert(wdims.begin(), groups);
    }
    const memory::desc wplain(wdims, int8 ? dt::s8 : dt::f32, plain_tag(wdims.size()));
    const memory::desc src_any(memory::dims(xs.begin(), xs.end()), int8 ? dt::u8 : act_, tag::any);
    const memory::desc w_any(wdims, int8 ? dt::s8 : act_, tag::any);
    const bool has_bias = !is_none(n.inputs[2]);
    const memory::desc b_desc = has_bias ? memory::desc({os[1]}, dt::f32, tag::a) : memory::desc();
    Fusion f = plan_fusion(n, true);
    Int8Layer q;
    if (int8) q = int8_layer(act_q(*xq), n.inputs[1], w, has_bias ? const_tensor(n.inputs[2]) : torch::Tensor());
    // An int8 layer whose readers all quantize its result the same way writes u8 (requantized by post-ops).
    std::optional<QAct> out_q = int8 && !f.add ? target_quant(f.out) : std::nullopt;
    auto made = u8_or_float<dnnl::convolution_forward::primitive_desc>(
        out_q, f, q, int8, [&](const dnnl::primitive_attr& attr, dt out) {
          const memory::desc dst_any(memory::dims(os.begin(), os.end()), out, tag::any);
          return dnnl::convolution_forward::primitive_desc(
              dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                              src_any, w_any, b_desc, dst_any, strides, dil, pad_l, pad_r),
              attr, engine_);
        });
    if (!made) return false;
    const dnnl::convolution_forward::primitive_desc pd = *made;
    const std::string name = n.name;
    if (int8 && homes_[x].has_q) ++u8_inputs_;
    MemRef src = int8 ? quantized_ref(x, pd.src_desc(), name) : dnnl_ref_as(x, pd.src_desc(), name);
    MemRef wref = own_reordered(int8 ? q.weight : w, wplain, pd.weights_desc());
    std::vector<std::pair<int, MemRef>> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wref}};
    if (has_bias) args.push_back({DNNL_ARG_BIAS, own(int8 ? q.bias : const_tensor(n.inputs[2]), b_desc)});
    MemRef dst = f.add ? sum_destination(f, pd.dst_desc(), src, name) : new_buffer(pd.dst_desc());
    args.push_back({DNNL_ARG_DST, dst});
    add_dnnl_step(name, int8 ? (out_q ? "conv int8->u8" : "conv int8") : "conv", fused_names(f),
                  dnnl::convolution_forward(pd), std::move(args));
    if (out_q) define_q(f.out, dst, *out_q);
    else define(f.out, dst);
    ++lowered_;
    int8_ += int8;
    fused_ += static_cast<int>(f.eltwise.size()) + (f.add ? 1 : 0);
    return true;
  }

  bool lower_linear(const Node& n) {
    const int x = n.inputs[0];
    if (!is_const(n.inputs[1]) || !is_f32_tensor(x) || !(is_const(n.inputs[2]) || is_none(n.inputs[2]))) return false;
    const auto& xs = shape(x);
    const Node* xq = graph_.producer(x);
    const bool int8 = xq && deferred_quant_.count(x) && is_s8_weight_quant(n.inputs[1]);
    const torch::Tensor w = int8 ? weight(*param_of(fq_of_params(n.inputs[1])->inputs[0])) : const_tensor(n.inputs[1]);  // [N, K]
    const int64_t k = xs.back(), nout = w.size(0);
    const int64_t m = std::accumulate(xs.begin(), xs.end() - 1, int64_t{1}, std::multiplies<int64_t>());
    const memory::desc src_d({m, k}, int8 ? dt::u8 : act_, tag::ab);
    const memory::desc w_plain({k, nout}, int8 ? dt::s8 : dt::f32, tag::ba);  // W^T viewed in place
    const memory::desc w_any({k, nout}, int8 ? dt::s8 : act_, tag::any);
    const bool has_bias = !is_none(n.inputs[2]);
    const memory::desc b_desc = has_bias ? memory::desc({1, nout}, dt::f32, tag::ab) : memory::desc();
    Fusion f = plan_fusion(n, false);
    Int8Layer q;
    if (int8) q = int8_layer(act_q(*xq), n.inputs[1], w, has_bias ? const_tensor(n.inputs[2]) : torch::Tensor());
    std::optional<QAct> out_q = int8 ? target_quant(f.out) : std::nullopt;
    auto made = u8_or_float<dnnl::matmul::primitive_desc>(
        out_q, f, q, int8, [&](const dnnl::primitive_attr& attr, dt out) {
          return dnnl::matmul::primitive_desc(
              dnnl::matmul::desc(src_d, w_any, b_desc, memory::desc({m, nout}, out, tag::ab)), attr, engine_);
        });
    if (!made) return false;
    const dnnl::matmul::primitive_desc pd = *made;
    const memory::desc dst_d = pd.dst_desc();
    // The input must be plain and contiguous; a blocked 2-d layout is reordered, an N-d one is viewed as [M, K].
    MemRef src;
    if (int8) {
      if (homes_[x].has_q) ++u8_inputs_;
      src = quantized_ref(x, memory::desc(memory::dims(xs.begin(), xs.end()), dt::u8, plain_tag(xs.size())), n.name);
    } else {
      src = dnnl_ref(x);
      if (!(src.desc == act_desc(xs))) src = dnnl_ref_as(x, act_desc(xs), n.name);
    }
    src.desc = src_d;
    std::vector<std::pair<int, MemRef>> args = {
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, own_reordered(int8 ? q.weight : w, w_plain, pd.weights_desc())}};
    if (has_bias) args.push_back({DNNL_ARG_BIAS, own(int8 ? q.bias.reshape({1, nout}) : const_tensor(n.inputs[2]), b_desc)});
    MemRef dst = new_buffer(dst_d);
    args.push_back({DNNL_ARG_DST, dst});
    add_dnnl_step(n.name, int8 ? (out_q ? "linear int8->u8" : "linear int8") : "linear", fused_names(f),
                  dnnl::matmul(pd), std::move(args));
    const auto& out_shape = shape(f.out);
    dst.desc = memory::desc(memory::dims(out_shape.begin(), out_shape.end()), out_q ? dt::u8 : act_,
                            plain_tag(out_shape.size()));
    if (out_q) define_q(f.out, dst, *out_q);
    else define(f.out, dst);
    ++lowered_;
    int8_ += int8;
    fused_ += static_cast<int>(f.eltwise.size());
    return true;
  }

  bool lower_pool(const Node& n) {
    const int x = n.inputs[0];
    if (!is_f32_tensor(x)) return false;
    const auto& xs = shape(x);
    const auto& os = shape(n.outputs[0]);
    if (xs.size() != 4 && xs.size() != 3) return false;
    const size_t spatial = xs.size() - 2;
    memory::dims kernel, stride, pad_l, pad_r, dil;
    dnnl::algorithm alg;
    if (n.kind == ops::kAdaptiveAvgPool) {
      for (size_t k = 0; k < spatial; ++k) {
        if (xs[2 + k] % os[2 + k] != 0) return false;  // uneven bins: ATen
        stride.push_back(xs[2 + k] / os[2 + k]);
        kernel.push_back(xs[2 + k] / os[2 + k]);
        pad_l.push_back(0);
        pad_r.push_back(0);
        dil.push_back(0);
      }
      alg = dnnl::algorithm::pooling_avg_exclude_padding;
    } else {
      const bool max = n.kind == ops::kMaxPool;
      if (!max && n.b("ceil_mode")) return false;  // PyTorch's divisor for ceil-mode windows differs
      for (size_t k = 0; k < spatial; ++k) {
        kernel.push_back(n.ints("kernel_size")[k]);
        stride.push_back(n.ints("stride").empty() ? kernel[k] : n.ints("stride")[k]);
        pad_l.push_back(n.ints("padding")[k]);
        dil.push_back(max ? n.ints("dilation")[k] - 1 : 0);
        const int64_t span = (kernel[k] - 1) * (dil[k] + 1) + 1;
        pad_r.push_back((os[2 + k] - 1) * stride[k] + span - xs[2 + k] - pad_l[k]);
      }
      alg = max ? dnnl::algorithm::pooling_max
                : (n.b("count_include_pad") ? dnnl::algorithm::pooling_avg_include_padding
                                            : dnnl::algorithm::pooling_avg_exclude_padding);
    }
    // Max pooling of a value that exists as u8 runs on u8 (max commutes with the quantizer).
    const bool on_u8 = n.kind == ops::kMaxPool && homes_[x].has_q && homes_[x].where != Home::Where::Dnnl;
    MemRef src = on_u8 ? homes_[x].q_ref : dnnl_ref(x);
    const memory::desc dst_any(memory::dims(os.begin(), os.end()), on_u8 ? dt::u8 : act_, tag::any);
    dnnl::pooling_v2_forward::primitive_desc pd;
    try {
      dnnl::pooling_v2_forward::desc d(dnnl::prop_kind::forward_inference, alg, src.desc, dst_any, stride, kernel, dil,
                                       pad_l, pad_r);
      pd = dnnl::pooling_v2_forward::primitive_desc(d, engine_);
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference(pd)) return false;
    MemRef dst = new_buffer(pd.dst_desc());
    std::vector<std::pair<int, MemRef>> args = {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}};
    if (pd.workspace_desc().get_size() > 0) args.push_back({DNNL_ARG_WORKSPACE, new_temp(pd.workspace_desc())});
    add_dnnl_step(n.name, on_u8 ? n.kind + " u8" : n.kind, {}, dnnl::pooling_v2_forward(pd), std::move(args));
    if (on_u8) define_q(n.outputs[0], dst, homes_[x].q);
    else define(n.outputs[0], dst);
    ++lowered_;
    return true;
  }

  MemRef new_temp(const memory::desc& d) {
    MemRef r = new_buffer(d);
    temps_.push_back(r);
    return r;
  }

  bool lower_mean(const Node& n) {
    const int x = n.inputs[0];
    if (!is_f32_tensor(x)) return false;
    const auto& xs = shape(x);
    std::set<int64_t> dims;
    for (int64_t d : n.ints("dims")) dims.insert(d < 0 ? d + static_cast<int64_t>(xs.size()) : d);
    std::vector<int64_t> kept = xs;
    for (int64_t d : dims) kept[d] = 1;
    MemRef src = dnnl_ref(x);
    const memory::desc dst_d = act_desc(kept);
    dnnl::reduction::primitive_desc pd;
    try {
      dnnl::reduction::desc d(dnnl::algorithm::reduction_mean, src.desc, dst_d, 0.f, 0.f);
      pd = dnnl::reduction::primitive_desc(d, engine_);
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference(pd)) return false;
    MemRef dst = new_buffer(dst_d);
    add_dnnl_step(n.name, n.kind, {}, dnnl::reduction(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    dst.desc = act_desc(shape(n.outputs[0]));  // keepdim=false drops size-1 dims of a plain layout: same bytes
    define(n.outputs[0], dst);
    ++lowered_;
    return true;
  }

  // A standalone activation (one that could not be fused), in place when its input dies here.
  bool lower_eltwise(const Node& n) {
    const int x = n.inputs[0];
    if (!is_f32_tensor(x)) return false;
    const std::vector<EltOp> elt = eltwise_of(n);
    MemRef src = dnnl_ref(x);
    Fusion f = plan_fusion(n, false, std::vector<EltOp>(elt.begin() + 1, elt.end()));
    dnnl::post_ops po;
    for (size_t k = 1; k < elt.size(); ++k) po.append_eltwise(1.0f, elt[k].alg, elt[k].alpha, elt[k].beta);
    for (const Node* e : f.eltwise)
      for (const EltOp& op : eltwise_of(*e)) po.append_eltwise(1.0f, op.alg, op.alpha, op.beta);
    dnnl::primitive_attr attr;
    attr.set_post_ops(po);
    dnnl::eltwise_forward::primitive_desc pd;
    try {
      dnnl::eltwise_forward::desc d(dnnl::prop_kind::forward_inference, elt[0].alg, src.desc, elt[0].alpha, elt[0].beta);
      pd = dnnl::eltwise_forward::primitive_desc(d, attr, engine_);
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference(pd)) return false;
    MemRef dst = reuse_or_new(x, n, src);
    add_dnnl_step(n.name, n.kind, fused_names(f), dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    define(f.out, dst);
    ++lowered_;
    fused_ += static_cast<int>(f.eltwise.size());
    return true;
  }
  MemRef reuse_or_new(int x, const Node& n, const MemRef& src) {
    if (src.pool >= 0 && last_reader_[x] == graph_.find_id(n.name) && !graph_.is_graph_output(x) &&
        buffer_values(src.pool) == 1) {
      pool_.retain(src.pool);
      return src;
    }
    return new_buffer(src.desc);
  }

  bool lower_binary(const Node& n) {
    int a = n.inputs[0], b = n.inputs[1];
    if (!is_f32_tensor(a)) return false;
    const bool alpha_one = n.f("alpha", 1.0) == 1.0;
    if (!alpha_one) return false;
    const Node* bp = graph_.producer(b);
    if (!is_f32_tensor(b)) {
      // A constant scalar: y = alpha * x + beta.
      if (!bp || bp->kind != ops::kConstant) return false;
      const AttrValue& v = bp->attr("value");
      double s;
      if (auto* i = std::get_if<int64_t>(&v)) s = static_cast<double>(*i);
      else if (auto* d = std::get_if<double>(&v)) s = *d;
      else return false;
      float alpha = 1, beta = 0;
      if (n.kind == ops::kAdd) beta = static_cast<float>(s);
      else if (n.kind == ops::kSub) beta = static_cast<float>(-s);
      else if (n.kind == ops::kMul) alpha = static_cast<float>(s);
      else alpha = static_cast<float>(1.0 / s);
      MemRef src = dnnl_ref(a);
      dnnl::eltwise_forward::primitive_desc pd(
          dnnl::eltwise_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::eltwise_linear, src.desc,
                                      alpha, beta),
          engine_);
      if (is_reference(pd)) return false;
      MemRef dst = reuse_or_new(a, n, src);
      add_dnnl_step(n.name, n.kind, {}, dnnl::eltwise_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
      define(n.outputs[0], dst);
      ++lowered_;
      return true;
    }
    std::vector<int64_t> as = shape(a), bs = shape(b);
    const auto& os = shape(n.outputs[0]);
    // Numpy broadcasting aligns trailing dimensions: give the shorter operand leading ones.
    if (as.size() > 4 || bs.size() > 4) return false;
    while (as.size() < os.size()) as.insert(as.begin(), 1);
    while (bs.size() < os.size()) bs.insert(bs.begin(), 1);
    const bool commutative = n.kind == ops::kAdd || n.kind == ops::kMul;
    if (as != os) {
      if (!commutative || bs != os) return false;
      std::swap(a, b);  // oneDNN broadcasts the second source only
      std::swap(as, bs);
    }
    dnnl::algorithm alg = n.kind == ops::kAdd   ? dnnl::algorithm::binary_add
                          : n.kind == ops::kSub ? dnnl::algorithm::binary_sub
                          : n.kind == ops::kMul ? dnnl::algorithm::binary_mul
                                                : dnnl::algorithm::binary_div;
    MemRef src0 = dnnl_ref(a);
    if (src0.desc.dims().size() != os.size()) return false;
    MemRef src1;
    if (bs == os) {
      src1 = dnnl_ref_as(b, src0.desc, n.name);
    } else {
      src1 = dnnl_ref(b);
      // A broadcast operand is read as it lies when oneDNN takes its layout, else as plain memory.
      if (src1.desc.dims().size() != os.size()) {
        if (!(src1.desc == act_desc(shape(b)))) src1 = dnnl_ref_as(b, act_desc(shape(b)), n.name);
        src1.desc = act_desc(bs);
      }
    }
    Fusion f = plan_fusion(n, false);
    dnnl::primitive_attr attr;
    attr.set_post_ops(post_ops_of(f));
    dnnl::binary::primitive_desc pd;
    try {
      pd = dnnl::binary::primitive_desc(dnnl::binary::desc(alg, src0.desc, src1.desc, src0.desc), attr, engine_);
    } catch (const dnnl::error&) {
      if (bs == os || src1.desc == act_desc(bs)) return false;
      src1 = dnnl_ref_as(b, act_desc(shape(b)), n.name);
      src1.desc = act_desc(bs);
      try {
        pd = dnnl::binary::primitive_desc(dnnl::binary::desc(alg, src0.desc, src1.desc, src0.desc), attr, engine_);
      } catch (const dnnl::error&) {
        return false;
      }
    }
    if (is_reference(pd)) return false;
    MemRef dst = reuse_or_new(a, n, src0);
    add_dnnl_step(n.name, n.kind, fused_names(f), dnnl::binary(pd),
                  {{DNNL_ARG_SRC_0, src0}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, dst}});
    define(f.out, dst);
    ++lowered_;
    fused_ += static_cast<int>(f.eltwise.size());
    return true;
  }

  bool lower_cat(const Node& n) {
    if (n.inputs.size() == 1 && is_f32_tensor(n.inputs[0])) {
      // cat of one tensor is that tensor: share its buffer (two live values, so neither is overwritten in place).
      MemRef r = dnnl_ref(n.inputs[0]);
      if (r.pool >= 0) pool_.retain(r.pool);
      define(n.outputs[0], r);
      ++lowered_;
      return true;
    }
    if (n.inputs.size() < 2) return false;
    const auto& os = shape(n.outputs[0]);
    int64_t dim = n.i("dim");
    if (dim < 0) dim += static_cast<int64_t>(os.size());
    std::vector<memory::desc> descs;
    std::vector<std::pair<int, MemRef>> args;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      if (!is_f32_tensor(n.inputs[k])) return false;
      MemRef r = dnnl_ref(n.inputs[k]);
      descs.push_back(r.desc);
      args.push_back({DNNL_ARG_MULTIPLE_SRC + static_cast<int>(k), r});
    }
    dnnl::concat::primitive_desc pd;
    try {
      pd = dnnl::concat::primitive_desc(memory::desc(memory::dims(os.begin(), os.end()), act_, tag::any),
                                        static_cast<int>(dim), descs, engine_);
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference(pd)) return false;
    MemRef dst = new_buffer(pd.dst_desc());
    args.push_back({DNNL_ARG_DST, dst});
    add_dnnl_step(n.name, n.kind, {}, dnnl::concat(pd), std::move(args));
    define(n.outputs[0], dst);
    ++lowered_;
    return true;
  }

  bool lower_softmax(const Node& n) {
    const int x = n.inputs[0];
    if (!is_f32_tensor(x)) return false;
    int64_t dim = n.i("dim");
    if (dim < 0) dim += static_cast<int64_t>(shape(x).size());
    MemRef src = dnnl_ref(x);
    dnnl::softmax_v2_forward::primitive_desc pd;
    try {
      const auto alg = n.kind == ops::kSoftmax ? dnnl::algorithm::softmax_accurate : dnnl::algorithm::softmax_log;
      pd = dnnl::softmax_v2_forward::primitive_desc(
          dnnl::softmax_v2_forward::desc(dnnl::prop_kind::forward_inference, alg, src.desc, src.desc,
                                         static_cast<int>(dim)),
          engine_);
    } catch (const dnnl::error&) {
      return false;
    }
    if (is_reference(pd)) return false;
    MemRef dst = new_buffer(src.desc);
    add_dnnl_step(n.name, n.kind, {}, dnnl::softmax_v2_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
    define(n.outputs[0], dst);
    ++lowered_;
    return true;
  }

  bool lower_norm(const Node& n) {
    const int x = n.inputs[0];
    if (!is_f32_tensor(x)) return false;
    const auto& xs = shape(x);
    const bool bn = n.kind == ops::kBatchNorm;
    if (!bn && n.ints("normalized_shape").size() != 1) return false;
    const Node* wp = param_of(n.inputs[1]);
    const Node* bp = param_of(n.inputs[2]);
    if (!wp || !bp) return false;
    const int64_t c = bn ? xs[1] : xs.back();
    const memory::desc src_desc = bn ? dnnl_ref(x).desc : act_desc(xs);
    const memory::desc c_desc({c}, dt::f32, tag::a);
    const auto eps = static_cast<float>(n.f("eps"));
    const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const Node* mp = bn ? param_of(n.inputs[3]) : nullptr;
    const Node* vp = bn ? param_of(n.inputs[4]) : nullptr;
    if (bn && (!mp || !vp)) return false;
    dnnl::primitive prim;
    try {
      if (bn) {
        dnnl::batch_normalization_forward::primitive_desc pd(
            dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_inference, src_desc, eps,
                                                    flags | dnnl::normalization_flags::use_global_stats),
            engine_);
        if (is_reference(pd)) return false;
        prim = dnnl::batch_normalization_forward(pd);
      } else {
        dnnl::layer_normalization_forward::primitive_desc pd(
            dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, src_desc, eps, flags), engine_);
        if (is_reference(pd)) return false;
        prim = dnnl::layer_normalization_forward(pd);
      }
    } catch (const dnnl::error&) {
      return false;
    }
    MemRef src = bn ? dnnl_ref(x) : dnnl_ref_as(x, src_desc, n.name);
    std::vector<std::pair<int, MemRef>> args = {{DNNL_ARG_SRC, src},
                                                {DNNL_ARG_SCALE, own(weight(*wp), c_desc)},
                                                {DNNL_ARG_SHIFT, own(weight(*bp), c_desc)}};
    if (bn) {
      args.push_back({DNNL_ARG_MEAN, own(weight(*mp), c_desc)});
      args.push_back({DNNL_ARG_VARIANCE, own(weight(*vp), c_desc)});
    }
    MemRef dst = new_buffer(src.desc);
    args.push_back({DNNL_ARG_DST, dst});
    add_dnnl_step(n.name, n.kind, {}, prim, std::move(args));
    define(n.outputs[0], dst);
    ++lowered_;
    return true;
  }

  void lower_aten(const Node& n, int id) {
    for (int in : n.inputs) ensure_aten(in);
    Step s;
    s.type = Step::Type::Aten;
    s.node = n.name;
    s.kind = n.kind == ops::kOpaque ? n.s("schema") : n.kind;
    s.instr = make_instr(graph_, id, [this](const std::string& name) { return module_->tensor(name); });
    const std::string kind = s.kind;
    steps_.push_back(std::move(s));
    for (int out : n.outputs) homes_[out].where = Home::Where::Aten;
    if (n.kind != ops::kParam && n.kind != ops::kConstant && n.kind != ops::kList && n.kind != ops::kTuple &&
        n.kind != ops::kListUnpack && n.kind != ops::kTupleUnpack) {
      ++fallbacks_;
      fallback_kinds_.insert(kind);
    }
  }

  void define(int v, const MemRef& ref) {
    set_home_dnnl(v, ref);
    if (ref.pool >= 0) alive_in_pool_.insert({v, ref.pool});
  }
  // v's u8 form (its only form until a float reader asks for it).
  void define_q(int v, const MemRef& ref, const QAct& q) {
    Home& h = homes_[v];
    h.has_q = true;
    h.q_ref = ref;
    h.q = q;
    if (ref.pool >= 0) alive_in_pool_.insert({v, ref.pool});
  }

  // Values whose last reader has been emitted release their buffers (and ATen slots).
  void release_dead(int position) {
    for (auto it = alive_in_pool_.begin(); it != alive_in_pool_.end();) {
      const int v = it->first;
      if (!graph_.is_graph_output(v) && last_reader_pos_[v] <= position) {
        pool_.release(it->second);
        it = alive_in_pool_.erase(it);
      } else {
        ++it;
      }
    }
    for (const MemRef& t : temps_) pool_.release(t.pool);
    temps_.clear();
  }

  void lower() {
    const auto& order = graph_.order();
    homes_.assign(graph_.num_values(), Home{});
    last_reader_.assign(graph_.num_values(), -1);
    last_reader_pos_.assign(graph_.num_values(), -1);
    for (size_t p = 0; p < order.size(); ++p)
      for (int in : graph_.node(order[p]).inputs) {
        last_reader_[in] = order[p];
        last_reader_pos_[in] = static_cast<int>(p);
      }
    for (int in : graph_.inputs()) homes_[in].where = Home::Where::Aten;
    for (size_t p = 0; p < order.size(); ++p) {
      const int id = order[p];
      if (used_.count(id)) {
        release_dead(static_cast<int>(p));
        continue;
      }
      const Node& n = graph_.node(id);
      if (n.kind == ops::kParam || n.kind == ops::kConstant || (n.kind == ops::kFakeQuant && fq_of_params(n.outputs[0]))) {
        // Weights reach lowered nodes at compile time; the node runs only if a fallback reads its value.
        homes_[n.outputs[0]].where = Home::Where::Aten;
        pending_[n.outputs[0]] = id;
        continue;
      }
      reading_node_ = &n;
      if (is_u8_activation_quant(n)) {
        const int x = n.inputs[0];
        if (homes_[x].has_q && homes_[x].q == act_q(n)) {
          // Its producer wrote u8 with this quantizer already: the output is that buffer.
          if (homes_[x].q_ref.pool >= 0) pool_.retain(homes_[x].q_ref.pool);
          define_q(n.outputs[0], homes_[x].q_ref, homes_[x].q);
          deferred_quant_.insert(n.outputs[0]);
          release_dead(static_cast<int>(p));
          continue;
        }
        // Deferred: int8 layers reading it quantize its input themselves; anything else gets the fake-quantized
        // f32 value computed on demand, so the input stays alive as long as this node's readers.
        homes_[n.outputs[0]].where = Home::Where::Aten;
        pending_[n.outputs[0]] = id;
        deferred_quant_.insert(n.outputs[0]);
        last_reader_pos_[x] = std::max(last_reader_pos_[x], last_reader_pos_[n.outputs[0]]);
        release_dead(static_cast<int>(p));
        continue;
      }
      bool done = false;
      try {
        if (n.kind == ops::kConv) done = lower_conv(n);
        else if (n.kind == ops::kLinear) done = lower_linear(n);
        else if (n.kind == ops::kMaxPool || n.kind == ops::kAvgPool || n.kind == ops::kAdaptiveAvgPool)
          done = lower_pool(n);
        else if (n.kind == ops::kMean) done = lower_mean(n);
        else if (is_eltwise(n)) done = lower_eltwise(n);
        else if (ops::is_binary(n.kind)) done = lower_binary(n);
        else if (n.kind == ops::kCat) done = lower_cat(n);
        else if (n.kind == ops::kSoftmax || n.kind == ops::kLogSoftmax) done = lower_softmax(n);
        else if (n.kind == ops::kBatchNorm || n.kind == ops::kLayerNorm) done = lower_norm(n);
      } catch (const dnnl::error& e) {
        TAILOR_FAIL("backend onednn-cpu: lowering node '", n.name, "' (", n.kind, ") failed: ", e.what());
      }
      if (!done) {
        if (n.kind == ops::kFakeQuant)
          fake_quant_on_aten_.push_back(n.name + " (" + why_not_u8_quant(n) + ")");
        lower_aten(n, id);
      }
      release_dead(static_cast<int>(p));
    }
    reading_node_ = nullptr;
    for (int out : graph_.outputs()) ensure_aten(out);
    // ATen slots are freed after their last reader step, as GraphModule frees them.
    std::map<int, size_t> last_step;
    for (size_t s = 0; s < steps_.size(); ++s) {
      const Step& st = steps_[s];
      if (st.type == Step::Type::Aten)
        for (int in : st.instr.in) last_step[in] = s;
      for (const auto& [arg, ref] : st.dnnl.args)
        if (ref.slot >= 0) last_step[ref.slot] = s;
    }
    for (const auto& [v, s] : last_step)
      if (!graph_.is_graph_output(v)) steps_[s].release.push_back(v);
    pool_.allocate();
    for (Step& st : steps_) finalize(st.dnnl);

    std::ostringstream os;
    os << "onednn-cpu " << (act_ == dt::bf16 ? "bf16" : "fp32") << " (" << isa_ << ", oneDNN " << dnnl::version()->major << "." << dnnl::version()->minor << "."
       << dnnl::version()->patch << "): " << lowered_ << " nodes lowered, " << fused_ << " fused as post-ops, "
       << reorders_ << " reorders, " << fallbacks_ << " on ATen";
    if (!fallback_kinds_.empty()) {
      os << " (";
      bool first = true;
      for (const auto& k : fallback_kinds_) {
        os << (first ? "" : ", ") << k;
        first = false;
      }
      os << ")";
    }
    if (int8_) {
      os << ", " << int8_ << " int8 layers (" << u8_inputs_ << " reading u8 written by int8 producers, " << quantized_
         << " quantizing, " << dequantized_ << " dequantizing steps)";
      if (requantized_)
        os << ", " << requantized_ << " activation quantizers requantized from 8 to 7 bits (" << isa_
           << " has no VNNI: u8 above 127 would saturate)";
    }
    if (!fake_quant_on_aten_.empty()) {
      os << "; fake_quant on ATen: ";
      for (size_t k = 0; k < fake_quant_on_aten_.size() && k < 6; ++k) os << (k ? "; " : "") << fake_quant_on_aten_[k];
      if (fake_quant_on_aten_.size() > 6) os << "; and " << fake_quant_on_aten_.size() - 6 << " more";
    }
    os << "; activation pool " << pool_.total_bytes() / 1024 << " KiB";
    summary_ = os.str();
  }

  void finalize(DnnlStep& d) {
    if (!d.prim) return;
    for (const auto& [arg, ref] : d.args) {
      if (ref.slot >= 0) {
        d.mems[arg] = memory(ref.desc, engine_, DNNL_MEMORY_NONE);
        d.slot_args.push_back({arg, ref.slot});
      } else if (ref.pool >= 0) {
        d.mems[arg] = memory(ref.desc, engine_, pool_.ptr(ref.pool));
      } else {
        d.mems[arg] = memory(ref.desc, engine_, ref.owned->data_ptr());
      }
    }
  }

  // --- run -----------------------------------------------------------------------------------------------------
  c10::IValue execute(const std::vector<c10::IValue>& inputs, std::vector<StepTime>* times) {
    c10::InferenceMode guard;
    TAILOR_CHECK(inputs.size() == graph_.inputs().size(), "onednn-cpu: the graph takes ", graph_.inputs().size(),
                 " inputs, got ", inputs.size());
    std::vector<c10::IValue> slots(graph_.num_values());
    for (size_t i = 0; i < inputs.size(); ++i) {
      const int v = graph_.inputs()[i];
      if (inputs[i].isTensor()) {
        const auto& t = inputs[i].toTensor();
        TAILOR_CHECK(t.sizes().vec() == shape(v) || shape(v).empty(), "onednn-cpu: input ", i, " has shape ",
                     shape_to_string(t.sizes().vec()), " but the executable was compiled for ", shape_to_string(shape(v)));
        slots[v] = t.to(torch::kCPU).contiguous();
      } else {
        slots[v] = inputs[i];
      }
    }
    torch::jit::Stack stack;
    int64_t live_peak = 0;
    for (Step& st : steps_) {
      const auto start = times ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
      switch (st.type) {
        case Step::Type::Aten: execute_instr(st.instr, slots, false, stack); break;
        case Step::Type::FromAten: {
          auto& iv = slots[st.value];
          TAILOR_CHECK(iv.isTensor(), "onednn-cpu: value ", st.node, " is not a tensor");
          iv = iv.toTensor().contiguous().to(torch::kFloat);
          break;
        }
        case Step::Type::ToAten:
          slots[st.value] = torch::empty(st.shape, torch::kFloat);
          run_dnnl(st.dnnl, slots);
          break;
        case Step::Type::Dnnl: run_dnnl(st.dnnl, slots); break;
      }
      if (times) {
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        if (st.type == Step::Type::Aten && (st.kind == ops::kParam || st.kind == ops::kConstant)) {
          // structure, not work
        } else {
          times->push_back({st.node, st.kind, st.fused, s});
        }
        int64_t live = 0;
        for (const auto& iv : slots)
          if (iv.isTensor() && iv.toTensor().defined()) live += iv.toTensor().nbytes();
        live_peak = std::max(live_peak, live);
      }
      for (int v : st.release) slots[v] = c10::IValue();
    }
    if (times) fallback_peak_ = live_peak;
    if (graph_.outputs().size() == 1) return slots[graph_.outputs()[0]];
    std::vector<c10::IValue> outs;
    for (int v : graph_.outputs()) outs.push_back(slots[v]);
    return c10::ivalue::Tuple::create(std::move(outs));
  }

  void run_dnnl(DnnlStep& d, std::vector<c10::IValue>& slots) {
    for (const auto& [arg, slot] : d.slot_args) d.mems[arg].set_data_handle(slots[slot].toTensor().data_ptr());
    d.prim.execute(stream_, d.mems);
  }

  std::shared_ptr<GraphModuleImpl> module_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  const Graph& graph_;
  std::vector<Step> steps_;
  std::vector<Home> homes_;
  std::vector<int> last_reader_, last_reader_pos_;
  std::multimap<int, int> alive_in_pool_;  // value -> pool buffers (its float and u8 forms)
  std::vector<MemRef> temps_;
  std::map<int, int> pending_;  // value -> param/constant node emitted only when a fallback reads it
  std::set<int> used_;  // nodes fused into an earlier step
  Pool pool_;
  dt act_ = dt::f32;
  std::map<int, torch::Tensor> folded_;  // fake-quantized weights, computed once
  std::set<int> deferred_quant_;          // activation fake_quant outputs that int8 layers consume directly
  int int8_ = 0, u8_inputs_ = 0, quantized_ = 0, dequantized_ = 0, requantized_ = 0;
  std::string isa_;
  bool int8_dot_ = false;                  // the ISA multiplies u8 x s8 without 16-bit saturation
  std::map<int, QAct> qact_;               // fake_quant node -> the quantizer its int8 readers apply
  const Node* reading_node_ = nullptr;     // the node being lowered
  std::vector<std::string> fake_quant_on_aten_;  // activation quantizers that ran as fake_quant, and why
  int64_t weight_bytes_ = 0, fallback_peak_ = 0;
  int lowered_ = 0, fused_ = 0, reorders_ = 0, fallbacks_ = 0;
  std::set<std::string> fallback_kinds_;
  std::string summary_;
};

class OnednnBackend final : public Backend {
 public:
  std::string name() const override { return "onednn-cpu"; }
  std::string unavailable_reason() const override { return {}; }
  std::unique_ptr<Executable> compile(const GraphModuleImpl& module, const CompileOptions& options) const override {
    if (!options.isa.empty()) set_isa_cap(options.isa);
    if (options.dtype == "bfloat16") {
      const std::string isa = onednn_isa();
      TAILOR_CHECK(isa.rfind("avx512_core", 0) == 0, "backend onednn-cpu: bfloat16 needs an avx512_core CPU or newer; "
                   "this CPU's oneDNN ISA is ", isa);
    } else {
      TAILOR_CHECK(options.dtype == "float32", "backend onednn-cpu: dtype '", options.dtype,
                   "' is not one of float32, bfloat16 (int8: quantize the graph with tailor quantize and compile it "
                   "as float32; its int8 layers then run as u8 x s8 primitives)");
    }
    if (options.threads > 0) set_threads(options.threads);
    auto prepared = prepare_for_inference(module, options);
    return std::make_unique<OnednnExecutable>(prepared, options);
  }
};

}  // namespace

std::unique_ptr<Backend> make_onednn_backend() { return std::make_unique<OnednnBackend>(); }

#else  // !TAILOR_WITH_ONEDNN

namespace {
class UnavailableOnednn final : public Backend {
 public:
  std::string name() const override { return "onednn-cpu"; }
  std::string unavailable_reason() const override {
    return "tailor was built without oneDNN (configure with libdnnl-dev installed, TAILOR_WITH_ONEDNN=ON)";
  }
  std::unique_ptr<Executable> compile(const GraphModuleImpl&, const CompileOptions&) const override {
    TAILOR_FAIL("backend onednn-cpu is not available: ", unavailable_reason());
  }
};
}  // namespace

std::unique_ptr<Backend> make_onednn_backend() { return std::make_unique<UnavailableOnednn>(); }

#endif

}  // namespace tailor::detail
