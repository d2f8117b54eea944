// The placement planner: per-node latencies, the cut graph of a model, pricing a placement, the best chain cut,
// the exact min-cut of the DAG, and the choice among a manifest's variants.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <queue>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/capture/capture.hpp"
#include "tailor/core/text.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/place/place.hpp"

namespace tailor::place {
namespace {

using nlohmann::json;

constexpr double kInfinite = 1e15;  // ms; far above any sum of finite capacities
constexpr double kZ90 = 1.2815515655446004;  // the normal distribution's 90th percentile, in standard deviations

int64_t element_bytes(const std::string& dtype) {
  if (dtype == "float64" || dtype == "int64") return 8;
  if (dtype == "float16" || dtype == "bfloat16" || dtype == "int16") return 2;
  if (dtype == "uint8" || dtype == "int8" || dtype == "bool") return 1;
  return 4;
}

bool is_structure(const std::string& kind) { return kind == ops::kParam || kind == ops::kConstant; }

// Node times of one model on one device, aligned with a cut graph's nodes. Times of profile steps whose node is
// not in this graph (renamed by folding, say) are spread over the matched ones so the sum stays the model's time.
std::vector<double> aligned_times(const CutGraph& graph, const NodeLatency& latency) {
  std::vector<double> t(graph.nodes.size(), 0.0);
  double matched = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i)
    if (auto it = latency.node_ms.find(graph.nodes[i]); it != latency.node_ms.end()) matched += t[i] = it->second;
  const double scale = matched > 0 ? latency.total_ms / matched : 0;
  for (auto& x : t) x *= scale;
  return t;
}

struct Pricing {
  const CutGraph& graph;
  std::vector<double> edge_ms, cloud_ms;
  const Link& link;
  const Objective& objective;

  Pricing(const CutGraph& g, const NodeLatency& edge, const NodeLatency& cloud, const Link& l, const Objective& o)
      : graph(g), edge_ms(aligned_times(g, edge)), cloud_ms(aligned_times(g, cloud)), link(l), objective(o) {}

  int64_t wire(const CutGraph::Tensor& t) const {
    return t.is_tensor ? wire_bytes(t.bytes, t.dtype, objective.codec) : 0;
  }
  double rtt() const { return link.rtt_ms + (objective.percentile == "p90" ? kZ90 * link.jitter_ms : 0.0); }

  // Exits whose heads run on the edge, in order, up to the first that does not (later ones cannot help: their rates
  // assume the earlier exits took their share).
  size_t usable_exits(const std::vector<bool>& on_edge) const {
    size_t k = 0;
    for (; k < graph.exits.size(); ++k)
      if (!std::all_of(graph.exits[k].head.begin(), graph.exits[k].head.end(), [&](int i) { return on_edge[i]; })) break;
    return k;
  }

  // Empty when the assignment sends data from the cloud back to the edge, or splits a list from its consumer.
  std::optional<Placement> price(const std::vector<bool>& on_edge) const {
    Placement p;
    p.on_edge = on_edge;
    Breakdown& b = p.predicted;
    int64_t edge_macs = 0;
    size_t edge_nodes = 0;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (on_edge[i]) {
        b.edge_ms += edge_ms[i];
        edge_macs += graph.macs[i];
        ++edge_nodes;
      } else {
        b.cloud_ms += cloud_ms[i];
      }
    }
    for (const auto& t : graph.tensors) {
      const bool made_on_edge = t.producer < 0 || on_edge[t.producer];
      bool read_in_cloud = false;
      for (int c : t.consumers) {
        if (on_edge[c] && !made_on_edge) return std::nullopt;
        read_in_cloud = read_in_cloud || !on_edge[c];
      }
      if (made_on_edge && read_in_cloud) {
        if (!t.splittable) return std::nullopt;
        p.up.push_back(t.name);
        p.up_bytes += wire(t);
      }
      if (t.model_output && !made_on_edge) {
        p.down.push_back(t.name);
        p.down_bytes += wire(t);
      }
    }
    p.site = edge_nodes == graph.nodes.size() ? Site::Edge : edge_nodes == 0 ? Site::Cloud : Site::Split;
    p.method = p.site == Site::Edge ? "edge" : p.site == Site::Cloud ? "cloud" : "split";
    if (p.site != Site::Edge) {
      b.up_ms = link.up_ms(p.up_bytes);
      b.down_ms = link.down_ms(p.down_bytes);
      b.rtt_ms = rtt();
    }
    b.no_exit_ms = b.total_ms = b.edge_ms + b.up_ms + b.rtt_ms + b.cloud_ms + b.down_ms;
    // Early exits: a request leaves at exit k with its validation rate, after the nodes that exit needs; the rest
    // take the whole path. Loads per request are the same expectation, for throughput and energy.
    double exit_ms = 0, exit_macs = 0, rest = 1;
    for (size_t k = 0; k < usable_exits(on_edge); ++k) {
      const auto& e = graph.exits[k];
      double t = 0, macs = 0;
      for (int i : e.needed) {
        t += edge_ms[i];
        macs += static_cast<double>(graph.macs[i]);
      }
      exit_ms += e.exit.rate * t;
      exit_macs += e.exit.rate * macs;
      rest -= e.exit.rate;
    }
    rest = std::max(0.0, rest);
    b.exit_rate = 1 - rest;
    b.total_ms = exit_ms + rest * b.no_exit_ms;
    const double stage = std::max({exit_ms + rest * b.edge_ms, rest * (b.up_ms + b.down_ms), rest * b.cloud_ms});
    b.throughput = stage > 0 ? 1000.0 / stage : 0;
    if (objective.joules_per_mac || objective.joules_per_byte)
      b.edge_energy_j = objective.joules_per_mac.value_or(0) * (exit_macs + rest * static_cast<double>(edge_macs)) +
                        objective.joules_per_byte.value_or(0) * rest * static_cast<double>(p.up_bytes + p.down_bytes);
    return p;
  }
};

// Dinic's maximum flow on a small dense-enough network; capacities in milliseconds.
class FlowNetwork {
 public:
  explicit FlowNetwork(int vertices) : adjacency_(vertices), level_(vertices), next_(vertices) {}
  void add(int from, int to, double capacity) {
    if (capacity <= 0) return;
    adjacency_[from].push_back(static_cast<int>(arcs_.size()));
    arcs_.push_back({to, capacity});
    adjacency_[to].push_back(static_cast<int>(arcs_.size()));
    arcs_.push_back({from, 0});
  }
  double max_flow(int s, int t) {
    double flow = 0;
    while (levels(s, t)) {
      std::fill(next_.begin(), next_.end(), 0);
      while (const double pushed = push(s, t, kInfinite * 10)) flow += pushed;
    }
    return flow;
  }
  /// Vertices reachable from `s` in the residual network after max_flow: the source side of a minimum cut.
  std::vector<bool> source_side(int s) const {
    std::vector<bool> seen(adjacency_.size(), false);
    std::queue<int> q;
    q.push(s);
    seen[s] = true;
    while (!q.empty()) {
      const int u = q.front();
      q.pop();
      for (int a : adjacency_[u])
        if (arcs_[a].capacity > kEpsilon && !seen[arcs_[a].to]) {
          seen[arcs_[a].to] = true;
          q.push(arcs_[a].to);
        }
    }
    return seen;
  }

 private:
  static constexpr double kEpsilon = 1e-9;
  struct Arc {
    int to;
    double capacity;
  };
  bool levels(int s, int t) {
    std::fill(level_.begin(), level_.end(), -1);
    std::queue<int> q;
    level_[s] = 0;
    q.push(s);
    while (!q.empty()) {
      const int u = q.front();
      q.pop();
      for (int a : adjacency_[u])
        if (arcs_[a].capacity > kEpsilon && level_[arcs_[a].to] < 0) {
          level_[arcs_[a].to] = level_[u] + 1;
          q.push(arcs_[a].to);
        }
    }
    return level_[t] >= 0;
  }
  double push(int u, int t, double limit) {
    if (u == t) return limit;
    for (int& i = next_[u]; i < static_cast<int>(adjacency_[u].size()); ++i) {
      const int a = adjacency_[u][i];
      Arc& arc = arcs_[a];
      if (arc.capacity <= kEpsilon || level_[arc.to] != level_[u] + 1) continue;
      if (const double pushed = push(arc.to, t, std::min(limit, arc.capacity)); pushed > 0) {
        arc.capacity -= pushed;
        arcs_[a ^ 1].capacity += pushed;
        return pushed;
      }
    }
    return 0;
  }
  std::vector<Arc> arcs_;
  std::vector<std::vector<int>> adjacency_;
  std::vector<int> level_, next_;
};

bool same_assignment(const Placement& a, const Placement& b) { return a.on_edge == b.on_edge; }

json breakdown_json(const Breakdown& b) {
  json j = {{"edge_ms", b.edge_ms}, {"up_ms", b.up_ms},     {"rtt_ms", b.rtt_ms},       {"cloud_ms", b.cloud_ms},
            {"down_ms", b.down_ms}, {"total_ms", b.total_ms}, {"throughput_per_s", b.throughput}};
  if (b.exit_rate > 0) {
    j["exit_rate"] = b.exit_rate;
    j["no_exit_ms"] = b.no_exit_ms;
  }
  if (b.edge_energy_j > 0) j["edge_energy_j"] = b.edge_energy_j;
  return j;
}

json placement_json(const Placement& p, const CutGraph* graph) {
  json j = {{"site", to_string(p.site)}, {"method", p.method},         {"up", p.up},
            {"down", p.down},           {"up_bytes", p.up_bytes},    {"down_bytes", p.down_bytes},
            {"predicted", breakdown_json(p.predicted)}};
  if (graph && p.site == Site::Split) {
    json edge_nodes = json::array();
    for (size_t i = 0; i < graph->nodes.size(); ++i)
      if (p.on_edge[i]) edge_nodes.push_back(graph->nodes[i]);
    j["edge_nodes"] = edge_nodes;
  }
  return j;
}

json exits_json(const CutGraph& g) {
  json out = json::array();
  for (const auto& e : g.exits)
    out.push_back({{"node", e.exit.node},
                   {"output", e.exit.output},
                   {"threshold", e.exit.threshold},
                   {"rate", e.exit.rate},
                   {"accuracy", e.exit.accuracy}});
  return out;
}

json variant_json(const VariantPlan& v, bool with_nodes) {
  json candidates = json::array();
  for (const auto& c : v.candidates) candidates.push_back(placement_json(c, nullptr));
  return {{"variant", v.variant},
          {"file", v.file},
          {"accuracy", v.accuracy ? json(*v.accuracy) : json(nullptr)},
          {"macs", v.macs},
          {"placement", placement_json(v.best, with_nodes ? &v.graph : nullptr)},
          {"exits", exits_json(v.graph)},
          {"candidates", candidates},
          {"meets_objective", v.meets},
          {"misses", v.misses},
          {"notes", v.notes}};
}

std::string percent(double fraction) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100 * fraction);
  return buf;
}

std::string misses_text(const VariantPlan& v) { return v.misses.empty() ? "none" : join(v.misses, "; "); }

// Each exit's head (the nodes only it needs) and every node computed before it can answer.
void add_exits(CutGraph& cg, const std::vector<Exit>& exits) {
  const size_t n = cg.nodes.size();
  std::vector<std::vector<int>> inputs_of(n);
  for (const auto& t : cg.tensors)
    if (t.producer >= 0)
      for (int c : t.consumers) inputs_of[c].push_back(t.producer);
  auto index = [&](const std::string& name) {
    const auto it = std::find(cg.nodes.begin(), cg.nodes.end(), name);
    TAILOR_CHECK(it != cg.nodes.end(), "early exit: node '", name, "' is not in the graph");
    return static_cast<int>(it - cg.nodes.begin());
  };
  auto ancestors = [&](int from) {  // from itself included
    std::vector<bool> seen(n, false);
    std::vector<int> stack = {from};
    seen[from] = true;
    while (!stack.empty()) {
      const int u = stack.back();
      stack.pop_back();
      for (int p : inputs_of[u])
        if (!seen[p]) stack.push_back(p), seen[p] = true;
    }
    return seen;
  };
  std::vector<bool> needed(n, false);
  for (const auto& e : exits) {
    CutGraph::ExitPath path;
    path.exit = e;
    const auto head = ancestors(index(e.output)), body = ancestors(index(e.node));
    for (size_t i = 0; i < n; ++i) {
      if (head[i] && !body[i]) path.head.push_back(static_cast<int>(i));
      needed[i] = needed[i] || head[i];
      if (needed[i]) path.needed.push_back(static_cast<int>(i));
    }
    cg.exits.push_back(std::move(path));
  }
}

}  // namespace

std::vector<Exit> exits_of(const GraphModuleImpl& module) {
  const auto& records = module.provenance();
  for (auto r = records.rbegin(); r != records.rend(); ++r) {
    if (r->pass.rfind("early-exit", 0) != 0) continue;
    auto text = [&](const char* key) {
      const AttrValue* v = r->stat(key);
      TAILOR_CHECK(v && std::holds_alternative<std::string>(*v), "the early-exit record lacks '", key, "'");
      return tailor::split(std::get<std::string>(*v));
    };
    auto numbers = [&](const char* key) {
      const AttrValue* v = r->stat(key);
      TAILOR_CHECK(v && std::holds_alternative<std::vector<double>>(*v), "the early-exit record lacks '", key, "'");
      return std::get<std::vector<double>>(*v);
    };
    const auto nodes = text("exit_nodes"), outputs = text("exit_outputs");
    const auto thresholds = numbers("thresholds"), rates = numbers("exit_rates"), accuracy = numbers("exit_accuracy");
    TAILOR_CHECK(nodes.size() == outputs.size() && thresholds.size() == nodes.size() && rates.size() == nodes.size() &&
                     accuracy.size() == nodes.size(),
                 "the early-exit record's lists differ in length");
    std::vector<Exit> exits;
    for (size_t k = 0; k < nodes.size(); ++k) exits.push_back({nodes[k], outputs[k], thresholds[k], rates[k], accuracy[k]});
    return exits;
  }
  return {};
}

ExitCalibration calibrate_exits(const std::vector<torch::Tensor>& exit_logits, const torch::Tensor& final_logits,
                                const torch::Tensor& labels, double target_accuracy) {
  const int64_t n = labels.size(0);
  TAILOR_CHECK(n > 0, "calibrating exits needs validation inputs");
  const auto final_correct = (final_logits.argmax(1) == labels).to(torch::kDouble);
  auto remaining = torch::ones({n}, torch::kBool);
  double exited_correct = 0;  // right answers of the inputs earlier exits took
  ExitCalibration c;
  c.final_accuracy = final_correct.mean().item<double>();
  for (const auto& logits : exit_logits) {
    const auto [confidence, prediction] = torch::softmax(logits.to(torch::kDouble), 1).max(1);
    const auto correct = (prediction == labels).to(torch::kDouble);
    // Exiting the m most confident remaining inputs changes the model's answer on exactly those: the overall top-1
    // is (earlier exits' right answers + this exit's on the m + the model's own head on the rest) / n. The
    // threshold lets the most inputs exit while that stays at the target.
    const auto idx = remaining.nonzero().squeeze(1);
    double threshold = std::nextafter(1.0, 2.0);  // never exit
    if (idx.numel() > 0) {
      const auto conf = confidence.index_select(0, idx);
      const auto order = conf.argsort(0, /*descending=*/true);
      const auto exit_hits = correct.index_select(0, idx).index_select(0, order).cumsum(0);
      const auto own = final_correct.index_select(0, idx).index_select(0, order);
      const auto own_rest = own.sum() - own.cumsum(0);
      const auto overall = (exit_hits + own_rest + exited_correct) / static_cast<double>(n);
      const auto ok = (overall >= target_accuracy - 1e-12).nonzero();
      if (ok.numel() > 0) threshold = conf.index_select(0, order)[ok.max().item<int64_t>()].item<double>();
    }
    const auto taken = remaining & (confidence >= threshold);
    const double took = taken.sum().item<double>();
    const double right = (correct * taken.to(torch::kDouble)).sum().item<double>();
    c.thresholds.push_back(threshold);
    c.rates.push_back(took / static_cast<double>(n));
    c.accuracy.push_back(took > 0 ? right / took : 0);
    exited_correct += right;
    remaining = remaining & ~taken;
  }
  c.overall_accuracy = (exited_correct + (final_correct * remaining.to(torch::kDouble)).sum().item<double>()) /
                       static_cast<double>(n);
  return c;
}

const char* to_string(Site site) {
  switch (site) {
    case Site::Cloud: return "cloud";
    case Site::Split: return "split";
    default: return "edge";
  }
}

NodeLatency node_latency(const LatencyProfile& profile, const std::string& percentile, double slowdown) {
  double sum = 0;
  for (const auto& n : profile.nodes) sum += n.ms;
  TAILOR_CHECK(sum > 0, "the ", profile.backend, " profile has no per-node times (take it with --node-runs > 0)");
  NodeLatency l;
  l.total_ms = (percentile == "p90" ? profile.latency.p90_ms : profile.latency.p50_ms) * slowdown;
  for (const auto& n : profile.nodes) l.node_ms[n.node] += n.ms / sum * l.total_ms;
  l.source = detail::concat("measured ", profile.backend, " ", profile.threads, profile.threads == 1 ? " thread " : " threads ",
                            profile.isa,
                            slowdown != 1 ? ", x" + short_number(slowdown) + " slowdown modelled" : "");
  l.modelled = slowdown != 1;
  return l;
}

const LatencyProfile* find_profile(const VariantCard& card, const Device& device) {
  for (const auto& [key, p] : card.profiles)
    if (p.backend == device.backend && p.threads == device.threads && (device.isa.empty() || p.isa == device.isa))
      return &p;
  return nullptr;
}

CutGraph CutGraph::of(GraphModuleImpl& module, const std::vector<std::vector<int64_t>>& input_shapes) {
  module.infer_shapes(input_shapes);
  const Graph& g = module.graph();
  CutGraph cg;
  cg.input_shapes = input_shapes;
  std::map<std::string, int64_t> macs_by_node;
  for (const auto& c : count_costs(module).nodes) macs_by_node[c.name] = c.macs;
  std::map<int, int> node_index;
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (is_structure(n.kind)) continue;
    node_index[id] = static_cast<int>(cg.nodes.size());
    cg.nodes.push_back(n.name);
    cg.macs.push_back(macs_by_node.count(n.name) ? macs_by_node[n.name] : 0);
  }
  std::map<int, int> tensor_index;
  auto tensor_of = [&](int v) {
    if (auto it = tensor_index.find(v); it != tensor_index.end()) return it->second;
    const Value& val = g.value(v);
    Tensor t;
    t.name = val.name;
    t.producer = val.producer < 0 ? -1 : node_index.at(val.producer);
    t.shape = val.shape;
    // Graph inputs carry no dtype after shape inference (which feeds them float zeros).
    t.dtype = val.dtype.empty() && val.producer < 0 && val.type == ValueType::Tensor ? "float32" : val.dtype;
    t.is_tensor = val.type == ValueType::Tensor;
    t.splittable = val.type != ValueType::TensorList && val.type != ValueType::Tuple && val.type != ValueType::Any;
    if (t.is_tensor) {
      int64_t numel = 1;
      for (int64_t d : val.shape) numel *= d;
      t.bytes = numel * element_bytes(val.dtype);
    }
    tensor_index[v] = static_cast<int>(cg.tensors.size());
    cg.tensors.push_back(std::move(t));
    return tensor_index[v];
  };
  for (int v : g.inputs()) tensor_of(v);
  for (int id : g.order()) {
    const Node& n = g.node(id);
    if (is_structure(n.kind)) continue;
    const int me = node_index.at(id);
    for (int v : n.inputs) {
      const int p = g.value(v).producer;
      if (p >= 0 && is_structure(g.node(p).kind)) continue;
      auto& consumers = cg.tensors[tensor_of(v)].consumers;
      if (std::find(consumers.begin(), consumers.end(), me) == consumers.end()) consumers.push_back(me);
    }
  }
  for (int v : g.outputs()) {
    const int p = g.value(v).producer;
    if (p >= 0 && is_structure(g.node(p).kind)) continue;
    cg.tensors[tensor_of(v)].model_output = true;
  }
  add_exits(cg, exits_of(module));
  return cg;
}

std::string Placement::to_json() const { return placement_json(*this, nullptr).dump(2); }

Placement evaluate(const CutGraph& graph, const std::vector<bool>& on_edge, const NodeLatency& edge,
                   const NodeLatency& cloud, const Link& link, const Objective& objective) {
  TAILOR_CHECK(on_edge.size() == graph.nodes.size(), "placement has ", on_edge.size(), " sites for ",
               graph.nodes.size(), " nodes");
  auto p = Pricing(graph, edge, cloud, link, objective).price(on_edge);
  TAILOR_CHECK(p.has_value(), "invalid placement: a tensor would flow from the cloud back to the edge, or a list "
               "would be separated from its consumer");
  return *p;
}

Placement best_chain_cut(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud, const Link& link,
                         const Objective& objective) {
  const Pricing pricing(graph, edge, cloud, link, objective);
  std::optional<Placement> best;
  std::vector<bool> on_edge(graph.nodes.size(), false);
  for (size_t k = 0; k <= graph.nodes.size(); ++k) {
    if (k > 0) on_edge[k - 1] = true;
    auto p = pricing.price(on_edge);
    if (p && (!best || p->predicted.total_ms < best->predicted.total_ms)) best = std::move(p);
  }
  TAILOR_INTERNAL_ASSERT(best.has_value(), "the edge-only placement is always valid");
  if (best->site == Site::Split) best->method = "chain cut";
  return *best;
}

namespace {

// The minimum cut with `pinned` nodes forced onto the edge side.
std::vector<bool> solve_min_cut(const CutGraph& graph, const Pricing& pricing, const Link& link,
                                const std::vector<int>& pinned) {
  const int n = static_cast<int>(graph.nodes.size());
  const int s = 0, t = 1, first_node = 2, first_tensor = 2 + n;
  FlowNetwork net(first_tensor + static_cast<int>(graph.tensors.size()));
  // A node on the cloud side cuts s->node (its cloud time, plus sending back the model outputs it makes); on the
  // edge side it cuts node->t (its edge time).
  std::vector<double> down(n, 0.0);
  for (const auto& tensor : graph.tensors)
    if (tensor.model_output && tensor.producer >= 0) down[tensor.producer] += link.down_ms(pricing.wire(tensor));
  for (int i = 0; i < n; ++i) {
    net.add(s, first_node + i, pricing.cloud_ms[i] + down[i]);
    net.add(first_node + i, t, pricing.edge_ms[i]);
  }
  for (int i : pinned) net.add(s, first_node + i, kInfinite);
  // A tensor is sent once however many cloud nodes read it: producer -> tensor vertex carries the transfer, the
  // tensor vertex -> each consumer is uncuttable. Infinite consumer -> producer arcs forbid cloud-to-edge flow.
  for (size_t j = 0; j < graph.tensors.size(); ++j) {
    const auto& tensor = graph.tensors[j];
    if (tensor.consumers.empty()) continue;
    const int vertex = first_tensor + static_cast<int>(j);
    const int producer = tensor.producer < 0 ? s : first_node + tensor.producer;
    net.add(producer, vertex, !tensor.splittable ? kInfinite : link.up_ms(pricing.wire(tensor)));
    for (int c : tensor.consumers) {
      net.add(vertex, first_node + c, kInfinite);
      if (tensor.producer >= 0) net.add(first_node + c, producer, kInfinite);
    }
  }
  net.max_flow(s, t);
  const auto side = net.source_side(s);
  std::vector<bool> on_edge(n);
  for (int i = 0; i < n; ++i) on_edge[i] = side[first_node + i];
  return on_edge;
}

}  // namespace

Placement min_cut(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud, const Link& link,
                  const Objective& objective) {
  const Pricing pricing(graph, edge, cloud, link, objective);
  const int n = static_cast<int>(graph.nodes.size());
  auto cut = pricing.price(solve_min_cut(graph, pricing, link, {}));
  TAILOR_INTERNAL_ASSERT(cut.has_value(), "a finite minimum cut is a valid placement");
  // With exits, a request that exits pays only the nodes before its exit, so the expected time is fixed + (share
  // not exiting) x the cut: among placements keeping every head on the edge, the minimum cut with the heads pinned
  // there is the best. The better of that and the unpinned cut is the answer.
  if (!graph.exits.empty()) {
    std::vector<int> heads;
    for (const auto& e : graph.exits) heads.insert(heads.end(), e.head.begin(), e.head.end());
    auto pinned = pricing.price(solve_min_cut(graph, pricing, link, heads));
    if (pinned && pinned->predicted.total_ms < cut->predicted.total_ms) cut = std::move(pinned);
  }
  // The round trip is paid once by any placement that uses the cloud, so it stays out of the flow network: the
  // best cut using the cloud costs the minimum cut plus the round trip, which the edge alone may still beat.
  auto edge_only = *pricing.price(std::vector<bool>(n, true));
  if (edge_only.predicted.total_ms <= cut->predicted.total_ms) return edge_only;
  if (cut->site == Site::Split) cut->method = "min-cut";
  return *cut;
}

BandwidthSweep sweep_bandwidth(const CutGraph& graph, const NodeLatency& edge, const NodeLatency& cloud,
                               const Link& link, const Objective& objective) {
  const size_t n = graph.nodes.size();
  BandwidthSweep s;
  for (int i = 0; i <= 32; ++i) {  // 0.1 to 1000 Mbit/s, 8 points a decade
    Link l = link;
    l.uplink_mbps = std::pow(10.0, -1 + i / 8.0);
    l.downlink_mbps = link.downlink_mbps / link.uplink_mbps * l.uplink_mbps;
    const Pricing at(graph, edge, cloud, l, objective);
    const auto cloud_only = at.price(std::vector<bool>(n, false));
    const Placement best = min_cut(graph, edge, cloud, l, objective);
    s.uplink_mbps.push_back(l.uplink_mbps);
    s.edge_ms.push_back(at.price(std::vector<bool>(n, true))->predicted.total_ms);
    s.cloud_ms.push_back(cloud_only ? cloud_only->predicted.total_ms : std::nan(""));
    s.best_ms.push_back(best.predicted.total_ms);
    s.best_site.push_back(to_string(best.site));
  }
  return s;
}

VariantPlan plan_variant(GraphModuleImpl& module, const VariantCard& card, const NodeLatency& edge,
                         const NodeLatency& cloud, const Link& link, const Objective& objective) {
  TAILOR_CHECK(!card.input_shapes.empty(), "variant '", card.name, "' has no input shapes on its card");
  VariantPlan v;
  v.variant = card.name;
  v.file = card.file;
  v.accuracy = card.accuracy;
  v.macs = card.macs;
  v.graph = CutGraph::of(module, card.input_shapes);
  const Pricing pricing(v.graph, edge, cloud, link, objective);
  const size_t n = v.graph.nodes.size();
  std::vector<Placement> all = {*pricing.price(std::vector<bool>(n, true)),
                                best_chain_cut(v.graph, edge, cloud, link, objective),
                                min_cut(v.graph, edge, cloud, link, objective)};
  if (auto cloud_only = pricing.price(std::vector<bool>(n, false))) all.insert(all.begin() + 1, *cloud_only);
  for (auto& p : all) {
    const bool seen = std::any_of(v.candidates.begin(), v.candidates.end(),
                                  [&](const Placement& c) { return same_assignment(c, p); });
    if (!seen) v.candidates.push_back(std::move(p));
  }
  std::stable_sort(v.candidates.begin(), v.candidates.end(), [](const Placement& a, const Placement& b) {
    return a.predicted.total_ms < b.predicted.total_ms;
  });
  // With a throughput target, the fastest placement that sustains it; otherwise the fastest.
  v.best = v.candidates.front();
  if (objective.throughput)
    for (const auto& c : v.candidates)
      if (c.predicted.throughput >= *objective.throughput) {
        v.best = c;
        break;
      }
  const Breakdown& b = v.best.predicted;
  if (objective.latency_ms && b.total_ms > *objective.latency_ms)
    v.misses.push_back(detail::concat(objective.percentile, " ", short_number(b.total_ms), " ms > ",
                                      short_number(*objective.latency_ms), " ms"));
  if (objective.throughput && b.throughput < *objective.throughput)
    v.misses.push_back(detail::concat("throughput ", short_number(b.throughput), "/s < ",
                                      short_number(*objective.throughput), "/s"));
  if (objective.min_accuracy) {
    if (!card.accuracy)
      v.misses.push_back("no accuracy on its card (evaluate it, or drop min_accuracy)");
    else if (*card.accuracy < *objective.min_accuracy)
      v.misses.push_back("accuracy " + percent(*card.accuracy) + " < " + percent(*objective.min_accuracy));
  }
  v.meets = v.misses.empty();
  v.sweep = sweep_bandwidth(v.graph, edge, cloud, link, objective);
  v.notes.push_back("edge times: " + edge.source);
  v.notes.push_back("cloud times: " + cloud.source);
  return v;
}

namespace {

// Node latencies of a card on a device: its matching profile, else the device's latency table.
std::optional<NodeLatency> latency_on(const VariantCard& card, GraphModuleImpl& module, const Device& device,
                                      const std::string& percentile) {
  if (const LatencyProfile* p = find_profile(card, device)) {
    try {
      return node_latency(*p, percentile, device.slowdown);
    } catch (const Error& e) {
      TAILOR_FAIL("variant '", card.name, "': ", e.message());
    }
  }
  if (device.table.empty()) return std::nullopt;
  latency::Model model = latency::Model::load(device.table);
  const auto& target = model.target();
  TAILOR_CHECK(target.backend == device.backend && target.threads == device.threads, "device '", device.name,
               "': its table ", device.table, " was built for ", target.str());
  const auto shape = card.input_shapes.at(0);
  const latency::Prediction pred = model.predict(latency::detect_kernels(module, shape, target));
  NodeLatency l;
  l.total_ms = pred.total_ms * device.slowdown;
  double sum = 0;
  for (const auto& k : pred.kernels) sum += k.ms;
  for (const auto& k : pred.kernels) l.node_ms[k.node] += sum > 0 ? k.ms / sum * l.total_ms : 0;
  l.source = detail::concat("predicted by ", device.table, " (", target.str(), ")");
  l.modelled = true;
  return l;
}

std::string profile_hint(const VariantCard& card, const std::string& dir, const Device& d) {
  const auto file = (std::filesystem::path(dir) / card.file).string();
  const auto shape = card.input_shapes.empty() ? std::string("SHAPE") : shape_to_string(card.input_shapes[0]);
  const std::string isa = d.isa.empty() ? "" : " --isa " + d.isa;
  return detail::concat("variant '", card.name, "' has no per-node profile for ", d.str(), ": run `tailor profile ",
                        file, " --input ", shape, " --backends ", d.backend, " --threads ", d.threads, isa, " --card ",
                        (std::filesystem::path(dir.empty() ? "." : dir) / "manifest.json").string(), " --name ",
                        card.name, "`, or `tailor place --measure`");
}

}  // namespace

Plan plan(const Manifest& manifest, const std::string& manifest_dir, const Device& edge, const Device& cloud,
          const Link& link, const Objective& objective) {
  TAILOR_CHECK(!manifest.variants.empty(), "the manifest lists no variants");
  std::vector<VariantPlan> plans;
  std::vector<std::string> missing;
  for (const auto& card : manifest.variants) {
    const auto file = (std::filesystem::path(manifest_dir) / card.file).string();
    GraphModule module = load(file);
    module->eval();
    torch::NoGradGuard no_grad;
    const auto e = latency_on(card, *module, edge, objective.percentile);
    const auto c = latency_on(card, *module, cloud, objective.percentile);
    if (!e || !c) {
      missing.push_back(profile_hint(card, manifest_dir, !e ? edge : cloud));
      continue;
    }
    plans.push_back(plan_variant(*module, card, *e, *c, link, objective));
  }
  TAILOR_CHECK(!plans.empty(), "no variant can be planned:\n  ", join(missing, "\n  "));
  // With a latency target, the most accurate variant that meets everything (then the fastest); without one, the
  // fastest that meets the rest.
  auto better = [&](const VariantPlan& a, const VariantPlan& b) {
    if (a.meets != b.meets) return a.meets;
    if (objective.latency_ms && a.meets) {
      const double aa = a.accuracy.value_or(-1), ba = b.accuracy.value_or(-1);
      if (aa != ba) return aa > ba;
    }
    return a.best.predicted.total_ms < b.best.predicted.total_ms;
  };
  std::stable_sort(plans.begin(), plans.end(), better);
  if (!plans.front().meets) {
    // The closest: fewest misses, then fastest.
    const auto closest = *std::min_element(plans.begin(), plans.end(), [](const VariantPlan& a, const VariantPlan& b) {
      if (a.misses.size() != b.misses.size()) return a.misses.size() < b.misses.size();
      return a.best.predicted.total_ms < b.best.predicted.total_ms;
    });
    TAILOR_FAIL("no variant meets the objective on ", link.name, "; the closest is '", closest.variant, "' (",
                to_string(closest.best.site), ", predicted ", objective.percentile, " ",
                short_number(closest.best.predicted.total_ms), " ms), which misses: ", misses_text(closest));
  }
  Plan result;
  result.edge = edge;
  result.cloud = cloud;
  result.link = link;
  result.objective = objective;
  result.chosen = std::move(plans.front());
  result.runners_up.assign(std::make_move_iterator(plans.begin() + 1), std::make_move_iterator(plans.end()));
  for (const auto& m : missing) result.chosen.notes.push_back("not planned: " + m);
  return result;
}

std::string Plan::to_json() const {
  json runners = json::array();
  for (const auto& v : runners_up) runners.push_back(variant_json(v, false));
  auto device_json = [](const Device& d) {
    return json{{"name", d.name},   {"backend", d.backend},   {"threads", d.threads},
                {"isa", d.isa},     {"slowdown", d.slowdown}, {"modelled", d.modelled()}};
  };
  json o = {{"percentile", objective.percentile}, {"codec", to_string(objective.codec)}};
  if (objective.latency_ms) o["latency_ms"] = *objective.latency_ms;
  if (objective.throughput) o["throughput"] = *objective.throughput;
  if (objective.min_accuracy) o["min_accuracy"] = *objective.min_accuracy;
  if (objective.joules_per_mac) o["joules_per_mac"] = *objective.joules_per_mac;
  if (objective.joules_per_byte) o["joules_per_byte"] = *objective.joules_per_byte;
  return json{{"format", "tailor-plan"},
              {"version", 1},
              {"edge", device_json(edge)},
              {"cloud", device_json(cloud)},
              {"link",
               {{"name", link.name},
                {"uplink_mbps", link.uplink_mbps},
                {"downlink_mbps", link.downlink_mbps},
                {"rtt_ms", link.rtt_ms},
                {"jitter_ms", link.jitter_ms},
                {"source", link.source}}},
              {"objective", o},
              {"chosen", variant_json(chosen, true)},
              {"runners_up", runners}}
      .dump(2);
}

}  // namespace tailor::place
