// Training and distillation: loss values against hand computation and PyTorch, schedules, the trainer's
// invariants (teacher untouched, resume continues identically, early stopping), bad input, and c10d/Gloo
// ranks (two ranks in one process over a file store).
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"
#include "tailor/train/distributed.hpp"
#include "tailor/train/train.hpp"

using namespace tailor;
namespace tr = tailor::train;

namespace {

std::string tmp_path(const std::string& name) {
  const auto dir = std::filesystem::path(TAILOR_TEST_TMP) / "train";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// The first n training images: a small, real task that trains in seconds.
const data::Dataset& small_train() {
  static const data::Dataset d = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), 2048);
  return d;
}
const data::Dataset& small_test() {
  static const data::Dataset d = data::load_fashion_mnist(data::Split::Test, data::fashion_mnist_root(), 500);
  return d;
}

GraphModule resnet(double width, uint64_t seed) {
  return models::capture_model("fashion-resnet", models::ZooOptions().width(width).seed(seed));
}

std::map<std::string, torch::Tensor> params_of(torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : m.named_parameters()) out[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) out[b.key()] = b.value().detach().clone();
  return out;
}

bool same_state(torch::nn::Module& a, torch::nn::Module& b) {
  const auto x = params_of(a), y = params_of(b);
  if (x.size() != y.size()) return false;
  for (const auto& [k, v] : x)
    if (!y.count(k) || !torch::equal(v, y.at(k))) return false;
  return true;
}

tr::TrainOptions quick(int epochs) {
  tr::TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 64;
  o.lr = 0.05;
  o.progress = false;
  return o;
}

}  // namespace

TEST_CASE("KD loss: hand computation and PyTorch's kl_div", "[train]") {
  const auto s = torch::tensor({{1.0, 2.0, 3.0}, {0.5, -1.0, 2.0}});
  const auto t = torch::tensor({{3.0, 2.0, 1.0}, {0.0, 0.0, 4.0}});
  const double T = 2.0;
  // By hand: sum_j p_t (log p_t - log p_s) per row at temperature T, mean over rows, times T^2.
  double expected = 0;
  for (int r = 0; r < 2; ++r) {
    double zs = 0, zt = 0;
    for (int j = 0; j < 3; ++j) {
      zs += std::exp(s[r][j].item<double>() / T);
      zt += std::exp(t[r][j].item<double>() / T);
    }
    for (int j = 0; j < 3; ++j) {
      const double pt = std::exp(t[r][j].item<double>() / T) / zt;
      const double ps = std::exp(s[r][j].item<double>() / T) / zs;
      expected += pt * (std::log(pt) - std::log(ps));
    }
  }
  expected = expected / 2 * T * T;
  CHECK(tr::kd_loss(s, t, T).item<double>() == Approx(expected).epsilon(1e-6));
  // python3: F.kl_div(F.log_softmax(s/2,1), F.softmax(t/2,1), reduction='batchmean')*4 -> 0.8444011211395264
  CHECK(tr::kd_loss(s, t, T).item<double>() == Approx(0.8444011211395264).epsilon(1e-6));
  // 0.7 * kd + 0.3 * F.cross_entropy(s, [2, 0]) -> 0.9134184122085571
  CHECK(tr::distillation_loss(s, t, torch::tensor({2, 0}), T, 0.7).item<double>() ==
        Approx(0.9134184122085571).epsilon(1e-6));
  // Same distributions: zero; gradients reach the student only.
  CHECK(tr::kd_loss(t, t, 3.0).item<double>() == Approx(0.0).margin(1e-7));
  auto sg = s.clone().requires_grad_(true);
  auto tg = t.clone().requires_grad_(true);
  tr::kd_loss(sg, tg, T).backward();
  CHECK(sg.grad().defined());
  CHECK(!tg.grad().defined());
  CHECK_THROWS_WITH(tr::kd_loss(s, torch::zeros({2, 4}), T), Catch::Contains("teacher and student outputs differ"));
  CHECK_THROWS_WITH(tr::kd_loss(s, t, 0.0), Catch::Contains("temperature must be positive"));
  CHECK_THROWS_WITH(tr::distillation_loss(s, t, torch::tensor({2, 0}), T, 1.5), Catch::Contains("alpha"));
}

TEST_CASE("attention transfer: known maps and loss", "[train]") {
  const auto f = torch::tensor({1.0, -2.0, 0.0, 3.0, 2.0, 0.0, 1.0, -1.0}).view({1, 2, 2, 2});
  // mean over channels of f^2: 2.5, 2, 0.5, 5; L2 norm sqrt(35.5)
  const auto m = tr::attention_map(f);
  const double n = std::sqrt(35.5);
  CHECK(m[0][0].item<double>() == Approx(2.5 / n));
  CHECK(m[0][1].item<double>() == Approx(2.0 / n));
  CHECK(m[0][2].item<double>() == Approx(0.5 / n));
  CHECK(m[0][3].item<double>() == Approx(5.0 / n));
  const auto g = torch::tensor({0.0, 1.0, 1.0, 0.0}).view({1, 1, 2, 2});
  // python3: (am(f) - am(g)).pow(2).mean() -> 0.35165226459503174
  CHECK(tr::attention_transfer_loss(f, g).item<double>() == Approx(0.35165226459503174).epsilon(1e-6));
  // A larger student map is resized to the teacher's.
  CHECK(tr::attention_transfer_loss(torch::rand({2, 3, 8, 8}), torch::rand({2, 5, 4, 4})).item<double>() >= 0);
}

TEST_CASE("learning-rate schedules", "[train]") {
  tr::LrSchedule c;
  CHECK(c.at(0.1, 0, 100, 10) == Approx(0.1));
  CHECK(c.at(0.1, 50, 100, 10) == Approx(0.05));
  CHECK(c.at(0.1, 100, 100, 10) == Approx(0.0).margin(1e-12));
  c.warmup_steps = 10;
  CHECK(c.at(0.1, 0, 110, 10) == Approx(0.01));
  CHECK(c.at(0.1, 9, 110, 10) == Approx(0.1));
  CHECK(c.at(0.1, 60, 110, 10) == Approx(0.05));
  tr::LrSchedule s;
  s.kind = "step";
  s.step_epochs = 2;
  s.gamma = 0.5;
  CHECK(s.at(0.1, 19, 100, 10) == Approx(0.1));
  CHECK(s.at(0.1, 20, 100, 10) == Approx(0.05));
  CHECK(s.at(0.1, 45, 100, 10) == Approx(0.025));
  tr::LrSchedule bad;
  bad.kind = "exponential";
  CHECK_THROWS_WITH(bad.at(0.1, 0, 1, 1), Catch::Contains("valid schedules: constant, cosine, step"));
}

TEST_CASE("hint adapters bridge different widths and train with the student", "[train]") {
  tr::DistillOptions o;
  o.hints = {{"s4d", "t4d"}, {"s2d", "t2d"}, {"same", "same_t"}};
  tr::DistillationLoss loss(o);
  std::map<std::string, torch::Tensor> st = {{"s4d", torch::randn({2, 8, 7, 7}, torch::requires_grad())},
                                             {"s2d", torch::randn({2, 16}, torch::requires_grad())},
                                             {"same", torch::randn({2, 4}, torch::requires_grad())}};
  std::map<std::string, torch::Tensor> tt = {{"t4d", torch::randn({2, 32, 14, 14})},
                                             {"t2d", torch::randn({2, 64})},
                                             {"same_t", torch::randn({2, 4})}};
  const auto logits = torch::randn({2, 10}, torch::requires_grad());
  auto terms = loss->forward(logits, torch::randn({2, 10}), torch::tensor({1, 2}), st, tt);
  // 1x1 conv 8 -> 32 (weights + bias) and linear 16 -> 64; none for equal shapes.
  CHECK(loss->parameters().size() == 4);
  CHECK(loss->named_parameters()["hint0.weight"].sizes() == torch::IntArrayRef({32, 8, 1, 1}));
  CHECK(loss->named_parameters()["hint1.weight"].sizes() == torch::IntArrayRef({64, 16}));
  terms.total.backward();
  for (const auto& p : loss->parameters()) CHECK(p.grad().defined());
  CHECK(st["s4d"].grad().defined());
  CHECK(terms.hint.item<double>() > 0);

  tr::DistillationLoss missing(o);
  st.erase("s2d");
  CHECK_THROWS_WITH(missing->forward(logits, torch::randn({2, 10}), torch::tensor({1, 2}), st, tt),
                    Catch::Contains("the student has no tap named 's2d'"));
}

TEST_CASE("distillation trains the student, never the teacher, and resumes identically", "[train]") {
  // Trained once for all sections (Catch2 runs the test case once per section).
  static GraphModule teacher = [] {
    GraphModule t = resnet(1.0, 1);
    tr::TrainOptions o = quick(2);
    o.lr = 0.1;
    tr::finetune(t, small_train(), nullptr, o);
    return t;
  }();
  const auto teacher_before = params_of(*teacher);
  const double teacher_acc = [&] {
    tr::Model m = tr::as_model(teacher);
    return tr::accuracy(m, small_test());
  }();
  CHECK(teacher_acc > 0.5);

  SECTION("KD with a hint and attention transfer; teacher unchanged; student learns") {
    GraphModule student = resnet(0.5, 2);
    tr::DistillOptions d;
    d.hints = {{"relu_4", "relu_4"}};          // 16 -> 32 channels: a 1x1 conv adapter
    d.attention = {{"relu_6", "relu_6"}};
    tr::TrainOptions o = quick(2);
    const auto r = tr::distill(teacher, student, small_train(), &small_test(), o, d);
    REQUIRE(r.history.size() == 2);
    CHECK(r.history[1].train_loss < r.history[0].train_loss);
    CHECK(r.best_accuracy > 0.3);
    for (const auto& [k, v] : params_of(*teacher)) CHECK(torch::equal(v, teacher_before.at(k)));
    for (const auto& p : teacher->parameters()) CHECK(p.requires_grad());  // restored for the caller
    CHECK(!student->is_training());
  }

  SECTION("an interrupted run resumed from its checkpoint ends exactly where an uninterrupted one does") {
    const std::string ck_a = tmp_path("run_a.ckpt"), ck_b = tmp_path("run_b.ckpt");
    std::filesystem::remove(ck_a);
    std::filesystem::remove(ck_b);
    tr::TrainOptions o = quick(3);
    o.schedule.warmup_steps = 5;
    o.restore_best = false;
    GraphModule a = resnet(0.5, 3);
    o.checkpoint = ck_a;
    const auto ra = tr::distill(teacher, a, small_train(), &small_test(), o);

    GraphModule b = resnet(0.5, 3);
    o.checkpoint = ck_b;
    o.on_epoch = [](const tr::EpochLog& e) { return e.epoch < 2; };  // "killed" after epoch 2
    tr::distill(teacher, b, small_train(), &small_test(), o);
    CHECK(!same_state(*a, *b));
    GraphModule c = resnet(0.5, 99);  // different initial weights: everything comes from the checkpoint
    o.on_epoch = nullptr;
    const auto rc = tr::distill(teacher, c, small_train(), &small_test(), o);
    CHECK(rc.resumed_after_epoch == 2);
    REQUIRE(rc.history.size() == 3);
    CHECK(rc.history[2].train_loss == ra.history[2].train_loss);
    CHECK(same_state(*a, *c));
  }

  SECTION("bad input: mismatched outputs, unknown taps, a checkpoint of another model") {
    GraphModule five = models::capture_model("fashion-resnet", models::ZooOptions().num_classes(5).width(0.5));
    const auto before = params_of(*five);
    CHECK_THROWS_WITH(tr::distill(teacher, five, small_train(), nullptr, quick(1)),
                      Catch::Contains("teacher and student outputs differ") && Catch::Contains("[2, 5]"));
    for (const auto& [k, v] : params_of(*five)) CHECK(torch::equal(v, before.at(k)));

    GraphModule student = resnet(0.5, 4);
    tr::DistillOptions d;
    d.hints = {{"layer9.relu", "relu_4"}};
    CHECK_THROWS_WITH(tr::distill(teacher, student, small_train(), nullptr, quick(1), d),
                      Catch::Contains("no node named 'layer9.relu'"));

    const std::string ck = tmp_path("other_model.ckpt");
    std::filesystem::remove(ck);
    tr::TrainOptions o = quick(1);
    o.checkpoint = ck;
    GraphModule small = resnet(0.25, 5);
    tr::finetune(small, small_train(), nullptr, o);
    const auto ck_bytes = std::filesystem::file_size(ck);
    o.epochs = 2;
    GraphModule other = resnet(0.5, 6);
    const auto other_before = params_of(*other);
    CHECK_THROWS_WITH(tr::finetune(other, small_train(), nullptr, o),
                      Catch::Contains("other_model.ckpt") && Catch::Contains("has shape"));
    for (const auto& [k, v] : params_of(*other)) CHECK(torch::equal(v, other_before.at(k)));
    CHECK(std::filesystem::file_size(ck) == ck_bytes);  // the checkpoint is intact
  }
}

TEST_CASE("distillation composes with channel pruning and QAT, and runs as a pass", "[train]") {
  GraphModule teacher = resnet(1.0, 20);
  {
    tr::TrainOptions o = quick(2);
    o.lr = 0.1;
    tr::finetune(teacher, small_train(), nullptr, o);
  }
  const std::string teacher_file = tmp_path("teacher.pt");
  save(*teacher, teacher_file);
  tr::Model tm = tr::as_model(teacher);
  const double teacher_acc = tr::accuracy(tm, small_test());

  SECTION("prune, then distill as a pipeline") {
    GraphModule student = clone_module(*teacher);
    PassContext ctx;
    ctx.input_shapes = {{1, 1, 28, 28}};
    ctx.quiet = true;
    auto pipeline = parse_pipeline("prune-channels{ratio=0.5},distill{teacher=" + teacher_file +
                                   ",epochs=1,limit=2048,batch_size=64,lr=0.02}");
    pipeline->run(*student, ctx);
    REQUIRE(ctx.records.size() == 2);
    CHECK(ctx.records[0].macs_after < ctx.records[0].macs_before / 2);
    CHECK(ctx.records[1].changed);
    tr::Model sm = tr::as_model(student);
    CHECK(tr::accuracy(sm, small_test()) > teacher_acc - 0.25);
    CHECK_THROWS_WITH(parse_pipeline("distill{epochs=1}")->run(*student, ctx), Catch::Contains("give the teacher"));
  }
  SECTION("a QAT student learns from its float teacher; scales train too") {
    GraphModule student = clone_module(*teacher);
    std::vector<torch::Tensor> calib = {small_train().images.slice(0, 0, 128)};
    quant::prepare_qat(*student, calib);
    std::map<std::string, torch::Tensor> scales;
    for (const auto& p : student->named_parameters())
      if (p.key().find("scale") != std::string::npos) scales[p.key()] = p.value().detach().clone();
    REQUIRE(!scales.empty());
    // LSQ scales on a batch-norm-folded model need small steps: Adam at 1e-4 (SGD at 5e-3 diverges here).
    tr::TrainOptions o = quick(1);
    o.optimizer = "adam";
    o.lr = 1e-4;
    o.weight_decay = 0;
    const auto r = tr::distill(teacher, student, small_train(), &small_test(), o);
    CHECK(r.best_accuracy > teacher_acc - 0.02);
    int moved = 0;
    for (const auto& p : student->named_parameters())
      if (scales.count(p.key())) moved += !torch::equal(p.value(), scales[p.key()]);
    CHECK(moved > 0);
  }
}

TEST_CASE("trainer: early stopping, optimizers, plain torch::nn::Module students", "[train]") {
  SECTION("no improvement for `patience` epochs stops the run") {
    torch::manual_seed(1);
    auto net = std::make_shared<torch::nn::SequentialImpl>(torch::nn::Flatten(), torch::nn::Linear(784, 10));
    tr::Model m = tr::as_model(net, [net](const torch::Tensor& x) { return net->forward(x); }, "linear");
    tr::TrainOptions o = quick(6);
    o.lr = 1e-12;  // the model cannot change: evaluation never improves after epoch 1
    o.weight_decay = 0;
    o.patience = 2;
    const auto r = tr::fit(m, nullptr, small_train(), &small_test(), o);
    CHECK(r.stopped_early);
    CHECK(r.history.size() == 3);
    CHECK(r.best_epoch == 1);
  }
  SECTION("adam with a step schedule on a plain module") {
    torch::manual_seed(0);
    auto net = std::make_shared<torch::nn::SequentialImpl>(torch::nn::Flatten(), torch::nn::Linear(784, 64),
                                                           torch::nn::ReLU(), torch::nn::Linear(64, 10));
    tr::Model m = tr::as_model(net, [net](const torch::Tensor& x) { return net->forward(x); }, "mlp");
    tr::TrainOptions o = quick(2);
    o.optimizer = "adam";
    o.lr = 1e-3;
    o.schedule.kind = "step";
    const auto r = tr::fit(m, nullptr, small_train(), &small_test(), o);
    CHECK(r.best_accuracy > 0.6);
    CHECK(r.history[1].lr == Approx(1e-4));
    tr::DistillOptions d;
    d.hints = {{"a", "b"}};
    tr::Model t = tr::as_model(net, [net](const torch::Tensor& x) { return net->forward(x); }, "teacher");
    CHECK_THROWS_WITH(tr::fit(m, &t, small_train(), nullptr, o, d), Catch::Contains("plain module without taps"));
    o.optimizer = "lbfgs";
    CHECK_THROWS_WITH(tr::fit(m, nullptr, small_train(), nullptr, o), Catch::Contains("valid optimizers: sgd, adam, adamw"));
  }
}

TEST_CASE("c10d/Gloo: two ranks average gradients and stay identical", "[train][distributed]") {
  if (!tr::distributed_available()) {
    WARN("built without Gloo: data-parallel training not tested");
    return;
  }
  const std::string store = tmp_path("gloo_store");
  std::filesystem::remove(store);
  GraphModule models[2] = {resnet(0.5, 10), resnet(0.5, 11)};  // different starts: rank 0's weights win
  std::vector<double> reduced(2), broadcasted(2);
  std::vector<tr::TrainResult> results(2);
  std::string errors[2];
  auto body = [&](int rank) {
    try {
      tr::DistributedOptions o;
      o.rank = rank;
      o.world_size = 2;
      o.store = "file://" + store;
      o.timeout = std::chrono::milliseconds(30000);
      auto dist = tr::Distributed::connect(o);
      reduced[static_cast<size_t>(rank)] = dist->allreduce_mean(static_cast<double>(rank + 1));
      auto b = torch::full({3}, static_cast<double>(rank + 5));
      dist->broadcast({b}, 1);
      broadcasted[static_cast<size_t>(rank)] = b[0].item<double>();
      tr::TrainOptions t = quick(1);
      t.distributed = dist;
      results[static_cast<size_t>(rank)] = tr::finetune(models[rank], small_train(), &small_test(), t);
    } catch (const std::exception& e) {
      errors[rank] = e.what();
    }
  };
  torch::set_num_threads(1);
  std::thread r1(body, 1);
  body(0);
  r1.join();
  torch::set_num_threads(2);
  INFO(errors[0] << errors[1]);
  REQUIRE(errors[0].empty());
  REQUIRE(errors[1].empty());
  CHECK(reduced[0] == Approx(1.5));
  CHECK(reduced[1] == Approx(1.5));
  CHECK(broadcasted[0] == 6.0);
  CHECK(broadcasted[1] == 6.0);
  // Each rank took half of every global batch of 64; both end with the same weights and statistics.
  CHECK(same_state(*models[0], *models[1]));
  CHECK(results[0].history[0].eval_accuracy == results[1].history[0].eval_accuracy);
  CHECK(results[0].steps == 2048 / 64);

  tr::DistributedOptions bad;
  bad.store = "udp://nowhere";
  bad.world_size = 2;
  CHECK_THROWS_WITH(tr::Distributed::connect(bad), Catch::Contains("unknown store 'udp://nowhere'"));
}

// A shape-changing pass leaves no gradient of the old shape behind: every criterion, then training in the same
// process, with the trainer and with a plain LibTorch optimizer (Taylor took gradients on data right before).
TEST_CASE("channel pruning with any criterion, then training in the same process", "[train]") {
  const auto& data = small_train();
  std::vector<torch::Tensor> images = {data.images.slice(0, 0, 64), data.images.slice(0, 64, 128)};
  std::vector<torch::Tensor> labels = {data.labels.slice(0, 0, 64), data.labels.slice(0, 64, 128)};
  for (const std::string criterion : {"l1", "l2", "bn", "taylor", "random"}) {
    INFO(criterion);
    GraphModule gm = resnet(0.5, 3);
    ChannelPruneOptions o;
    o.ratio = 0.5;
    o.criterion = criterion_from_string(criterion);
    const GradientFn grads = criterion == "taylor" ? gradients_from_batches(images, labels) : GradientFn{};
    const auto r = prune_channels(*gm, {{1, 1, 28, 28}}, o, grads);
    REQUIRE(r.channels_removed > 0);
    for (const auto& p : gm->parameters()) CHECK_FALSE((p.grad().defined() && p.grad().sizes() != p.sizes()));
    {
      torch::optim::SGD sgd(gm->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
      gm->train();
      for (int step = 0; step < 2; ++step) {
        sgd.zero_grad();
        torch::nn::functional::cross_entropy(gm->forward(images[0]), labels[0]).backward();
        CHECK_NOTHROW(sgd.step());
      }
    }
    tr::TrainOptions t = quick(1);
    CHECK_NOTHROW(tr::finetune(gm, data, nullptr, t));
  }
}

TEST_CASE("a pipeline prunes with taylor on calibration data, then distills, as a recipe runs it", "[train]") {
  GraphModule teacher = resnet(0.5, 4);
  const std::string teacher_file = tmp_path("taylor_teacher.pt");
  save(*teacher, teacher_file);
  GraphModule student = clone_module(*teacher);
  PassContext ctx;
  ctx.input_shapes = {{1, 1, 28, 28}};
  ctx.quiet = true;
  ctx.teacher = teacher_file;
  ctx.calibration = data::calibration_batches("fashion-mnist", {1, 1, 28, 28}, 2, 64, &ctx.calibration_labels);
  parse_pipeline("prune-channels{criterion=taylor,ratio=0.5},distill{epochs=1,limit=512,batch_size=64}")->run(*student, ctx);
  REQUIRE(student->provenance().size() == 2);
  CHECK(student->provenance()[0].stat("channels_removed"));
  CHECK(std::get<int64_t>(*student->provenance()[0].stat("channels_removed")) > 0);
  CHECK(std::get<std::string>(*student->provenance()[1].stat("teacher")) == teacher_file);
  // Provenance travels in the file.
  const std::string file = tmp_path("taylor_student.pt");
  save(*student, file);
  GraphModule back = load(file);
  REQUIRE(back->provenance().size() == 2);
  CHECK(back->provenance()[0].pass == student->provenance()[0].pass);
  CHECK(std::get<int64_t>(*back->provenance()[0].stat("channels_removed")) ==
        std::get<int64_t>(*student->provenance()[0].stat("channels_removed")));
}
