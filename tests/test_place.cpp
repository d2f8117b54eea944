// Placement: descriptions and their bad input, the min-cut against brute force on random DAGs, a DAG where the
// min-cut beats every chain cut, split parts that compose to the whole model (in tailor and in stock LibTorch),
// wire codecs, and the planner's refusals.
#include <filesystem>
#include <fstream>
#include <random>

#include <catch2/catch.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::place;
namespace fs = std::filesystem;

namespace {

std::string tmp_dir(const std::string& name) {
  const std::string dir = std::string(TAILOR_TEST_TMP) + "/place/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

// A random DAG: node i reads the previous node and, sometimes, an earlier one (residuals); node 0 reads the input.
struct Random {
  CutGraph graph;
  NodeLatency edge, cloud;
};
Random random_dag(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.1, 10);
  Random r;
  auto& g = r.graph;
  g.tensors.push_back({"input", -1, {}, false, true, true, {1}, "float32", static_cast<int64_t>(u(rng) * 2000)});
  for (int i = 0; i < n; ++i) {
    g.nodes.push_back("n" + std::to_string(i));
    g.macs.push_back(static_cast<int64_t>(u(rng) * 1e6));
    r.edge.node_ms[g.nodes.back()] = u(rng);
    r.cloud.node_ms[g.nodes.back()] = u(rng) / 4;
    g.tensors.push_back({"t" + std::to_string(i), i, {}, i == n - 1, true, true, {1}, "float32",
                         static_cast<int64_t>(u(rng) * 2000)});
  }
  for (int i = 0; i < n; ++i) {
    g.tensors[i].consumers.push_back(i);  // tensor i is the input (i = 0) or node i-1's output
    if (i >= 2 && rng() % 3 == 0) g.tensors[rng() % (i - 1)].consumers.push_back(i);
  }
  for (auto* l : {&r.edge, &r.cloud})
    for (const auto& [k, v] : l->node_ms) l->total_ms += v;
  return r;
}

// The best valid placement by enumeration.
double brute_force(const CutGraph& g, const NodeLatency& e, const NodeLatency& c, const Link& l, const Objective& o) {
  double best = 1e300;
  const size_t n = g.nodes.size();
  for (uint64_t mask = 0; mask < (uint64_t{1} << n); ++mask) {
    std::vector<bool> on_edge(n);
    for (size_t i = 0; i < n; ++i) on_edge[i] = (mask >> i) & 1;
    try {
      best = std::min(best, evaluate(g, on_edge, e, c, l, o).predicted.total_ms);
    } catch (const Error&) {
    }
  }
  return best;
}

Link link(double mbps, double rtt) {
  Link l;
  l.name = "test";
  l.uplink_mbps = l.downlink_mbps = mbps;
  l.rtt_ms = rtt;
  return l;
}

// Uniform per-node times (a node's time on a device proportional to nothing in particular): enough for splitting.
NodeLatency uniform(const CutGraph& g, double ms) {
  NodeLatency l;
  for (const auto& n : g.nodes) l.node_ms[n] = ms;
  l.total_ms = ms * static_cast<double>(g.nodes.size());
  return l;
}

torch::Tensor first(const c10::IValue& v) { return tailor::test::first_tensor(v); }

}  // namespace

TEST_CASE("device, link and objective descriptions parse from YAML and inline text", "[place]") {
  const Device d = Device::load("backend=onednn-cpu,threads=2,isa=avx2,slowdown=3");
  CHECK(d.backend == "onednn-cpu");
  CHECK(d.threads == 2);
  CHECK(d.isa == "avx2");
  CHECK(d.modelled());
  CHECK(d.str().find("modelled") != std::string::npos);
  const Link lte = Link::load(std::string(TAILOR_SOURCE_DIR) + "/examples/place/links/lte.yaml");
  CHECK(lte.name == "lte");
  CHECK(lte.uplink_mbps == Approx(5.85));
  CHECK(lte.up_ms(5'850'000 / 8) == Approx(1000));  // one second of uplink
  const Objective o = Objective::load("percentile=p90,latency_ms=40,codec=int8,min_accuracy=0.9");
  CHECK(o.percentile == "p90");
  CHECK(*o.latency_ms == 40);
  CHECK(o.codec == Codec::Int8);
  for (const auto& f : fs::directory_iterator(std::string(TAILOR_SOURCE_DIR) + "/examples/place/links"))
    CHECK_NOTHROW(Link::load(f.path().string()));
  for (const auto& f : fs::directory_iterator(std::string(TAILOR_SOURCE_DIR) + "/examples/place/devices"))
    CHECK_NOTHROW(Device::load(f.path().string()));
}

TEST_CASE("bad descriptions fail naming the source and the key", "[place]") {
  CHECK_THAT(error_of([] { Link::load("uplink_mbps=0,rtt_ms=10"); }),
             Catch::Contains("'uplink_mbps' must be > 0"));
  CHECK_THAT(error_of([] { Link::load("uplink_mbps=5,downlink_mbps=-1"); }),
             Catch::Contains("'downlink_mbps' must be > 0"));
  CHECK_THAT(error_of([] { Link::load("uplink_mbps=5,rtt=10"); }),
             Catch::Contains("unknown link key 'rtt'") && Catch::Contains("rtt_ms"));
  CHECK_THAT(error_of([] { Link::load("/nonexistent/link.yaml"); }), Catch::Contains("/nonexistent/link.yaml"));
  CHECK_THAT(error_of([] { Device::load("backend=tpu-v9"); }), Catch::Contains("onednn-cpu"));
  CHECK_THAT(error_of([] { Device::load("backend=onednn-cpu,threads=0"); }), Catch::Contains("'threads'"));
  CHECK_THAT(error_of([] { Objective::load("percentile=p75"); }), Catch::Contains("p50 or p90"));
  CHECK_THAT(error_of([] { Objective::load("codec=zip"); }), Catch::Contains("none, fp16, int8"));
  const std::string dir = tmp_dir("bad");
  std::ofstream(dir + "/link.yaml") << "uplink_mbps: fast\n";
  CHECK_THAT(error_of([&] { Link::load(dir + "/link.yaml"); }),
             Catch::Contains(dir + "/link.yaml") && Catch::Contains("must be a number"));
}

TEST_CASE("the min-cut is the best placement that enumeration finds on random DAGs", "[place]") {
  Objective o;
  for (uint32_t seed = 1; seed <= 30; ++seed) {
    const auto r = random_dag(10, seed);
    for (double mbps : {0.5, 5.0, 100.0}) {
      const Link l = link(mbps, seed % 2 ? 20.0 : 0.0);
      const double best = brute_force(r.graph, r.edge, r.cloud, l, o);
      const Placement cut = min_cut(r.graph, r.edge, r.cloud, l, o);
      INFO("seed " << seed << " at " << mbps << " Mbit/s");
      CHECK(cut.predicted.total_ms == Approx(best).epsilon(1e-9));
      CHECK(best_chain_cut(r.graph, r.edge, r.cloud, l, o).predicted.total_ms >= best - 1e-9);
    }
  }
}

TEST_CASE("on a DAG the min-cut beats every chain cut where a branch should stay on the edge", "[place]") {
  // x -> a1 -> a2 -> merge, x -> b1 -> merge, in the order a1 a2 b1 merge. Sending x is dear; a1 and b1 shrink it
  // cheaply on the edge, a2 and merge are dear there. Only {a1, b1} on the edge avoids both; no prefix is that set.
  CutGraph g;
  g.nodes = {"a1", "a2", "b1", "merge"};
  g.macs = {0, 0, 0, 0};
  const int64_t mb = 1'000'000 / 8;  // a millisecond at 1000 Mbit/s... scaled below by the link
  g.tensors = {{"x", -1, {0, 2}, false, true, true, {}, "float32", 1000 * mb},
               {"a1", 0, {1}, false, true, true, {}, "float32", mb},
               {"a2", 1, {3}, false, true, true, {}, "float32", mb},
               {"b1", 2, {3}, false, true, true, {}, "float32", mb},
               {"merge", 3, {}, true, true, true, {}, "float32", mb}};
  NodeLatency e, c;
  e.node_ms = {{"a1", 1}, {"a2", 100}, {"b1", 1}, {"merge", 100}};
  c.node_ms = {{"a1", 1}, {"a2", 1}, {"b1", 1}, {"merge", 1}};
  e.total_ms = 202;
  c.total_ms = 4;
  const Link l = link(1000, 0);
  const Placement cut = min_cut(g, e, c, l, {});
  const Placement chain = best_chain_cut(g, e, c, l, {});
  CHECK(cut.method == "min-cut");
  CHECK(cut.on_edge == std::vector<bool>{true, false, true, false});
  CHECK(cut.up == std::vector<std::string>{"a1", "b1"});
  CHECK(cut.predicted.total_ms == Approx(2 + 2 + 2 + 1));  // a1 and b1 on the edge, two sends, a2 and merge, reply
  CHECK(chain.predicted.total_ms > 3 * cut.predicted.total_ms);
}

TEST_CASE("a tensor read by several cloud nodes is sent once, and nothing returns to the edge", "[place]") {
  const auto r = random_dag(8, 7);
  const Placement p = min_cut(r.graph, r.edge, r.cloud, link(2, 0), {});
  std::set<std::string> sent(p.up.begin(), p.up.end());
  CHECK(sent.size() == p.up.size());
  // A placement that needs data back from the cloud is refused.
  std::vector<bool> back(r.graph.nodes.size(), true);
  back[0] = false;
  CHECK_THAT(error_of([&] { evaluate(r.graph, back, r.edge, r.cloud, link(2, 0), {}); }),
             Catch::Contains("from the cloud back to the edge"));
}

TEST_CASE("wire codecs: fp16 and int8 shrink what crosses the link within their rounding", "[place]") {
  const auto x = torch::randn({4, 64, 8, 8}, at::detail::createCPUGenerator(3)).relu();
  CHECK(wire_bytes(x.numel() * 4, "float32", Codec::Fp16) == x.numel() * 2);
  CHECK(wire_bytes(x.numel() * 4, "float32", Codec::Int8) == x.numel() + 8);
  CHECK(wire_bytes(800, "int64", Codec::Int8) == 800);
  const double range = x.max().item<double>();
  CHECK((through_codec(x, Codec::Int8) - x).abs().max().item<double>() <= range / 255 / 2 + 1e-6);
  CHECK(tailor::test::max_rel(through_codec(x, Codec::Fp16), x) < 1e-3);
  CHECK(torch::equal(through_codec(x, Codec::None), x));
}

TEST_CASE("split parts of torchvision models compose to the whole model, in tailor and in stock LibTorch",
          "[place]") {
  for (const std::string name : {"resnet18", "googlenet", "densenet121", "mobilenet_v2"}) {
    DYNAMIC_SECTION(name) {
      GraphModule gm = load(std::string(TAILOR_FIXTURES_DIR) + "/" + name + "_traced.pt");
      gm->eval();
      torch::NoGradGuard no_grad;
      const CutGraph g = CutGraph::of(*gm, {{1, 3, 224, 224}});
      // A slow edge and a fast cloud over a middling link put the cut somewhere inside the network.
      const NodeLatency e = uniform(g, 1.0), c = uniform(g, 0.05);
      const Placement chain = best_chain_cut(g, e, c, link(200, 5), {});
      const Placement cut = min_cut(g, e, c, link(200, 5), {});
      REQUIRE(cut.predicted.total_ms <= chain.predicted.total_ms + 1e-9);
      const auto x = torch::randn({1, 3, 224, 224}, at::detail::createCPUGenerator(1));
      const auto whole = first(gm->run({x}));
      for (const Placement* p : {&chain, &cut}) {
        std::vector<bool> mid = p->on_edge;
        if (p->site != Site::Split)  // force a split for the test: the first third on the edge
          for (size_t i = 0; i < mid.size(); ++i) mid[i] = i < mid.size() / 3;
        SplitModel parts = split(*gm, g, mid);
        REQUIRE(parts.edge);
        REQUIRE(parts.cloud);
        CHECK(!parts.cut.empty());
        CHECK(tailor::test::max_rel(first(run_split(parts, {x})), whole) < 1e-5);
      }
      // Written by export_plan and loaded by stock LibTorch: edge outputs feed the cloud part by position.
      Plan plan;
      plan.link = link(200, 5);
      plan.chosen.variant = name;
      plan.chosen.graph = g;
      plan.chosen.best = cut.site == Site::Split ? cut : chain;
      if (plan.chosen.best.site != Site::Split)
        for (size_t i = 0; i < g.nodes.size(); ++i) plan.chosen.best.on_edge[i] = i < g.nodes.size() / 2;
      const std::string dir = tmp_dir(name);
      export_plan(plan, *gm, dir);
      auto edge = torch::jit::load(dir + "/edge.pt");
      auto cloud = torch::jit::load(dir + "/cloud.pt");
      const auto sent = edge.forward({x});
      std::vector<c10::IValue> received;
      if (sent.isTuple())
        for (const auto& t : sent.toTupleRef().elements()) received.push_back(t);
      else
        received.push_back(sent);
      CHECK(tailor::test::max_rel(first(cloud.forward(received)), whole) < 1e-5);
      std::ifstream in(dir + "/plan.json");
      const auto j = nlohmann::json::parse(in);
      CHECK(j["format"] == "tailor-plan");
      CHECK(j["parts"]["cut"].size() == received.size());
      CHECK(j["parts"]["composition_max_rel_diff"].get<double>() < 1e-5);
      // Read back as the edge runtime and the fleet simulation read it: each part compiled for its device.
      const PlanFolder back = PlanFolder::read(dir);
      CHECK(back.input_shapes == std::vector<std::vector<int64_t>>{{1, 3, 224, 224}});
      CHECK(back.edge.backend == plan.edge.backend);
      CHECK(back.cloud.threads == plan.cloud.threads);
      auto edge_exe = back.compile("edge");
      auto cloud_exe = back.compile("cloud");
      const auto sent_by_exe = edge_exe->run({x});
      std::vector<c10::IValue> to_cloud;
      if (sent_by_exe.isTuple())
        for (const auto& t : sent_by_exe.toTupleRef().elements()) to_cloud.push_back(t);
      else
        to_cloud.push_back(sent_by_exe);
      CHECK(tailor::test::max_rel(first(cloud_exe->run(to_cloud)), whole) < 1e-4);
    }
  }
}

TEST_CASE("a plan folder that is missing, not a plan, or without its parts is refused naming the file", "[place]") {
  const std::string dir = tmp_dir("plan-folder");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }),
             Catch::Contains("cannot read the plan '" + dir + "/plan.json'") && Catch::Contains("tailor place"));
  auto write = [&](const std::string& text) { std::ofstream(dir + "/plan.json") << text; };
  write("{\"format\": \"onnx\"}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("is not a tailor plan"));
  write("{\"format\": \"tailor-plan\", \"parts\": {}, \"chosen\": {}, \"link\": {}, \"edge\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("has no 'cloud'"));
  write("{\"format\": \"tailor-plan\", \"parts\": {\"edge\": \"edge.pt\", \"input_shapes\": [[1, 3]]}, "
        "\"chosen\": {}, \"link\": {}, \"edge\": {\"threads\": 2}, \"cloud\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }),
             Catch::Contains("names the edge part 'edge.pt', which is not in the folder"));
  write("{\"format\": \"tailor-plan\", \"parts\": {\"input_shapes\": [[1, 3]]}, \"chosen\": {}, \"link\": {}, "
        "\"edge\": {\"threads\": 0}, \"cloud\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("threads"));
  const std::string parts = "\"parts\": {\"input_shapes\": [[1, 3]], \"cut\": [], \"edge_outputs\": [], "
                            "\"cloud_outputs\": [], \"outputs\": [\"y\"]}";
  const std::string chosen = "\"chosen\": {\"placement\": {\"predicted\": {\"total_ms\": 2.5}}}";
  write("{\"format\": \"tailor-plan\", " + parts + ", " + chosen +
        ", \"link\": {\"uplink_mbps\": 10}, \"edge\": {\"backend\": \"npu\"}, \"cloud\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("'edge'") && Catch::Contains("npu"));
  write("{\"format\": \"tailor-plan\", \"parts\": {\"input_shapes\": [[1, 3]]}, " + chosen +
        ", \"link\": {\"uplink_mbps\": 10}, \"edge\": {}, \"cloud\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("'parts'") && Catch::Contains("'cut'"));
  write("{\"format\": \"tailor-plan\", " + parts + ", " + chosen + ", \"link\": {}, \"edge\": {}, \"cloud\": {}}");
  CHECK_THAT(error_of([&] { PlanFolder::read(dir); }), Catch::Contains("'link'") && Catch::Contains("uplink_mbps"));
  write("{\"format\": \"tailor-plan\", " + parts + ", " + chosen +
        ", \"link\": {\"uplink_mbps\": 10}, \"edge\": {\"modelled\": false}, \"cloud\": {\"threads\": 2}}");
  const PlanFolder empty = PlanFolder::read(dir);
  CHECK(empty.edge.name == "edge");
  CHECK(empty.cloud.threads == 2);
  CHECK(empty.outputs == std::vector<std::string>{"y"});
  CHECK(empty.predicted_ms == 2.5);
  CHECK(empty.link.uplink_mbps == 10);
  CHECK(empty.edge_part.empty());
  CHECK_THAT(error_of([&] { empty.compile("cloud"); }), Catch::Contains("has no cloud part"));
  CHECK_THAT(error_of([&] { empty.compile("middle"); }), Catch::Contains("'edge' and 'cloud', not 'middle'"));
}

TEST_CASE("chain cuts of a chain are its min-cuts, and the planner picks the cloud over a fast link", "[place]") {
  GraphModule gm = models::load_model("fashion-cnn");
  gm->eval();
  torch::NoGradGuard no_grad;
  const CutGraph g = CutGraph::of(*gm, {{1, 1, 28, 28}});
  const NodeLatency e = uniform(g, 1.0), c = uniform(g, 0.01);
  for (double mbps : {0.1, 1.0, 10.0, 1000.0}) {
    const Placement a = best_chain_cut(g, e, c, link(mbps, 1), {});
    const Placement b = min_cut(g, e, c, link(mbps, 1), {});
    CHECK(a.predicted.total_ms == Approx(b.predicted.total_ms));
  }
  CHECK(min_cut(g, e, c, link(1000, 1), {}).site == Site::Cloud);
  CHECK(min_cut(g, e, c, link(1000, 1000), {}).site == Site::Edge);
}

TEST_CASE("the planner refuses a manifest without profiles and an objective nothing meets, writing nothing",
          "[place]") {
  const std::string dir = tmp_dir("planner");
  GraphModule gm = models::load_model("fashion-cnn");
  gm->eval();
  save(*gm, dir + "/cnn.pt");
  VariantCard card;
  card.name = "cnn";
  card.file = "cnn.pt";
  card.input_shapes = {{1, 1, 28, 28}};
  card.accuracy = 0.9;
  Manifest m;
  m.variants.push_back(card);
  const Device edge = Device::load("backend=onednn-cpu,threads=1");
  const Device cloud = Device::load("backend=onednn-cpu,threads=2");
  CHECK_THAT(error_of([&] { plan(m, dir, edge, cloud, link(10, 10), {}); }),
             Catch::Contains("variant 'cnn' has no per-node profile") && Catch::Contains("tailor profile"));
  // Profiles made from the graph's own node list: 1 ms per node on the edge, 0.1 ms in the cloud.
  const CutGraph g = CutGraph::of(*gm, {{1, 1, 28, 28}});
  for (auto [threads, ms] : {std::pair{1, 1.0}, std::pair{2, 0.1}}) {
    LatencyProfile p;
    p.backend = "onednn-cpu";
    p.threads = threads;
    p.latency.p50_ms = p.latency.p90_ms = ms * static_cast<double>(g.nodes.size());
    for (const auto& n : g.nodes) p.nodes.push_back({n, "x", {}, ms, 0});
    m.variants[0].profiles[threads == 1 ? "onednn-cpu" : "onednn-cpu:2t:"] = p;
  }
  const Plan ok = plan(m, dir, edge, cloud, link(10, 10), {});
  CHECK(ok.chosen.variant == "cnn");
  CHECK(ok.chosen.best.predicted.total_ms <= ok.chosen.candidates.back().predicted.total_ms);
  Objective strict;
  strict.latency_ms = 0.001;
  const std::string out = dir + "/plan-out";
  CHECK_THAT(error_of([&] {
               const Plan p = plan(m, dir, edge, cloud, link(10, 10), strict);
               export_plan(p, *gm, out);
             }),
             Catch::Contains("no variant meets the objective") && Catch::Contains("closest is 'cnn'"));
  CHECK_FALSE(fs::exists(out));
  Objective floor;
  floor.min_accuracy = 0.95;
  CHECK_THAT(error_of([&] { plan(m, dir, edge, cloud, link(10, 10), floor); }),
             Catch::Contains("accuracy 90.00% < 95.00%"));
}

TEST_CASE("exit thresholds: the most confident inputs exit while the overall accuracy meets the target", "[place]") {
  // Ten inputs of class 0: six answered confidently and right by the exit, four hesitantly and wrong.
  auto logits = torch::zeros({10, 2});
  logits.slice(0, 0, 6).select(1, 0).fill_(10);
  logits.slice(0, 6, 10).select(1, 1).fill_(1);
  const auto labels = torch::zeros({10}, torch::kLong);
  const auto final_logits = logits.clone();
  final_logits.select(1, 0).fill_(5);  // the model's own head is always right
  const ExitCalibration strict = calibrate_exits({logits}, final_logits, labels, 1.0);
  CHECK(strict.rates[0] == Approx(0.6));
  CHECK(strict.accuracy[0] == Approx(1.0));
  CHECK(strict.overall_accuracy == Approx(1.0));
  CHECK(strict.final_accuracy == Approx(1.0));
  const ExitCalibration loose = calibrate_exits({logits}, final_logits, labels, 0.5);
  CHECK(loose.rates[0] == Approx(1.0));
  CHECK(loose.overall_accuracy == Approx(0.6));
  CHECK(loose.thresholds[0] < strict.thresholds[0]);
  // An exit that is never right enough never takes an input.
  // Confidently wrong: any exit costs overall accuracy below the target.
  const ExitCalibration never = calibrate_exits({-logits}, final_logits, labels, 0.95);
  CHECK(never.rates[0] == 0);
  CHECK(never.thresholds[0] > 1);
}

TEST_CASE("early-exit trains a head whose exits keep the accuracy target, and the planner answers those on the edge",
          "[place][slow]") {
  GraphModule gm = models::load_model("fashion-resnet");
  PassContext ctx;
  ctx.input_shapes = {{1, 1, 28, 28}};
  ctx.quiet = true;
  parse_pipeline("finetune{epochs=1,limit=8192},early-exit{at=[relu_4],epochs=1,limit=8192,validation=2000,max_drop=2}")
      ->run(*gm, ctx);
  gm->eval();
  const auto exits = exits_of(*gm);
  REQUIRE(exits.size() == 1);
  CHECK(exits[0].node == "relu_4");
  CHECK(exits[0].rate > 0.05);  // a trained ResNet answers many Fashion-MNIST images confidently half-way
  CHECK(exits[0].rate <= 1);
  const auto* record = &gm->provenance().back();
  const double final_acc = std::get<double>(*record->stat("final_accuracy"));
  CHECK(std::get<double>(*record->stat("accuracy_with_exits")) >= final_acc - 0.02 - 1e-9);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 1, 28, 28}, at::detail::createCPUGenerator(2));
  const auto y = gm->run({x});
  REQUIRE(y.isTuple());
  CHECK(y.toTupleRef().elements().size() == 2);
  // Saved and loaded, the exits are still known (they travel in the provenance).
  const std::string dir = tmp_dir("exits");
  save(*gm, dir + "/exit.pt");
  GraphModule back = load(dir + "/exit.pt");
  CHECK(exits_of(*back).size() == 1);

  const CutGraph g = CutGraph::of(*gm, {{1, 1, 28, 28}});
  REQUIRE(g.exits.size() == 1);
  CHECK(g.exits[0].head.size() == 3);  // pool, flatten, linear
  const NodeLatency e = uniform(g, 1.0), c = uniform(g, 0.1);
  const Placement slow = min_cut(g, e, c, link(0.01, 100), {});  // a link too slow to use: all on the edge
  CHECK(slow.site == Site::Edge);
  CHECK(slow.predicted.exit_rate == Approx(exits[0].rate));
  CHECK(slow.predicted.total_ms < slow.predicted.no_exit_ms);
  // A fast link sends what the exit does not answer; the exit head stays on the edge.
  const Placement fast = min_cut(g, e, c, link(1000, 1), {});
  const std::vector<bool> heads_on_edge = [&] {
    std::vector<bool> v;
    for (int i : g.exits[0].head) v.push_back(fast.on_edge[i]);
    return v;
  }();
  if (fast.predicted.exit_rate > 0) CHECK(std::all_of(heads_on_edge.begin(), heads_on_edge.end(), [](bool b) { return b; }));
  std::vector<bool> mid(g.nodes.size());
  for (size_t i = 0; i < mid.size(); ++i) mid[i] = i <= static_cast<size_t>(g.exits[0].head.back());
  SplitModel parts = split(*gm, g, mid);
  const auto composed = run_split(parts, {x});
  for (size_t k = 0; k < 2; ++k)
    CHECK(tailor::test::max_rel(composed.toTupleRef().elements()[k].toTensor(),
                                y.toTupleRef().elements()[k].toTensor()) < 1e-5);
}

TEST_CASE("a device with a latency table is planned from the table's predictions", "[place][slow]") {
  const std::string dir = tmp_dir("table");
  latency::BuildOptions o;
  o.target = latency::Target::here("onednn-cpu", 1);
  o.workload.models = {"fashion-resnet"};
  o.workload.model_input = {1, 1, 28, 28};
  o.models = 4;
  o.round_size = 4;
  o.measure.rounds = 1;
  o.measure.model_runs = 5;
  o.measure.kernel_runs = 2;
  latency::Model table(o.target);
  latency::build(table, o);
  table.save(dir + "/edge-table.json");

  GraphModule gm = models::load_model("fashion-resnet");
  gm->eval();
  save(*gm, dir + "/resnet.pt");
  VariantCard card;
  card.name = "resnet";
  card.file = "resnet.pt";
  card.input_shapes = {{1, 1, 28, 28}};
  const CutGraph g = CutGraph::of(*gm, {{1, 1, 28, 28}});
  LatencyProfile cloud_profile;  // the cloud from a profile, 0.01 ms a node
  cloud_profile.backend = "onednn-cpu";
  cloud_profile.threads = 2;
  cloud_profile.latency.p50_ms = cloud_profile.latency.p90_ms = 0.01 * static_cast<double>(g.nodes.size());
  for (const auto& n : g.nodes) cloud_profile.nodes.push_back({n, "x", {}, 0.01, 0});
  card.add_profile(cloud_profile);
  Manifest m;
  m.variants.push_back(card);
  Device edge = Device::load("backend=onednn-cpu,threads=1,table=" + dir + "/edge-table.json");
  const Device cloud = Device::load("backend=onednn-cpu,threads=2");
  const Plan p = plan(m, dir, edge, cloud, link(1, 50), {});
  const auto predicted = table.predict(latency::detect_kernels(*gm, {1, 1, 28, 28}, table.target())).total_ms;
  const auto& edge_only = *std::find_if(p.chosen.candidates.begin(), p.chosen.candidates.end(),
                                        [](const Placement& c) { return c.site == Site::Edge; });
  CHECK(edge_only.predicted.edge_ms == Approx(predicted).epsilon(1e-6));
  CHECK_THAT(join(p.chosen.notes), Catch::Contains("predicted by " + dir + "/edge-table.json"));
  // A table of another thread count is refused, naming what it was built for.
  edge.threads = 3;
  CHECK_THAT(error_of([&] { plan(m, dir, edge, cloud, link(1, 50), {}); }),
             Catch::Contains("was built for") && Catch::Contains("onednn-cpu 1 thread"));
}
