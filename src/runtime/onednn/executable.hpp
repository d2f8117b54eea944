// The onednn-cpu executable (private to src/runtime/onednn): the lowering of one GraphModule to oneDNN
// primitives. Its member functions live by concern: memory.cpp (values, buffers, the pool), fusion.cpp
// (post-op chains), int8.cpp (quantized data flow), conv_linear.cpp, elementwise.cpp (pooling, eltwise,
// binary, concat, softmax, norms, ATen fallback) and executable.cpp (the lowering loop, execution, the backend).
// The backend lowers the IR to oneDNN primitives, specialized for fixed input shapes.
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
#pragma once

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

#include <oneapi/dnnl/dnnl.hpp>

#include "../../ir/program.hpp"
#include "../backends.hpp"
#include "tailor/ir/op_table.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/runtime/isa.hpp"

namespace tailor::detail::onednn {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

inline tag plain_tag(size_t rank) {
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

inline memory::desc plain_desc(const std::vector<int64_t>& shape) {
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
  // What the step runs. The primitive (oneDNN generates its code here) is made from it by finalize(), and not
  // at all when the executable is compiled only to list its kernels.
  dnnl::primitive_desc_base pd;
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
inline memory::desc with_type(const memory::desc& d, dt type) {
  dnnl_memory_desc_t c = d.data;
  c.data_type = memory::convert_to_c(type);
  return memory::desc(c);
}


// oneDNN's reference implementations are correct but far slower than ATen's kernels; a node whose only oneDNN
// implementation is a reference one runs on ATen instead.
inline bool is_reference(const dnnl::primitive_desc_base& pd) {
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
  std::vector<Kernel> kernels() const override;

 private:
  Kernel kernel_of(const Step& step) const;
  // --- compile -------------------------------------------------------------------------------------------------
  const std::vector<int64_t>& shape(int v) const { return graph_.value(v).shape; }
  // Activations inside oneDNN are act_ (f32, or bf16 when compiled for bfloat16); ATen sees f32 at the boundary.
  memory::desc act_desc(const std::vector<int64_t>& s) const {
    return memory::desc(memory::dims(s.begin(), s.end()), act_, plain_tag(s.size()));
  }
  bool is_f32_tensor(int v) const;
  const Node* param_of(int v) const;
  bool is_none(int v) const;
  // The only reader of v, when v has exactly one and is not a graph output.
  const Node* sole_user(int v) const;
  torch::Tensor weight(const Node& param) const { return module_->tensor(param.s("name")).detach().contiguous(); }
  // A tensor known at compile time: a parameter, or a fake_quant of parameters (quantized weights).
  const Node* fq_of_params(int v) const;
  bool is_const(int v) const { return param_of(v) || fq_of_params(v); }
  torch::Tensor const_tensor(int v);
  // An activation fake_quant that int8 primitives can take: per tensor, unsigned (within 0..255), on an f32
  // tensor, with constant parameters.
  bool is_u8_activation_quant(const Node& n) const;
  // Why an activation fake_quant is not one int8 primitives can take (for the summary).
  std::string why_not_u8_quant(const Node& n) const;
  // The quantizer an int8 primitive applies for fake_quant node n. Without VNNI, u8 x s8 pairs above 7 bits
  // saturate: an 8-bit quantizer is requantized to 7 bits over the same range.
  QAct act_q(const Node& n);
  // The quantizer every reader of v applies, directly or after max pooling (which commutes with a monotonic
  // quantizer exactly): then v's producer may write u8.
  std::optional<QAct> target_quant(int v);
  // A weight fake_quant that int8 primitives can take: symmetric int8 of a parameter, per tensor or per
  // output channel.
  bool is_s8_weight_quant(int v) const;

  MemRef own(const torch::Tensor& t, const memory::desc& desc);
  // Reorders a plain float tensor into the layout a primitive chose, once.
  MemRef own_reordered(const torch::Tensor& plain, const memory::desc& plain_d, const memory::desc& want);

  MemRef new_buffer(const memory::desc& desc);

  void set_home_dnnl(int v, const MemRef& ref);

  // The value in oneDNN memory, in its current layout (imported from ATen when it lives there).
  void emit_pending(int v);

  MemRef dnnl_ref(int v);
  // The value in a given layout; adds a reorder into a new buffer when its layout differs.
  MemRef dnnl_ref_as(int v, const memory::desc& want, const std::string& node);
  // The value as an ATen tensor in its slot (a plain copy made when it lives in a oneDNN buffer).
  void ensure_aten(int v);

  void add_dnnl_step(const std::string& node, const std::string& kind, std::vector<std::string> fused,
                     const dnnl::primitive_desc_base& pd, std::vector<std::pair<int, MemRef>> args);

  struct EltOp {
    dnnl::algorithm alg;
    float alpha = 0, beta = 0;
  };
  // An activation as oneDNN eltwise operations (hardsigmoid takes two); empty when it is not one.
  std::vector<EltOp> eltwise_of(const Node& n) const;
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
  Fusion plan_fusion(const Node& n, bool allow_sum, std::vector<EltOp> chain = {}) const;
  // oneDNN 2.6's jit kernels compute wrong results when one post-op chain holds the same eltwise algorithm
  // twice with different parameters (two clips, two linears: seen on avx2 and sse41 int8 convolutions).
  static bool repeats_algorithm(const std::vector<EltOp>& chain);
  dnnl::post_ops post_ops_of(const Fusion& f) const;
  std::vector<std::string> fused_names(const Fusion& f);
  // The destination of a fused primitive: the other addend's buffer when it dies here (in place), else a
  // new buffer that a reorder fills with the addend first.
  MemRef sum_destination(const Fusion& f, const memory::desc& dst_desc, const MemRef& src, const std::string& node);
  int buffer_values(int pool) const;

  struct Int8Layer {
    torch::Tensor weight;  // s8, the layer's own layout
    torch::Tensor bias;    // f32, divided by the output scales (oneDNN adds it before scaling)
    std::vector<float> output_scales;
    bool per_channel = false;
    int32_t src_zero_point = 0;
  };
  Int8Layer int8_layer(const QAct& xq, int weight_value, const torch::Tensor& w, const torch::Tensor& bias);
  // Post-ops, output scales and zero points of a conv/linear primitive: float post-ops for a float layer, the
  // int8 scales for an int8 one, and the requantization when it writes u8 of `out_q`. False when that cannot be.
  bool set_int8_attr(dnnl::primitive_attr& attr, const Fusion& f, const Int8Layer& q, bool int8, const QAct* out_q) const;
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
  MemRef quantized_ref(int vq, const memory::desc& want, const std::string& node);
  // How a fused layer writes u8 of quantizer q: its post-ops, a factor for its output scales, and the zero point
  // as the destination's (oneDNN adds it after the post-ops, then rounds and saturates). A chain of ReLUs and
  // clips commutes with the positive scale 1 / s: it becomes one clip in the quantized domain, merged with the
  // quantizer's [qmin, qmax]. Other chains stay in float and their last op scales by 1 / s. nullopt when
  // oneDNN cannot express it (see repeats_algorithm).
  struct Requant {
    dnnl::post_ops po;
    float output_factor = 1;
  };
  std::optional<Requant> requantizing(const Fusion& f, const QAct& q) const;


  bool lower_conv(const Node& n);

  bool lower_linear(const Node& n);

  bool lower_pool(const Node& n);

  MemRef new_temp(const memory::desc& d);

  bool lower_mean(const Node& n);

  // A standalone activation (one that could not be fused), in place when its input dies here.
  bool lower_eltwise(const Node& n);
  MemRef reuse_or_new(int x, const Node& n, const MemRef& src);

  bool lower_binary(const Node& n);

  bool lower_cat(const Node& n);

  bool lower_softmax(const Node& n);

  bool lower_norm(const Node& n);

  void lower_aten(const Node& n, int id);

  void define(int v, const MemRef& ref);
  // v's u8 form (its only form until a float reader asks for it).
  void define_q(int v, const MemRef& ref, const QAct& q);

  // Values whose last reader has been emitted release their buffers (and ATen slots).
  void release_dead(int position);

  void lower();

  void finalize(DnnlStep& d);

  // --- run -----------------------------------------------------------------------------------------------------
  c10::IValue execute(const std::vector<c10::IValue>& inputs, std::vector<StepTime>* times);

  void run_dnnl(DnnlStep& d, std::vector<c10::IValue>& slots);

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

}  // namespace tailor::detail::onednn
