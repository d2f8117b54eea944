// Convolution and linear (matmul) primitives on onednn-cpu, float and int8.
#if TAILOR_WITH_ONEDNN
#include "executable.hpp"

namespace tailor::detail::onednn {
namespace {

// The first and last taps of one kernel dimension that meet the input at some output position (first > last:
// none does).
std::pair<int64_t, int64_t> live_taps(int64_t in, int64_t out, int64_t stride, int64_t step, int64_t pad,
                                      int64_t taps) {
  int64_t first = taps, last = -1;
  for (int64_t i = 0; i < taps; ++i)
    for (int64_t o = 0; o < out; ++o) {
      const int64_t at = o * stride - pad + i * step;
      if (at >= 0 && at < in) {
        first = std::min(first, i);
        last = i;
        break;
      }
    }
  return {first, last};
}

}  // namespace

auto OnednnExecutable::lower_conv(const Node& n) -> bool {
  const int x = n.inputs[0];
  if (!is_const(n.inputs[1]) || !is_f32_tensor(x) || !(is_const(n.inputs[2]) || is_none(n.inputs[2]))) return false;
  const auto& xs = shape(x);
  const auto& os = shape(n.outputs[0]);
  const size_t spatial = xs.size() - 2;
  if (spatial < 1 || spatial > 3) return false;
  const Node* xq = graph_.producer(x);
  const bool int8 = xq && deferred_quant_.count(x) && is_s8_weight_quant(n.inputs[1]);
  torch::Tensor w = int8 ? weight(*param_of(fq_of_params(n.inputs[1])->inputs[0])) : const_tensor(n.inputs[1]);
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
    // A kernel wider than its input (a 7x7 depthwise kernel on a 2x2 map, common in searched networks at low
    // resolution) has taps that only ever meet padding. They add nothing, but oneDNN's direct kernels refuse
    // such shapes (on AVX2 it runs them as one small GEMM per group, 2-5x slower and bimodal in time), so the
    // kernel is cropped to the taps that meet the input and the padding shifted to match: the same output.
    const int64_t step = dil[k] + 1;  // oneDNN counts dilation from 0
    const auto [first, last] = live_taps(xs[2 + k], os[2 + k], strides[k], step, pad_l[k], kernel[k]);
    if (first <= last && (first > 0 || last < kernel[k] - 1)) {
      const int64_t left = pad_l[k] - first * step;
      const int64_t right = pad_r[k] - (kernel[k] - 1 - last) * step;
      if (left >= 0 && right >= std::min<int64_t>(0, pad_r[k])) {
        w = w.narrow(static_cast<int64_t>(2 + k), first, last - first + 1);
        kernel[k] = last - first + 1;
        pad_l[k] = left;
        pad_r[k] = right;
      }
    }
  }
  w = w.contiguous();
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
                pd, std::move(args));
  if (out_q) define_q(f.out, dst, *out_q);
  else define(f.out, dst);
  ++lowered_;
  int8_ += int8;
  fused_ += static_cast<int>(f.eltwise.size()) + (f.add ? 1 : 0);
  return true;
}

auto OnednnExecutable::lower_linear(const Node& n) -> bool {
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
                pd, std::move(args));
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

}  // namespace tailor::detail::onednn

#endif  // TAILOR_WITH_ONEDNN
