// Serving and fleet simulation: the OIP server and client round trip (whole models and split plans, codecs), its
// answers to bad requests, load (1,000 requests from 32 clients), disconnects, a full queue and a restart; the
// model repository; and the fleet simulator against queueing theory's known answers.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"
#if TAILOR_WITH_SERVE
#include "tailor/serve/serve.hpp"
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

using namespace tailor;
using namespace tailor::place;
namespace fs = std::filesystem;

namespace {

std::string serve_tmp(const std::string& name) {
  const std::string dir = std::string(TAILOR_TEST_TMP) + "/serve/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

FleetScenario fixed_scenario(double edge_ms, double cloud_ms, int executors, Arrivals arrivals) {
  FleetScenario s;
  s.name = "test";
  s.edge = ServiceTime::fixed(edge_ms);
  s.cloud = ServiceTime::fixed(cloud_ms);
  s.link.name = "l";
  s.link.uplink_mbps = s.link.downlink_mbps = 8;  // 1 byte per microsecond
  s.link.rtt_ms = 4;
  s.up_bytes = 2000;    // 2 ms
  s.down_bytes = 1000;  // 1 ms
  s.executors = executors;
  s.arrivals = arrivals;
  s.requests = 4000;
  return s;
}

}  // namespace

TEST_CASE("fleet simulation: one device sees the sum of its stages, queueing matches M/D/1, closed loops saturate",
          "[simulate]") {
  // One device, closed loop: no queueing, every request takes edge + up + rtt + cloud + down exactly.
  auto s = fixed_scenario(3, 5, 1, Arrivals::parse("closed"));
  const FleetPoint one = simulate(s, 1);
  CHECK(one.latency.p50_ms == Approx(3 + 2 + 4 + 5 + 1).epsilon(1e-9));
  CHECK(one.latency.p99_ms == Approx(15).epsilon(1e-9));
  CHECK(one.queue_mean_ms == Approx(0).margin(1e-9));
  CHECK(one.throughput == Approx(1000.0 / 15).epsilon(1e-6));
  // M/D/1: Poisson arrivals (the fleet's merged stream), deterministic service S = 5 ms at load rho: the mean wait
  // is rho S / (2 (1 - rho)) (Pollaczek-Khinchine).
  for (double rho : {0.5, 0.8}) {
    auto p = fixed_scenario(0, 5, 1, Arrivals::parse("poisson:" + std::to_string(rho / 0.005 / 10)));
    p.requests = 60000;
    const FleetPoint q = simulate(p, 10);
    const double wait = rho * 5 / (2 * (1 - rho));
    CHECK(q.queue_mean_ms == Approx(wait).epsilon(0.1));
    CHECK(q.utilisation == Approx(rho).epsilon(0.05));
  }
  // Closed loop with N devices and K executors: the server saturates at K / S requests per second.
  auto c = fixed_scenario(0, 5, 2, Arrivals::parse("closed"));
  const FleetPoint many = simulate(c, 16);
  CHECK(many.throughput == Approx(2 / 0.005).epsilon(0.02));
  CHECK(many.utilisation == Approx(1).epsilon(0.02));
  // Little's law: 16 requests in the system, each taking 16 / throughput.
  CHECK(many.latency.mean_ms == Approx(16 / many.throughput * 1000).epsilon(0.02));
  // Edge-only placements never queue at the server and scale with the fleet.
  auto e = fixed_scenario(7, 0, 1, Arrivals::parse("closed"));
  e.cloud = {};
  const FleetPoint edge = simulate(e, 32);
  CHECK(edge.latency.p99_ms == Approx(7).epsilon(1e-9));
  CHECK(edge.throughput == Approx(32 * 1000.0 / 7).epsilon(0.01));
  // The break point: the fewest devices whose p50 misses the objective.
  Objective o;
  o.latency_ms = 30;
  const FleetResult r = simulate_fleet(c, {1, 2, 4, 8, 16}, o);
  REQUIRE(r.breaks_at);
  CHECK(*r.breaks_at == 16);  // 8 devices: 8 / (400 per s) = 20 ms; 16: 40 ms
  CHECK(r.points[3].meets);
  CHECK(nlohmann::json::parse(r.to_json())["breaks_at"] == 16);
  CHECK(render_fleet_html({r}, o).find("<svg") != std::string::npos);
}

TEST_CASE("fleet simulation: service spread from a profile, traces, and bad arrivals", "[simulate]") {
  LatencyStats st;
  st.min_ms = 4, st.p50_ms = 5, st.p90_ms = 6, st.p99_ms = 9, st.max_ms = 12;
  const ServiceTime t = ServiceTime::from_stats(st);
  CHECK(t.median() == Approx(5));
  std::mt19937_64 rng(1);
  std::vector<double> draws;
  for (int i = 0; i < 20000; ++i) draws.push_back(t.sample(rng));
  const auto back = LatencyStats::from_samples(draws);
  CHECK(back.p50_ms == Approx(5).epsilon(0.02));
  CHECK(back.p90_ms == Approx(6).epsilon(0.02));
  CHECK(back.p99_ms == Approx(9).epsilon(0.05));
  const std::string dir = serve_tmp("trace");
  {
    std::ofstream(dir + "/trace.txt") << "# ms\n0\n10\n20\n30\n";
    std::ofstream(dir + "/bad.txt") << "0\nsoon\n";
  }
  CHECK(Arrivals::parse("trace:" + dir + "/trace.txt").trace_ms.size() == 4);
  CHECK(Arrivals::parse("closed:12").think_ms == 12);
  auto error_of = [](const std::string& text) {
    try {
      Arrivals::parse(text);
    } catch (const Error& e) {
      return e.message();
    }
    return std::string();
  };
  CHECK(error_of("burst:3").find("unknown arrivals 'burst:3'") != std::string::npos);
  CHECK(error_of("poisson:-1").find("non-negative") != std::string::npos);
  CHECK(error_of("poisson:0").find("positive") != std::string::npos);
  CHECK(error_of("trace:" + dir + "/bad.txt").find("bad.txt:2: 'soon'") != std::string::npos);
  CHECK(error_of("trace:/nonexistent").find("cannot read the trace file") != std::string::npos);
}

TEST_CASE("fleet simulation: a replayed measured sequence keeps slow spells together, independent draws do not",
          "[simulate]") {
  // A machine that runs 100 requests at 1 ms, then 10 at 10 ms, and again: half its time is a slow spell.
  std::vector<double> runs;
  for (int i = 0; i < 100; ++i) runs.push_back(1);
  for (int i = 0; i < 10; ++i) runs.push_back(10);
  const ServiceTime replayed = ServiceTime::from_sequence(runs);
  CHECK(replayed.sequence_ms() == Approx(200));
  CHECK(replayed.median() == Approx(1));
  std::mt19937_64 rng(3);
  CHECK(replayed.at(0, 0, rng) == 1);
  CHECK(replayed.at(99.5, 0, rng) == 1);
  CHECK(replayed.at(100.5, 0, rng) == 10);
  CHECK(replayed.at(199, 0, rng) == 10);
  CHECK(replayed.at(200.5, 0, rng) == 1);   // wraps around
  CHECK(replayed.at(50.5, 150, rng) == 1);  // offset 150 + 50.5 = 200.5
  CHECK(replayed.at(20, 90, rng) == 10);
  const ServiceTime independent = replayed.independent();
  CHECK(!independent.replays());
  CHECK(independent.median() == Approx(1));
  ServiceTime scaled = replayed;
  scaled.scale(2);
  CHECK(scaled.sequence_ms() == Approx(400));
  CHECK(scaled.median() == Approx(2));
  CHECK(scaled.at(201, 0, rng) == 20);
  CHECK(scaled.at(199, 0, rng) == 2);
  // 8 devices, closed loop, one executor, a negligible link: each request waits for the 7 ahead of it, so its
  // latency is about the sum of 8 consecutive service times. Replayed, a request inside the spell takes ~80 ms; drawn
  // independently (P(10 ms) = 1/11), three or more slow ones among eight happen 3-4% of the time.
  auto s = fixed_scenario(0, 1, 1, Arrivals::parse("closed"));
  s.up_bytes = s.down_bytes = 0;
  s.link.rtt_ms = 0;
  s.requests = 20000;
  s.cloud = replayed;
  const FleetPoint with_spells = simulate(s, 8);
  s.cloud = independent;
  const FleetPoint without = simulate(s, 8);
  CHECK(with_spells.latency.p99_ms >= 75);
  CHECK(without.latency.p99_ms <= 50);
  CHECK(with_spells.utilisation == Approx(1).epsilon(0.02));
  CHECK(without.utilisation == Approx(1).epsilon(0.02));
  // A sequence of one constant time is the fixed service time.
  s.cloud = ServiceTime::from_sequence({5, 5, 5});
  const FleetPoint constant = simulate(s, 1);
  CHECK(constant.latency.p50_ms == Approx(5).epsilon(1e-9));
  CHECK_THROWS_WITH(ServiceTime::from_sequence({}), Catch::Matchers::Contains("at least one run"));
  CHECK_THROWS_WITH(ServiceTime::from_sequence({1, -2}), Catch::Matchers::Contains("positive and finite"));
}

#if TAILOR_WITH_SERVE

namespace {

std::string call_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const serve::CallError& e) {
    return e.message();  // "CODE: message"
  }
  return "";
}

struct Served {
  std::string file;
  GraphModule module{nullptr};
};

Served fashion_cnn(const std::string& dir) {
  Served s{dir + "/cnn.pt", models::load_model("fashion-cnn")};
  s.module->eval();
  save(*s.module, s.file);
  return s;
}

}  // namespace

TEST_CASE("serve --model specs: fields parsed, bad ones refused naming the model and the field", "[serve]") {
  const auto spec = serve::ModelSpec::parse("cloud=parts/cloud.pt,backend=libtorch-cpu,threads=3,input=1x3x8x8;1x4");
  CHECK(spec.name == "cloud");
  CHECK(spec.file == "parts/cloud.pt");
  CHECK(spec.backend == "libtorch-cpu");
  CHECK(spec.threads == 3);
  CHECK(spec.input_shapes == std::vector<std::vector<int64_t>>{{1, 3, 8, 8}, {1, 4}});
  using Catch::Matchers::Contains;
  CHECK_THROWS_WITH(serve::ModelSpec::parse("cloud.pt"), Contains("expected NAME=FILE"));
  CHECK_THROWS_WITH(serve::ModelSpec::parse("m=,threads=2"), Contains("no file after '='"));
  CHECK_THROWS_WITH(serve::ModelSpec::parse("m=f.pt,threads"), Contains("'threads' is not key=value"));
  for (const char* bad : {"0", "-1", "5x", "99999", "1e3"})
    CHECK_THROWS_WITH(serve::ModelSpec::parse(std::string("m=f.pt,threads=") + bad),
                      Contains("model 'm': threads must be an integer from 1 to 4096"));
  CHECK_THROWS_WITH(serve::ModelSpec::parse("m=f.pt,thread=2"), Contains("unknown key 'thread'"));
}

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
TEST_CASE("keep_freed_memory: request-sized blocks come from the heap and a freed one is not given back", "[serve]") {
  serve::keep_freed_memory();
  serve::keep_freed_memory();  // a second call changes nothing
  constexpr size_t kBytes = 24 << 20;  // a 24 MiB request: below the 32 MiB threshold, above glibc's default
  const auto before = mallinfo2();
  auto* block = static_cast<char*>(std::malloc(kBytes));
  REQUIRE(block);
  for (size_t i = 0; i < kBytes; i += 4096) block[i] = 1;
  const auto held = mallinfo2();
  CHECK(held.hblks == before.hblks);  // not a mapping of its own
  CHECK(held.arena >= before.arena);
  std::free(block);
  const auto after = mallinfo2();
  CHECK(after.arena == held.arena);  // the heap kept it for the next request
  CHECK(after.fordblks >= kBytes);
}
#endif

TEST_CASE("the OIP server answers health, metadata and inference; results equal the model's", "[serve]") {
  const std::string dir = serve_tmp("basic");
  Served cnn = fashion_cnn(dir);
  serve::ServerOptions o;
  o.address = "127.0.0.1:0";
  o.max_shapes = 2;
  serve::Server server({serve::ModelSpec::parse("cnn=" + cnn.file + ",input=1x1x28x28")}, o);
  server.start();
  const std::string address = "127.0.0.1:" + std::to_string(server.port());
  serve::Client client(address);
  CHECK(client.server_live());
  CHECK(client.server_ready());
  CHECK(client.server_metadata().first == "tailor");
  CHECK(client.model_ready("cnn"));
  CHECK(call_error([&] { client.model_ready("nope"); }).rfind("NOT_FOUND: unknown model 'nope' (served: cnn)", 0) == 0);
  const auto md = client.model_metadata("cnn");
  REQUIRE(md.inputs.size() == 1);
  CHECK(md.inputs[0].datatype == "FP32");
  CHECK(md.inputs[0].shape == std::vector<int64_t>{-1, 1, 28, 28});
  CHECK(md.outputs[0].shape == std::vector<int64_t>{-1, 10});
  torch::NoGradGuard no_grad;
  for (int64_t batch : {1, 4}) {  // batch 4 compiles a second executable
    const auto x = torch::randn({batch, 1, 28, 28});
    const auto r = client.infer("cnn", {{md.inputs[0].name, x}});
    REQUIRE(r.outputs.size() == 1);
    CHECK(tailor::test::max_rel(r.outputs[0], tailor::test::first_tensor(cnn.module->run({x}))) < 1e-5);
    CHECK(r.timing.compute_ms > 0);
    CHECK(r.timing.up_bytes == batch * 28 * 28 * 4);
  }
  // Codecs: what the server computes on is what the link would deliver; the reply passes the codec too.
  const auto x = torch::randn({1, 1, 28, 28});
  for (Codec c : {Codec::Fp16, Codec::Int8}) {
    const auto r = client.infer("cnn", {{md.inputs[0].name, x}}, c);
    const auto expected = through_codec(tailor::test::first_tensor(cnn.module->run({through_codec(x, c)})), c);
    CHECK(tailor::test::max_rel(r.outputs[0], expected) < 1e-5);
    CHECK(r.timing.up_bytes == (c == Codec::Fp16 ? 28 * 28 * 2 : 28 * 28 + 8));
  }
  // Emulated link: the call's transport takes the link's time, loopback's own time absorbed into it.
  serve::ClientOptions slow;
  slow.link = Link{"test", 1, 1, 20, 0, ""};  // 1 Mbit/s: 3136 bytes up is 25 ms, 40 bytes down 0.3 ms
  serve::Client far(address, slow);
  const double link_ms = 25.088 + 0.32 + 20;
  for (int call = 0; call < 3; ++call) {  // the first call knows nothing of loopback; later ones learn its speed
    const auto r = far.infer("cnn", {{md.inputs[0].name, x}});
    CHECK(r.timing.network_ms >= link_ms - 0.01);
    CHECK(r.timing.network_ms <= link_ms + 15);  // loopback slower than this link only on a machine under heavy load
    CHECK(r.timing.link_ms == Approx(link_ms).epsilon(1e-6));
    CHECK(r.timing.emulated_ms <= link_ms + 0.01);
    CHECK(r.timing.emulated_ms >= link_ms - 5);
    CHECK(r.timing.total_ms >= link_ms);
  }
  const auto stats = nlohmann::json::parse(client.statistics_json("cnn"));
  CHECK(stats[0]["succeeded"].get<int>() == 7);
  server.shutdown();
}

TEST_CASE("the server answers bad requests with the right status and a message, and keeps serving", "[serve]") {
  const std::string dir = serve_tmp("bad");
  Served cnn = fashion_cnn(dir);
  serve::ServerOptions o;
  o.address = "127.0.0.1:0";
  o.max_request_bytes = 100 << 10;
  o.max_shapes = 2;
  serve::Server server({serve::ModelSpec::parse("cnn=" + cnn.file + ",input=1x1x28x28")}, o);
  server.start();
  serve::Client client("127.0.0.1:" + std::to_string(server.port()));
  const std::string in = client.model_metadata("cnn").inputs[0].name;
  auto infer = [&](const std::string& model, const std::string& name, const torch::Tensor& x) {
    return call_error([&] { client.infer(model, {{name, x}}); });
  };
  CHECK(infer("nope", in, torch::randn({1, 1, 28, 28})).rfind("NOT_FOUND: unknown model 'nope'", 0) == 0);
  CHECK(infer("cnn", "img", torch::randn({1, 1, 28, 28})).rfind("INVALID_ARGUMENT: model 'cnn': no input named 'img'", 0) == 0);
  CHECK(infer("cnn", in, torch::randn({1, 1, 28, 27})).find("shape 1x1x28x27, but the model takes 1x1x28x28") !=
        std::string::npos);
  CHECK(infer("cnn", in, torch::zeros({1, 1, 28, 28}, torch::kLong)).find("datatype INT64, but the model takes FP32") !=
        std::string::npos);
  CHECK(infer("cnn", in, torch::randn({64, 1, 28, 28})).rfind("RESOURCE_EXHAUSTED", 0) == 0);  // 200 KB > 100 KB
  CHECK(call_error([&] { client.infer("cnn", {}); }).find("expected 1 inputs") != std::string::npos);
  CHECK(call_error([&] { client.infer("cnn", {{in, torch::randn({1, 1, 28, 28})}, {in, torch::randn({1, 1, 28, 28})}}); })
            .find("expected 1 inputs") != std::string::npos);
  client.infer("cnn", {{in, torch::randn({2, 1, 28, 28})}});  // the second (and last) executable
  CHECK(infer("cnn", in, torch::randn({3, 1, 28, 28})).find("compiles at most 2 per model") != std::string::npos);
  // A client that gives up mid-request (resnet18 takes tens of milliseconds): the server drops the work and keeps
  // serving.
  serve::Server slow({serve::ModelSpec::parse("r18=" + std::string(TAILOR_FIXTURES_DIR) +
                                              "/resnet18_traced.pt,input=1x3x224x224")},
                     serve::ServerOptions{"127.0.0.1:0", 1});
  slow.start();
  serve::Client patient("127.0.0.1:" + std::to_string(slow.port()));
  const std::string r18_in = patient.model_metadata("r18").inputs[0].name;
  serve::ClientOptions hasty;
  hasty.deadline_ms = 3;
  serve::Client gone("127.0.0.1:" + std::to_string(slow.port()), hasty);
  for (int i = 0; i < 100; ++i) {  // connected first, so that the short deadline falls on the inference
    try {
      gone.server_live();
      break;
    } catch (const serve::CallError&) {
    }
  }
  const std::string late = call_error([&] { gone.infer("r18", {{r18_in, torch::randn({1, 3, 224, 224})}}); });
  INFO(late);
  CHECK(late.rfind("DEADLINE_EXCEEDED", 0) == 0);
  CHECK(patient.infer("r18", {{r18_in, torch::randn({1, 3, 224, 224})}}).outputs.size() == 1);
  slow.shutdown();
  CHECK(client.infer("cnn", {{in, torch::randn({1, 1, 28, 28})}}).outputs.size() == 1);
  server.shutdown();
}

TEST_CASE("1,000 requests from 32 clients are all answered, a full queue refuses and counts, a restart is retried",
          "[serve][slow]") {
  const std::string dir = serve_tmp("load");
  Served cnn = fashion_cnn(dir);
  serve::ServerOptions o;
  o.address = "127.0.0.1:0";
  o.executors = 2;
  auto server = std::make_unique<serve::Server>(std::vector<serve::ModelSpec>{serve::ModelSpec::parse("cnn=" + cnn.file + ",input=1x1x28x28")}, o);
  server->start();
  const int port = server->port();
  const std::string address = "127.0.0.1:" + std::to_string(port);
  const std::string in = serve::Client(address).model_metadata("cnn").inputs[0].name;
  const auto x = torch::randn({1, 1, 28, 28});
  const auto expected = tailor::test::first_tensor(cnn.module->run({x}));
  std::atomic<int> ok{0}, wrong{0}, failed{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 32; ++c)
    clients.emplace_back([&] {
      serve::Client client(address);
      for (int k = 0; k < 32; ++k) {
        try {
          const auto r = client.infer("cnn", {{in, x}});
          (tailor::test::max_rel(r.outputs[0], expected) < 1e-5 ? ok : wrong)++;
        } catch (const std::exception&) {
          failed++;
        }
      }
    });
  for (auto& t : clients) t.join();
  CHECK(ok == 1024);
  CHECK(wrong == 0);
  CHECK(failed == 0);
  CHECK(server->statistics()[0].succeeded == 1024);
  server->shutdown();

  // One executor and room for one waiting request: concurrent clients are refused, and every request is counted.
  o.executors = 1;
  o.queue_limit = 1;
  server = std::make_unique<serve::Server>(std::vector<serve::ModelSpec>{serve::ModelSpec::parse("cnn=" + cnn.file + ",input=1x1x28x28")}, o);
  server->start();
  const std::string tight = "127.0.0.1:" + std::to_string(server->port());
  std::atomic<int> refused{0}, answered{0};
  clients.clear();
  for (int c = 0; c < 16; ++c)
    clients.emplace_back([&] {
      serve::Client client(tight);
      for (int k = 0; k < 8; ++k) {
        const auto error = call_error([&] { client.infer("cnn", {{in, torch::randn({8, 1, 28, 28})}}); });
        (error.empty() ? answered : refused)++;
        if (!error.empty()) CHECK(error.rfind("RESOURCE_EXHAUSTED: the request queue is full", 0) == 0);
      }
    });
  for (auto& t : clients) t.join();
  CHECK(answered + refused == 128);
  CHECK(refused > 0);
  const auto s = server->statistics()[0];
  CHECK(s.succeeded == answered);
  CHECK(s.refused == refused);
  server->shutdown();
  server.reset();

  // The server goes away and comes back on the same port: a client that retries gets its answer.
  serve::ClientOptions patient;
  patient.retries = 40;
  serve::Client client(address, patient);
  std::string error = "not run";
  int attempts = 0;
  std::thread caller([&] {
    error = call_error([&] { attempts = client.infer("cnn", {{in, x}}).timing.attempts; });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  o.address = address;
  o.executors = 1;
  serve::Server again({serve::ModelSpec::parse("cnn=" + cnn.file + ",input=1x1x28x28")}, o);
  again.start();
  caller.join();
  CHECK(error.empty());
  CHECK(attempts > 1);
  again.shutdown();
}

TEST_CASE("the edge runtime runs a split plan against the server and returns the whole model's outputs",
          "[serve][slow]") {
  GraphModule gm = load(std::string(TAILOR_FIXTURES_DIR) + "/resnet18_traced.pt");
  gm->eval();
  torch::NoGradGuard no_grad;
  const CutGraph g = CutGraph::of(*gm, {{1, 3, 224, 224}});
  Plan plan;
  plan.link = Link{"lan", 1000, 1000, 0.5, 0, ""};
  plan.chosen.variant = "resnet18";
  plan.chosen.graph = g;
  plan.chosen.best.site = Site::Split;
  plan.chosen.best.on_edge.assign(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size() / 2; ++i) plan.chosen.best.on_edge[i] = true;
  plan.chosen.best.predicted.total_ms = 10;
  const std::string dir = serve_tmp("plan");
  export_plan(plan, *gm, dir);
  serve::ServerOptions o;
  o.address = "127.0.0.1:0";
  serve::Server server({serve::ModelSpec::parse("cloud=" + dir + "/cloud.pt,threads=2")}, o);
  server.start();
  serve::RunPlanOptions ro;
  ro.server = "127.0.0.1:" + std::to_string(server.port());
  serve::EdgeRuntime edge(dir, ro);
  const auto x = torch::randn({1, 3, 224, 224});
  serve::RequestTiming t;
  const auto out = edge.run({x}, &t);
  CHECK(tailor::test::max_rel(out[0], tailor::test::first_tensor(gm->run({x}))) < 1e-5);
  CHECK(t.edge_ms > 0);
  CHECK(t.call.compute_ms > 0);
  CHECK(t.call.emulated_ms >= 0.5);  // the plan's link: half a millisecond of round trip plus the transfers
  CHECK(t.total_ms >= t.edge_ms + t.call.compute_ms);
  // The same parts from a model repository, as Triton's PyTorch backend would read it.
  const std::string repo = dir + "/repository";
  serve::write_model_repository(repo, {serve::ModelSpec::parse("cloud=" + dir + "/cloud.pt,threads=2")});
  const auto specs = serve::read_model_repository(repo);
  REQUIRE(specs.size() == 1);
  CHECK(specs[0].threads == 2);
  std::ifstream config(repo + "/cloud/config.pbtxt");
  const std::string text((std::istreambuf_iterator<char>(config)), std::istreambuf_iterator<char>());
  CHECK(text.find("platform: \"pytorch_libtorch\"") != std::string::npos);
  CHECK(text.find("OUTPUT__0") != std::string::npos);
  // A wrong model on the server is named, not silently used.
  ro.model = "nope";
  serve::EdgeRuntime wrong(dir, ro);
  CHECK(call_error([&] { wrong.run({x}); }).rfind("NOT_FOUND", 0) == 0);
  server.shutdown();
}

#endif
