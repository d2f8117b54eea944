// Structured channel pruning on the graph IR.
//
// Channel dependency analysis tracks, for every tensor value, which dimension holds channels and, for each
// position along it, a channel *element*. Convolutions and linear layers create fresh elements for their
// outputs; ops that keep channels pass elements through (activations, norms, pooling), depthwise convolutions
// pass their input's elements on, concatenation concatenates element lists, flatten repeats each element over
// the flattened block, and residual adds/muls unify their operands' elements (union-find). Every union class
// is a unit that is removed everywhere at once; ops the analysis cannot follow (opaque ops, reshapes, grouped
// convolutions, chunk, graph outputs) pin the elements they touch.
#include "tailor/prune/prune.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "internal.hpp"
#include "tailor/ir/op_table.hpp"
#include "tailor/ir/ops.hpp"

namespace tailor {

// --- channel dependency analysis ---------------------------------------------------------------------------

Criterion criterion_from_string(const std::string& name) {
  if (name == "l1") return Criterion::L1;
  if (name == "l2") return Criterion::L2;
  if (name == "bn" || name == "bn-scale") return Criterion::BnScale;
  if (name == "taylor") return Criterion::Taylor;
  if (name == "random") return Criterion::Random;
  TAILOR_FAIL("unknown pruning criterion '", name, "'; valid: l1, l2, bn, taylor, random");
}

std::string to_string(Criterion c) {
  switch (c) {
    case Criterion::L1: return "l1";
    case Criterion::L2: return "l2";
    case Criterion::BnScale: return "bn";
    case Criterion::Taylor: return "taylor";
    case Criterion::Random: return "random";
  }
  return "?";
}

namespace {

struct UnionFind {
  std::vector<int> parent;
  int make() {
    parent.push_back(static_cast<int>(parent.size()));
    return parent.back();
  }
  int find(int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void unite(int a, int b) {
    a = find(a);
    b = find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);
  }
};

// A tensor to slice when a channel goes: `tensor` along `dim` at `pos`, for the element `elem`.
struct Slice {
  std::string tensor;
  int64_t dim = 0;
  int64_t pos = 0;
  int elem = 0;
  int node = -1;
  bool producer = false;  // the conv/linear output row that defines the channel
};

struct ChannelInfo {
  int cdim = -1;           // -1: no channel information
  std::vector<int> elems;  // one element per position along cdim
};

struct Analysis {
  UnionFind uf;
  std::vector<char> pinned;      // per element
  std::vector<std::string> why;  // per element, when pinned
  std::vector<ChannelInfo> info;  // per value
  std::vector<Slice> slices;
  std::map<int, int64_t> depthwise_multiplier;  // conv node -> out/in channels of a depthwise conv
  std::map<int, std::string> norm_shape_nodes;   // layer_norm nodes whose normalized_shape follows channels
};

class Analyzer {
 public:
  Analyzer(GraphModuleImpl& module) : m_(module), g_(module.graph()) {}

  Analysis run() {
    a_.info.assign(g_.num_values(), {});
    for (int id : g_.order()) visit(id);
    for (int v : g_.outputs()) pin(v, "reaches the model output");
    return std::move(a_);
  }

 private:
  int fresh() {
    a_.pinned.push_back(0);
    a_.why.emplace_back();
    return a_.uf.make();
  }
  void pin_elems(const std::vector<int>& elems, const std::string& reason) {
    for (int e : elems)
      if (!a_.pinned[e]) {
        a_.pinned[e] = 1;
        a_.why[e] = reason;
      }
  }
  void pin(int v, const std::string& reason) { pin_elems(a_.info[v].elems, reason); }
  const std::vector<int64_t>& shape(int v) const { return g_.value(v).shape; }
  const Node* param(int v) const {
    const Node* p = g_.producer(v);
    return p && p->kind == ops::kParam ? p : nullptr;
  }
  bool is_tensor(int v) const { return g_.value(v).type == ValueType::Tensor; }
  int64_t norm_dim(int64_t d, size_t rank) const { return d < 0 ? d + static_cast<int64_t>(rank) : d; }

  void barrier(const Node& n, const std::string& reason) {
    for (int in : n.inputs)
      if (a_.info[in].cdim >= 0) pin(in, reason + " (" + n.name + ")");
  }

  void produce(int node, int out, int cdim, int64_t count, const std::string& weight, const std::string& bias) {
    ChannelInfo ci;
    ci.cdim = cdim;
    for (int64_t c = 0; c < count; ++c) {
      const int e = fresh();
      ci.elems.push_back(e);
      a_.slices.push_back({weight, 0, c, e, node, true});
      if (!bias.empty()) a_.slices.push_back({bias, 0, c, e, node, false});
    }
    a_.info[out] = ci;
  }

  void consume(int node, int in, const std::string& tensor, int64_t dim) {
    const ChannelInfo& ci = a_.info[in];
    for (size_t p = 0; p < ci.elems.size(); ++p)
      a_.slices.push_back({tensor, dim, static_cast<int64_t>(p), ci.elems[p], node, false});
  }

  std::string param_name(int v) const {
    const Node* p = param(v);
    return p ? p->s("name") : std::string();
  }

  // How the channels of a node's inputs reach its outputs: the op table names each kind's rule.
  void visit(int id) {
    const Node& n = g_.node(id);
    using R = ops::ChannelRule;
    switch (ops::op_def(n.kind).channels) {
      case R::NoChannels: return;
      case R::Conv: return visit_conv(id, n);
      case R::Linear: return visit_linear(id, n);
      case R::BatchNorm: return visit_batch_norm(id, n);
      case R::LayerNorm: return visit_layer_norm(id, n);
      case R::PassThrough: return pass_through(n);
      case R::PinAndPassThrough:
        barrier(n, n.kind);
        return pass_through(n);
      case R::Softmax: return visit_softmax(id, n);
      case R::Binary: return binary(id, n);
      case R::Concat: return cat(id, n);
      case R::Mean: return visit_mean(id, n);
      case R::Flatten: return visit_flatten(id, n);
      case R::Permute: return visit_permute(id, n);
      case R::Transpose: return visit_transpose(id, n);
      case R::Barrier: return barrier(n, n.kind == ops::kOpaque ? "operator " + n.s("schema") : n.kind);
    }
  }
  ChannelInfo& in_info(const Node& n, size_t i) { return a_.info[n.inputs[i]]; }
  void pass_through(const Node& n, size_t i = 0) {
    if (!n.outputs.empty()) a_.info[n.outputs[0]] = in_info(n, i);
  }
  void visit_conv(int id, const Node& n) {
    const Node* wp = param(n.inputs[1]);
    const ChannelInfo& x = in_info(n, 0);
    if (!wp) {
      barrier(n, "convolution with a computed weight");
      return;
    }
    const torch::Tensor w = m_.tensor(wp->s("name"));
    const int64_t groups = n.i("groups"), oc = w.size(0), ic = w.size(1) * groups;
    const std::string bias = param_name(n.inputs[2]);
    if (groups == 1) {
      if (x.cdim == 1) consume(id, n.inputs[0], wp->s("name"), 1);
      produce(id, n.outputs[0], 1, oc, wp->s("name"), bias);
    } else if (groups == ic && oc % ic == 0) {
      // Depthwise (with channel multiplier k): output channel o belongs to input channel o / k.
      const int64_t mult = oc / ic;
      a_.depthwise_multiplier[id] = mult;
      ChannelInfo out;
      out.cdim = 1;
      std::vector<int> src = x.cdim == 1 ? x.elems : std::vector<int>{};
      if (src.empty()) {
        for (int64_t c = 0; c < ic; ++c) src.push_back(fresh());
        pin_elems(src, "depthwise convolution over channels that cannot be pruned (" + n.name + ")");
      }
      for (int64_t o = 0; o < oc; ++o) {
        out.elems.push_back(src[o / mult]);
        a_.slices.push_back({wp->s("name"), 0, o, src[o / mult], id, false});
        if (!bias.empty()) a_.slices.push_back({bias, 0, o, src[o / mult], id, false});
      }
      a_.info[n.outputs[0]] = out;
    } else {
      barrier(n, "grouped convolution");
      produce(id, n.outputs[0], 1, oc, wp->s("name"), bias);
      pin(n.outputs[0], "grouped convolution (" + n.name + ")");
    }
  }
  void visit_linear(int id, const Node& n) {
    const Node* wp = param(n.inputs[1]);
    if (!wp) {
      barrier(n, "linear layer with a computed weight");
      return;
    }
    const ChannelInfo& x = in_info(n, 0);
    const int64_t rank = static_cast<int64_t>(shape(n.inputs[0]).size());
    if (x.cdim >= 0) {
      if (x.cdim == rank - 1) consume(id, n.inputs[0], wp->s("name"), 1);
      else pin(n.inputs[0], "linear layer over a non-channel dimension (" + n.name + ")");
    }
    const torch::Tensor w = m_.tensor(wp->s("name"));
    produce(id, n.outputs[0], static_cast<int>(rank - 1), w.size(0), wp->s("name"), param_name(n.inputs[2]));
  }
  void visit_batch_norm(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim == 1) {
      for (size_t i = 1; i <= 4; ++i) {
        const std::string t = param_name(n.inputs[i]);
        if (!t.empty()) consume(id, n.inputs[0], t, 0);
      }
    } else if (x.cdim >= 0) {
      pin(n.inputs[0], "batch norm over a non-channel dimension (" + n.name + ")");
    }
    pass_through(n);
  }
  void visit_layer_norm(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    const int64_t rank = static_cast<int64_t>(shape(n.inputs[0]).size());
    const int64_t nd = static_cast<int64_t>(n.ints("normalized_shape").size());
    if (x.cdim >= 0 && x.cdim >= rank - nd) {
      if (nd == 1) {
        for (size_t i = 1; i <= 2; ++i) {
          const std::string t = param_name(n.inputs[i]);
          if (!t.empty()) consume(id, n.inputs[0], t, 0);
        }
        a_.norm_shape_nodes[id] = "normalized_shape";
      } else {
        pin(n.inputs[0], "layer norm over several dimensions (" + n.name + ")");
      }
    }
    pass_through(n);
  }
  void visit_softmax(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim >= 0 && norm_dim(n.i("dim"), shape(n.inputs[0]).size()) == x.cdim)
      pin(n.inputs[0], "softmax over channels (" + n.name + ")");
    pass_through(n);
  }
  void visit_mean(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim < 0) return;
    const size_t rank = shape(n.inputs[0]).size();
    int cdim = x.cdim;
    for (int64_t d : n.ints("dims")) {
      const int64_t nd = norm_dim(d, rank);
      if (nd == x.cdim) {
        pin(n.inputs[0], "mean over channels (" + n.name + ")");
        return;
      }
      if (nd < x.cdim && !n.b("keepdim")) --cdim;
    }
    a_.info[n.outputs[0]] = {cdim, x.elems};
  }
  void visit_flatten(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim < 0) return;
    const auto& xs = shape(n.inputs[0]);
    const int64_t rank = static_cast<int64_t>(xs.size());
    const int64_t s = norm_dim(n.i("start_dim"), rank), e = norm_dim(n.i("end_dim"), rank);
    ChannelInfo out;
    if (x.cdim < s) {
      out = x;
    } else if (x.cdim > e) {
      out = {static_cast<int>(x.cdim - (e - s)), x.elems};
    } else {
      int64_t outer = 1, inner = 1;
      for (int64_t d = s; d < x.cdim; ++d) outer *= xs[d];
      for (int64_t d = x.cdim + 1; d <= e; ++d) inner *= xs[d];
      out.cdim = static_cast<int>(s);
      for (int64_t o = 0; o < outer; ++o)
        for (int el : x.elems)
          for (int64_t i = 0; i < inner; ++i) out.elems.push_back(el);
    }
    a_.info[n.outputs[0]] = out;
  }
  void visit_permute(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim < 0) return;
    const auto& dims = n.ints("dims");
    for (size_t j = 0; j < dims.size(); ++j)
      if (norm_dim(dims[j], dims.size()) == x.cdim) a_.info[n.outputs[0]] = {static_cast<int>(j), x.elems};
  }
  void visit_transpose(int id, const Node& n) {
    const ChannelInfo& x = in_info(n, 0);
    if (x.cdim < 0) return;
    const size_t rank = shape(n.inputs[0]).size();
    const int64_t d0 = norm_dim(n.i("dim0"), rank), d1 = norm_dim(n.i("dim1"), rank);
    int cdim = x.cdim;
    if (cdim == d0) cdim = static_cast<int>(d1);
    else if (cdim == d1) cdim = static_cast<int>(d0);
    a_.info[n.outputs[0]] = {cdim, x.elems};
  }

  void binary(int id, const Node& n) {
    const int a = n.inputs[0], b = n.inputs[1];
    const auto& os = shape(n.outputs[0]);
    const size_t rank = os.size();
    // Align each operand's dimensions to the output's (numpy broadcasting from the right).
    auto aligned_cdim = [&](int v) -> int {
      const ChannelInfo& ci = a_.info[v];
      if (ci.cdim < 0) return -1;
      return ci.cdim + static_cast<int>(rank - shape(v).size());
    };
    const int ca = is_tensor(a) ? aligned_cdim(a) : -1;
    const int cb = is_tensor(b) ? aligned_cdim(b) : -1;
    if (ca < 0 && cb < 0) return;
    if (ca >= 0 && cb >= 0) {
      if (ca != cb || a_.info[a].elems.size() != a_.info[b].elems.size()) {
        pin(a, "operands with different channels (" + n.name + ")");
        pin(b, "operands with different channels (" + n.name + ")");
        a_.info[n.outputs[0]] = a_.info[a];
        return;
      }
      for (size_t p = 0; p < a_.info[a].elems.size(); ++p) a_.uf.unite(a_.info[a].elems[p], a_.info[b].elems[p]);
      a_.info[n.outputs[0]] = {ca, a_.info[a].elems};
      return;
    }
    const int known = ca >= 0 ? a : b;
    const int other = ca >= 0 ? b : a;
    const int cdim = ca >= 0 ? ca : cb;
    ChannelInfo out = a_.info[known];
    out.cdim = cdim;
    a_.info[n.outputs[0]] = out;
    if (!is_tensor(other)) return;
    const auto& s = shape(other);
    const int64_t odim = cdim - static_cast<int64_t>(rank - s.size());
    if (odim < 0 || s[odim] == 1) return;  // broadcast along channels: nothing to slice
    const std::string t = param_name(other);
    if (t.empty()) {
      pin(known, "combined with a computed tensor along channels (" + n.name + ")");
      return;
    }
    for (size_t p = 0; p < out.elems.size(); ++p)
      a_.slices.push_back({t, odim, static_cast<int64_t>(p), out.elems[p], id, false});
  }

  void cat(int id, const Node& n) {
    const auto& os = shape(n.outputs[0]);
    const int64_t dim = norm_dim(n.i("dim"), os.size());
    bool along_channels = false;
    for (int in : n.inputs)
      if (a_.info[in].cdim == dim) along_channels = true;
    if (along_channels) {
      ChannelInfo out;
      out.cdim = static_cast<int>(dim);
      for (int in : n.inputs) {
        const ChannelInfo& ci = a_.info[in];
        if (ci.cdim == dim) {
          out.elems.insert(out.elems.end(), ci.elems.begin(), ci.elems.end());
        } else {
          if (ci.cdim >= 0) pin(in, "concatenated along a non-channel dimension (" + n.name + ")");
          std::vector<int> fixed;
          for (int64_t c = 0; c < shape(in)[dim]; ++c) fixed.push_back(fresh());
          pin_elems(fixed, "concatenated with a tensor of unknown channels (" + n.name + ")");
          out.elems.insert(out.elems.end(), fixed.begin(), fixed.end());
        }
      }
      a_.info[n.outputs[0]] = out;
      return;
    }
    // Concatenation along another dimension: every input carries the same channels.
    const ChannelInfo* first = nullptr;
    for (int in : n.inputs) {
      const ChannelInfo& ci = a_.info[in];
      if (ci.cdim < 0) continue;
      if (!first) {
        first = &ci;
        continue;
      }
      if (ci.cdim != first->cdim || ci.elems.size() != first->elems.size()) {
        barrier(n, "concatenation of tensors with different channels");
        return;
      }
      for (size_t p = 0; p < ci.elems.size(); ++p) a_.uf.unite(ci.elems[p], first->elems[p]);
    }
    if (first) a_.info[n.outputs[0]] = *first;
  }

  GraphModuleImpl& m_;
  const Graph& g_;
  Analysis a_;
};

struct Unit {
  int root = 0;
  std::set<std::string> producers, consumers;
  bool pinned = false;
  std::string why;
};

struct Grouping {
  Analysis analysis;
  std::map<int, Unit> units;                        // by union root
  std::map<std::string, std::vector<int>> groups;  // producers key -> unit roots
};

Grouping group_channels(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes) {
  TAILOR_CHECK(!input_shapes.empty(), "channel pruning needs the input shapes (e.g. 1x3x224x224)");
  {
    torch::NoGradGuard no_grad;
    module.infer_shapes(input_shapes);
  }
  Grouping gr;
  gr.analysis = Analyzer(module).run();
  Analysis& a = gr.analysis;
  const Graph& g = module.graph();
  for (const Slice& s : a.slices) {
    Unit& u = gr.units[a.uf.find(s.elem)];
    u.root = a.uf.find(s.elem);
    if (s.producer) u.producers.insert(g.node(s.node).name);
    else u.consumers.insert(g.node(s.node).name);
  }
  for (size_t e = 0; e < a.pinned.size(); ++e) {
    if (!a.pinned[e]) continue;
    auto it = gr.units.find(a.uf.find(static_cast<int>(e)));
    if (it != gr.units.end() && !it->second.pinned) {
      it->second.pinned = true;
      it->second.why = a.why[e];
    }
  }
  for (auto& [root, u] : gr.units) {
    if (u.producers.empty()) {
      u.pinned = true;
      if (u.why.empty()) u.why = "no layer produces these channels";
    }
    std::string key;
    for (const auto& p : u.producers) key += (key.empty() ? "" : "+") + p;
    if (!key.empty()) gr.groups[key].push_back(root);
  }
  return gr;
}

}  // namespace

std::vector<ChannelGroup> channel_groups(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes) {
  Grouping gr = group_channels(module, input_shapes);
  std::vector<ChannelGroup> out;
  int id = 0;
  for (const auto& [key, roots] : gr.groups) {
    ChannelGroup cg;
    cg.id = id++;
    const Unit& first = gr.units.at(roots.front());
    cg.producers.assign(first.producers.begin(), first.producers.end());
    std::set<std::string> consumers;
    bool prunable = false;
    std::string why;
    for (int r : roots) {
      const Unit& u = gr.units.at(r);
      consumers.insert(u.consumers.begin(), u.consumers.end());
      if (!u.pinned) prunable = true;
      else if (why.empty()) why = u.why;
    }
    cg.consumers.assign(consumers.begin(), consumers.end());
    cg.channels = static_cast<int64_t>(roots.size());
    cg.prunable = prunable;
    cg.reason = prunable ? "" : why;
    out.push_back(cg);
  }
  return out;
}

GradientFn gradients_from_batches(std::vector<torch::Tensor> inputs, std::vector<torch::Tensor> labels) {
  TAILOR_CHECK(!inputs.empty(), "the taylor criterion needs at least one batch of data");
  TAILOR_CHECK(labels.empty() || labels.size() == inputs.size(), "the taylor criterion: ", labels.size(),
               " label batches for ", inputs.size(), " input batches");
  return [inputs = std::move(inputs), labels = std::move(labels)](GraphModuleImpl& m) {
    const bool was_training = m.is_training();
    std::vector<std::pair<torch::Tensor, bool>> requires;
    for (auto& p : m.parameters()) requires.emplace_back(p, p.requires_grad());
    auto restore = [&] {
      for (auto& [p, r] : requires) p.requires_grad_(r);
      m.train(was_training);
    };
    try {
      torch::AutoGradMode grad_on(true);
      for (auto& [p, r] : requires) p.requires_grad_(true);
      m.eval();
      for (size_t i = 0; i < inputs.size(); ++i) {
        const torch::Tensor out = m.forward(inputs[i]);
        torch::Tensor loss;
        if (out.dim() == 2) {
          const torch::Tensor target = labels.empty() ? out.detach().argmax(1) : labels[i];
          TAILOR_CHECK(target.dim() == 1 && target.size(0) == out.size(0), "the taylor criterion: batch ", i,
                       " has ", target.numel(), " labels for ", out.size(0), " outputs");
          loss = torch::nn::functional::cross_entropy(out, target);
        } else {
          loss = out.pow(2).mean();
        }
        loss.backward();
      }
    } catch (...) {
      restore();
      throw;
    }
    restore();
  };
}

ChannelPruneResult prune_channels(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes,
                                  const ChannelPruneOptions& options, const GradientFn& gradients) {
  check_ratio(options.ratio, "channel pruning");
  TAILOR_CHECK(options.max_ratio > 0 && options.max_ratio <= 1, "channel pruning: max_ratio must be in (0, 1], got ",
               options.max_ratio);
  TAILOR_CHECK(options.round_to >= 1, "channel pruning: round_to must be >= 1, got ", options.round_to);
  for (const auto& [name, r] : options.layer_ratios) check_ratio(r, ("channel pruning of " + name).c_str());
  const Graph& g = module.graph();
  for (const auto& name : options.ignore)
    TAILOR_CHECK(g.find(name), "channel pruning: ignore names '", name, "', which is not a node of the graph");
  for (const auto& [name, r] : options.layer_ratios)
    TAILOR_CHECK(g.find(name), "channel pruning: layer_ratios names '", name, "', which is not a node of the graph");

  ChannelPruneResult result;
  for (const auto& p : module.parameters()) result.params_before += p.numel();
  result.params_after = result.params_before;

  Grouping gr = group_channels(module, input_shapes);
  Analysis& a = gr.analysis;

  // Importance of every prunable unit.
  std::map<int, double> importance;
  std::map<std::string, torch::Tensor> grads;
  if (options.criterion == Criterion::Taylor) {
    TAILOR_CHECK(gradients, "the taylor criterion needs a function that computes gradients on a few batches");
    for (auto& p : module.parameters()) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
    gradients(module);
    for (const auto& [name, t] : module.tensors())
      if (t.grad().defined()) grads[name] = t.grad().detach().clone();
    // The gradients served the ranking only; left on the parameters they would keep the old shapes and break the
    // first optimizer step after pruning.
    for (auto& p : module.parameters()) p.mutable_grad() = torch::Tensor();
    TAILOR_CHECK(!grads.empty(), "the taylor criterion: the gradient function left no gradients");
  }
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(options.seed);
  std::map<int, double> l1;  // the fallback of the bn criterion for channels no batch norm scales
  for (const Slice& s : a.slices) {
    const int root = a.uf.find(s.elem);
    if (gr.units.at(root).pinned) continue;
    const torch::Tensor t = module.tensor(s.tensor).select(s.dim, s.pos);
    if (s.producer) l1[root] += t.abs().sum().item<double>();
    double v = 0;
    switch (options.criterion) {
      case Criterion::L1:
        if (s.producer) v = t.abs().sum().item<double>();
        break;
      case Criterion::L2:
        if (s.producer) v = t.pow(2).sum().item<double>();
        break;
      case Criterion::BnScale: {
        const Node& n = g.node(s.node);
        if (n.kind == ops::kBatchNorm && n.inputs.size() > 1 && g.producer(n.inputs[1]) &&
            g.producer(n.inputs[1])->kind == ops::kParam && g.producer(n.inputs[1])->s("name") == s.tensor)
          v = t.abs().sum().item<double>();
        break;
      }
      case Criterion::Taylor: {
        auto it = grads.find(s.tensor);
        if (it != grads.end() && s.dim == 0) v = (t * it->second.select(s.dim, s.pos)).abs().sum().item<double>();
        break;
      }
      case Criterion::Random: break;
    }
    importance[root] += v;
  }
  if (options.criterion == Criterion::L2)
    for (auto& [r, v] : importance) v = std::sqrt(v);
  if (options.criterion == Criterion::Random)
    for (auto& [r, v] : importance) v = torch::rand({1}, gen).item<double>();
  if (options.criterion == Criterion::BnScale)
    for (auto& [r, v] : importance)
      if (v == 0) v = l1[r];

  // Which units go: per group (layer-wise) or by one global ranking of group-normalized importance.
  std::set<std::string> ignored(options.ignore.begin(), options.ignore.end());
  std::set<int> remove;
  struct Candidate {
    double score;
    std::string group;
    int root;
  };
  std::vector<Candidate> global;
  std::map<std::string, int64_t> group_prunable, group_total, group_cap;
  for (const auto& [key, roots] : gr.groups) {
    std::vector<int> cands;
    bool skip = false;
    double ratio = options.ratio;
    for (const auto& p : gr.units.at(roots.front()).producers) {
      if (ignored.count(p)) skip = true;
      auto it = options.layer_ratios.find(p);
      if (it != options.layer_ratios.end()) ratio = it->second;
    }
    if (skip) continue;
    for (int r : roots)
      if (!gr.units.at(r).pinned) cands.push_back(r);
    if (cands.empty()) continue;
    const int64_t total = static_cast<int64_t>(roots.size());
    // Most a group may lose: the max ratio, then rounded so the kept count is a multiple of round_to.
    auto kept_rounded = [&](int64_t n_remove) {
      int64_t keep = total - n_remove;
      keep = std::min(total, ((keep + options.round_to - 1) / options.round_to) * options.round_to);
      return total - std::max<int64_t>(keep, std::min<int64_t>(total, options.round_to));
    };
    const int64_t cap = std::min<int64_t>(static_cast<int64_t>(cands.size()),
                                          kept_rounded(static_cast<int64_t>(std::floor(options.max_ratio * total))));
    std::sort(cands.begin(), cands.end(), [&](int x, int y) { return importance[x] < importance[y]; });
    if (options.global && !options.layer_ratios.count(*gr.units.at(roots.front()).producers.begin())) {
      double mean = 0;
      for (int r : cands) mean += importance[r];
      mean /= static_cast<double>(cands.size());
      for (int r : cands) global.push_back({mean > 0 ? importance[r] / mean : 0.0, key, r});
      group_total[key] = total;
      group_cap[key] = cap;
      continue;
    }
    const int64_t n_remove = std::min(cap, kept_rounded(static_cast<int64_t>(std::floor(ratio * total))));
    TAILOR_CHECK(n_remove < total, "channel pruning would remove every channel of the group of ", key);
    for (int64_t i = 0; i < n_remove; ++i) remove.insert(cands[i]);
  }
  if (!global.empty()) {
    int64_t all = 0;
    for (const auto& [k, t] : group_total) all += t;
    const int64_t target = static_cast<int64_t>(std::floor(options.ratio * static_cast<double>(all)));
    std::sort(global.begin(), global.end(), [](const Candidate& x, const Candidate& y) { return x.score < y.score; });
    std::map<std::string, int64_t> taken;
    int64_t removed = 0;
    for (const auto& c : global) {
      if (removed >= target) break;
      if (taken[c.group] >= group_cap[c.group]) continue;
      ++taken[c.group];
      ++removed;
      remove.insert(c.root);
    }
    // Round each group's kept count to the multiple by giving back its least important removals' excess.
    if (options.round_to > 1) {
      for (auto& [key, n] : taken) {
        const int64_t total = group_total[key];
        int64_t keep = total - n;
        const int64_t rounded = std::min(total, ((keep + options.round_to - 1) / options.round_to) * options.round_to);
        int64_t give_back = rounded - keep;
        for (auto it = global.rbegin(); it != global.rend() && give_back > 0; ++it)
          if (it->group == key && remove.erase(it->root)) --give_back;
      }
    }
  }
  if (remove.empty()) return result;

  // Positions to drop per (tensor, dim), then validate before changing anything.
  std::map<std::pair<std::string, int64_t>, std::set<int64_t>> drop;
  std::map<std::pair<std::string, int64_t>, int64_t> sizes;
  for (const Slice& s : a.slices) {
    if (!remove.count(a.uf.find(s.elem))) continue;
    drop[{s.tensor, s.dim}].insert(s.pos);
  }
  for (const auto& [key, positions] : drop) {
    const int64_t size = module.tensor(key.first).size(key.second);
    TAILOR_CHECK(static_cast<int64_t>(positions.size()) < size, "channel pruning would leave '", key.first,
                 "' with no channels along dimension ", key.second);
  }
  std::map<std::string, torch::Tensor> updated;
  for (const auto& [key, positions] : drop) {
    torch::Tensor t = updated.count(key.first) ? updated[key.first] : module.tensor(key.first).detach();
    std::vector<int64_t> keep;
    for (int64_t p = 0; p < t.size(key.second); ++p)
      if (!positions.count(p)) keep.push_back(p);
    updated[key.first] = t.index_select(key.second, torch::tensor(keep, torch::kLong).to(t.device())).contiguous();
  }
  // Layer-wise report before the graph changes.
  std::map<std::string, std::pair<int64_t, int64_t>> layer_counts;
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (n.kind != ops::kConv && n.kind != ops::kLinear) continue;
    const Node* wp = g.producer(n.inputs[1]);
    if (!wp || wp->kind != ops::kParam) continue;
    const std::string w = wp->s("name");
    const int64_t before = module.tensor(w).size(0);
    const int64_t after = updated.count(w) ? updated[w].size(0) : before;
    if (after != before) layer_counts[n.name] = {before, after};
  }
  // Apply: tensors, then attributes that count channels (depthwise groups, layer-norm shapes).
  for (const auto& [name, t] : updated) module.set_tensor(name, t);
  Graph& mg = module.mutable_graph();
  for (const auto& [id, mult] : a.depthwise_multiplier) {
    Node& n = mg.node(id);
    const Node* wp = mg.producer(n.inputs[1]);
    n.attrs["groups"] = module.tensor(wp->s("name")).size(0) / mult;
  }
  for (const auto& [id, key] : a.norm_shape_nodes) {
    Node& n = mg.node(id);
    const Node* wp = mg.producer(n.inputs[1]);
    if (wp && wp->kind == ops::kParam) n.attrs["normalized_shape"] = std::vector<int64_t>{module.tensor(wp->s("name")).size(0)};
  }
  module.recompile();
  {
    torch::NoGradGuard ng;
    module.infer_shapes(input_shapes);
  }
  result.channels_removed = static_cast<int64_t>(remove.size());
  result.params_after = 0;
  for (const auto& p : module.parameters()) result.params_after += p.numel();
  for (const auto& [name, c] : layer_counts) result.layers.push_back({name, c});
  return result;
}

std::vector<ChannelPruneResult> prune_channels_iteratively(GraphModuleImpl& module,
                                                           const std::vector<std::vector<int64_t>>& input_shapes,
                                                           const ChannelPruneOptions& options, int steps,
                                                           const std::function<void(int round)>& between,
                                                           const GradientFn& gradients) {
  check_ratio(options.ratio, "iterative channel pruning");
  TAILOR_CHECK(steps >= 1, "iterative channel pruning needs at least one round, got ", steps);
  // (1 - r)^steps = 1 - ratio: each round keeps the same fraction of what is left.
  const double per_round = 1.0 - std::pow(1.0 - options.ratio, 1.0 / steps);
  std::vector<ChannelPruneResult> results;
  for (int round = 0; round < steps; ++round) {
    ChannelPruneOptions o = options;
    o.ratio = per_round;
    for (auto& [name, r] : o.layer_ratios) r = 1.0 - std::pow(1.0 - r, 1.0 / steps);
    results.push_back(prune_channels(module, input_shapes, o, gradients));
    if (between) between(round);
  }
  return results;
}

GraphModule clone_module(const GraphModuleImpl& module) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, t] : module.tensors()) tensors[name] = t.detach().clone();
  GraphModule copy(module.graph(), tensors, module.buffer_names());
  copy->mutable_provenance() = module.provenance();
  if (!module.is_training()) copy->eval();
  return copy;
}

void assign_module(GraphModuleImpl& dst, const GraphModuleImpl& src) {
  torch::NoGradGuard no_grad;
  const auto buffers = src.buffer_names();
  const std::set<std::string> buffer_set(buffers.begin(), buffers.end());
  for (const auto& [name, t] : src.tensors()) {
    const bool buffer = buffer_set.count(name) != 0;
    if (dst.has_tensor(name) && dst.is_buffer(name) == buffer)
      dst.set_tensor(name, t.detach().clone());
    else
      dst.add_tensor(name, t.detach().clone(), buffer);
  }
  dst.mutable_graph() = src.graph();
  dst.drop_unused_tensors();
  dst.recompile();
}

std::vector<std::pair<std::string, std::vector<double>>> channel_sensitivity(
    const GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes,
    const std::vector<double>& ratios, const std::function<double(GraphModuleImpl&)>& evaluate, Criterion criterion) {
  GraphModule probe = clone_module(module);
  const auto groups = channel_groups(*probe, input_shapes);
  std::vector<std::pair<std::string, std::vector<double>>> out;
  for (const auto& group : groups) {
    if (!group.prunable) continue;
    std::string key;
    for (const auto& p : group.producers) key += (key.empty() ? "" : "+") + p;
    std::vector<double> values;
    for (double r : ratios) {
      GraphModule copy = clone_module(module);
      ChannelPruneOptions o;
      o.criterion = criterion;
      o.ratio = 0;
      o.max_ratio = 1;
      o.layer_ratios[group.producers.front()] = r;
      prune_channels(*copy, input_shapes, o);
      values.push_back(evaluate(*copy));
    }
    out.push_back({key, values});
  }
  return out;
}

}  // namespace tailor
