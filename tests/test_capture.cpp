// Capture from C++ modules, GraphModule as a trainable torch::nn::Module, export round trips, the zoo,
// the Fashion-MNIST reader, and bad input.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "tailor/tailor.hpp"

using namespace tailor;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) {
  fs::create_directories(TAILOR_TEST_TMP);
  return std::string(TAILOR_TEST_TMP) + "/" + name;
}

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item<double>();
}

}  // namespace

TEST_CASE("a C++ module captures with its parameter names and module paths") {
  GraphModule gm = models::capture_model("fashion-cnn");
  std::set<std::string> names;
  for (const auto& p : gm->named_parameters()) names.insert(p.key());
  CHECK(names.count("conv1.weight"));
  CHECK(names.count("bn2.bias"));
  CHECK(names.count("fc2.weight"));
  const Node* conv = gm->graph().find("conv1");
  REQUIRE(conv);
  CHECK(conv->kind == ops::kConv);
  CHECK(conv->ints("padding") == std::vector<int64_t>{1, 1});
  // C++ nn::Linear traces as addmm(bias, x, t(weight)); capture turns it into linear.
  REQUIRE(gm->graph().find("fc1"));
  CHECK(gm->graph().find("fc1")->kind == ops::kLinear);
  for (int id : gm->graph().order()) CHECK(gm->graph().node(id).kind != ops::kOpaque);
}

TEST_CASE("zoo models match their C++ originals after capture") {
  for (const std::string name : {"fashion-cnn", "resnet18", "mobilenet_v2"}) {
    DYNAMIC_SECTION(name) {
      models::ZooModel z = models::make_model(name);
      z.module->eval();
      GraphModule gm = models::capture_model(name);
      torch::NoGradGuard g;
      const auto x = torch::randn(z.input_shape);
      CHECK(max_rel(gm->forward(x), z.forward(x)) < 1e-5);
    }
  }
  CHECK_THROWS_WITH(models::make_model("resnet19"), Catch::Contains("the zoo has: fashion-cnn"));
}

TEST_CASE("zoo resnet18 has torchvision's parameter count and MACs") {
  GraphModule gm = models::capture_model("resnet18");
  const CostReport r = analyze(*gm, {{1, 3, 224, 224}});
  CHECK(r.params == 11689512);   // torchvision.models.resnet18()
  CHECK(r.macs == 1814073344);   // conv + linear MACs, as thop counts them
  GraphModule mb = models::capture_model("mobilenet_v2");
  const CostReport rm = analyze(*mb, {{1, 3, 224, 224}});
  CHECK(rm.params == 3504872);
  CHECK(rm.macs == 300774272);
}

TEST_CASE("GraphModule trains: gradients reach every parameter and an optimizer step changes them") {
  GraphModule gm = models::capture_model("fashion-cnn");
  gm->train();
  torch::optim::SGD opt(gm->parameters(), torch::optim::SGDOptions(0.1));
  const auto x = torch::randn({4, 1, 28, 28});
  const auto y = torch::tensor({0, 1, 2, 3}, torch::kLong);
  const auto before = gm->tensor("conv1.weight").clone();
  const auto mean_before = gm->tensor("bn1.running_mean").clone();
  opt.zero_grad();
  auto loss = torch::nn::functional::cross_entropy(gm->forward(x), y);
  loss.backward();
  for (const auto& p : gm->named_parameters()) {
    INFO(p.key());
    REQUIRE(p.value().grad().defined());
  }
  opt.step();
  CHECK_FALSE(torch::equal(before, gm->tensor("conv1.weight")));
  // Training-mode batch norm updates its running statistics.
  CHECK_FALSE(torch::equal(mean_before, gm->tensor("bn1.running_mean")));
  // Dropout is active in train mode and the identity in eval mode.
  gm->eval();
  torch::NoGradGuard g;
  CHECK(torch::equal(gm->forward(x), gm->forward(x)));
}

TEST_CASE("GraphModule saves and loads with torch::save/torch::load") {
  GraphModule a = models::capture_model("fashion-cnn", models::ZooOptions().seed(1));
  GraphModule b = models::capture_model("fashion-cnn", models::ZooOptions().seed(2));
  const std::string path = tmp_path("state.pt");
  torch::save(a, path);
  torch::load(b, path);
  torch::NoGradGuard g;
  const auto x = torch::randn({2, 1, 28, 28});
  CHECK(torch::equal(a->forward(x), b->forward(x)));
}

TEST_CASE("taps return named intermediate activations") {
  GraphModule gm = models::capture_model("fashion-cnn");
  torch::NoGradGuard g;
  auto [out, taps] = gm->run_with_taps({torch::randn({3, 1, 28, 28})}, {"conv1", "fc1"});
  CHECK(out.toTensor().sizes() == torch::IntArrayRef({3, 10}));
  CHECK(taps.at("conv1").sizes() == torch::IntArrayRef({3, 32, 28, 28}));
  CHECK(taps.at("fc1").sizes() == torch::IntArrayRef({3, 128}));
  CHECK_THROWS_WITH(gm->run_with_taps({torch::randn({1, 1, 28, 28})}, {"conv9"}),
                    Catch::Contains("no node named 'conv9'") && Catch::Contains("conv1"));
}

TEST_CASE("export writes TorchScript that LibTorch runs with the same outputs, and reloads losslessly") {
  GraphModule gm = models::capture_model("resnet18", models::ZooOptions().num_classes(10));
  const std::string path = tmp_path("resnet18_export.pt");
  save(*gm, path);
  torch::NoGradGuard g;
  const auto x = torch::randn({2, 3, 64, 64});
  const auto expected = gm->forward(x);
  torch::jit::Module stock = torch::jit::load(path);
  CHECK(max_rel(stock.forward({x}).toTensor(), expected) < 1e-6);
  // The archive's state dict keeps the source names.
  bool found = false;
  for (const auto& p : stock.named_parameters())
    if (p.name == "layer3.1.conv2.weight") found = true;
  CHECK(found);
  GraphModule back = load(path);
  CHECK(back->graph().str() == gm->graph().str());
  CHECK(torch::equal(back->forward(x), expected));
}

TEST_CASE("the Fashion-MNIST reader returns normalized images and labels") {
  const auto test = data::load_fashion_mnist(data::Split::Test);
  REQUIRE(test.size() == 10000);
  CHECK(test.images.sizes() == torch::IntArrayRef({10000, 1, 28, 28}));
  CHECK(test.labels.min().item<int64_t>() == 0);
  CHECK(test.labels.max().item<int64_t>() == 9);
  // Each class has exactly 1,000 test images.
  CHECK(torch::bincount(test.labels).eq(1000).all().item<bool>());
  const double raw_mean = (test.images * data::kFashionMnistStd + data::kFashionMnistMean).mean().item<double>();
  CHECK(raw_mean == Approx(0.2860).margin(0.005));
  const auto few = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), 100);
  CHECK(few.size() == 100);
  const auto b = data::batches(few, 32, true, 7);
  REQUIRE(b.size() == 4);
  CHECK(b.back().images.size(0) == 4);
  // Two ranks split the batches between them.
  CHECK(data::batches(few, 32, false, 0, 0, 2).size() == 2);
  CHECK(data::batches(few, 32, false, 0, 1, 2).size() == 2);
  CHECK_THROWS_WITH(data::load_fashion_mnist(data::Split::Test, "/nonexistent"),
                    Catch::Contains("/nonexistent/t10k-images-idx3-ubyte.gz"));
}

TEST_CASE("bad input gets a clear error") {
  CHECK_THROWS_WITH(load("/no/such/model.pt"), Catch::Contains("cannot open model file '/no/such/model.pt'"));
  CHECK_THROWS_WITH(load(std::string(TAILOR_FIXTURES_DIR) + "/not_a_model.pt"),
                    Catch::Contains("is not a TorchScript archive"));
  CHECK_THROWS_WITH(load(std::string(TAILOR_FIXTURES_DIR) + "/control_flow.pt"),
                    Catch::Contains("data-dependent control flow"));
  GraphModule gm = models::capture_model("fashion-cnn");
  CHECK_THROWS_WITH(gm->infer_shapes({{1, 28, 28}}), Catch::Contains("failed (wrong input shape or rank?)"));
  CHECK_THROWS_WITH(gm->run({}), Catch::Contains("takes 1 inputs, got 0"));
}

TEST_CASE("save never leaves a partial file behind") {
  GraphModule gm = models::capture_model("fashion-cnn");
  CHECK_THROWS_WITH(save(*gm, "/no/such/dir/out.pt"), Catch::Contains("does not exist"));
  const std::string dir = tmp_path("atomic");
  fs::create_directories(dir);
  save(*gm, dir + "/model.pt");
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    ++files;
    CHECK(e.path().filename() == "model.pt");
  }
  CHECK(files == 1);
}

TEST_CASE("1-d convolutions and pooling capture, run and export") {
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Conv1d(torch::nn::Conv1dOptions(4, 8, 3).padding(1).groups(2)),
                            torch::nn::ReLU(), torch::nn::MaxPool1d(2), torch::nn::Conv1d(8, 6, 1),
                            torch::nn::AdaptiveAvgPool1d(1));
  net->eval();
  GraphModule gm = capture(net, torch::zeros({1, 4, 16}));
  int convs = 0;
  for (int id : gm->graph().order()) {
    const Node& n = gm->graph().node(id);
    if (n.kind == ops::kConv) {
      ++convs;
      CHECK(n.ints("stride").size() == 1);
    }
    CHECK(n.kind != ops::kOpaque);
  }
  CHECK(convs == 2);
  // conv1: 8 x 16 outputs x (2 x 3); conv2: 6 x 8 outputs x 8
  CHECK(analyze(*gm, {{1, 4, 16}}).macs == 8 * 16 * 6 + 6 * 8 * 8);
  torch::NoGradGuard g;
  const auto x = torch::randn({3, 4, 16});
  CHECK(max_rel(gm->forward(x), net->forward(x)) < 1e-6);
  const std::string path = tmp_path("conv1d.pt");
  save(*gm, path);
  CHECK(max_rel(torch::jit::load(path).forward({x}).toTensor(), net->forward(x)) < 1e-6);
}
