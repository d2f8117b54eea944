// Post-op fusion on onednn-cpu: activations and residual adds folded into the primitive that feeds them.
#if TAILOR_WITH_ONEDNN
#include "executable.hpp"

namespace tailor::detail::onednn {

auto OnednnExecutable::eltwise_of(const Node& n) const -> std::vector<EltOp> {
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

auto OnednnExecutable::plan_fusion(const Node& n, bool allow_sum, std::vector<EltOp> chain) const -> Fusion {
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

auto OnednnExecutable::repeats_algorithm(const std::vector<EltOp>& chain) -> bool {
  for (size_t i = 0; i < chain.size(); ++i)
    for (size_t j = i + 1; j < chain.size(); ++j)
      if (chain[i].alg == chain[j].alg && (chain[i].alpha != chain[j].alpha || chain[i].beta != chain[j].beta))
        return true;
  return false;
}

auto OnednnExecutable::post_ops_of(const Fusion& f) const -> dnnl::post_ops {
  dnnl::post_ops po;
  if (f.add) po.append_sum(1.0f);
  for (const Node* e : f.eltwise)
    for (const EltOp& op : eltwise_of(*e)) po.append_eltwise(1.0f, op.alg, op.alpha, op.beta);
  return po;
}

auto OnednnExecutable::fused_names(const Fusion& f) -> std::vector<std::string> {
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

auto OnednnExecutable::sum_destination(const Fusion& f, const memory::desc& dst_desc, const MemRef& src, const std::string& node) -> MemRef {
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
  add_dnnl_step(node, "reorder", {}, dnnl::reorder::primitive_desc(engine_, other.desc, engine_, dst_desc),
                {{DNNL_ARG_FROM, other}, {DNNL_ARG_TO, dst}});
  ++reorders_;
  return dst;
}

}  // namespace tailor::detail::onednn

#endif  // TAILOR_WITH_ONEDNN
