// Pooling, mean, eltwise, binary, concat, softmax and norm primitives on onednn-cpu, and the ATen fallback.
#if TAILOR_WITH_ONEDNN
#include "executable.hpp"

namespace tailor::detail::onednn {

auto OnednnExecutable::lower_pool(const Node& n) -> bool {
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
  add_dnnl_step(n.name, on_u8 ? n.kind + " u8" : n.kind, {}, pd, std::move(args));
  if (on_u8) define_q(n.outputs[0], dst, homes_[x].q);
  else define(n.outputs[0], dst);
  ++lowered_;
  return true;
}

auto OnednnExecutable::lower_mean(const Node& n) -> bool {
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
  add_dnnl_step(n.name, n.kind, {}, pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
  dst.desc = act_desc(shape(n.outputs[0]));  // keepdim=false drops size-1 dims of a plain layout: same bytes
  define(n.outputs[0], dst);
  ++lowered_;
  return true;
}

auto OnednnExecutable::lower_eltwise(const Node& n) -> bool {
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
  add_dnnl_step(n.name, n.kind, fused_names(f), pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
  define(f.out, dst);
  ++lowered_;
  fused_ += static_cast<int>(f.eltwise.size());
  return true;
}

auto OnednnExecutable::lower_binary(const Node& n) -> bool {
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
    add_dnnl_step(n.name, n.kind, {}, pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
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
  add_dnnl_step(n.name, n.kind, fused_names(f), pd,
                {{DNNL_ARG_SRC_0, src0}, {DNNL_ARG_SRC_1, src1}, {DNNL_ARG_DST, dst}});
  define(f.out, dst);
  ++lowered_;
  fused_ += static_cast<int>(f.eltwise.size());
  return true;
}

auto OnednnExecutable::lower_cat(const Node& n) -> bool {
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
  add_dnnl_step(n.name, n.kind, {}, pd, std::move(args));
  define(n.outputs[0], dst);
  ++lowered_;
  return true;
}

auto OnednnExecutable::lower_softmax(const Node& n) -> bool {
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
  add_dnnl_step(n.name, n.kind, {}, pd, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}});
  define(n.outputs[0], dst);
  ++lowered_;
  return true;
}

auto OnednnExecutable::lower_norm(const Node& n) -> bool {
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
  dnnl::primitive_desc_base made;
  try {
    if (bn) {
      dnnl::batch_normalization_forward::primitive_desc pd(
          dnnl::batch_normalization_forward::desc(dnnl::prop_kind::forward_inference, src_desc, eps,
                                                  flags | dnnl::normalization_flags::use_global_stats),
          engine_);
      if (is_reference(pd)) return false;
      made = pd;
    } else {
      dnnl::layer_normalization_forward::primitive_desc pd(
          dnnl::layer_normalization_forward::desc(dnnl::prop_kind::forward_inference, src_desc, eps, flags), engine_);
      if (is_reference(pd)) return false;
      made = pd;
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
  add_dnnl_step(n.name, n.kind, {}, made, std::move(args));
  define(n.outputs[0], dst);
  ++lowered_;
  return true;
}

auto OnednnExecutable::lower_aten(const Node& n, int id) -> void {
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

}  // namespace tailor::detail::onednn

#endif  // TAILOR_WITH_ONEDNN
