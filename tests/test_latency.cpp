// The latency model: kernels listed as backends run them, architecture configurations, the table and its
// predictor with known answers, a real (small) adaptive build, and bad tables failing clearly.
#include <filesystem>
#include <fstream>
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/tailor.hpp"

using namespace tailor;
namespace fs = std::filesystem;

namespace {

std::string latency_tmp(const std::string& name) {
  fs::create_directories(TAILOR_TEST_TMP);
  return std::string(TAILOR_TEST_TMP) + "/" + name;
}

Kernel conv_kernel(const std::string& node, int64_t cin, int64_t cout, int64_t hw, int64_t k) {
  Kernel c;
  c.node = node;
  c.kind = "conv";
  c.op = "conv";
  c.impl = "jit:avx2";
  c.dtype = "f32:f32:f32";
  c.layout = "8b";
  c.inputs = {{1, cin, hw, hw}};
  c.output = {1, cout, hw, hw};
  c.weight = {cout, cin, k, k};
  c.stride = {1, 1};
  c.padding = {k / 2, k / 2};
  c.dilation = {1, 1};
  c.macs = static_cast<double>(cout * cin * k * k * hw * hw);
  c.bytes = 4.0 * static_cast<double>(cin * hw * hw + cout * hw * hw + cout * cin * k * k);
  return c;
}

latency::Target fake_target() {
  latency::Target t;
  t.backend = "onednn-cpu";
  t.threads = 1;
  t.isa = "avx2";
  t.cpu_model = "test CPU";
  t.torch_version = "1.13.1";
  t.onednn_version = "2.6.3";
  return t;
}

// A fitted table holding one measured conv kernel.
latency::Model one_kernel_model() {
  latency::Model model(fake_target());
  latency::ModelSample s;
  s.kernels = 1;
  s.p50_ms = s.kernel_sum_ms = 1;
  model.add(s, {{conv_kernel("c", 16, 16, 28, 3), 1.0}});
  model.fit();
  return model;
}

}  // namespace

TEST_CASE("executables list one kernel per timed step, with fused post-ops and the implementation that runs") {
  GraphModule m = models::capture_model("fashion-resnet");
  for (const std::string backend : {"onednn-cpu", "libtorch-cpu"}) {
    CompileOptions o;
    o.input_shapes = {{1, 1, 28, 28}};
    o.threads = 1;
    auto exe = compile(backend, *m, o);
    std::vector<StepTime> steps;
    exe->run_timed({torch::randn({1, 1, 28, 28})}, steps);
    const std::vector<Kernel> kernels = exe->kernels();
    REQUIRE(kernels.size() == steps.size());
    for (size_t i = 0; i < steps.size(); ++i) {
      CHECK(kernels[i].node == steps[i].node);
      CHECK(kernels[i].fused == steps[i].fused);
      CHECK(!kernels[i].op.empty());
      CHECK(!kernels[i].impl.empty());
    }
    if (backend == "onednn-cpu") {
      // The stem conv carries its ReLU; a block's second conv carries the residual add and the ReLU after it.
      bool relu_fused = false, sum_fused = false;
      for (const auto& k : kernels) {
        if (k.op != "conv") continue;
        CHECK(k.macs > 0);
        CHECK(k.weight.size() == 4);
        CHECK(k.impl.find("ref") != 0);
        relu_fused |= k.post_ops == "relu";
        sum_fused |= k.post_ops == "add+relu";
      }
      CHECK(relu_fused);
      CHECK(sum_fused);
    }
  }
}

TEST_CASE("kernel keys are equal for equal work and differ when a shape does") {
  const Kernel a = conv_kernel("x", 16, 32, 28, 3), b = conv_kernel("y", 16, 32, 28, 3);
  CHECK(a.key() == b.key());  // node names do not matter
  CHECK(a.key() != conv_kernel("x", 16, 32, 14, 3).key());
  CHECK(a.key() != conv_kernel("x", 16, 32, 28, 5).key());
  Kernel fused = a;
  fused.post_ops = "relu";
  CHECK(fused.key() != a.key());
  CHECK(a.features().size() == kernel_feature_names().size());
}

TEST_CASE("architecture configurations round-trip as text and JSON, and the zoo models are configurations") {
  CHECK(models::resnet18_config().str() == "resnet@224:64:2x64k3,2x128k3s2,2x256k3s2,2x512k3s2");
  for (const auto& name : models::SearchSpace::names()) {
    const models::SearchSpace space = models::SearchSpace::named(name);
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20; ++i) {
      const models::ArchConfig a = space.sample(rng);
      CHECK(space.contains(a));
      CHECK(models::ArchConfig::parse(a.str()) == a);
      CHECK(models::ArchConfig::from_json(a.to_json()) == a);
      const models::ArchConfig child = space.mutate(a, rng);
      CHECK(space.contains(child));
      CHECK(!(child == a));
    }
  }
  // Parameter counts of torchvision's resnet18 and mobilenet_v2 (known answers).
  auto params = [](const models::ZooModel& z) {
    int64_t n = 0;
    for (const auto& p : z.module->parameters()) n += p.numel();
    return n;
  };
  CHECK(params(models::make_model("resnet18")) == 11689512);
  CHECK(params(models::make_model("mobilenet_v2")) == 3504872);
  CHECK(params(models::make_model("resnet50")) == 25557032);
  CHECK(params(models::make_arch(models::ArchConfig::parse("resnet@224:64:2x64k3,2x128k3s2,2x256k3s2,2x512k3s2"))) ==
        11689512);
}

TEST_CASE("bad architecture text fails naming the token") {
  auto fails_with = [](const std::string& text, const std::string& what) {
    try {
      models::ArchConfig::parse(text);
      FAIL("parsed " << text);
    } catch (const Error& e) {
      INFO(e.message());
      CHECK(e.message().find(what) != std::string::npos);
    }
  };
  fails_with("resnet@128:64:2y64", "'2y64'");
  fails_with("resnet@128:64:2x64k4", "kernel must be odd");
  fails_with("vgg@128:64:2x64", "unknown family 'vgg'");
  fails_with("resnet@128:2x64", "expected resolution:stem:stages");
  fails_with("resnet@128:64:2x64q3", "unknown field 'q'");
  CHECK_THROWS_WITH(models::SearchSpace::named("vit"), Catch::Contains("the spaces are: resnet, mobilenet"));
}

TEST_CASE("a table predicts the kernels it holds as their median plus the fitted overhead") {
  latency::Model model(fake_target());
  Kernel a = conv_kernel("a", 16, 16, 28, 3), b = conv_kernel("b", 16, 32, 28, 3);
  b.fused = {"relu1"};
  b.post_ops = "relu";
  latency::ModelSample s;
  s.name = "m";
  s.p50_ms = 3.5;
  s.kernel_sum_ms = 3.0;
  s.kernels = 2;
  // Eight samples each: entries that answer alone (fewer are blended with the regressor).
  for (int i = 0; i < 8; ++i) model.add(s, {{a, 1.0}, {b, 2.0}});
  model.fit();
  REQUIRE(model.fitted());
  CHECK(model.overhead_ms() == Approx(0.5));
  CHECK(model.scale() == 1.0);
  const latency::Prediction p = model.predict({{a, b}});
  CHECK(p.total_ms == Approx(3.5));
  CHECK(p.from_table == 2);
  CHECK(p.kernels[0].cumulative_ms == Approx(1.5));
  CHECK(p.up_to("b") == Approx(3.5));
  CHECK(p.up_to("relu1") == Approx(3.5));  // fused into b
  CHECK_THROWS_WITH(p.up_to("nowhere"), Catch::Contains("no kernel runs node 'nowhere'"));
  // An entry is the median of its samples; with three, the prediction lies between it and the regressor's.
  const Kernel c = conv_kernel("c", 32, 32, 14, 3);
  latency::ModelSample one = s;
  one.kernels = 1;
  for (double ms : {1.0, 1.2, 3.0}) model.add(one, {{c, ms}});
  CHECK(*model.lookup(c) == Approx(1.2));
  model.fit();
  const latency::Prediction q = model.predict({{c}});
  CHECK(q.from_table == 1);
  CHECK(q.total_ms > 0);
}

TEST_CASE("the overhead fit recovers total = scale x kernels + overhead") {
  latency::Model model(fake_target());
  for (int i = 1; i <= 10; ++i) {
    latency::ModelSample s;
    s.name = "m" + std::to_string(i);
    s.kernel_sum_ms = i;
    s.p50_ms = 1.1 * i + 0.3;
    s.kernels = 1;
    model.add(s, {{conv_kernel("c", 8 * i, 8, 14, 3), static_cast<double>(i)}});
  }
  model.fit();
  CHECK(model.scale() == Approx(1.1).epsilon(1e-6));
  CHECK(model.overhead_ms() == Approx(0.3).epsilon(1e-6));
}

TEST_CASE("reference times take the machine's slow spells out of the table, and calibrate predictions") {
  latency::Model model(fake_target());
  const Kernel k = conv_kernel("c", 16, 16, 28, 3);
  // The same model measured ten times; the 4th to 6th in a spell where everything, the reference too, ran 1.4x
  // slower. Ten samples: the entry answers alone.
  for (double spell : {1.0, 1.0, 1.0, 1.4, 1.4, 1.4, 1.0, 1.0, 1.0, 1.0}) {
    latency::ModelSample s;
    s.name = "m";
    s.kernels = 1;
    s.kernel_sum_ms = 1.0 * spell;
    s.p50_ms = 1.2 * spell;
    s.reference_ms = 0.5 * spell;
    model.add(s, {{k, 1.0 * spell}});
  }
  model.fit();
  CHECK(model.reference_ms() == Approx(0.5));
  CHECK(model.normalization(4) == Approx(1.0 / 1.4));
  CHECK(model.normalization(7) == Approx(1.0));
  REQUIRE(model.lookup(k));
  CHECK(*model.lookup(k) == Approx(1.0));  // every sample brought to the usual state, the spell's too
  const double usual = model.predict({{k}}).total_ms;
  CHECK(usual == Approx(1.2).epsilon(1e-6));
  model.calibrate(1.0);  // the reference runs 2x slower now
  CHECK(model.predict({{k}}).total_ms == Approx(2 * usual));
  CHECK(model.predict({{k}}).kernels[0].cumulative_ms == Approx(2 * usual));
  model.calibrate(0);
  CHECK(model.predict({{k}}).total_ms == Approx(usual));
  // Without reference times nothing is normalized, nor with a reference that jitters by 3x from one model to the
  // next (it measures itself, not the machine).
  CHECK(latency::Model(fake_target()).normalization(0) == 1.0);
  latency::Model jittery(fake_target());
  for (int i = 0; i < 10; ++i) {
    latency::ModelSample s;
    s.name = "j";
    s.kernels = 1;
    s.kernel_sum_ms = s.p50_ms = 1.0;
    s.reference_ms = i % 2 ? 0.3 : 0.9;
    jittery.add(s, {{k, 1.0}});
  }
  jittery.fit();
  CHECK(jittery.reference_ms() == 0);
  CHECK(jittery.normalization(1) == 1.0);
  // The reference's time and architecture survive the file.
  model.set_reference_architecture(latency::Reference::kArchitecture);
  const latency::Model again = latency::Model::from_json(model.to_json(), "t.json");
  CHECK(again.reference_ms() == Approx(0.5));
  CHECK(again.reference_architecture() == latency::Reference::kArchitecture);
  CHECK(again.predict({{k}}).total_ms == Approx(usual));
}

TEST_CASE("the regressor predicts unseen kernels within 10% when time follows the work") {
  // Synthetic kernels at 50 GMAC/s plus memory time at 10 GB/s: a known law the trees must learn.
  auto law = [](const Kernel& k) { return k.macs / 50e6 + k.bytes / 10e6; };
  std::mt19937_64 rng(3);
  const int64_t channels[] = {8, 16, 24, 32, 48, 64, 96, 128};
  const int64_t sizes[] = {7, 14, 28, 56};
  auto random_conv = [&](const std::string& name) {
    return conv_kernel(name, channels[rng() % 8], channels[rng() % 8], sizes[rng() % 4], rng() % 2 ? 3 : 1);
  };
  latency::Model model(fake_target());
  for (int i = 0; i < 400; ++i) {
    const Kernel k = random_conv("k" + std::to_string(i));
    latency::ModelSample s;
    s.name = k.node;
    s.kernels = 1;
    s.kernel_sum_ms = s.p50_ms = law(k);
    model.add(s, {{k, law(k)}});
  }
  model.fit();
  int within = 0, unseen = 0;
  for (int i = 0; i < 200; ++i) {
    const Kernel k = conv_kernel("new", 40 + 8 * (i % 6), channels[i % 8], sizes[i % 4], 3);  // 40..80 channels: not sampled
    if (model.lookup(k)) continue;
    ++unseen;
    const latency::Prediction p = model.predict({{k}});
    CHECK(p.from_regressor == 1);
    const double want = law(k) * model.scale() + model.overhead_ms();
    within += std::abs(p.total_ms - want) <= 0.1 * want;
  }
  REQUIRE(unseen > 100);
  CHECK(within >= 0.9 * unseen);
}

TEST_CASE("a kernel type the table never saw is predicted from every type and flagged") {
  const latency::Model model = one_kernel_model();
  Kernel pool = conv_kernel("pool1", 16, 16, 28, 3);
  pool.op = "pool:max_pool2d";
  pool.weight.clear();
  const latency::Prediction p = model.predict({{pool}});
  CHECK(p.uncovered == 1);
  CHECK(p.kernels[0].source == latency::Source::Uncovered);
  CHECK(p.total_ms > 0);
  latency::Model empty(fake_target());
  CHECK_THROWS_WITH(empty.fit(), Catch::Contains("no measured kernels"));
  CHECK_THROWS_WITH(empty.predict({{pool}}), Catch::Contains("not fitted"));
}

TEST_CASE("the baseline without kernel detection splits fused nodes out and drops reorders") {
  Kernel conv = conv_kernel("conv2", 16, 16, 28, 3);
  conv.fused = {"add1", "relu2"};
  conv.post_ops = "add+relu";
  Kernel reorder;
  reorder.op = "reorder";
  const auto split = latency::Model::without_fusion({{reorder, conv}}).kernels;
  REQUIRE(split.size() == 3);
  CHECK(split[0].post_ops.empty());
  CHECK(split[1].op == "binary:add");
  CHECK(split[1].node == "add1");
  CHECK(split[2].op == "eltwise:relu");
}

TEST_CASE("accuracy statistics have known answers") {
  const auto a = latency::accuracy({1.04, 2.3, 2.9, 4.0}, {1.0, 2.0, 3.0, 4.0});
  CHECK(a.within_10 == Approx(0.75));
  CHECK(a.within_5 == Approx(0.75));
  CHECK(a.kendall_tau == Approx(1.0));
  CHECK(latency::accuracy({4, 3, 2, 1}, {1, 2, 3, 4}).kendall_tau == Approx(-1.0));
  CHECK(a.rmse_ms == Approx(std::sqrt((0.0016 + 0.09 + 0.01 + 0) / 4)));
}

TEST_CASE("a real table builds adaptively, saves, reloads to the same predictions and resumes") {
  latency::BuildOptions o;
  o.target = latency::Target::here("onednn-cpu", 1);
  o.workload.models = {"fashion-resnet"};
  o.workload.model_input = {1, 1, 28, 28};
  o.models = 6;
  o.round_size = 3;
  o.measure.rounds = 1;
  o.measure.model_runs = 5;
  o.measure.kernel_runs = 2;
  int progress_calls = 0, checkpoints = 0;
  o.progress = [&](int, int, double, const latency::ModelSample&) { ++progress_calls; };
  o.checkpoint = [&](const latency::Model&) { ++checkpoints; };
  latency::Model model(o.target);
  latency::build(model, o);
  REQUIRE(model.models().size() == 6);
  CHECK(progress_calls == 6);
  CHECK(checkpoints == 2);
  // The second round was predicted by the first round's fit before it was measured.
  CHECK(model.models()[0].predicted_ms == 0);
  CHECK(model.models()[5].predicted_ms > 0);
  // Every model was measured next to the reference, and the table keeps which one.
  CHECK(model.reference_architecture() == latency::Reference::kArchitecture);
  CHECK(model.reference_ms() > 0);
  for (const auto& m : model.models()) CHECK(m.reference_ms > 0);
  const std::string file = latency_tmp("latency_table.json");
  model.save(file);
  const latency::Model again = latency::Model::load(file, &o.target);
  GraphModule m = models::capture_model("fashion-resnet");
  const auto kernels = latency::detect_kernels(*m, {1, 1, 28, 28}, o.target);
  const latency::Prediction p = model.predict(kernels), q = again.predict(kernels);
  CHECK(p.total_ms > 0);
  CHECK(p.from_table + p.from_regressor + p.uncovered == static_cast<int>(kernels.kernels.size()));
  CHECK(q.total_ms == Approx(p.total_ms).epsilon(1e-6));
  // Resuming adds models to the same table.
  latency::Model resumed = latency::Model::load(file, &o.target);
  o.models = 8;
  latency::build(resumed, o);
  CHECK(resumed.models().size() == 8);
  CHECK(resumed.models()[0].name == model.models()[0].name);
}

TEST_CASE("a model workload draws uniform and per-group channel cuts, deterministically") {
  latency::Workload w;
  w.models = {"fashion-resnet"};
  w.model_input = {1, 1, 28, 28};
  std::map<std::string, int64_t> full;
  for (const ChannelGroup& g : channel_groups(*models::capture_model("fashion-resnet"), {w.model_input}))
    if (g.prunable) full[g.producers.front()] = g.channels;
  int per_group = 0, uniform = 0, unbalanced = 0;
  for (int64_t i = 0; i < 24; ++i) {
    latency::WorkloadItem item = latency::draw(w, 3, i);
    CHECK(latency::draw(w, 3, i).name == item.name);
    if (item.name.find("per group") != std::string::npos) {
      ++per_group;
      // Kept fractions of the groups spread out: the point of these variants.
      double lo = 1, hi = 0;
      for (const ChannelGroup& g : channel_groups(*item.module, {w.model_input})) {
        if (!g.prunable || !full.count(g.producers.front())) continue;
        const double kept = static_cast<double>(g.channels) / static_cast<double>(full[g.producers.front()]);
        lo = std::min(lo, kept);
        hi = std::max(hi, kept);
      }
      if (hi - lo > 0.3) ++unbalanced;
    } else {
      ++uniform;
    }
    CHECK(item.module->forward(torch::zeros({1, 1, 28, 28})).sizes() == std::vector<int64_t>{1, 10});
  }
  CHECK(per_group >= 4);
  CHECK(uniform >= 4);
  CHECK(unbalanced >= per_group / 2);
}

TEST_CASE("int8 targets quantize the variants and run int8 kernels") {
  const latency::Target t = latency::Target::here("onednn-cpu", 1, "int8");
  GraphModule m = latency::prepare_for_target(models::capture_model("fashion-cnn"), {1, 1, 28, 28}, t);
  const auto kernels = latency::detect_kernels(*m, {1, 1, 28, 28}, t);
  bool int8 = false;
  for (const auto& k : kernels.kernels) int8 |= k.op == "conv" && k.dtype.find("u8") == 0;
  CHECK(int8);
  CHECK_THROWS_WITH(latency::Target::here("libtorch-cpu", 1, "int8"), Catch::Contains("onednn-cpu only"));
}

TEST_CASE("detect_kernels lists exactly what a full compile runs, without making code or reordering weights") {
  // Float and int8, dense and depthwise, a kernel wider than its input (cropped), bottlenecks, a linear head.
  const std::vector<std::string> archs = {
      "mobilenet@64:16:1x16k3,2x24k5e4s2,2x40k7e6s2,1x80k7e3s2,1x96k3e4s2:640",
      "resnet@64:32:2x32k3e4,1x64k5s2,1x128k3e4s2",
  };
  for (const std::string dtype : {"float32", "int8"}) {
    const latency::Target t = latency::Target::here("onednn-cpu", 1, dtype);
    for (const auto& text : archs) {
      const models::ArchConfig config = models::ArchConfig::parse(text);
      const std::vector<int64_t> shape = config.input_shape(3);
      GraphModule m = latency::prepare_for_target(models::capture_arch(config, {}), shape, t);
      const latency::KernelList listed = latency::detect_kernels(*m, shape, t);
      const latency::KernelList compiled = latency::kernels_of(*compile(t.backend, *m, latency::compile_options(shape, t)));
      INFO(dtype << " " << text);
      REQUIRE(listed.kernels.size() == compiled.kernels.size());
      REQUIRE(listed.kernels.size() > 10);
      int int8 = 0;
      for (size_t i = 0; i < listed.kernels.size(); ++i) {
        CHECK(listed.kernels[i].node == compiled.kernels[i].node);
        CHECK(listed.kernels[i].key() == compiled.kernels[i].key());
        CHECK(listed.kernels[i].impl == compiled.kernels[i].impl);
        int8 += listed.kernels[i].dtype.rfind("u8", 0) == 0;
      }
      CHECK((int8 > 0) == (dtype == "int8"));
      CHECK(listed.working_set_bytes == compiled.working_set_bytes);
      CHECK(listed.total_work() == compiled.total_work());
    }
  }
  CompileOptions o;
  o.input_shapes = {{1, 1, 28, 28}};
  o.kernels_only = true;
  auto exe = compile("onednn-cpu", *models::capture_model("fashion-cnn"), o);
  CHECK(!exe->kernels().empty());
  CHECK_THROWS_WITH(exe->run({torch::randn({1, 1, 28, 28})}), Catch::Contains("only to list its kernels"));
}

TEST_CASE("bad tables fail naming the file and the field, and a table refuses another target") {
  const latency::Model model = one_kernel_model();
  const std::string file = latency_tmp("latency_bad.json");
  model.save(file);
  std::string text;
  {
    std::ifstream in(file);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = latency_tmp(name);
    std::ofstream(path) << content;
    return path;
  };
  const std::string truncated = write("latency_truncated.json", text.substr(0, text.size() / 2));
  CHECK_THROWS_WITH(latency::Model::load(truncated), Catch::Contains(truncated) && Catch::Contains("not valid JSON"));
  nlohmann::json j = nlohmann::json::parse(text);
  j["version"] = 99;
  CHECK_THROWS_WITH(latency::Model::load(write("latency_v99.json", j.dump())), Catch::Contains("field 'version' is 99"));
  j = nlohmann::json::parse(text);
  j["fit"]["regressors"]["conv"]["model"] = "not*base64";
  CHECK_THROWS_WITH(latency::Model::load(write("latency_reg.json", j.dump())),
                    Catch::Contains("field 'fit.regressors.conv'"));
  j = nlohmann::json::parse(text);
  j["samples"][0].erase("ms");
  CHECK_THROWS_WITH(latency::Model::load(write("latency_field.json", j.dump())), Catch::Contains("field 'samples'"));
  CHECK_THROWS_WITH(latency::Model::load(write("latency_other.json", "{\"format\": \"x\"}")),
                    Catch::Contains("not a tailor latency table"));
  latency::Target other = fake_target();
  other.cpu_model = "another CPU";
  other.threads = 2;
  CHECK_THROWS_WITH(latency::Model::load(file, &other),
                    Catch::Contains("cpu_model: 'test CPU' vs 'another CPU'") && Catch::Contains("threads: '1' vs '2'"));
  CHECK_THROWS_WITH(latency::Model::load(latency_tmp("no_such_table.json")), Catch::Contains("cannot be read"));
  // A table measured under an older lowering (one without the field reads as revision 1) refuses, saying why.
  j = nlohmann::json::parse(text);
  j["target"].erase("lowering");
  const std::string old_lowering = write("latency_lowering.json", j.dump());
  latency::Target now = fake_target();
  now.lowering = latency::lowering_revision("onednn-cpu");
  REQUIRE(now.lowering > 1);
  CHECK(latency::Model::load(old_lowering).target().lowering == 1);
  CHECK_THROWS_WITH(latency::Model::load(old_lowering, &now),
                    Catch::Contains("lowering: revision 1 vs " + std::to_string(now.lowering)) &&
                        Catch::Contains("rebuild it"));
  CHECK(latency::Target::here("onednn-cpu", 1).lowering == now.lowering);
}
