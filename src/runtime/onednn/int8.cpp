// int8 data flow on onednn-cpu: which fake_quant nodes lower, u8 between int8 layers, requantization, scales.
#if TAILOR_WITH_ONEDNN
#include "executable.hpp"

namespace tailor::detail::onednn {

auto OnednnExecutable::is_u8_activation_quant(const Node& n) const -> bool {
  return n.kind == ops::kFakeQuant && act_ == dt::f32 && !param_of(n.inputs[0]) && is_f32_tensor(n.inputs[0]) &&
         n.i("axis", -1) < 0 && n.i("group_size", 0) == 0 && n.i("qmin") >= 0 && n.i("qmax") <= 255 &&
         n.i("qmin") < n.i("qmax") && param_of(n.inputs[1]) && param_of(n.inputs[2]);
}

auto OnednnExecutable::why_not_u8_quant(const Node& n) const -> std::string {
  if (act_ != dt::f32) return "int8 layers run in fp32 executables only";
  if (n.i("axis", -1) >= 0 || n.i("group_size", 0) > 0) return "per-channel activation quantization";
  if (n.i("qmin") < 0 || n.i("qmax") > 255) return "signed or wider than 8 bits";
  if (!param_of(n.inputs[1]) || !param_of(n.inputs[2])) return "its scale is computed at run time";
  return "its input is not a float tensor";
}

auto OnednnExecutable::act_q(const Node& n) -> QAct {
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

auto OnednnExecutable::target_quant(int v) -> std::optional<QAct> {
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

auto OnednnExecutable::is_s8_weight_quant(int v) const -> bool {
  const Node* fq = fq_of_params(v);
  if (!fq || fq->i("group_size", 0) != 0 || fq->i("qmin") < -128 || fq->i("qmax") > 127 || fq->i("axis", -1) > 0)
    return false;
  return module_->tensor(param_of(fq->inputs[2])->s("name")).eq(0).all().item<bool>();
}

auto OnednnExecutable::int8_layer(const QAct& xq, int weight_value, const torch::Tensor& w, const torch::Tensor& bias) -> Int8Layer {
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

auto OnednnExecutable::set_int8_attr(dnnl::primitive_attr& attr, const Fusion& f, const Int8Layer& q, bool int8, const QAct* out_q) const -> bool {
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

auto OnednnExecutable::quantized_ref(int vq, const memory::desc& want, const std::string& node) -> MemRef {
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
          add_dnnl_step(node, "quantize", {}, pd,
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
      add_dnnl_step(node, "clip", {}, pd, {{DNNL_ARG_SRC, cur}, {DNNL_ARG_DST, clipped}});
      cur = clipped;
    }
    MemRef out = new_buffer(want);
    dnnl::primitive_attr attr;
    attr.set_output_scales(0, {1.0f / q.scale});
    attr.set_zero_points(DNNL_ARG_DST, 0, {q.zero_point});
    add_dnnl_step(node, "quantize", {}, dnnl::reorder::primitive_desc(engine_, cur.desc, engine_, want, attr),
                  {{DNNL_ARG_FROM, cur}, {DNNL_ARG_TO, out}});
    ++quantized_;
    define_q(vq, out, q);
    return out;
  }
  if (h.q_ref.desc == want) return h.q_ref;
  MemRef out = new_temp(want);
  add_dnnl_step(node, "reorder", {}, dnnl::reorder::primitive_desc(engine_, h.q_ref.desc, engine_, want),
                {{DNNL_ARG_FROM, h.q_ref}, {DNNL_ARG_TO, out}});
  ++reorders_;
  return out;
}

auto OnednnExecutable::requantizing(const Fusion& f, const QAct& q) const -> std::optional<Requant> {
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

}  // namespace tailor::detail::onednn

#endif  // TAILOR_WITH_ONEDNN
