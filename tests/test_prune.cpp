// Pruning: masks with known answers, masks that survive training, N:M patterns, the gradual schedule, channel
// dependency groups on real architectures, physical channel removal (valid, smaller, exportable, identity at
// ratio 0) and bad input that leaves the model untouched.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::test;

namespace {

std::map<std::string, torch::Tensor> snapshot(const GraphModuleImpl& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [k, t] : m.tensors()) out[k] = t.detach().clone();
  return out;
}

bool same_tensors(const std::map<std::string, torch::Tensor>& a, const std::map<std::string, torch::Tensor>& b) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, t] : a)
    if (!b.count(k) || !torch::equal(t, b.at(k))) return false;
  return true;
}

}  // namespace

TEST_CASE("magnitude masks: known answers, layer-wise and global") {
  const auto a = torch::tensor({{0.1, -0.5, 0.3}, {-0.2, 0.9, 0.05}});  // |.|: .1 .5 .3 .2 .9 .05
  const auto b = torch::tensor({{1.0, -0.01}, {0.02, 2.0}});
  std::map<std::string, torch::Tensor> w = {{"a", a}, {"b", b}};
  // Layer-wise 50%: round(0.5 * 6) = 3 smallest of a (.05, .1, .2) and round(0.5 * 4) = 2 of b (.01, .02).
  Masks m = magnitude_masks(w, 0.5, false);
  CHECK(torch::equal(m["a"], torch::tensor({{0.0, 1.0, 1.0}, {0.0, 1.0, 0.0}})));
  CHECK(torch::equal(m["b"], torch::tensor({{1.0, 0.0}, {0.0, 1.0}})));
  CHECK(mask_sparsity(m) == Approx(0.5));
  // Global 50% of 10 weights: the 5 smallest overall (.01 .02 .05 .1 .2).
  m = magnitude_masks(w, 0.5, true);
  CHECK(torch::equal(m["a"], torch::tensor({{0.0, 1.0, 1.0}, {0.0, 1.0, 0.0}})));
  CHECK(torch::equal(m["b"], torch::tensor({{1.0, 0.0}, {0.0, 1.0}})));
  m = magnitude_masks(w, 0.0, false);
  CHECK(mask_sparsity(m) == 0);
  CHECK_THROWS_WITH(magnitude_masks(w, 1.0, false), Catch::Contains("[0, 1)"));
  CHECK_THROWS_WITH(magnitude_masks(w, -0.1, true), Catch::Contains("[0, 1)"));
}

TEST_CASE("N:M masks keep N of every M inputs at each kernel position") {
  // One row, 8 inputs: 2:4 keeps the two largest of each half.
  const auto w = torch::tensor({{0.1, -0.9, 0.5, 0.2, -3.0, 0.0, 1.0, -0.4}});
  Masks m = nm_masks({{"w", w}}, 2, 4);
  CHECK(torch::equal(m["w"], torch::tensor({{0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0}})));
  // A conv weight [O, I, kh, kw]: groups run along I at every (o, kh, kw).
  torch::manual_seed(0);
  const auto cw = torch::randn({6, 8, 3, 3});
  m = nm_masks({{"c", cw}}, 2, 4);
  const auto groups = m["c"].permute({0, 2, 3, 1}).reshape({-1, 4});
  CHECK(torch::equal(groups.sum(1), torch::full({groups.size(0)}, 2.0)));
  CHECK(mask_sparsity(m) == Approx(0.5));
  m = nm_masks({{"c", cw}}, 4, 8);
  CHECK(torch::equal(m["c"].permute({0, 2, 3, 1}).reshape({-1, 8}).sum(1), torch::full({6 * 9}, 4.0)));
  CHECK_THROWS_WITH(nm_masks({{"c", torch::randn({4, 3, 3, 3})}}, 2, 4), Catch::Contains("not a multiple of M=4"));
  CHECK_THROWS_WITH(nm_masks({{"c", cw}}, 4, 4), Catch::Contains("0 < N < M"));
}

TEST_CASE("sparsity masks survive training on a plain module and on a GraphModule") {
  torch::manual_seed(1);
  auto run = [](torch::nn::Module& module, const std::function<torch::Tensor(torch::Tensor)>& forward) {
    std::map<std::string, torch::Tensor> weights;
    for (const auto& name : prunable_weights(module)) weights[name] = module.named_parameters()[name];
    REQUIRE_FALSE(weights.empty());
    const Masks masks = magnitude_masks(weights, 0.7, true);
    SparsityMasks sm;
    sm.attach(module, masks);
    CHECK(sm.sparsity() == Approx(0.7).margin(0.01));
    torch::optim::SGD opt(module.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-3));
    for (int step = 0; step < 5; ++step) {
      opt.zero_grad();
      const auto loss = forward(torch::randn({4, 1, 8, 8})).pow(2).mean();
      loss.backward();
      // Masked gradients are zero (the hook), so the optimizer only moves kept weights...
      for (const auto& [name, mask] : masks) {
        const auto grad = module.named_parameters()[name].grad();
        REQUIRE(grad.defined());
        CHECK((grad * (1 - mask)).abs().max().item<double>() == 0.0);
      }
      opt.step();
      sm.apply();  // ...and apply() undoes what momentum and weight decay would revive.
      for (const auto& [name, mask] : masks)
        CHECK((module.named_parameters()[name] * (1 - mask)).abs().max().item<double>() == 0.0);
    }
    // The masks are buffers next to their weights, saved with the model.
    bool found = false;
    for (const auto& b : module.named_buffers()) found = found || b.key().find("weight_mask") != std::string::npos;
    CHECK(found);
  };
  SECTION("torch::nn::Sequential") {
    torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3)), torch::nn::ReLU(),
                              torch::nn::Flatten(), torch::nn::Linear(8 * 6 * 6, 10));
    run(*net, [&](torch::Tensor x) { return net->forward(x); });
  }
  SECTION("GraphModule") {
    GraphModule gm = models::capture_model("fashion-cnn");
    gm->train();
    run(*gm, [&](torch::Tensor x) { return gm->forward(torch::nn::functional::interpolate(
                                         x, torch::nn::functional::InterpolateFuncOptions().size(
                                                std::vector<int64_t>{28, 28}))); });
  }
  SECTION("bad masks are refused before anything changes") {
    torch::nn::Linear lin(4, 3);
    const auto before = lin->weight.clone();
    SparsityMasks sm;
    CHECK_THROWS_WITH(sm.attach(*lin, {{"weight", torch::ones({4, 3})}}), Catch::Contains("shape"));
    CHECK_THROWS_WITH(sm.attach(*lin, {{"nope", torch::ones({3, 4})}, {"weight", torch::zeros({3, 4})}}),
                      Catch::Contains("no such parameter"));
    CHECK(torch::equal(lin->weight, before));
  }
}

TEST_CASE("gradual schedule follows Zhu & Gupta's cubic") {
  GradualSchedule s;
  s.initial = 0;
  s.final = 0.9;
  s.begin = 100;
  s.end = 1100;
  s.every = 100;
  CHECK(s.sparsity_at(0) == 0);
  CHECK(s.sparsity_at(100) == 0);
  CHECK(s.sparsity_at(600) == Approx(0.9 - 0.9 * 0.125));  // (1 - 0.5)^3 = 0.125
  CHECK(s.sparsity_at(1100) == Approx(0.9));
  CHECK(s.sparsity_at(5000) == Approx(0.9));
  CHECK(s.updates_at(100));
  CHECK(s.updates_at(300));
  CHECK_FALSE(s.updates_at(301));
  CHECK_FALSE(s.updates_at(1200));
}

TEST_CASE("channel groups on ResNet-18 follow residual connections") {
  GraphModule gm = models::capture_model("resnet18");
  gm->eval();
  const auto groups = channel_groups(*gm, {{1, 3, 224, 224}});
  const ChannelGroup* stream = nullptr;
  const ChannelGroup* fc = nullptr;
  const ChannelGroup* inner = nullptr;
  for (const auto& g : groups) {
    auto has = [&](const std::string& p) { return std::find(g.producers.begin(), g.producers.end(), p) != g.producers.end(); };
    if (has("conv1")) stream = &g;
    if (has("fc")) fc = &g;
    if (has("layer1.0.conv1")) inner = &g;
  }
  REQUIRE(stream);
  // The stem and every block's last conv of stage 1 write the same 64 channels.
  CHECK(stream->channels == 64);
  CHECK(std::count(stream->producers.begin(), stream->producers.end(), "layer1.1.conv2") == 1);
  CHECK(stream->prunable);
  REQUIRE(fc);
  CHECK_FALSE(fc->prunable);
  CHECK_THAT(fc->reason, Catch::Contains("model output"));
  REQUIRE(inner);
  CHECK(inner->producers.size() == 1);
  CHECK(inner->channels == 64);
}

TEST_CASE("channel pruning: ratio 0 changes nothing, 0.5 gives a smaller model that exports and runs") {
  const auto m = fixture_manifest();
  const std::string dir = TAILOR_FIXTURES_DIR;
  std::filesystem::create_directories(TAILOR_TEST_TMP);
  for (const auto& [name, entry] : m.at("models").items()) {
    if (!entry.at("files").contains("traced")) continue;
    DYNAMIC_SECTION(name) {
      GraphModule gm = load(dir + "/" + entry.at("files").at("traced").get<std::string>());
      gm->eval();
      torch::jit::Module ref = torch::jit::load(dir + "/" + name + "_ref.pt");
      const torch::Tensor x = ref.attr("input").toTensor();
      const std::vector<std::vector<int64_t>> shapes = {x.sizes().vec()};
      torch::NoGradGuard no_grad;
      const torch::Tensor y0 = first_tensor(gm->run({x}));

      ChannelPruneOptions none;
      none.ratio = 0;
      const ChannelPruneResult r0 = prune_channels(*gm, shapes, none);
      CHECK(r0.channels_removed == 0);
      CHECK(torch::equal(first_tensor(gm->run({x})), y0));

      const CostReport before = analyze(*gm, shapes);
      ChannelPruneOptions half;
      half.ratio = 0.5;
      const ChannelPruneResult r = prune_channels(*gm, shapes, half);
      const CostReport after = analyze(*gm, shapes);
      INFO(name << ": MACs " << before.macs << " -> " << after.macs);
      CHECK(r.channels_removed > 0);
      CHECK(r.params_after < r.params_before);
      CHECK(after.macs < before.macs);
      const torch::Tensor y = first_tensor(gm->run({x}));
      CHECK(y.sizes() == y0.sizes());
      CHECK(torch::isfinite(y).all().item<bool>());
      // Exported, it loads in stock LibTorch and computes the same thing.
      const std::string path = std::string(TAILOR_TEST_TMP) + "/" + name + "_pruned.pt";
      save(*gm, path);
      torch::jit::Module stock = torch::jit::load(path);
      stock.eval();
      const torch::Tensor ys = first_tensor(stock.forward({x}));
      CHECK(((ys - y).abs().max() / y.abs().max().clamp_min(1e-12)).item<double>() < 1e-5);
      std::filesystem::remove(path);
    }
  }
}

TEST_CASE("channel pruning options: rounding, max ratio, criteria, global ranking") {
  GraphModule gm = models::capture_model("resnet18");
  gm->eval();
  const std::vector<std::vector<int64_t>> shapes = {{1, 3, 64, 64}};
  SECTION("kept channels are multiples of round_to") {
    ChannelPruneOptions o;
    o.ratio = 0.3;
    o.round_to = 8;
    const auto r = prune_channels(*gm, shapes, o);
    REQUIRE_FALSE(r.layers.empty());
    for (const auto& [layer, counts] : r.layers) CHECK(counts.second % 8 == 0);
  }
  SECTION("max_ratio caps every group") {
    ChannelPruneOptions o;
    o.ratio = 0.9;
    o.max_ratio = 0.25;
    const auto r = prune_channels(*gm, shapes, o);
    for (const auto& [layer, counts] : r.layers) CHECK(counts.second >= counts.first * 3 / 4);
  }
  SECTION("every criterion prunes to the same counts layer-wise") {
    for (const auto c : {Criterion::L1, Criterion::L2, Criterion::BnScale, Criterion::Random}) {
      GraphModule copy = clone_module(*gm);
      ChannelPruneOptions o;
      o.ratio = 0.5;
      o.criterion = c;
      const auto r = prune_channels(*copy, shapes, o);
      CHECK(r.params_after < r.params_before);
      CHECK(r.layers.size() == 20);
    }
  }
  SECTION("taylor uses the gradients the callback computes") {
    ChannelPruneOptions o;
    o.ratio = 0.5;
    o.criterion = Criterion::Taylor;
    CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("gradient"));
    int calls = 0;
    const auto r = prune_channels(*gm, shapes, o, [&](GraphModuleImpl& m) {
      ++calls;
      torch::manual_seed(0);
      m.forward(torch::randn({2, 3, 64, 64})).logsumexp(1).mean().backward();
    });
    CHECK(calls == 1);
    CHECK(r.channels_removed > 0);
  }
  SECTION("global ranking removes the requested fraction overall") {
    ChannelPruneOptions o;
    o.ratio = 0.4;
    o.global = true;
    const auto r = prune_channels(*gm, shapes, o);
    int64_t before = 0, after = 0;
    for (const auto& g : channel_groups(*clone_module(*models::capture_model("resnet18")), shapes))
      if (g.prunable) before += g.channels;
    for (const auto& g : channel_groups(*gm, shapes))
      if (g.prunable) after += g.channels;
    CHECK(r.channels_removed == before - after);
    CHECK(static_cast<double>(r.channels_removed) == Approx(0.4 * static_cast<double>(before)).margin(1));
  }
}

TEST_CASE("taylor on data removes the channels the output does not depend on, l1 keeps them") {
  // conv1's channels 0..15 get the largest weights (l1 ranks them first) but conv2 reads them with zero weights,
  // so the loss does not depend on them: |w * dL/dw| is exactly 0 there and taylor removes exactly those.
  GraphModule gm = models::capture_model("fashion-cnn");
  gm->eval();
  {
    torch::NoGradGuard g;
    gm->tensor("conv2.weight").slice(1, 0, 16).zero_();
    gm->tensor("conv1.weight").slice(0, 0, 16).mul_(100);
  }
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 28, 28}};
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({8, 1, 28, 28});
  const torch::Tensor before = gm->forward(x).detach();
  ChannelPruneOptions o;
  o.ratio = 0;
  o.layer_ratios["conv1"] = 0.5;
  std::vector<torch::Tensor> batches, labels;
  for (int i = 0; i < 3; ++i) {
    batches.push_back(torch::randn({16, 1, 28, 28}));
    labels.push_back(torch::randint(0, 10, {16}, torch::kLong));
  }

  SECTION("with labels and with the model's own predictions") {
    for (const bool with_labels : {true, false}) {
      GraphModule m = clone_module(*gm);
      o.criterion = Criterion::Taylor;
      const auto r = prune_channels(*m, shapes, o,
                                    gradients_from_batches(batches, with_labels ? labels : std::vector<torch::Tensor>{}));
      CHECK(r.channels_removed == 16);
      CHECK(m->tensor("conv1.weight").size(0) == 16);
      CHECK(torch::allclose(m->forward(x), before, 1e-5, 1e-5));
      CHECK_FALSE(m->is_training());
      for (const auto& p : m->parameters()) CHECK(p.requires_grad());
    }
  }
  SECTION("l1 removes the others and changes the output") {
    GraphModule m = clone_module(*gm);
    o.criterion = Criterion::L1;
    CHECK(prune_channels(*m, shapes, o).channels_removed == 16);
    CHECK_FALSE(torch::allclose(m->forward(x), before, 1e-3, 1e-3));
  }
  SECTION("the prune-channels pass takes taylor's gradients on the calibration data") {
    GraphModule m = clone_module(*gm);
    PassContext ctx;
    ctx.input_shapes = shapes;
    ctx.quiet = true;
    const auto tensors_before = snapshot(*m);
    CHECK_THROWS_WITH(parse_pipeline("prune-channels{criterion=taylor}")->run(*m, ctx),
                      Catch::Contains("needs calibration data"));
    CHECK(same_tensors(snapshot(*m), tensors_before));
    ctx.calibration = batches;
    ctx.calibration_labels = labels;
    parse_pipeline("prune-channels{criterion=taylor,ratio=0.5}")->run(*m, ctx);
    CHECK(m->tensor("conv1.weight").size(0) == 16);
  }
  SECTION("mismatched labels are refused") {
    CHECK_THROWS_WITH(gradients_from_batches(batches, {labels[0]}), Catch::Contains("1 label batches for 3"));
    CHECK_THROWS_WITH(gradients_from_batches({}), Catch::Contains("at least one batch"));
  }
}

TEST_CASE("channel pruning: bad input leaves the model untouched") {
  GraphModule gm = models::capture_model("fashion-cnn");
  gm->eval();
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 28, 28}};
  const auto before = snapshot(*gm);
  const std::string graph_before = gm->graph().str();
  ChannelPruneOptions o;
  o.ratio = 1.0;
  CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("[0, 1)"));
  o.ratio = -0.5;
  CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("[0, 1)"));
  o.ratio = 0.5;
  o.ignore = {"no_such_layer"};
  CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("no_such_layer"));
  o.ignore.clear();
  o.layer_ratios["conv1"] = 1.5;
  CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("conv1"));
  o.layer_ratios.clear();
  o.round_to = 0;
  CHECK_THROWS_WITH(prune_channels(*gm, shapes, o), Catch::Contains("round_to"));
  CHECK(same_tensors(snapshot(*gm), before));
  CHECK(gm->graph().str() == graph_before);
}

TEST_CASE("prune passes run from pipeline text") {
  GraphModule gm = models::capture_model("fashion-cnn");
  gm->eval();
  PassContext ctx;
  ctx.input_shapes = {{1, 1, 28, 28}};
  ctx.quiet = true;
  parse_pipeline("prune-channels{ratio=0.5,round_to=8}")->run(*gm, ctx);
  REQUIRE(ctx.records.size() == 1);
  CHECK(ctx.records[0].params_after < ctx.records[0].params_before);
  CHECK(ctx.records[0].macs_after < ctx.records[0].macs_before);
  parse_pipeline("prune-magnitude{ratio=0.8,global=true}")->run(*gm, ctx);
  std::map<std::string, torch::Tensor> w;
  for (const auto& n : prunable_weights(*gm)) w[n] = gm->tensor(n);
  int64_t zeros = 0, total = 0;
  for (const auto& [n, t] : w) {
    zeros += (t == 0).sum().item<int64_t>();
    total += t.numel();
  }
  CHECK(static_cast<double>(zeros) / static_cast<double>(total) == Approx(0.8).margin(0.01));
  CHECK_THROWS_WITH(parse_pipeline("prune-channels{criterion=taylor}")->run(*gm, ctx), Catch::Contains("taylor"));
  CHECK_THROWS_WITH(parse_pipeline("prune-channels{criterion=size}")->run(*gm, ctx), Catch::Contains("l1, l2"));
}

TEST_CASE("iterative pruning and sensitivity analysis") {
  GraphModule gm = models::capture_model("fashion-resnet");
  gm->eval();
  const std::vector<std::vector<int64_t>> shapes = {{1, 1, 28, 28}};
  const auto x = torch::randn({4, 1, 28, 28});
  SECTION("rounds remove the same fraction of what is left and call back between them") {
    int64_t before = 0;
    for (const auto& g : channel_groups(*gm, shapes))
      if (g.prunable) before += g.channels;
    std::vector<int> rounds;
    ChannelPruneOptions o;
    o.ratio = 0.75;  // two rounds of 50%
    const auto results = prune_channels_iteratively(*gm, shapes, o, 2, [&](int r) { rounds.push_back(r); });
    CHECK(rounds == std::vector<int>{0, 1});
    REQUIRE(results.size() == 2);
    CHECK(results[1].params_after < results[0].params_after);
    int64_t after = 0;
    for (const auto& g : channel_groups(*gm, shapes))
      if (g.prunable) after += g.channels;
    CHECK(static_cast<double>(after) == Approx(0.25 * static_cast<double>(before)).margin(4));
    CHECK_THROWS_WITH(prune_channels_iteratively(*gm, shapes, o, 0, nullptr), Catch::Contains("round"));
  }
  SECTION("sensitivity: one curve per prunable group, ratio 0 scores like the dense model") {
    torch::NoGradGuard g;
    const auto y = gm->forward(x);
    auto closeness = [&](GraphModuleImpl& m) { return -(m.forward(x) - y).abs().max().item<double>(); };
    const auto curves = channel_sensitivity(*gm, shapes, {0.0, 0.5, 0.9}, closeness);
    REQUIRE_FALSE(curves.empty());
    for (const auto& [group, values] : curves) {
      INFO(group);
      REQUIRE(values.size() == 3);
      CHECK(values[0] == 0.0);  // nothing removed: identical outputs
      CHECK(values[2] < 0.0);
    }
    // The module analysed is not modified.
    CHECK(torch::equal(gm->forward(x), y));
  }
}
