// Backends, the Profiler and variant cards: onednn-cpu agrees with libtorch-cpu on every torchvision model,
// lowering fuses what it should, statistics have known answers, cards round-trip, and bad input fails clearly.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::test;

namespace {

// A small net with the patterns lowering must get right: conv+bn+relu, residual add+relu, depthwise conv with
// ReLU6, max/avg pooling, concatenation, a broadcast multiply (squeeze-excitation), global mean, linear+gelu.
struct TinyNetImpl : torch::nn::Module {
  torch::nn::Conv2d stem{torch::nn::Conv2dOptions(3, 16, 3).padding(1).bias(false)};
  torch::nn::BatchNorm2d bn{16};
  torch::nn::Conv2d a{torch::nn::Conv2dOptions(16, 16, 3).padding(1)};
  torch::nn::Conv2d dw{torch::nn::Conv2dOptions(16, 16, 3).padding(1).groups(16)};
  torch::nn::Conv2d pw{torch::nn::Conv2dOptions(32, 24, 1)};
  torch::nn::Conv2d se{torch::nn::Conv2dOptions(24, 24, 1)};
  torch::nn::Linear fc{24, 10};
  TinyNetImpl() {
    register_module("stem", stem);
    register_module("bn", bn);
    register_module("a", a);
    register_module("dw", dw);
    register_module("pw", pw);
    register_module("se", se);
    register_module("fc", fc);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::relu(bn(stem(x)));
    x = torch::relu(a(x) + x);
    auto d = torch::hardtanh(dw(x), 0, 6);
    x = torch::max_pool2d(torch::cat({x, d}, 1), 2);
    x = pw(x);
    x = x * torch::sigmoid(se(torch::adaptive_avg_pool2d(x, {1, 1})));
    x = torch::avg_pool2d(x, 2);
    return torch::gelu(fc(x.mean({2, 3})));
  }
};
TORCH_MODULE(TinyNet);

GraphModule tiny_net() {
  torch::manual_seed(3);
  TinyNet net;
  net->eval();
  // Non-trivial batch-norm statistics, so folding is exercised.
  torch::NoGradGuard g;
  net->bn->running_mean.uniform_(-0.5, 0.5);
  net->bn->running_var.uniform_(0.5, 2.0);
  return capture(net, torch::randn({1, 3, 16, 16}));
}

}  // namespace

TEST_CASE("backend registry: names, availability and clear errors") {
  const auto names = backend_names();
  CHECK(std::find(names.begin(), names.end(), "onednn-cpu") != names.end());
  CHECK(std::find(names.begin(), names.end(), "libtorch-cpu") != names.end());
  CHECK(std::find(names.begin(), names.end(), "libtorch-cuda") != names.end());
  CHECK_THROWS_WITH(make_backend("tensorrt"), Catch::Contains("unknown backend 'tensorrt'") &&
                                                  Catch::Contains("onednn-cpu") && Catch::Contains("libtorch-cpu"));
  CHECK(make_backend("libtorch-cpu")->available());
  GraphModule gm = tiny_net();
  CompileOptions o;
  o.input_shapes = {{1, 3, 16, 16}};
  if (!torch::cuda::is_available()) {
    CHECK_FALSE(make_backend("libtorch-cuda")->available());
    CHECK_THROWS_WITH(compile("libtorch-cuda", *gm, o), Catch::Contains("libtorch-cuda") && Catch::Contains("CUDA"));
  }
  o.dtype = "int8";
  CHECK_THROWS_WITH(compile("libtorch-cpu", *gm, o), Catch::Contains("libtorch-cpu") && Catch::Contains("int8"));
#if TAILOR_WITH_ONEDNN
  CHECK_THROWS_WITH(compile("onednn-cpu", *gm, o), Catch::Contains("onednn-cpu") && Catch::Contains("int8"));
#endif
  o.dtype = "float32";
  o.input_shapes = {};
  CHECK_THROWS_WITH(compile("libtorch-cpu", *gm, o), Catch::Contains("input shapes"));
}

#if TAILOR_WITH_ONEDNN
TEST_CASE("onednn-cpu: a small net with every lowered pattern matches libtorch-cpu") {
  GraphModule gm = tiny_net();
  const auto before = gm->tensors();
  CompileOptions o;
  o.input_shapes = {{2, 3, 16, 16}};
  auto ref = compile("libtorch-cpu", *gm, o);
  auto dnn = compile("onednn-cpu", *gm, o);
  const auto x = torch::randn({2, 3, 16, 16});
  const auto y_ref = ref->run({x}).toTensor();
  const auto y = dnn->run({x}).toTensor();
  CHECK(y.sizes() == y_ref.sizes());
  CHECK(max_rel(y, y_ref) < 1e-4);
  // Unfolded graph too: batch norm as a oneDNN primitive, not folded away.
  o.fold = false;
  auto unfolded = compile("onednn-cpu", *gm, o);
  CHECK(max_rel(unfolded->run({x}).toTensor(), y_ref) < 1e-4);
  // Compiling (which folds batch norm on a copy) leaves the user's module as it was.
  for (const auto& [name, t] : gm->tensors()) CHECK(torch::equal(t, before.at(name)));
  const std::string s = dnn->summary();
  INFO(s);
  CHECK_THAT(s, Catch::Contains("fused as post-ops"));
  CHECK_THAT(s, !Catch::Contains(" 0 fused"));
  // Per-step times name graph nodes, and the fused residual add appears as part of a convolution step.
  std::vector<StepTime> steps;
  const auto y_timed = dnn->run_timed({x}, steps).toTensor();
  CHECK(torch::equal(y_timed, y));
  bool add_fused = false;
  for (const auto& st : steps)
    for (const auto& f : st.fused) add_fused = add_fused || (st.kind == "conv" && f.find("add") != std::string::npos);
  CHECK(add_fused);
  CHECK(dnn->peak_activation_bytes() > 0);
  CHECK(dnn->weight_bytes() > 0);
  // Wrong input shape at run time: a clear error, not a crash.
  CHECK_THROWS_WITH(dnn->run({torch::randn({1, 3, 16, 16})}), Catch::Contains("compiled for 2x3x16x16"));
}

TEST_CASE("onednn-cpu: conv + ReLU is exact against ATen, and repeated runs are identical") {
  torch::manual_seed(1);
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(8, 32, 3).stride(2).padding(1));
  struct Net : torch::nn::Module {
    torch::nn::Conv2d c{nullptr};
    torch::Tensor forward(torch::Tensor x) { return torch::relu(c(x)); }
  };
  auto net = std::make_shared<Net>();
  net->c = net->register_module("c", conv);
  GraphModule gm = capture(net, torch::randn({1, 8, 15, 15}));
  CompileOptions o;
  o.input_shapes = {{1, 8, 15, 15}};
  auto dnn = compile("onednn-cpu", *gm, o);
  const auto x = torch::randn({1, 8, 15, 15});
  const auto expect = torch::relu(torch::conv2d(x, conv->weight, conv->bias, 2, 1));
  const auto y1 = dnn->run({x}).toTensor();
  CHECK(y1.sizes() == expect.sizes());
  CHECK(max_rel(y1, expect) < 1e-5);
  CHECK(torch::equal(dnn->run({x}).toTensor(), y1));
}

TEST_CASE("onednn-cpu: kernels wider than their input are cropped to the taps that meet it, same output") {
  // Late stages of low-resolution searched networks: 7x7 depthwise on 2x2 (taps 2-4 live), strided 7x7 on 4x4
  // (taps 1-6, asymmetric padding after the crop), dilated 5x5 on 3x3, a dense 5x5 on 1x1, and a kernel that fits.
  struct Net : torch::nn::Module {
    torch::nn::Conv2d dw7{torch::nn::Conv2dOptions(24, 24, 7).padding(3).groups(24)};
    torch::nn::Conv2d s2{torch::nn::Conv2dOptions(24, 24, 7).stride(2).padding(3).groups(24)};
    torch::nn::Conv2d dil{torch::nn::Conv2dOptions(24, 16, 5).padding(4).dilation(2)};
    torch::nn::Conv2d dense{torch::nn::Conv2dOptions(16, 8, 5).padding(2)};
    torch::nn::Conv2d fits{torch::nn::Conv2dOptions(8, 8, 1)};
    Net() {
      register_module("dw7", dw7);
      register_module("s2", s2);
      register_module("dil", dil);
      register_module("dense", dense);
      register_module("fits", fits);
    }
    torch::Tensor forward(torch::Tensor x) {  // 1x24x4x4
      x = torch::hardtanh(s2(x), 0, 6);         // 2x2
      x = torch::relu(dw7(x));                   // 2x2
      x = dil(torch::adaptive_avg_pool2d(torch::cat({x, x}, 2), {3, 3}));  // 3x3
      return fits(dense(torch::adaptive_avg_pool2d(x, {1, 1})));
    }
  };
  torch::manual_seed(5);
  auto net = std::make_shared<Net>();
  net->eval();
  const auto x = torch::randn({1, 24, 4, 4});
  GraphModule gm = capture(net, x);
  CompileOptions o;
  o.input_shapes = {{1, 24, 4, 4}};
  torch::NoGradGuard g;
  const torch::Tensor expect = net->forward(x);
  auto exe = compile("onednn-cpu", *gm, o);
  CHECK(max_rel(exe->run({x}).toTensor(), expect) < 1e-5);
  // The kernel list says what runs: cropped weights and padding, and the work of the live taps only.
  std::map<std::string, Kernel> convs;
  for (const auto& k : exe->kernels())
    if (k.op == "conv") convs[k.node] = k;
  REQUIRE(convs.size() == 5);
  using Dims = std::vector<int64_t>;
  CHECK(convs["s2"].weight == Dims{24, 1, 6, 6});
  CHECK(convs["s2"].padding == Dims{2, 2});
  CHECK(convs["dw7"].weight == Dims{24, 1, 3, 3});
  CHECK(convs["dw7"].padding == Dims{1, 1});
  CHECK(convs["dw7"].macs == Approx(24.0 * 2 * 2 * 9));
  CHECK(convs["dil"].weight == Dims{16, 24, 3, 3});  // dilation 2: taps 1-3 of 5 meet a 3x3 map
  CHECK(convs["dil"].padding == Dims{2, 2});
  CHECK(convs["dense"].weight == Dims{8, 16, 1, 1});
  CHECK(convs["dense"].padding == Dims{0, 0});
  CHECK(convs["fits"].weight == Dims{8, 8, 1, 1});
  // The same through int8: the cropped taps multiply only the zero point, which oneDNN's padding also holds.
  GraphModule i8 = clone_module(*gm);
  std::vector<torch::Tensor> calibration;
  for (int b = 0; b < 3; ++b) calibration.push_back(torch::randn({8, 24, 4, 4}));
  quant::quantize_static(*i8, calibration, {});
  auto exe8 = compile("onednn-cpu", *i8, o);
  INFO(exe8->summary());
  const torch::Tensor ref8 = i8->forward(x);
  CHECK(max_rel(exe8->run({x}).toTensor(), ref8) < 0.05);
}

TEST_CASE("onednn-cpu: a node no backend can run names the node") {
  Graph g;
  const int x = g.add_input("x");
  Node n;
  n.kind = ops::kOpaque;
  n.name = "mystery";
  n.attrs["schema"] = std::string("aten::no_such_op");
  n.inputs = {x};
  const int id = g.add_node(n, {ValueType::Tensor});
  g.set_outputs({g.node(id).outputs[0]});
  // The graph cannot even be made runnable: GraphModule and every backend refuse it by node name.
  CHECK_THROWS_WITH(GraphModule(g, std::map<std::string, torch::Tensor>{}), Catch::Contains("mystery") && Catch::Contains("aten::no_such_op"));
}

TEST_CASE("onednn-cpu agrees with libtorch-cpu on every torchvision model capture supports") {
  const auto m = fixture_manifest();
  const std::string dir = TAILOR_FIXTURES_DIR;
  for (const auto& [name, entry] : m.at("models").items()) {
    const auto files = entry.at("files");
    if (!files.contains("traced")) continue;
    DYNAMIC_SECTION(name) {
      GraphModule gm = load(dir + "/" + files.at("traced").get<std::string>());
      gm->eval();
      torch::jit::Module ref = torch::jit::load(dir + "/" + name + "_ref.pt");
      const torch::Tensor x = ref.attr("input").toTensor();
      CompileOptions o;
      o.input_shapes = {x.sizes().vec()};
      auto lt = compile("libtorch-cpu", *gm, o);
      auto dnn = compile("onednn-cpu", *gm, o);
      const auto y_ref = first_tensor(lt->run({x}));
      const auto y = first_tensor(dnn->run({x}));
      INFO(dnn->summary());
      REQUIRE(y.sizes() == y_ref.sizes());
      CHECK(max_rel(y, y_ref) < 1e-4);
      CHECK(max_rel(y_ref, ref.attr("output").toTensor()) < 1e-4);
    }
  }
}
#endif

TEST_CASE("latency statistics: known answers") {
  // numpy.percentile([1..10], [50, 90, 99]) = 5.5, 9.1, 9.91
  std::vector<double> ms = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
  const LatencyStats s = LatencyStats::from_samples(ms);
  CHECK(s.runs == 10);
  CHECK(s.p50_ms == Approx(5.5));
  CHECK(s.p90_ms == Approx(9.1));
  CHECK(s.p99_ms == Approx(9.91));
  CHECK(s.mean_ms == Approx(5.5));
  CHECK(s.std_ms == Approx(3.0276503541));  // sample standard deviation
  CHECK(s.min_ms == 1);
  CHECK(s.max_ms == 10);
  CHECK_THROWS_WITH(LatencyStats::from_samples({}), Catch::Contains("at least one"));

  MachineInfo m;
  m.isa = {"avx2", "fma"};
  m.cpu_mhz = 2000;
  m.logical_cpus = 2;
  CHECK(m.peak_gflops(1) == Approx(64.0));   // 2 FMA pipes x 8 floats x 2 flops x 2 GHz
  CHECK(m.peak_gflops(2) == Approx(128.0));
  CHECK(m.peak_gflops(8) == Approx(128.0));  // no more cores than the machine has
  m.isa = {"avx512f", "fma"};
  CHECK(m.peak_gflops(1) == Approx(128.0));
}

TEST_CASE("profiler: measures every backend the same way and records the machine") {
  GraphModule gm = tiny_net();
  ProfileOptions o;
  o.threads = 1;
  o.warmup = 2;
  o.min_runs = 10;
  o.max_runs = 30;
  o.max_seconds = 2;
  o.batches = {1, 4};
  o.node_runs = 2;
  for (const std::string backend : {"libtorch-cpu", "onednn-cpu"}) {
    if (!make_backend(backend)->available()) continue;
    DYNAMIC_SECTION(backend) {
      const LatencyProfile p = profile(*gm, backend, {1, 3, 16, 16}, o);
      CHECK(p.backend == backend);
      CHECK(p.threads == 1);
      CHECK(p.batch == 1);
      CHECK(p.latency.runs >= 10);
      CHECK(p.latency.runs <= 30);
      CHECK(p.latency.p50_ms > 0);
      CHECK(p.latency.p50_ms <= p.latency.p90_ms);
      CHECK(p.latency.p90_ms <= p.latency.p99_ms);
      REQUIRE(p.throughput.size() == 2);
      CHECK(p.throughput[1].batch == 4);
      CHECK(p.throughput[1].samples_per_s == Approx(4000.0 / p.throughput[1].p50_ms));
      CHECK(p.peak_activation_bytes > 0);
      CHECK(p.weight_bytes > 0);
      CHECK_FALSE(p.machine.cpu_model.empty());
      CHECK(p.machine.logical_cpus > 0);
      CHECK_FALSE(p.machine.torch_version.empty());
      REQUIRE_FALSE(p.nodes.empty());
      double share = 0;
      for (const auto& n : p.nodes) share += n.share;
      CHECK(share == Approx(1.0));
      // The node names are the graph's (so a planner can split the graph at them).
      bool found_fc = false;
      for (const auto& n : p.nodes) found_fc = found_fc || n.node == "fc";
      CHECK(found_fc);
      // JSON round trip.
      const LatencyProfile back = LatencyProfile::from_json(p.to_json());
      CHECK(back.backend == p.backend);
      CHECK(back.latency.p90_ms == p.latency.p90_ms);
      CHECK(back.nodes.size() == p.nodes.size());
      CHECK(back.machine.isa == p.machine.isa);
      CHECK(back.throughput.size() == 2);
    }
  }
  CHECK_THROWS_WITH(profile(*gm, "libtorch-cpu", {1, 3, 16, 16}, [] {
                      ProfileOptions bad;
                      bad.threads = 0;
                      return bad;
                    }()),
                    Catch::Contains("threads"));
  CHECK_THROWS_WITH(LatencyProfile::from_json("{\"backend\": \"x\"}"), Catch::Contains("latency_ms"));
}

TEST_CASE("interleaved timing: one median round per model, threads restored, clear errors") {
  GraphModule a = tiny_net();
  GraphModule b = tiny_net();
  ProfileOptions o;
  o.threads = 1;
  o.warmup = 1;
  o.min_runs = 6;
  o.max_runs = 12;
  o.max_seconds = 0.3;
  set_threads(2);
  const auto stats = time_interleaved({a.get(), b.get(), a.get()}, "onednn-cpu", {1, 3, 16, 16}, o, 3);
  CHECK(get_threads() == 2);
  REQUIRE(stats.size() == 3);
  for (const auto& s : stats) {
    CHECK(s.runs >= 6);
    CHECK(s.runs <= 12);
    CHECK(s.p50_ms > 0);
    CHECK(s.p50_ms <= s.p90_ms);
  }
  CHECK(time_interleaved({}, "onednn-cpu", {1, 3, 16, 16}, o, 3).empty());
  CHECK_THROWS_WITH(time_interleaved({a.get()}, "onednn-cpu", {1, 3, 16, 16}, o, 0), Catch::Contains("rounds"));
  CHECK_THROWS_WITH(time_interleaved({a.get()}, "tpu", {1, 3, 16, 16}, o, 2), Catch::Contains("unknown backend 'tpu'"));
  CHECK(get_threads() == 2);
}

TEST_CASE("variant cards and manifest: round trip, atomic writes, clear errors") {
  std::filesystem::create_directories(TAILOR_TEST_TMP);
  GraphModule gm = tiny_net();
  VariantCard c;
  c.name = "tiny-fp32";
  c.file = "variants/tiny-fp32.pt";
  c.provenance.push_back({"fold-batch-norm", true, 0.01, 10, 8, 100, 100, 40, 32});
  c.set_costs(analyze(*gm, {{1, 3, 16, 16}}));
  c.accuracy = 0.9123;
  c.accuracy_data = "fashion-mnist test";
  c.flags = {"not faster than parent on onednn-cpu"};
  LatencyProfile p;
  p.backend = "libtorch-cpu";
  p.latency.p50_ms = 1.5;
  p.nodes.push_back({"fc", "linear", {"gelu"}, 0.1, 0.07});
  c.profiles["libtorch-cpu"] = p;
  Manifest m;
  m.upsert(c);
  VariantCard c2 = c;
  c2.name = "tiny-int8";
  c2.parent = "tiny-fp32";
  c2.accuracy.reset();
  m.upsert(c2);
  c2.file_bytes = 1234;
  m.upsert(c2);  // replaces, does not append
  REQUIRE(m.variants.size() == 2);

  const std::string path = std::string(TAILOR_TEST_TMP) + "/manifest.json";
  m.save(path);
  const Manifest back = Manifest::load(path);
  REQUIRE(back.variants.size() == 2);
  const VariantCard* b = back.find("tiny-fp32");
  REQUIRE(b);
  CHECK(b->params == c.params);
  CHECK(b->macs == c.macs);
  CHECK(b->macs > 0);
  CHECK(*b->accuracy == Approx(0.9123));
  CHECK(b->provenance.at(0).pass == "fold-batch-norm");
  CHECK(b->provenance.at(0).params_after == 8);
  CHECK(b->profiles.at("libtorch-cpu").latency.p50_ms == 1.5);
  CHECK(b->profiles.at("libtorch-cpu").nodes.at(0).fused == std::vector<std::string>{"gelu"});
  CHECK(b->flags == c.flags);
  CHECK_FALSE(back.find("tiny-int8")->accuracy.has_value());
  CHECK(back.find("tiny-int8")->file_bytes == 1234);
  CHECK(back.find("missing") == nullptr);

  // A failed write leaves nothing behind, and a bad manifest names the file.
  CHECK_THROWS(m.save(std::string(TAILOR_TEST_TMP) + "/no/such/dir/manifest.json"));
  CHECK_FALSE(std::filesystem::exists(std::string(TAILOR_TEST_TMP) + "/no/such/dir"));
  const std::string bad = std::string(TAILOR_TEST_TMP) + "/bad_manifest.json";
  std::ofstream(bad) << "{\"variants\": [{\"file\": 3}]}";
  CHECK_THROWS_WITH(Manifest::load(bad), Catch::Contains("bad_manifest.json") && Catch::Contains("variants[0]"));
  CHECK_THROWS_WITH(Manifest::load(bad + ".missing"), Catch::Contains("cannot read"));
}

#if TAILOR_WITH_ONEDNN
TEST_CASE("onednn-cpu bfloat16: runs where the CPU has avx512_core, refuses clearly elsewhere") {
  GraphModule gm = tiny_net();
  CompileOptions o;
  o.input_shapes = {{2, 3, 16, 16}};
  o.dtype = "bfloat16";
  std::unique_ptr<Executable> bf;
  try {
    bf = compile("onednn-cpu", *gm, o);
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Catch::Contains("avx512_core"));
    return;
  }
  o.dtype = "float32";
  auto fp = compile("onednn-cpu", *gm, o);
  const auto x = torch::randn({2, 3, 16, 16});
  const auto y = fp->run({x}).toTensor();
  const auto yb = bf->run({x}).toTensor();
  CHECK(yb.scalar_type() == torch::kFloat);  // ATen sees float32 at the boundary
  CHECK(yb.sizes() == y.sizes());
  const double err = max_rel(yb, y);
  CHECK(err < 5e-2);  // bf16 keeps 8 bits of mantissa
  CHECK(err > 0);     // and it really ran in bf16
  CHECK_THAT(bf->summary(), Catch::Contains("bf16"));
  CHECK(bf->weight_bytes() < fp->weight_bytes());
  o.dtype = "float16";
  CHECK_THROWS_WITH(compile("onednn-cpu", *gm, o), Catch::Contains("float16") && Catch::Contains("onednn-cpu"));
}
#endif

#if TAILOR_WITH_ONEDNN
// Also run by CTest under ONEDNN_MAX_CPU_ISA caps ([isa]); asserts relations, never this machine's ISA.
TEST_CASE("ISA levels: what the CPU runs, the level in force, caps and their errors", "[isa]") {
  const auto levels = isa_levels();
  const auto runnable = cpu_isas();
  const std::string isa = effective_isa();
  REQUIRE_FALSE(runnable.empty());
  CHECK(std::find(runnable.begin(), runnable.end(), isa) != runnable.end());
  // Every runnable level is a known one, in the same order.
  size_t at = 0;
  for (const auto& r : runnable) {
    while (at < levels.size() && levels[at] != r) ++at;
    CHECK(at < levels.size());
  }
  // A cap this CPU can run is the level in force.
  if (const char* cap = std::getenv("ONEDNN_MAX_CPU_ISA")) {
    std::string lower = cap;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (std::find(runnable.begin(), runnable.end(), lower) != runnable.end()) CHECK(isa == lower);
  }
  CHECK(isa_has_int8_dot("avx512_core_vnni"));
  CHECK(isa_has_int8_dot("avx2_vnni"));
  CHECK_FALSE(isa_has_int8_dot("avx2"));
  CHECK_FALSE(isa_has_int8_dot("avx512_core"));
  CHECK(isa_throughput("avx2").int8_macs_per_cycle == 2 * isa_throughput("avx2").fp32_macs_per_cycle);
  CHECK(isa_throughput("avx512_core_vnni").int8_macs_per_cycle == 4 * isa_throughput("avx512_core_vnni").fp32_macs_per_cycle);

  CHECK_THROWS_WITH(set_isa_cap("avx3"), Catch::Contains("unknown ISA 'avx3'") && Catch::Contains("valid ISAs: sse41") &&
                                             Catch::Contains("this CPU runs " + runnable.front()));
  for (const auto& l : levels)
    if (std::find(runnable.begin(), runnable.end(), l) == runnable.end()) {
      CHECK_THROWS_WITH(set_isa_cap(l), Catch::Contains("not available on this CPU") && Catch::Contains(runnable.back()));
      break;
    }
  // The level in force can always be asked for again; the executables say which level they run.
  set_isa_cap(isa);
  CHECK(effective_isa() == isa);
  GraphModule gm = tiny_net();
  CompileOptions o;
  o.input_shapes = {{2, 3, 16, 16}};
  o.isa = isa;
  auto exe = compile("onednn-cpu", *gm, o);
  CHECK_THAT(exe->summary(), Catch::Contains("(" + isa + ", oneDNN"));
  // Once kernels exist, a different level cannot be had in this process: the error says how to get it.
  if (runnable.size() > 1 && runnable.front() != isa) {
    o.isa = runnable.front();
    CHECK_THROWS_WITH(compile("onednn-cpu", *gm, o),
                      Catch::Contains("already made kernels for " + isa) && Catch::Contains("ONEDNN_MAX_CPU_ISA="));
  }
  ProfileOptions po;
  po.max_seconds = 0.2;
  po.min_runs = 3;
  po.node_runs = 0;
  const LatencyProfile p = profile(*gm, "onednn-cpu", {2, 3, 16, 16}, po);
  CHECK(p.isa == isa);
  CHECK(LatencyProfile::from_json(p.to_json()).isa == isa);
}
#endif
