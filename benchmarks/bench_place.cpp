// Placement fidelity: does the planner choose the placement that is fastest when run for real, and is its predicted
// end-to-end latency right? Phases (separate processes, because the ISA cap is per process and the edge and the
// cloud may need different ones; benchmarks/placement.sh runs them in order):
//   bench_place profile   --role edge|cloud --threads N [--isa I] --out DIR MODEL...   per-node profiles
//   bench_place candidates --out DIR MODEL...       placements to run: every planned one, edge, cloud, chain cuts
//   bench_place measure   --role edge|cloud --threads N [--isa I] --out DIR MODEL...   each candidate's part, timed
//   bench_place report    --out DIR MODEL...        planner's choice and prediction against the measured runs
//   bench_place codec     --out DIR MODEL...        Fashion-MNIST top-1 with each cut tensor sent as fp16 / int8
//   bench_place dag       --out DIR MODEL...        where the min-cut beats every chain cut, and by how much
// MODEL is name=FILE_OR_ZOO:SHAPE, e.g. resnet18=build/tests/fixtures/resnet18_traced.pt:1x3x224x224.
// Link time is bytes / bandwidth + RTT from the link model (the serving runtime will replace it with real sends).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

using namespace tailor;
using namespace tailor::place;
using nlohmann::json;

namespace {

struct ModelSpec {
  std::string name, source;
  std::vector<int64_t> shape;
};

struct Args {
  std::string phase, role, isa, out = "out/placement";
  int threads = 1;
  double seconds = 0.6;  // timing per part and round set
  std::vector<ModelSpec> models;
};

// The scenarios: six links (the shipped examples' bandwidths) x two round trips, with the edge as measured and
// modelled 4x slower.
const std::vector<std::pair<std::string, double>> kLinks = {{"narrowband", 0.25}, {"3g", 1.1},        {"lte", 5.85},
                                                            {"wifi", 18.88},      {"lan-100m", 100}, {"lan-1g", 1000}};
const std::vector<double> kRtts = {5, 50};
const std::vector<double> kSlowdowns = {1, 4};

Link make_link(const std::string& name, double mbps, double rtt) {
  Link l;
  l.name = name;
  l.uplink_mbps = l.downlink_mbps = mbps;
  l.rtt_ms = rtt;
  return l;
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  TAILOR_CHECK(in.good(), "cannot read ", path, " (run the earlier phases first)");
  return json::parse(in);
}

void write_json(const std::string& path, const json& j) { write_file_atomically(path, j.dump(1)); }

struct Loaded {
  GraphModule module{nullptr};
  CutGraph graph;
};
Loaded load_spec(const ModelSpec& m) {
  Loaded l;
  l.module = models::load_model(m.source);
  l.module->eval();
  l.graph = CutGraph::of(*l.module, {m.shape});
  return l;
}

std::string mask_text(const std::vector<bool>& on_edge) {
  std::string s;
  for (bool b : on_edge) s += b ? '1' : '0';
  return s;
}
std::vector<bool> mask_of(const std::string& s) {
  std::vector<bool> m;
  for (char c : s) m.push_back(c == '1');
  return m;
}

NodeLatency latency_of(const json& profile, double slowdown) {
  return node_latency(LatencyProfile::from_json(profile.dump()), "p50", slowdown);
}

int profile_phase(const Args& a) {
  json out = json::object();
  for (const auto& m : a.models) {
    ProfileOptions o;
    o.threads = a.threads;
    o.isa = a.isa;
    o.max_seconds = 3;
    o.node_runs = 10;
    GraphModule gm = models::load_model(m.source);
    gm->eval();
    const LatencyProfile p = profile(*gm, "onednn-cpu", m.shape, o);
    std::fprintf(stderr, "%s %s: p50 %.3f ms (%s, %d thread%s)\n", a.role.c_str(), m.name.c_str(), p.latency.p50_ms,
                 p.isa.c_str(), p.threads, p.threads == 1 ? "" : "s");
    out[m.name] = json::parse(p.to_json());
  }
  write_json(a.out + "/" + a.role + "-profiles.json", out);
  return 0;
}

int candidates_phase(const Args& a) {
  const json edge = read_json(a.out + "/edge-profiles.json"), cloud = read_json(a.out + "/cloud-profiles.json");
  json out = json::object();
  for (const auto& m : a.models) {
    torch::NoGradGuard no_grad;
    Loaded l = load_spec(m);
    const size_t n = l.graph.nodes.size();
    std::set<std::string> masks = {std::string(n, '1'), std::string(n, '0')};
    const NodeLatency c = latency_of(cloud[m.name], 1);
    for (double slowdown : kSlowdowns) {
      const NodeLatency e = latency_of(edge[m.name], slowdown);
      for (const auto& [name, mbps] : kLinks)
        for (double rtt : kRtts) {
          const Link link = make_link(name, mbps, rtt);
          masks.insert(mask_text(min_cut(l.graph, e, c, link, {}).on_edge));
          masks.insert(mask_text(best_chain_cut(l.graph, e, c, link, {}).on_edge));
        }
    }
    // Evenly spaced chain cuts (valid ones), so the measured best is searched beyond what the planner liked.
    const NodeLatency e = latency_of(edge[m.name], 1);
    std::vector<std::string> chain;
    for (size_t k = 1; k < n; ++k) {
      std::vector<bool> on_edge(n, false);
      std::fill(on_edge.begin(), on_edge.begin() + static_cast<long>(k), true);
      try {
        evaluate(l.graph, on_edge, e, c, make_link("x", 1, 0), {});
        chain.push_back(mask_text(on_edge));
      } catch (const Error&) {
      }
    }
    const size_t spaced = 16;
    for (size_t i = 0; i < spaced && !chain.empty(); ++i) masks.insert(chain[i * chain.size() / spaced]);
    out[m.name] = std::vector<std::string>(masks.begin(), masks.end());
    // A request that takes exit k runs only the nodes that exit needs: those are timed as an edge part too.
    std::vector<std::string> exit_masks;
    for (const auto& path : l.graph.exits) {
      std::vector<bool> needed(n, false);
      for (int i : path.needed) needed[i] = true;
      exit_masks.push_back(mask_text(needed));
    }
    out[m.name + "/exits"] = exit_masks;
    std::fprintf(stderr, "%s: %zu candidate placements (%zu nodes, %zu exits)\n", m.name.c_str(), masks.size(), n,
                 exit_masks.size());
  }
  write_json(a.out + "/candidates.json", out);
  return 0;
}

std::vector<c10::IValue> inputs_for(const GraphModuleImpl& part) {
  std::vector<c10::IValue> in;
  for (int v : part.graph().inputs()) in.emplace_back(torch::randn(part.graph().value(v).shape));
  return in;
}

int measure_phase(const Args& a) {
  const json candidates = read_json(a.out + "/candidates.json");
  json out = json::object();
  set_threads(a.threads);
  for (const auto& m : a.models) {
    torch::NoGradGuard no_grad;
    Loaded l = load_spec(m);
    auto masks = candidates.at(m.name).get<std::vector<std::string>>();
    const auto exit_masks = candidates.at(m.name + "/exits").get<std::vector<std::string>>();
    if (a.role == "edge") masks.insert(masks.end(), exit_masks.begin(), exit_masks.end());
    std::vector<std::unique_ptr<Executable>> exes;
    std::vector<Executable*> raw;
    std::vector<std::vector<c10::IValue>> inputs;
    std::vector<int> slot(masks.size(), -1);
    for (size_t i = 0; i < masks.size(); ++i) {
      SplitModel parts = split(*l.module, l.graph, mask_of(masks[i]));
      auto& part = a.role == "edge" ? parts.edge : parts.cloud;
      if (!part) continue;
      CompileOptions co;
      for (int v : (*part)->graph().inputs()) co.input_shapes.push_back((*part)->graph().value(v).shape);
      co.threads = a.threads;
      co.isa = a.isa;
      exes.push_back(compile("onednn-cpu", **part, co));
      raw.push_back(exes.back().get());
      inputs.push_back(inputs_for(**part));
      slot[i] = static_cast<int>(raw.size()) - 1;
    }
    ProfileOptions o;
    o.threads = a.threads;
    o.min_runs = 5;
    o.warmup = 3;
    o.max_seconds = a.seconds * static_cast<double>(raw.size());
    const auto t0 = std::chrono::steady_clock::now();
    const auto stats = time_interleaved(raw, inputs, o, 5);
    std::vector<double> ms(masks.size(), 0.0);
    for (size_t i = 0; i < masks.size(); ++i)
      if (slot[i] >= 0) ms[i] = stats[slot[i]].p50_ms;
    const auto candidates_end = ms.begin() + static_cast<long>(masks.size() - (a.role == "edge" ? exit_masks.size() : 0));
    out[m.name] = std::vector<double>(ms.begin(), candidates_end);
    out[m.name + "/exits"] = std::vector<double>(candidates_end, ms.end());
    std::fprintf(stderr, "%s %s: %zu parts timed in %.0f s\n", a.role.c_str(), m.name.c_str(), raw.size(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  write_json(a.out + "/" + a.role + "-parts.json", out);
  return 0;
}

int report_phase(const Args& a) {
  const json edge = read_json(a.out + "/edge-profiles.json"), cloud = read_json(a.out + "/cloud-profiles.json");
  const json candidates = read_json(a.out + "/candidates.json");
  const json edge_parts = read_json(a.out + "/edge-parts.json"), cloud_parts = read_json(a.out + "/cloud-parts.json");
  json rows = json::array();
  int scenarios = 0, within5 = 0, within10 = 0, compute10 = 0;
  std::printf("%-14s %-5s %-11s %6s | %-6s %-9s %9s %9s %7s | %-6s %9s | %7s %9s\n", "model", "edge", "link", "rtt",
              "chosen", "method", "predicted", "measured", "error", "best", "measured", "regret", "speedup");
  for (const auto& m : a.models) {
    torch::NoGradGuard no_grad;
    Loaded l = load_spec(m);
    const auto masks = candidates.at(m.name).get<std::vector<std::string>>();
    const auto em = edge_parts.at(m.name).get<std::vector<double>>();
    const auto cm = cloud_parts.at(m.name).get<std::vector<double>>();
    const auto exit_ms = edge_parts.at(m.name + "/exits").get<std::vector<double>>();
    const NodeLatency c = latency_of(cloud[m.name], 1);
    {
      // The whole planning of one variant: cut graph, every chain cut, the min-cut(s), and the 33-point bandwidth
      // sweep of the report.
      VariantCard card;
      card.name = m.name;
      card.input_shapes = {m.shape};
      const auto t0 = std::chrono::steady_clock::now();
      plan_variant(*l.module, card, latency_of(edge[m.name], 1), c, make_link("lte", 5.85, 50), {});
      std::fprintf(stderr, "%s: plan_variant %.1f ms (%zu nodes, %zu tensors)\n", m.name.c_str(),
                   std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                   l.graph.nodes.size(), l.graph.tensors.size());
    }
    for (double slowdown : kSlowdowns) {
      const NodeLatency e = latency_of(edge[m.name], slowdown);
      for (const auto& [name, mbps] : kLinks)
        for (double rtt : kRtts) {
          const Link link = make_link(name, mbps, rtt);
          const auto t0 = std::chrono::steady_clock::now();
          const Placement chosen = min_cut(l.graph, e, c, link, {});
          const double plan_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          const Placement chain = best_chain_cut(l.graph, e, c, link, {});
          // Measured end to end for every candidate: parts as timed, the link as modelled.
          double best = 1e300, edge_only = 0, cloud_only = 0, chosen_measured = -1, chosen_compute = 0;
          std::string best_site;
          for (size_t i = 0; i < masks.size(); ++i) {
            const Placement p = evaluate(l.graph, mask_of(masks[i]), e, c, link, {});
            double measured = em[i] * slowdown + cm[i] + p.predicted.up_ms + p.predicted.down_ms + p.predicted.rtt_ms;
            if (p.predicted.exit_rate > 0) {  // the exits the placement can use, with their measured prefixes
              double expected = 0, rest = 1;
              for (size_t k = 0; k < l.graph.exits.size() && rest - (1 - p.predicted.exit_rate) > 1e-12; ++k) {
                expected += l.graph.exits[k].exit.rate * exit_ms[k] * slowdown;
                rest -= l.graph.exits[k].exit.rate;
              }
              measured = expected + (1 - p.predicted.exit_rate) * measured;
            }
            if (measured < best) {
              best = measured;
              best_site = to_string(p.site);
            }
            if (p.site == Site::Edge) edge_only = measured;
            if (p.site == Site::Cloud) cloud_only = measured;
            if (masks[i] == mask_text(chosen.on_edge)) {
              chosen_measured = measured;
              chosen_compute = em[i] * slowdown + cm[i];
            }
          }
          TAILOR_INTERNAL_ASSERT(chosen_measured >= 0, "the chosen placement was not measured");
          const double error = chosen.predicted.total_ms / chosen_measured - 1;
          const double compute_error = (chosen.predicted.edge_ms + chosen.predicted.cloud_ms) / chosen_compute - 1;
          const double regret = chosen_measured / best - 1;
          const double speedup = std::min(edge_only, cloud_only) / chosen_measured;
          ++scenarios;
          within5 += regret <= 0.05;
          within10 += std::abs(error) <= 0.10;
          compute10 += std::abs(compute_error) <= 0.10;
          std::printf("%-14s %-5s %-11s %6.0f | %-6s %-9s %9.2f %9.2f %+6.1f%% | %-6s %9.2f | %6.1f%% %8.2fx\n",
                      m.name.c_str(), slowdown == 1 ? "meas" : "x4", name.c_str(), rtt, to_string(chosen.site),
                      chosen.method.c_str(), chosen.predicted.total_ms, chosen_measured, 100 * error,
                      best_site.c_str(), best, 100 * regret, speedup);
          rows.push_back({{"model", m.name},
                          {"edge_slowdown", slowdown},
                          {"link", name},
                          {"uplink_mbps", mbps},
                          {"rtt_ms", rtt},
                          {"chosen", to_string(chosen.site)},
                          {"method", chosen.method},
                          {"up_bytes", chosen.up_bytes},
                          {"predicted_ms", chosen.predicted.total_ms},
                          {"measured_ms", chosen_measured},
                          {"error", error},
                          {"compute_error", compute_error},
                          {"measured_best_ms", best},
                          {"measured_best_site", best_site},
                          {"regret", regret},
                          {"speedup_over_best_single_site", speedup},
                          {"chain_cut_predicted_ms", chain.predicted.total_ms},
                          {"min_cut_gain_over_chain", chain.predicted.total_ms / chosen.predicted.total_ms},
                          {"plan_ms", plan_ms},
                          {"exit_rate", chosen.predicted.exit_rate},
                          {"candidates", masks.size()}});
        }
    }
  }
  std::printf("\n%d scenarios: choice within 5%% of the measured best in %d (%.1f%%); predicted end-to-end within "
              "+-10%% of measured in %d (%.1f%%); predicted compute (edge + cloud) within +-10%% in %d (%.1f%%)\n",
              scenarios, within5, 100.0 * within5 / scenarios, within10, 100.0 * within10 / scenarios, compute10,
              100.0 * compute10 / scenarios);
  write_json(a.out + "/report.json", {{"rows", rows},
                                      {"edge", edge.begin()->at("machine")},
                                      {"edge_isa", edge.begin()->at("isa")},
                                      {"cloud_isa", cloud.begin()->at("isa")}});
  return 0;
}

// Accuracy through the wire codecs: the model split at every valid chain cut that sends one tensor, the test split
// run through edge part -> codec (per image, as a sender encodes each request) -> cloud part.
int codec_phase(const Args& a) {
  const auto test = data::load_fashion_mnist(data::Split::Test);
  std::printf("%-14s %-24s %10s %9s %9s %9s\n", "model", "cut", "bytes", "none %", "fp16 %", "int8 %");
  json rows = json::array();
  for (const auto& m : a.models) {
    torch::NoGradGuard no_grad;
    Loaded l = load_spec(m);
    const size_t n = l.graph.nodes.size();
    const NodeLatency unit = [&] {
      NodeLatency u;
      for (const auto& node : l.graph.nodes) u.node_ms[node] = 1;
      u.total_ms = static_cast<double>(n);
      return u;
    }();
    for (size_t k = 1; k < n; ++k) {
      std::vector<bool> on_edge(n, false);
      std::fill(on_edge.begin(), on_edge.begin() + static_cast<long>(k), true);
      Placement p;
      try {
        p = evaluate(l.graph, on_edge, unit, unit, make_link("x", 1, 0), {});
      } catch (const Error&) {
        continue;
      }
      if (p.up.size() != 1) continue;
      SplitModel parts = split(*l.module, l.graph, on_edge);
      json row = {{"model", m.name}, {"cut", p.up[0]}, {"bytes", p.up_bytes}};
      std::printf("%-14s %-24s %10lld", m.name.c_str(), p.up[0].c_str(), static_cast<long long>(p.up_bytes));
      for (Codec codec : {Codec::None, Codec::Fp16, Codec::Int8}) {
        const double top1 = data::top1_accuracy(
            [&](const at::Tensor& x) {
              auto sent = (*parts.edge)->run({x});
              auto t = sent.isTuple() ? sent.toTupleRef().elements().back().toTensor() : sent.toTensor();
              std::vector<torch::Tensor> rows_through;
              for (int64_t i = 0; i < t.size(0); ++i) rows_through.push_back(through_codec(t[i], codec));
              const auto y = (*parts.cloud)->run({torch::stack(rows_through)});
              return y.isTuple() ? y.toTupleRef().elements().at(0).toTensor() : y.toTensor();
            },
            test, 500);
        row[to_string(codec)] = top1;
        std::printf(" %9.2f", 100 * top1);
      }
      std::printf("\n");
      rows.push_back(row);
    }
  }
  write_json(a.out + "/codec.json", rows);
  return 0;
}

// Where the DAG's min-cut beats every chain cut: the measured profiles, bandwidths 0.1-1000 Mbit/s, modelled edge
// slowdowns and codecs; prints the largest predicted gains and writes them with their placements (dag.json).
int dag_phase(const Args& a) {
  const json edge = read_json(a.out + "/edge-profiles.json"), cloud = read_json(a.out + "/cloud-profiles.json");
  json rows = json::array();
  for (const auto& m : a.models) {
    torch::NoGradGuard no_grad;
    Loaded l = load_spec(m);
    const NodeLatency c = latency_of(cloud[m.name], 1);
    json best = nullptr;
    for (double slowdown : {1.0, 2.0, 4.0, 8.0, 16.0})
      for (Codec codec : {Codec::None, Codec::Int8}) {
        const NodeLatency e = latency_of(edge[m.name], slowdown);
        Objective o;
        o.codec = codec;
        for (int i = 0; i <= 40; ++i) {
          const Link link = make_link("sweep", std::pow(10.0, -1 + i / 10.0), 5);
          const Placement cut = min_cut(l.graph, e, c, link, o);
          const Placement chain = best_chain_cut(l.graph, e, c, link, o);
          const double gain = chain.predicted.total_ms / cut.predicted.total_ms;
          if (best.is_null() || gain > best["gain"].get<double>())
            best = {{"model", m.name}, {"slowdown", slowdown}, {"codec", to_string(codec)},
                    {"uplink_mbps", link.uplink_mbps}, {"gain", gain}, {"min_cut_ms", cut.predicted.total_ms},
                    {"chain_ms", chain.predicted.total_ms}, {"min_cut_up", cut.up}, {"chain_up", chain.up},
                    {"min_cut_mask", mask_text(cut.on_edge)}, {"chain_mask", mask_text(chain.on_edge)}};
        }
      }
    std::printf("%-14s largest min-cut gain over the best chain cut: %.3fx (edge x%g, codec %s, %.3g Mbit/s): "
                "%.2f ms vs %.2f ms; min-cut sends %zu tensors, chain %zu\n",
                m.name.c_str(), best["gain"].get<double>(), best["slowdown"].get<double>(),
                best["codec"].get<std::string>().c_str(), best["uplink_mbps"].get<double>(),
                best["min_cut_ms"].get<double>(), best["chain_ms"].get<double>(), best["min_cut_up"].size(),
                best["chain_up"].size());
    rows.push_back(best);
  }
  write_json(a.out + "/dag.json", rows);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  try {
    TAILOR_CHECK(argc >= 2, "usage: bench_place profile|candidates|measure|report [options] name=MODEL:SHAPE ...");
    a.phase = argv[1];
    for (int i = 2; i < argc; ++i) {
      const std::string s = argv[i];
      auto next = [&]() -> std::string {
        TAILOR_CHECK(i + 1 < argc, s, " needs a value");
        return argv[++i];
      };
      if (s == "--role") a.role = next();
      else if (s == "--threads") a.threads = std::stoi(next());
      else if (s == "--isa") a.isa = next();
      else if (s == "--out") a.out = next();
      else if (s == "--seconds") a.seconds = std::stod(next());
      else {
        const auto eq = s.find('='), colon = s.rfind(':');
        TAILOR_CHECK(eq != std::string::npos && colon != std::string::npos && colon > eq, "bad model spec '", s,
                     "' (expected name=FILE:SHAPE)");
        a.models.push_back({s.substr(0, eq), s.substr(eq + 1, colon - eq - 1), parse_shape(s.substr(colon + 1))});
      }
    }
    if (!a.isa.empty()) set_isa_cap(a.isa);
    std::filesystem::create_directories(a.out);
    if (a.phase == "profile") return profile_phase(a);
    if (a.phase == "candidates") return candidates_phase(a);
    if (a.phase == "measure") return measure_phase(a);
    if (a.phase == "report") return report_phase(a);
    if (a.phase == "codec") return codec_phase(a);
    if (a.phase == "dag") return dag_phase(a);
    TAILOR_FAIL("unknown phase '", a.phase, "'");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_place: %s\n", e.what());
    return 1;
  }
}
