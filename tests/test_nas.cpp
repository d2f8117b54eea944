// Architecture search: the supernet's subnets equal their extracted networks, kernel transforms, sandwich training
// with resume, batch-norm re-estimation with a known answer, evolution and random search (budgets, Pareto front,
// resume), re-measurement against a real latency table, NetAdapt, the passes, and bad input failing clearly.
#include <filesystem>
#include <fstream>
#include <random>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/tailor.hpp"

using namespace tailor;
namespace fs = std::filesystem;
using models::ArchConfig;
using models::SearchSpace;

namespace {

std::string nas_tmp(const std::string& name) {
  fs::create_directories(TAILOR_TEST_TMP);
  return std::string(TAILOR_TEST_TMP) + "/nas-" + name;
}

const data::Dataset& fashion_train() {
  static const data::Dataset d = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), 1200);
  return d;
}

// A small table of this machine's onednn-cpu (1 thread) for the fashion-resnet space, built once. Kept as text:
// a latency::Model (XGBoost boosters) in a static is freed after XGBoost's thread-local state at exit.
std::shared_ptr<const latency::Model> fashion_table() {
  static const std::string table = [] {
    latency::Workload w;
    w.spaces = {"fashion-resnet"};
    return nas::latency_table("onednn-cpu", "", w, 0.4, false)->to_json();
  }();
  return std::make_shared<latency::Model>(latency::Model::from_json(table));
}

std::string expect_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  FAIL("no error was raised");
  return "";
}

}  // namespace

TEST_CASE("nas: fashion spaces and their configurations", "[nas]") {
  for (const std::string name : {"fashion-resnet", "fashion-mobilenet"}) {
    const SearchSpace sp = SearchSpace::named(name);
    CHECK(sp.in_channels == 1);
    CHECK(sp.classes == 10);
    CHECK(sp.contains(sp.largest()));
    CHECK(sp.contains(sp.smallest()));
    CHECK(SearchSpace::from_json(sp.to_json()).to_json() == sp.to_json());
    // Small inputs get the small-input stem: 28x28 stays 28x28 into the first stage.
    GraphModule m = models::capture_arch(sp.largest(), sp.zoo_options());
    CHECK(m->forward(torch::zeros({2, 1, 28, 28})).sizes() == std::vector<int64_t>{2, 10});
  }
  ArchConfig a = SearchSpace::named("fashion-resnet").largest();
  a.stages[1].width = 40;
  CHECK_THAT(SearchSpace::named("fashion-resnet").why_not(a), Catch::Contains("stage 2 width 40 is not one of 16, 24, 32"));
}

TEST_CASE("nas: every subnet of the supernet equals its extracted network", "[nas]") {
  for (const std::string name : {"fashion-resnet", "fashion-mobilenet"}) {
    const SearchSpace sp = SearchSpace::named(name);
    nas::Supernet net(sp, 3);
    // Give batch norm non-trivial statistics and affine parameters, so slicing errors show.
    {
      torch::NoGradGuard g;
      for (auto& p : net->named_parameters())
        if (p.key().find("kernel_transforms") == std::string::npos && p.value().dim() == 1)
          p.value().uniform_(0.5, 1.5);
      for (auto& b : net->named_buffers())
        if (b.value().is_floating_point()) b.value().uniform_(0.5, 1.5);
    }
    net->eval();
    std::mt19937_64 rng(7);
    const auto x = torch::randn({3, 1, 28, 28});
    std::vector<ArchConfig> configs{sp.largest(), sp.smallest()};
    for (int i = 0; i < 4; ++i) configs.push_back(sp.sample(rng));
    for (const auto& c : configs) {
      INFO(c.str());
      GraphModule sub = net->extract(c);
      torch::NoGradGuard g;
      const auto expected = net->forward(x, c);
      const auto got = sub->forward(x);
      CHECK(torch::allclose(got, expected, 1e-4, 1e-4));
      // The extracted network is the configuration's own network, parameter for parameter.
      const auto own = models::make_arch(c, sp.zoo_options());
      int64_t own_params = 0, sub_params = 0;
      for (const auto& p : own.module->parameters()) own_params += p.numel();
      for (const auto& p : sub->parameters()) sub_params += p.numel();
      CHECK(sub_params == own_params);
    }
  }
}

TEST_CASE("nas: sub-kernels are the centre passed through the kernel transform", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-resnet");
  nas::Supernet net(sp);
  ArchConfig small = sp.largest();
  small.stages[0].kernel = 3;
  const auto stored = net->subnet_tensor(sp.largest(), "layer1.0.conv1.weight", {16, 16, 5, 5}).detach();
  auto sliced = net->subnet_tensor(small, "layer1.0.conv1.weight", {16, 16, 3, 3});
  // Identity at the start: the plain centre.
  CHECK(torch::equal(sliced.detach(), stored.narrow(2, 1, 3).narrow(3, 1, 3)));
  // Training the transform changes the sub-kernel and nothing of the full kernel.
  bool found = false;
  for (auto& p : net->named_parameters())
    if (p.key().find("layer1_0_conv1_weight_5to3") != std::string::npos) {
      torch::NoGradGuard g;
      p.value().mul_(2);
      found = true;
    }
  REQUIRE(found);
  sliced = net->subnet_tensor(small, "layer1.0.conv1.weight", {16, 16, 3, 3});
  CHECK(torch::allclose(sliced.detach(), 2 * stored.narrow(2, 1, 3).narrow(3, 1, 3)));
  CHECK(torch::equal(net->subnet_tensor(sp.largest(), "layer1.0.conv1.weight", {16, 16, 5, 5}).detach(), stored));
  // The gradient of a subnet's loss reaches the shared weight and the transform.
  net->zero_grad();
  net->train();
  net->forward(torch::randn({4, 1, 28, 28}), small).sum().backward();
  for (auto& p : net->named_parameters())
    if (p.key() == "layer1.0.conv1.weight" || p.key().find("layer1_0_conv1_weight_5to3") != std::string::npos) {
      INFO(p.key());
      REQUIRE(p.value().grad().defined());
      CHECK(p.value().grad().abs().sum().item<double>() > 0);
    }
}

TEST_CASE("nas: configurations outside the space and bad supernet files fail clearly", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-mobilenet");
  nas::Supernet net(sp);
  ArchConfig bad = sp.largest();
  bad.stages[2].kernel = 9;
  CHECK_THAT(expect_error([&] { net->forward(torch::zeros({1, 1, 28, 28}), bad); }),
             Catch::Contains("is not in search space 'fashion-mobilenet': stage 3 kernel 9 is not one of 3, 5, 7"));
  CHECK_THAT(expect_error([&] { net->extract(bad); }), Catch::Contains("stage 3 kernel 9"));
  CHECK_THAT(expect_error([&] { nas::load_space("fashion-vit"); }), Catch::Contains("unknown search space 'fashion-vit'"));
  CHECK_THAT(expect_error([&] { nas::SupernetImpl::load(nas_tmp("missing.pt")); }), Catch::Contains("does not exist"));
  const std::string junk = nas_tmp("junk.pt");
  std::ofstream(junk) << "not a supernet";
  CHECK_THAT(expect_error([&] { nas::SupernetImpl::load(junk); }), Catch::Contains(junk));
  // Mixed block kinds in one stage cannot share weights.
  SearchSpace mixed = SearchSpace::named("fashion-resnet");
  mixed.stages[1].expands = {1, 4};
  CHECK_THAT(expect_error([&] { nas::Supernet m(mixed); }), Catch::Contains("cannot share weights"));
  // Save and load round trip.
  const std::string file = nas_tmp("roundtrip.pt");
  net->save(file);
  auto loaded = nas::SupernetImpl::load(file);
  CHECK(loaded->space().to_json() == sp.to_json());
  net->eval();
  loaded->eval();
  torch::NoGradGuard g;
  const auto x = torch::randn({2, 1, 28, 28});
  CHECK(torch::equal(net->forward(x, sp.smallest()), loaded->forward(x, sp.smallest())));
}

TEST_CASE("nas: batch-norm re-estimation is the average of batch statistics", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-resnet");
  nas::Supernet net(sp);
  GraphModule m = net->extract(sp.smallest());
  data::Dataset d;
  d.images = torch::randn({64, 1, 28, 28}) * 3 + 1;
  d.labels = torch::zeros({64}, torch::kLong);
  nas::recalibrate_batch_norm(*m, d, 2, 32);
  // The first batch norm reads the stem convolution of the input: its statistics follow directly.
  const auto w = m->tensor("conv1.weight");
  torch::Tensor mean = torch::zeros({w.size(0)}), var = torch::zeros({w.size(0)});
  for (int b = 0; b < 2; ++b) {
    const auto y = torch::conv2d(d.images.slice(0, 32 * b, 32 * b + 32), w, {}, 1, 1);
    mean += y.mean({0, 2, 3}) / 2;
    var += y.var({0, 2, 3}, true, false) / 2;
  }
  CHECK(torch::allclose(m->tensor("bn1.running_mean"), mean, 1e-4, 1e-4));
  CHECK(torch::allclose(m->tensor("bn1.running_var"), var, 1e-3, 1e-4));
  CHECK_FALSE(m->is_training());
}

TEST_CASE("nas: sandwich training trains every subnet and resumes from its checkpoint", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-resnet");
  const auto split = nas::split_validation(fashion_train(), 200);
  CHECK(split.train.size() == 1000);
  CHECK(split.validation.size() == 200);
  nas::Supernet net(sp, 1);
  nas::SupernetTrainOptions o;
  o.train.epochs = 2;
  o.train.batch_size = 100;
  o.train.lr = 0.05;
  o.train.progress = false;
  o.train.checkpoint = nas_tmp("sandwich.ckpt");
  fs::remove(o.train.checkpoint);
  nas::Evaluator before = nas::supernet_evaluator(net, split.train, split.validation, 2);
  const double smallest_before = before(sp.smallest());
  o.train.epochs = 1;
  auto r1 = nas::train_supernet(net, split.train, nullptr, o);
  CHECK(r1.history.size() == 1);
  o.train.epochs = 2;
  auto r2 = nas::train_supernet(net, split.train, nullptr, o);
  CHECK(r2.resumed_after_epoch == 1);
  CHECK(r2.history.size() == 2);
  CHECK(std::isfinite(r2.history.back().train_loss));
  // The smallest subnet learned too (it is trained by distillation from the largest, never on labels alone).
  nas::Evaluator after = nas::supernet_evaluator(net, split.train, split.validation, 2);
  CHECK(after(sp.smallest()) > std::max(0.3, smallest_before + 0.1));
  GraphModule sub = nas::subnet(net, sp.smallest(), split.train, 2, "some-supernet.pt");
  REQUIRE(!sub->provenance().empty());
  const AttrValue* file = sub->provenance().back().stat("supernet");
  REQUIRE(file);
  CHECK(std::get<std::string>(*file) == "some-supernet.pt");
}

TEST_CASE("nas: evolution and random search under a MACs budget", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-mobilenet");
  nas::Constraints k;
  k.max_macs = 0.5 * nas::describe(sp, sp.largest(), k).macs;
  // A known objective: accuracy grows with capacity, so the budget binds and the best lie on its edge.
  int calls = 0;
  nas::Evaluator score = [&](const ArchConfig& a) {
    ++calls;
    double s = 0;
    for (const auto& st : a.stages) s += std::log(static_cast<double>(st.width * st.depth * st.expand * st.kernel));
    return s / 30.0;
  };
  auto run = [&](const std::string& algorithm, uint64_t seed, const std::string& state = "", int screen = 16) {
    nas::SearchOptions o;
    o.algorithm = algorithm;
    o.screen = screen;
    o.evaluations = 40;
    o.population = 10;
    o.tournament = 3;
    o.seed = seed;
    o.state = state;
    return nas::search(sp, k, score, o);
  };
  double evolution = 0, plain = 0, random = 0;
  for (uint64_t seed = 1; seed <= 3; ++seed) {
    const auto e = run("evolution", seed);
    const auto p = run("evolution", seed, "", 0);
    const auto r = run("random", seed);
    // Every child was the predictor's pick of up to 16 feasible mutants not evaluated yet.
    CHECK(e.screened > 30);
    CHECK(e.predictor_loo_rmse > 0);
    CHECK(p.screened == 0);
    CHECK(r.screened == 0);
    plain += p.best().accuracy;
    CHECK(e.evaluated.size() == 40);
    CHECK(r.evaluated.size() == 40);
    for (const auto* res : {&e, &r}) {
      for (const auto& c : res->evaluated) CHECK(c.macs <= k.max_macs);
      // The front: most accurate first, each member cheaper than the one before, none dominated.
      for (size_t i = 1; i < res->front.size(); ++i) {
        CHECK(res->front[i].accuracy < res->front[i - 1].accuracy);
        CHECK(res->front[i].macs < res->front[i - 1].macs);
      }
      for (const auto& c : res->evaluated)
        CHECK(c.accuracy <= res->best().accuracy);
    }
    evolution += e.best().accuracy;
    random += r.best().accuracy;
  }
  CHECK(evolution > random);
  CHECK(evolution >= plain);

  // Resume: the same search from its state file evaluates nothing again and ends the same.
  const std::string state = nas_tmp("search-state.json");
  fs::remove(state);
  const auto first = run("evolution", 5, state);
  calls = 0;
  const auto again = run("evolution", 5, state);
  CHECK(calls == 0);
  CHECK(again.resumed == 40);
  CHECK(again.best().config == first.best().config);
  CHECK_THAT(expect_error([&] { run("random", 5, state); }), Catch::Contains("belongs to another search"));

  // A budget nothing meets names the fastest architecture.
  nas::Constraints impossible;
  impossible.max_macs = 10;
  CHECK_THAT(expect_error([&] { nas::search(sp, impossible, score, {}); }),
             Catch::Contains("no architecture of search space 'fashion-mobilenet' meets MACs <= 10") &&
                 Catch::Contains(sp.smallest().str()));
}

TEST_CASE("nas: the accuracy predictor learns a known objective and ranks unseen subnets", "[nas]") {
  const SearchSpace sp = SearchSpace::named("fashion-resnet");
  std::mt19937_64 rng(3);
  // Accuracy linear in the first stage's depth and log MACs: ridge regression on the features recovers it.
  auto truth = [](const nas::Candidate& c) {
    return 0.3 + 0.02 * static_cast<double>(c.config.stages[0].depth) + 0.01 * std::log(c.macs);
  };
  std::vector<nas::Candidate> seen, unseen;
  for (int i = 0; i < 40; ++i) {
    nas::Candidate c = nas::describe(sp, sp.sample(rng), {});
    c.accuracy = truth(c);
    (i < 25 ? seen : unseen).push_back(c);
  }
  nas::AccuracyPredictor p;
  CHECK_FALSE(p.fitted());
  CHECK_THAT(expect_error([&] { p.predict(seen[0]); }), Catch::Contains("not fitted"));
  CHECK_THAT(expect_error([&] { p.fit({seen[0], seen[1]}); }), Catch::Contains("at least 3 evaluated subnets, got 2"));
  p.fit(seen);
  CHECK(p.fitted());
  CHECK(p.loo_rmse() < 0.005);
  CHECK(p.ridge() > 0);
  int concordant = 0, pairs = 0;
  for (const auto& c : unseen) CHECK(p.predict(c) == Approx(truth(c)).margin(0.01));
  for (size_t i = 0; i < unseen.size(); ++i)
    for (size_t j = i + 1; j < unseen.size(); ++j) {
      const double dt = truth(unseen[i]) - truth(unseen[j]);
      if (std::abs(dt) < 1e-9) continue;
      ++pairs;
      concordant += (p.predict(unseen[i]) - p.predict(unseen[j])) * dt > 0;
    }
  CHECK(concordant >= 0.9 * pairs);
  // Noise it cannot explain shows as leave-one-out error, not as a perfect fit.
  std::normal_distribution<double> noise(0, 0.02);
  for (auto& c : seen) c.accuracy = truth(c) + noise(rng);
  p.fit(seen);
  CHECK(p.loo_rmse() > 0.01);
}

TEST_CASE("nas: latency budgets are predicted and then checked by measurement", "[nas][latency]") {
  const SearchSpace sp = SearchSpace::named("fashion-resnet");
  auto table = fashion_table();
  REQUIRE(table->fitted());
  nas::Constraints k;
  k.latency = {{1.0, table, "onednn-cpu"}};
  const double small_ms = nas::describe(sp, sp.smallest(), k).predicted_ms.at(0);
  const double large_ms = nas::describe(sp, sp.largest(), k).predicted_ms.at(0);
  CHECK(large_ms > small_ms);
  k.latency = {{small_ms + 0.3 * (large_ms - small_ms), table, "onednn-cpu"}};
  nas::Evaluator score = [](const ArchConfig& a) {
    double s = 0;
    for (const auto& st : a.stages) s += static_cast<double>(st.width * st.depth);
    return s / 1000.0;
  };
  nas::SearchOptions o;
  o.evaluations = 12;
  o.population = 6;
  o.tournament = 3;
  o.seconds_per_model = 0.3;
  const auto r = nas::search(sp, k, score, o);
  REQUIRE_FALSE(r.front.empty());
  for (const auto& c : r.front) {
    CHECK(c.predicted_ms.at(0) <= k.latency[0].ms);
    REQUIRE(c.measured_ms.size() == 1);
    CHECK(c.measured_ms[0] <= k.latency[0].ms);  // over-budget members leave the front
  }
  for (const auto& c : r.over_budget) CHECK(c.measured_ms.at(0) > k.latency[0].ms);
  CHECK(r.max_measured_over_predicted > 0);
  // A table of another target is refused, naming the file.
  const std::string file = nas_tmp("table.json");
  table->save(file);
  CHECK_THAT(expect_error([&] { nas::latency_table("onednn-cpu:2", file, {}); }),
             Catch::Contains("latency table '" + file + "' was built for"));
  CHECK_THAT(expect_error([&] { nas::parse_target("tpu-edge"); }), Catch::Contains("target 'tpu-edge'"));
  CHECK_THAT(expect_error([&] { nas::parse_target("onednn-cpu:two"); }), Catch::Contains("threads 'two'"));
  CHECK_THAT(expect_error([&] { nas::latency_budgets({1, 2}, {"onednn-cpu"}, {}, {}); }),
             Catch::Contains("2 latency budgets for 1 targets"));
}

TEST_CASE("nas: NetAdapt meets a latency budget on a trained model", "[nas][latency]") {
  GraphModule m = models::capture_model("fashion-resnet", models::ZooOptions().seed(2));
  const auto split = nas::split_validation(fashion_train(), 200);
  train::TrainOptions t;
  t.epochs = 1;
  t.batch_size = 100;
  t.progress = false;
  train::finetune(m, split.train, nullptr, t);
  latency::Workload w;
  const std::string file = nas_tmp("netadapt-model.pt");
  save(*m, file);
  w.models = {file};
  w.model_input = {1, 1, 28, 28};
  auto table = nas::latency_table("onednn-cpu", "", w, 0.3, false);
  nas::NetAdaptOptions o;
  o.table = table;
  o.input_shape = {1, 1, 28, 28};
  const double start = table->predict(latency::detect_kernels(*m, o.input_shape, table->target())).total_ms;
  o.budget_ms = 0.88 * start;
  o.step = 0.1;
  o.short_term = t;
  o.short_term_images = 200;
  o.long_term = t;
  o.long_term.epochs = 0;
  const int64_t macs_before = analyze(*m, {{1, 1, 28, 28}}).macs;
  const auto r = nas::netadapt(*m, split.train, split.validation, o);
  CHECK(r.start_ms == Approx(start));
  CHECK(r.predicted_ms <= o.budget_ms);
  CHECK(r.measured_ms > 0);  // timed on the target after the prediction met the budget
  CHECK(nlohmann::json::parse(r.json()).at("measured_ms").get<double>() == r.measured_ms);
  // The check divides out the machine's state, timed by the table's reference model around the measurement.
  if (table->reference_ms() > 0) {
    CHECK(r.machine_slowdown > 0.25);
    CHECK(r.machine_slowdown < 4);
  } else {
    CHECK(r.machine_slowdown == 1);
  }
  CHECK(nlohmann::json::parse(r.json()).at("machine_slowdown").get<double>() == r.machine_slowdown);
  CHECK_FALSE(r.iterations.empty());
  for (const auto& it : r.iterations) {
    CHECK(it.channels_after < it.channels_before);
    // Proposals are timed beside the current model; at least one is always kept.
    CHECK(it.dropped < it.proposals);
    if (it.proposals > 1) CHECK(it.measured_ms > 0);
  }
  CHECK(analyze(*m, {{1, 1, 28, 28}}).macs < macs_before);
  // Judged as cut, only the kept proposal is fine-tuned; the budget is met all the same.
  {
    GraphModule again = clone_module(*m);
    nas::NetAdaptOptions cut = o;
    cut.fine_tune_every_proposal = false;
    cut.budget_ms = 0.93 * r.predicted_ms;
    const auto r2 = nas::netadapt(*again, split.train, split.validation, cut);
    CHECK(r2.predicted_ms <= cut.budget_ms);
    CHECK_FALSE(r2.iterations.empty());
    CHECK(nlohmann::json::parse(r2.json()).at("iterations").at(0).contains("dropped"));
  }
  CHECK(m->forward(torch::zeros({2, 1, 28, 28})).sizes() == std::vector<int64_t>{2, 10});
  // A budget no pruning reaches fails and leaves the model as it was.
  GraphModule before = clone_module(*m);
  o.budget_ms = 1e-4;
  o.max_iterations = 2;
  o.remeasure_seconds = 0;
  CHECK_THAT(expect_error([&] { nas::netadapt(*m, split.train, split.validation, o); }),
             Catch::Contains("netadapt cannot reach"));
  CHECK(analyze(*m, {{1, 1, 28, 28}}).macs == analyze(*before, {{1, 1, 28, 28}}).macs);
}

TEST_CASE("nas: nas-train and nas-search run as a pipeline", "[nas]") {
  const std::string supernet = nas_tmp("pipeline-supernet.pt");
  fs::remove(supernet);
  const auto pipeline = parse_pipeline(
      "nas-train{space=fashion-mobilenet,epochs=1,limit=600,validation=100,batch_size=100,out=\"" + supernet +
      "\"},nas-search{evaluations=4,population=2,tournament=2,limit=600,validation=100,macs=6000000}");
  GraphModule m = models::capture_arch(SearchSpace::named("fashion-mobilenet").smallest(),
                                       SearchSpace::named("fashion-mobilenet").zoo_options());
  PassContext ctx;
  ctx.quiet = true;
  ctx.input_shapes = {{1, 1, 28, 28}};
  pipeline->run(*m, ctx);
  CHECK(fs::exists(supernet));
  const auto& records = m->provenance();
  REQUIRE(records.size() >= 2);
  const PassRecord& search = records.back();
  const AttrValue* config = search.stat("config");
  REQUIRE(config);
  const ArchConfig chosen = ArchConfig::parse(std::get<std::string>(*config));
  CHECK(SearchSpace::named("fashion-mobilenet").contains(chosen));
  CHECK(analyze(*m, {{1, 1, 28, 28}}).macs <= 6000000);
  CHECK(std::get<std::string>(*search.stat("supernet")) == supernet);
  CHECK(m->forward(torch::zeros({1, 1, 28, 28})).sizes() == std::vector<int64_t>{1, 10});
}
