// The onednn-cpu lowering loop, execution, and the backend that compiles GraphModules with it.
#include "tailor/runtime/backend.hpp"

#if TAILOR_WITH_ONEDNN
#include "executable.hpp"
#endif
#include "../backends.hpp"
#include "tailor/runtime/isa.hpp"

namespace tailor::detail {

#if TAILOR_WITH_ONEDNN

namespace onednn {

auto OnednnExecutable::lower() -> void {
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
      using L = ops::OnednnLowering;
      switch (ops::op_def(n.kind).onednn) {
        case L::Conv: done = lower_conv(n); break;
        case L::Linear: done = lower_linear(n); break;
        case L::Pool: done = lower_pool(n); break;
        case L::Mean: done = lower_mean(n); break;
        case L::Eltwise: done = is_eltwise(n) && lower_eltwise(n); break;
        case L::Binary: done = lower_binary(n); break;
        case L::Concat: done = lower_cat(n); break;
        case L::Softmax: done = lower_softmax(n); break;
        case L::Norm: done = lower_norm(n); break;
        case L::CompileTime:
        case L::Aten: break;
      }
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
  if (!options_.kernels_only) {
    pool_.allocate();
    for (Step& st : steps_) {
      try {
        finalize(st.dnnl);
      } catch (const dnnl::error& e) {
        TAILOR_FAIL("backend onednn-cpu: creating the kernel of node '", st.node, "' (", st.kind, ") failed: ", e.what());
      }
    }
  }

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

auto OnednnExecutable::finalize(DnnlStep& d) -> void {
  if (!d.pd) return;
  d.prim = dnnl::primitive(d.pd.get());
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

auto OnednnExecutable::execute(const std::vector<c10::IValue>& inputs, std::vector<StepTime>* times) -> c10::IValue {
  c10::InferenceMode guard;
  TAILOR_CHECK(!options_.kernels_only, "onednn-cpu: this executable was compiled only to list its kernels "
               "(CompileOptions::kernels_only) and cannot run; compile it again without that option");
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

namespace {
const char* type_name(dt t) {
  switch (t) {
    case dt::f32: return "f32";
    case dt::bf16: return "bf16";
    case dt::f16: return "f16";
    case dt::u8: return "u8";
    case dt::s8: return "s8";
    case dt::s32: return "s32";
    default: return "other";
  }
}
// Inner blocks of a layout ("8b": blocks of 8 along dimension b, channels); "plain" when there are none.
std::string layout_name(const memory::desc& d) {
  if (d.data.format_kind != dnnl_blocked) return "any";
  const auto& b = d.data.format_desc.blocking;
  if (b.inner_nblks == 0) return "plain";
  std::string out;
  for (int i = 0; i < b.inner_nblks; ++i) out += std::to_string(b.inner_blks[i]) + static_cast<char>('a' + b.inner_idxs[i]);
  return out;
}
const MemRef* arg_ref(const DnnlStep& d, std::initializer_list<int> args) {
  for (int want : args)
    for (const auto& [arg, ref] : d.args)
      if (arg == want) return &ref;
  return nullptr;
}
std::vector<int64_t> dims_of(const memory::desc& d) {
  const auto dims = d.dims();
  return {dims.begin(), dims.end()};
}
}  // namespace

auto OnednnExecutable::kernel_of(const Step& step) const -> Kernel {
  const int id = graph_.find_id(step.node);
  static const std::set<std::string> conversions = {"reorder", "quantize", "dequantize", "clip", "to_aten", "from_aten"};
  const bool of_node = id >= 0 && !conversions.count(step.kind);
  Kernel k = of_node ? graph_kernel(graph_, graph_.node(id)) : Kernel{};
  k.node = step.node;
  k.kind = step.kind;
  k.fused = step.fused;
  for (const auto& name : step.fused) {
    const int f = graph_.find_id(name);
    k.post_ops += (k.post_ops.empty() ? "" : "+") + (f >= 0 ? graph_.node(f).kind : name);
  }
  if (step.type == Step::Type::Aten) return k;  // graph_kernel's op "aten", impl "aten"
  if (step.type == Step::Type::FromAten) {
    k.op = "convert";
    k.impl = "aten";
    k.dtype = "f32";
    k.layout = "plain";
    const auto& shape = graph_.value(step.value).shape;
    k.inputs = {shape};
    k.output = shape;
    k.bytes = 8.0 * static_cast<double>(ops::numel(shape));
    return k;
  }
  const DnnlStep& d = step.dnnl;
  const MemRef* src = arg_ref(d, {DNNL_ARG_SRC, DNNL_ARG_FROM, DNNL_ARG_MULTIPLE_SRC, DNNL_ARG_SRC_0});
  const MemRef* wei = arg_ref(d, {DNNL_ARG_WEIGHTS});
  const MemRef* dst = arg_ref(d, {DNNL_ARG_DST, DNNL_ARG_TO});
  if (of_node) {
    switch (ops::op_def(graph_.node(id).kind).onednn) {
      case ops::OnednnLowering::Conv: k.op = "conv"; break;
      case ops::OnednnLowering::Linear: k.op = "linear"; break;
      case ops::OnednnLowering::Pool: k.op = "pool"; break;
      case ops::OnednnLowering::Mean: k.op = "mean"; break;
      case ops::OnednnLowering::Eltwise: k.op = "eltwise"; break;
      case ops::OnednnLowering::Binary: k.op = "binary"; break;
      case ops::OnednnLowering::Concat: k.op = "concat"; break;
      case ops::OnednnLowering::Softmax: k.op = "softmax"; break;
      case ops::OnednnLowering::Norm: k.op = "norm"; break;
      default: k.op = graph_.node(id).kind; break;
    }
    // Eltwise and pooling kernels depend on the algorithm, not only the shapes.
    if (k.op == "eltwise" || k.op == "pool" || k.op == "binary" || k.op == "mean") k.op += ":" + graph_.node(id).kind;
  } else {
    k.op = step.kind == "to_aten" ? "reorder" : step.kind == "dequantize" ? "quantize" : step.kind == "clip" ? "eltwise:clip" : step.kind;
    if (src) k.inputs = {dims_of(src->desc)};
    if (dst) k.output = dims_of(dst->desc);
  }
  const_dnnl_primitive_desc_t pd = d.pd ? d.pd.get() : nullptr;
  const char* impl = nullptr;
  if (pd && dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl)
    k.impl = impl;
  // lower_conv may have cropped a convolution kernel to the taps that meet its input: report what runs.
  const_dnnl_op_desc_t op = nullptr;
  if (pd && k.op == "conv" && wei && k.weight.size() >= 3 &&
      dnnl_primitive_desc_query(pd, dnnl_query_convolution_d, 0, &op) == dnnl_success && op) {
    const auto* conv = static_cast<const dnnl_convolution_desc_t*>(op);
    const auto run = dims_of(wei->desc);
    const size_t spatial = k.weight.size() - 2;
    for (size_t s = 0; s < spatial && s < run.size(); ++s) {
      const int64_t taps = run[run.size() - spatial + s];
      k.macs *= static_cast<double>(taps) / static_cast<double>(k.weight[2 + s]);
      k.weight[2 + s] = taps;
      if (s < k.padding.size()) k.padding[s] = conv->padding[0][s];
    }
  }
  std::string types;
  for (const MemRef* r : {src, wei, dst})
    if (r) types += (types.empty() ? "" : ":") + std::string(type_name(r->desc.data_type()));
  k.dtype = types.empty() ? "f32" : types;
  k.layout = dst ? layout_name(dst->desc) : "plain";
  if (!of_node && src) k.layout = layout_name(src->desc) + ">" + k.layout;
  double bytes = 0;
  for (const auto& [arg, ref] : d.args) bytes += static_cast<double>(ref.desc.get_size());
  k.bytes = bytes;
  return k;
}

auto OnednnExecutable::kernels() const -> std::vector<Kernel> {
  std::vector<Kernel> out;
  for (const Step& st : steps_) {
    if (st.type == Step::Type::Aten && (st.kind == ops::kParam || st.kind == ops::kConstant)) continue;  // as run_timed
    out.push_back(kernel_of(st));
  }
  return out;
}

auto OnednnExecutable::run_dnnl(DnnlStep& d, std::vector<c10::IValue>& slots) -> void {
  for (const auto& [arg, slot] : d.slot_args) d.mems[arg].set_data_handle(slots[slot].toTensor().data_ptr());
  d.prim.execute(stream_, d.mems);
}

}  // namespace onednn

namespace {
using onednn::OnednnExecutable;

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

