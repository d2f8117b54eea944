// Values, buffers and the activation pool of the onednn-cpu executable: where each value lives (oneDNN memory
// in a pooled buffer, or an ATen tensor), reorders between them, and lifetimes.
#if TAILOR_WITH_ONEDNN
#include "executable.hpp"

namespace tailor::detail::onednn {

auto OnednnExecutable::is_f32_tensor(int v) const -> bool {
  const Value& val = graph_.value(v);
  return val.type == ValueType::Tensor && val.dtype == "Float" && !val.shape.empty();
}

auto OnednnExecutable::param_of(int v) const -> const Node* {
  const Node* p = graph_.producer(v);
  return p && p->kind == ops::kParam ? p : nullptr;
}

auto OnednnExecutable::is_none(int v) const -> bool {
  const Node* p = graph_.producer(v);
  return p && p->kind == ops::kConstant && std::holds_alternative<std::monostate>(p->attr("value"));
}

auto OnednnExecutable::sole_user(int v) const -> const Node* {
  if (graph_.is_graph_output(v)) return nullptr;
  const auto users = graph_.users(v);
  if (users.size() != 1) return nullptr;
  // Reading the same value twice (x * x) is not a sole use for fusion purposes.
  const Node& u = graph_.node(users[0]);
  if (std::count(u.inputs.begin(), u.inputs.end(), v) != 1) return nullptr;
  return &u;
}

auto OnednnExecutable::fq_of_params(int v) const -> const Node* {
  const Node* p = graph_.producer(v);
  if (!p || p->kind != ops::kFakeQuant) return nullptr;
  for (int in : p->inputs)
    if (!param_of(in)) return nullptr;
  return p;
}

auto OnednnExecutable::const_tensor(int v) -> torch::Tensor {
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

auto OnednnExecutable::own(const torch::Tensor& t, const memory::desc& desc) -> MemRef {
  MemRef r;
  r.desc = desc;
  r.owned = std::make_shared<torch::Tensor>(t);
  weight_bytes_ += static_cast<int64_t>(desc.get_size());
  return r;
}

auto OnednnExecutable::own_reordered(const torch::Tensor& plain, const memory::desc& plain_d, const memory::desc& want) -> MemRef {
  if (plain_d == want) return own(plain, want);
  if (options_.kernels_only) return own(torch::Tensor(), want);  // never runs: the layout and size are what count
  auto out = torch::empty({static_cast<int64_t>(want.get_size())}, torch::kUInt8);
  memory src(plain_d, engine_, plain.data_ptr());
  memory dst(want, engine_, out.data_ptr());
  dnnl::reorder(src, dst).execute(stream_, src, dst);
  stream_.wait();
  return own(out, want);
}

auto OnednnExecutable::new_buffer(const memory::desc& desc) -> MemRef {
  MemRef r;
  r.desc = desc;
  r.pool = pool_.acquire(desc.get_size());
  return r;
}

auto OnednnExecutable::set_home_dnnl(int v, const MemRef& ref) -> void {
  homes_[v].where = Home::Where::Dnnl;
  homes_[v].ref = ref;
}

auto OnednnExecutable::emit_pending(int v) -> void {
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

auto OnednnExecutable::dnnl_ref(int v) -> MemRef {
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
                  dnnl::reorder::primitive_desc(engine_, h.q_ref.desc, engine_, out.desc, attr),
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
                  dnnl::reorder::primitive_desc(engine_, r.desc, engine_, cast.desc),
                  {{DNNL_ARG_FROM, r}, {DNNL_ARG_TO, cast}});
    ++reorders_;
    define(v, cast);
    homes_[v].has_aten = true;
    return cast;
  }
  return r;
}

auto OnednnExecutable::dnnl_ref_as(int v, const memory::desc& want, const std::string& node) -> MemRef {
  MemRef cur = dnnl_ref(v);
  if (cur.desc == want) return cur;
  MemRef out = new_buffer(want);
  add_dnnl_step(node, "reorder", {}, dnnl::reorder::primitive_desc(engine_, cur.desc, engine_, want),
                {{DNNL_ARG_FROM, cur}, {DNNL_ARG_TO, out}});
  ++reorders_;
  temps_.push_back(out);
  return out;
}

auto OnednnExecutable::ensure_aten(int v) -> void {
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
  s.dnnl.pd = dnnl::reorder::primitive_desc(engine_, src.desc, engine_, dst.desc);
  s.dnnl.args = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
  steps_.push_back(std::move(s));
  h.has_aten = true;
  if (!(src.desc == dst.desc)) ++reorders_;
}

auto OnednnExecutable::add_dnnl_step(const std::string& node, const std::string& kind, std::vector<std::string> fused, const dnnl::primitive_desc_base& pd, std::vector<std::pair<int, MemRef>> args) -> void {
  Step s;
  s.type = Step::Type::Dnnl;
  s.node = node;
  s.kind = kind;
  s.fused = std::move(fused);
  s.dnnl.pd = pd;
  s.dnnl.args = std::move(args);
  steps_.push_back(std::move(s));
}

auto OnednnExecutable::buffer_values(int pool) const -> int {
  int n = 0;
  for (const auto& entry : alive_in_pool_)
    if (entry.second == pool) ++n;
  return n;
}

auto OnednnExecutable::new_temp(const memory::desc& d) -> MemRef {
  MemRef r = new_buffer(d);
  temps_.push_back(r);
  return r;
}

auto OnednnExecutable::reuse_or_new(int x, const Node& n, const MemRef& src) -> MemRef {
  if (src.pool >= 0 && last_reader_[x] == graph_.find_id(n.name) && !graph_.is_graph_output(x) &&
      buffer_values(src.pool) == 1) {
    pool_.retain(src.pool);
    return src;
  }
  return new_buffer(src.desc);
}

auto OnednnExecutable::define(int v, const MemRef& ref) -> void {
  set_home_dnnl(v, ref);
  if (ref.pool >= 0) alive_in_pool_.insert({v, ref.pool});
}

auto OnednnExecutable::define_q(int v, const MemRef& ref, const QAct& q) -> void {
  Home& h = homes_[v];
  h.has_q = true;
  h.q_ref = ref;
  h.q = q;
  if (ref.pool >= 0) alive_in_pool_.insert({v, ref.pool});
}

auto OnednnExecutable::release_dead(int position) -> void {
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

}  // namespace tailor::detail::onednn

#endif  // TAILOR_WITH_ONEDNN
