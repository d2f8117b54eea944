// Quantization: known answers against ATen's own quantizer, observers, PTQ/QAT/weight-only/GPTQ/CLE on real
// graphs, export round trips, and bad input leaving the model untouched.
#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>
#include <torch/script.h>
#include <torch/torch.h>

#include "helpers.hpp"
#include "tailor/tailor.hpp"

using namespace tailor;
using namespace tailor::test;
namespace q = tailor::quant;

namespace {

std::vector<torch::Tensor> random_batches(int n, std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(torch::randn(shape));
  return out;
}

int count_kind(const Graph& g, const std::string& kind) {
  int n = 0;
  for (int id : g.order()) n += g.node(id).kind == kind;
  return n;
}

GraphModule trained_like(const std::string& name, uint64_t seed) {
  GraphModule m = models::capture_model(name, models::ZooOptions().num_classes(10).in_channels(1).seed(seed));
  // Random BN statistics, so that folding and ranges are not trivial.
  torch::NoGradGuard g;
  for (const auto& [n, t] : m->tensors()) {
    if (n.find("running_var") != std::string::npos) t.uniform_(0.5, 2.0);
    if (n.find("running_mean") != std::string::npos) t.uniform_(-0.2, 0.2);
  }
  m->eval();
  return m;
}

}  // namespace

TEST_CASE("qparams and quantize match ATen's quantizer exactly", "[quant]") {
  // Hand-computed: range [-1, 3] as uint8 affine: scale 4/255, zero point 0 - round(-1 / (4/255)) = 64.
  q::QScheme u8 = q::QScheme::activations_u8(false);
  q::QParams p = q::qparams_from_range(torch::tensor({-1.0f}), torch::tensor({3.0f}), u8);
  CHECK(p.scale.item<float>() == Approx(4.0 / 255).epsilon(1e-7));
  CHECK(p.zero_point.item<int>() == 64);
  // Symmetric int8: max(|-1|, 3) / 127.5, zero point 0.
  q::QScheme s8;
  q::QParams ps = q::qparams_from_range(torch::tensor({-1.0f}), torch::tensor({3.0f}), s8);
  CHECK(ps.scale.item<float>() == Approx(3.0 / 127.5).epsilon(1e-7));
  CHECK(ps.zero_point.item<int>() == 0);
  CHECK(q::QScheme::activations_u8(true).qmax() == 127);
  CHECK(q::QScheme::weights_int4(32).qmin() == -8);

  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({4, 8, 5}) * 2;
  const torch::Tensor ref = at::quantize_per_tensor(x, 0.05, 3, torch::kQUInt8);
  q::QParams pt{torch::tensor({0.05f}), torch::tensor({3}, torch::kInt), 0, 255, -1, 0};
  CHECK(torch::equal(q::quantize(x, pt), ref.int_repr().to(torch::kInt)));
  CHECK(torch::equal(q::dequantize(q::quantize(x, pt), pt), ref.dequantize()));
  CHECK(torch::equal(q::fake_quantize(x, pt), ref.dequantize()));

  const torch::Tensor scales = torch::tensor({0.01, 0.02, 0.03, 0.04}, torch::kDouble);
  const torch::Tensor zps = torch::tensor({0, 1, -2, 5}, torch::kLong);
  const torch::Tensor refc = at::quantize_per_channel(x, scales, zps, 0, torch::kQInt8);
  q::QParams pc{scales.to(torch::kFloat), zps.to(torch::kInt), -128, 127, 0, 0};
  CHECK(torch::equal(q::quantize(x, pc), refc.int_repr().to(torch::kInt)));
  // ATen keeps per-channel scales in double; values agree to float rounding.
  CHECK(max_rel(q::dequantize(q::quantize(x, pc), pc), refc.dequantize()) < 1e-6);
  CHECK(max_rel(q::fake_quantize(x, pc), refc.dequantize()) < 1e-6);
}

TEST_CASE("weight qparams: per channel, group-wise int4, mse clipping", "[quant]") {
  torch::manual_seed(1);
  torch::Tensor w = torch::randn({6, 64});
  w[2][5] = 40;  // an outlier in row 2
  const q::QParams pc = q::weight_qparams(w, q::QScheme::weights_int8());
  REQUIRE(pc.scale.numel() == 6);
  CHECK(pc.scale[2].item<float>() == Approx(40.0 / 127.5).epsilon(1e-6));
  const q::QParams g = q::weight_qparams(w, q::QScheme::weights_int4(32));
  REQUIRE(g.scale.numel() == 12);
  const torch::Tensor codes = q::quantize(w, g);
  CHECK(codes.min().item<int>() >= -8);
  CHECK(codes.max().item<int>() <= 7);
  // Each group of 32 uses at most 16 levels.
  const torch::Tensor fq = q::fake_quantize(w, g).reshape({-1, 32});
  for (int64_t r = 0; r < fq.size(0); ++r) CHECK(std::get<0>(at::_unique(fq[r])).numel() <= 16);
  // MSE clipping never has a larger error than min/max, and beats it with an outlier at 4 bits.
  const q::QScheme s4 = q::QScheme::weights_int4(0);
  const double e_mm = (q::fake_quantize(w, q::weight_qparams(w, s4)) - w).pow(2).sum().item<double>();
  const double e_mse = (q::fake_quantize(w, q::weight_qparams(w, s4, "mse")) - w).pow(2).sum().item<double>();
  CHECK(e_mse < e_mm);
  CHECK_THROWS_WITH(q::weight_qparams(w, q::QScheme::weights_int4(7)), Catch::Contains("groups of 7"));
}

TEST_CASE("observers: known ranges, clipping of outliers, NaN rejected", "[quant]") {
  const q::QScheme u8 = q::QScheme::activations_u8(false);
  q::Observer mm(u8, {});
  mm.observe(torch::tensor({0.0f, 1.0f, 2.0f}));
  mm.observe(torch::tensor({-1.0f, 0.5f}));
  CHECK(mm.min() == -1);
  CHECK(mm.max() == 2);
  q::ObserverOptions mo;
  mo.kind = "moving-minmax";
  mo.averaging = 0.5;
  q::Observer mov(u8, mo);
  mov.observe(torch::tensor({0.0f, 4.0f}));
  mov.observe(torch::tensor({0.0f, 2.0f}));
  CHECK(mov.max() == Approx(3.0));  // 4 + 0.5 * (2 - 4)

  // 10000 values 0..9999: the 99th percentile is 9899 (numpy's nearest rank on n-1 intervals).
  q::ObserverOptions po;
  po.kind = "percentile";
  po.percentile = 99;
  q::Observer pct(u8, po);
  pct.observe(torch::arange(10000, torch::kFloat));
  const q::QParams pp = pct.qparams();
  CHECK(pp.scale.item<float>() * 255 == Approx(9899).epsilon(1e-4));

  // Heavy tails (a cubed Gaussian): mse clips the range and lowers the squared error; entropy clips it too.
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({100000}).pow(3);
  q::Observer minmax(u8, {});
  minmax.observe(x);
  const auto err = [&](const q::QParams& p) { return (q::fake_quantize(x, p) - x).pow(2).mean().item<double>(); };
  for (const std::string kind : {"mse", "entropy"}) {
    q::ObserverOptions oo;
    oo.kind = kind;
    q::Observer ob(u8, oo);
    ob.observe(x);
    INFO(kind);
    CHECK(ob.qparams().scale.item<float>() < (kind == "mse" ? 0.9f : 0.5f) * minmax.qparams().scale.item<float>());
    if (kind == "mse") CHECK(err(ob.qparams()) < err(minmax.qparams()));
  }
  q::Observer nan_ob(u8, {});
  CHECK_THROWS_WITH(nan_ob.observe(torch::tensor({1.0f, NAN}), "layer1.conv"), Catch::Contains("layer1.conv") && Catch::Contains("NaN"));
  CHECK_THROWS_WITH(nan_ob.qparams(), Catch::Contains("no calibration data"));
  q::ObserverOptions bad;
  bad.kind = "magic";
  CHECK_THROWS_WITH(q::Observer(u8, bad), Catch::Contains("valid observers: minmax"));
}

TEST_CASE("entropy calibration of signed data under an affine scheme keeps each tail", "[quant]") {
  // A normalized image: half the pixels at the dark background (-0.81), the rest spread up to 2.02. One
  // symmetric threshold on |x| would clip the bright side towards 0.81; each tail keeps its own range.
  torch::manual_seed(9);
  const torch::Tensor x = torch::cat({torch::full({20000}, -0.81f), torch::rand({20000}) * 2.02f});
  q::ObserverOptions o;
  o.kind = "entropy";
  q::Observer ob(q::QScheme::activations_u8(true), o);
  ob.observe(x);
  const q::QParams qp = ob.qparams();
  const double scale = qp.scale.item<double>(), zp = qp.zero_point.item<double>();
  CHECK(scale * (qp.qmax - zp) > 1.9);   // the bright side is kept (uniform data has no tail worth clipping)
  CHECK(scale * (qp.qmin - zp) < -0.75);  // and the background value stays representable
}

TEST_CASE("post-training int8 on fashion-resnet: close to float, exported, reloaded, bad input rejected", "[quant]") {
  GraphModule m = trained_like("fashion-resnet", 2);
  const auto calib = random_batches(4, {16, 1, 28, 28}, 5);
  const torch::Tensor x = torch::randn({8, 1, 28, 28});
  torch::NoGradGuard g;
  const torch::Tensor ref = m->forward(x);
  const std::string before = m->graph().str();

  // Bad input: nothing changes.
  CHECK_THROWS_WITH(q::quantize_static(*m, {}), Catch::Contains("calibration set is empty"));
  auto nan_batch = calib;
  nan_batch[1] = nan_batch[1].clone();
  nan_batch[1][0][0][3][3] = NAN;
  CHECK_THROWS_WITH(q::quantize_static(*m, nan_batch), Catch::Contains("batch 1") && Catch::Contains("NaN"));
  q::PtqOptions bad_skip;
  bad_skip.skip = {"no.such.layer"};
  CHECK_THROWS_WITH(q::quantize_static(*m, calib, bad_skip), Catch::Contains("no.such.layer"));
  CHECK(m->graph().str() == before);

  for (const std::string obs : {"minmax", "moving-minmax", "percentile", "mse", "entropy"}) {
    GraphModule c = clone_module(*m);
    q::PtqOptions o;
    o.observer.kind = obs;
    const q::QuantReport r = q::quantize_static(*c, calib, o);
    CHECK(r.layers.size() == q::quantizable_layers(*m).size());
    const torch::Tensor out = c->forward(x);
    INFO(obs);
    // Entropy calibration clips hardest; on a random-weight model with Gaussian inputs that costs more.
    CHECK(max_rel(out, ref) < (obs == "entropy" ? 0.3 : 0.1));
    // Inputs shared by two layers (a block's conv1 and its downsample) are quantized once.
    CHECK(count_kind(c->graph(), ops::kFakeQuant) < 2 * static_cast<int>(r.layers.size()));
  }

  q::PtqOptions o;
  o.skip = {"fc"};
  o.bias_correction = true;
  const q::QuantReport r = q::quantize_static(*m, calib, o);
  CHECK(r.bias_corrected == static_cast<int64_t>(r.layers.size()) - 1);
  CHECK(m->graph().find("fc.weight_quant") == nullptr);
  CHECK(m->graph().find("layer1.conv1.weight_quant") != nullptr);
  const torch::Tensor out = m->forward(x);
  CHECK(max_rel(out, ref) < 0.1);
  // Weight storage at 8 bits: conv/linear weights shrink about 4x.
  const CostReport before_c = analyze(*trained_like("fashion-resnet", 2), {{1, 1, 28, 28}});
  const CostReport after_c = analyze(*m, {{1, 1, 28, 28}});
  CHECK(after_c.weight_bytes < before_c.weight_bytes / 2);

  // Export: LibTorch runs the fake-quant TorchScript with the same outputs; tailor reloads the same graph.
  const std::string path = std::string(TAILOR_TEST_TMP) + "/quant_resnet.pt";
  std::filesystem::create_directories(TAILOR_TEST_TMP);
  save(*m, path);
  auto jit = torch::jit::load(path);
  const torch::Tensor jit_out = jit.forward({x}).toTensor();
  CHECK(max_rel(jit_out, out) < 1e-5);
  GraphModule back = load(path);
  CHECK(count_kind(back->graph(), ops::kFakeQuant) == count_kind(m->graph(), ops::kFakeQuant));
  CHECK(max_rel(back->forward(x), out) < 1e-6);
  // Quantizing twice is refused; strip_fake_quant goes back to float.
  CHECK_THROWS_WITH(q::quantize_static(*m, calib), Catch::Contains("already quantized"));
  CHECK(q::strip_fake_quant(*m) == count_kind(back->graph(), ops::kFakeQuant));
  CHECK(count_kind(m->graph(), ops::kFakeQuant) == 0);

  // onednn-cpu runs every quantized layer as a real u8 x s8 primitive with the fake-quant graph's outputs
  // (int32 accumulation instead of float sums: differences at float rounding level).
  CompileOptions co;
  co.input_shapes = {{8, 1, 28, 28}};
  auto exe = compile("onednn-cpu", *back, co);
  INFO(exe->summary());
  CHECK(exe->summary().find(std::to_string(r.layers.size() - 1) + " int8 layers") != std::string::npos);
  CHECK(max_rel(exe->run({x}).toTensor(), out) < 1e-3);
}

// Run under several ISA caps by CTest ([isa]): whatever the level in force, every quantized layer runs in
// int8 and agrees with the fake-quant graph; 8-bit activations are requantized where the ISA lacks VNNI.
TEST_CASE("onednn-cpu runs int8 layers on the ISA in force and folds fake-quantized weights", "[quant][onednn][isa]") {
  const std::string isa = effective_isa();
  const bool int8_dot = isa_has_int8_dot(isa);
  for (const std::string name : {"fashion-cnn", "fashion-resnet"}) {
    GraphModule m = trained_like(name, 21);
    const auto calib = random_batches(3, {16, 1, 28, 28}, 22);
    const torch::Tensor x = random_batches(1, {4, 1, 28, 28}, 23)[0];
    CompileOptions co;
    co.input_shapes = {{4, 1, 28, 28}};
    torch::NoGradGuard g;
    for (const bool seven_bits : {true, false}) {
      GraphModule i8 = clone_module(*m);
      q::PtqOptions o;
      o.activations = q::QScheme::activations_u8(seven_bits);
      const q::QuantReport r = q::quantize_static(*i8, calib, o);
      const torch::Tensor ref = i8->forward(x);
      auto exe = compile("onednn-cpu", *i8, co);
      const std::string summary = exe->summary();
      INFO(name << (seven_bits ? " 7-bit: " : " 8-bit: ") << summary);
      CHECK(summary.find("(" + isa + ", oneDNN") != std::string::npos);
      CHECK(summary.find(std::to_string(r.layers.size()) + " int8 layers") != std::string::npos);
      CHECK(summary.find("fake_quant on ATen") == std::string::npos);
      // Inner layers read the u8 their int8 producer wrote (requantized by its post-ops), not a float copy.
      CHECK(summary.find(" 0 reading u8") == std::string::npos);
      const torch::Tensor out = exe->run({x}).toTensor();
      const bool requantized = !seven_bits && !int8_dot;
      CHECK((summary.find("requantized from 8 to 7 bits") != std::string::npos) == requantized);
      // Exact integer arithmetic against float sums: a rounding step flips now and then, nothing more. Where 8-bit
      // ranges were requantized to 7 bits, the step is twice as coarse as the graph's.
      CHECK(max_rel(out, ref) < (requantized ? 0.05 : 2e-3));
      CHECK(out.argmax(1).eq(ref.argmax(1)).sum().item<int64_t>() >= (requantized ? 3 : 4));
    }
    // Weight-only int4: the weights are folded constants, the layers run as float primitives.
    GraphModule w4 = clone_module(*m);
    q::quantize_weights(*w4, {}, q::WeightOnlyOptions{4, 32, false, "rtn"});
    auto exe4 = compile("onednn-cpu", *w4, co);
    INFO(exe4->summary());
    CHECK(exe4->summary().find("fake_quant") == std::string::npos);  // nothing quantizes at run time
    CHECK(max_rel(exe4->run({x}).toTensor(), w4->forward(x)) < 1e-4);
  }
}

TEST_CASE("onednn-cpu int8: u8 flows between layers, max pooling runs on u8, known answer", "[quant][onednn][isa]") {
  // conv -> relu -> fake_quant -> conv -> relu -> max_pool -> fake_quant -> conv: both inner convolutions read
  // u8 written by the layer before; the int8 result equals the fake-quant graph's up to rounding flips.
  torch::manual_seed(3);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)), torch::nn::ReLU(),
                            torch::nn::MaxPool2d(2), torch::nn::Conv2d(torch::nn::Conv2dOptions(32, 8, 1)));
  net->eval();
  GraphModule m = capture(net, torch::zeros({2, 3, 16, 16}));
  q::PtqOptions o;
  q::quantize_static(*m, random_batches(4, {2, 3, 16, 16}, 4), o);
  const torch::Tensor x = random_batches(1, {2, 3, 16, 16}, 5)[0];
  torch::NoGradGuard g;
  const torch::Tensor ref = m->forward(x);
  CompileOptions co;
  co.input_shapes = {{2, 3, 16, 16}};
  auto exe = compile("onednn-cpu", *m, co);
  INFO(exe->summary());
  CHECK(exe->summary().find("3 int8 layers (2 reading u8 written by int8 producers, 1 quantizing, 0 dequantizing") !=
        std::string::npos);
  std::vector<StepTime> steps;
  const torch::Tensor out = exe->run_timed({x}, steps).toTensor();
  int u8_pools = 0, u8_convs = 0;
  for (const auto& s : steps) {
    u8_pools += s.kind == "max_pool u8" || s.kind == std::string(ops::kMaxPool) + " u8";
    u8_convs += s.kind == "conv int8->u8";
  }
  CHECK(u8_pools == 1);
  CHECK(u8_convs == 2);
  // One quantization step of the last layer's input is the most a flipped rounding can move an output.
  CHECK(max_rel(out, ref) < 2e-2);
  CHECK((out - ref).abs().gt(1e-4).to(torch::kFloat).mean().item<double>() < 0.05);
  CHECK(max_rel(exe->run({x}).toTensor(), out) == 0);  // deterministic
}

TEST_CASE("onednn-cpu int8: a quantizer without an int8 kernel runs as fake-quant and the summary says why",
          "[quant][onednn]") {
  torch::manual_seed(6);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 3)), torch::nn::ReLU(),
                            torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 4, 3)));
  net->eval();
  GraphModule m = capture(net, torch::zeros({1, 3, 12, 12}));
  q::PtqOptions o;
  o.activations = q::QScheme::activations_u8(true);
  o.activations.is_signed = true;  // s7 activations: no u8 x s8 primitive takes them
  o.activations.symmetric = true;
  q::quantize_static(*m, random_batches(2, {1, 3, 12, 12}, 7), o);
  CompileOptions co;
  co.input_shapes = {{1, 3, 12, 12}};
  auto exe = compile("onednn-cpu", *m, co);
  INFO(exe->summary());
  CHECK(exe->summary().find("fake_quant on ATen: ") != std::string::npos);
  CHECK(exe->summary().find("signed or wider than 8 bits") != std::string::npos);
  const torch::Tensor x = random_batches(1, {1, 3, 12, 12}, 8)[0];
  torch::NoGradGuard g;
  CHECK(max_rel(exe->run({x}).toTensor(), m->forward(x)) < 1e-4);
}

TEST_CASE("quantization-aware training: scales learn (LSQ), gradients reach weights", "[quant]") {
  GraphModule m = trained_like("fashion-cnn", 4);
  const auto calib = random_batches(2, {8, 1, 28, 28}, 6);
  const auto params_before = m->parameters().size();
  q::QatOptions o;
  o.learnable = true;
  q::prepare_qat(*m, calib, o);
  CHECK(m->parameters().size() > params_before);  // learnable scales are parameters
  const torch::Tensor scale_before = m->tensor("conv2.input_quant.scale").clone();
  m->train();
  torch::optim::SGD opt(m->parameters(), torch::optim::SGDOptions(0.01));
  const torch::Tensor x = torch::randn({8, 1, 28, 28});
  const torch::Tensor y = torch::randint(10, {8}, torch::kLong);
  auto loss = torch::cross_entropy_loss(m->forward(x), y);
  opt.zero_grad();
  loss.backward();
  REQUIRE(m->tensor("conv2.weight").grad().defined());
  CHECK(m->tensor("conv2.weight").grad().abs().sum().item<double>() > 0);
  REQUIRE(m->tensor("conv2.input_quant.scale").grad().defined());
  opt.step();
  CHECK(!torch::equal(m->tensor("conv2.input_quant.scale"), scale_before));
  // Export keeps working after training (the learnable nodes export as fixed kernels).
  m->eval();
  torch::NoGradGuard g;
  const std::string path = std::string(TAILOR_TEST_TMP) + "/qat_cnn.pt";
  save(*m, path);
  CHECK(max_rel(torch::jit::load(path).forward({x}).toTensor(), m->forward(x)) < 1e-5);
}

TEST_CASE("weight-only int4: GPTQ beats round-to-nearest on the layer outputs", "[quant]") {
  // A linear model on correlated inputs, the case GPTQ is built for.
  torch::manual_seed(7);
  auto net = torch::nn::Sequential(torch::nn::Linear(64, 128), torch::nn::ReLU(), torch::nn::Linear(128, 16));
  const torch::Tensor mix = torch::randn({64, 64});
  std::vector<torch::Tensor> calib;
  for (int i = 0; i < 8; ++i) calib.push_back(torch::mm(torch::randn({64, 64}), mix));
  GraphModule base = capture(net, calib[0]);
  base->eval();
  torch::NoGradGuard g;
  const torch::Tensor x = torch::mm(torch::randn({256, 64}), mix);
  const torch::Tensor ref = base->forward(x);
  double err[2];
  int k = 0;
  for (const std::string method : {"rtn", "gptq"}) {
    GraphModule c = clone_module(*base);
    q::WeightOnlyOptions o;
    o.bits = 4;
    o.group_size = 32;
    o.method = method;
    const q::QuantReport r = q::quantize_weights(*c, calib, o);
    REQUIRE(r.layers.size() == 2);
    err[k++] = (c->forward(x) - ref).norm().item<double>() / ref.norm().item<double>();
  }
  INFO("rtn " << err[0] << " gptq " << err[1]);
  CHECK(err[1] < err[0]);
  CHECK(err[1] < 0.1);
  GraphModule c = clone_module(*base);
  CHECK_THROWS_WITH(q::quantize_weights(*c, {}, q::WeightOnlyOptions{4, 32, false, "gptq"}), Catch::Contains("calibration"));
  CHECK_THROWS_WITH(q::quantize_weights(*c, {}, q::WeightOnlyOptions{4, 32, false, "magic"}), Catch::Contains("rtn, gptq"));
  CHECK(count_kind(c->graph(), ops::kFakeQuant) == 0);
}

TEST_CASE("cross-layer equalization keeps the function and lowers the per-tensor int8 error", "[quant]") {
  // conv -> relu -> depthwise conv -> relu -> conv with badly balanced channel ranges.
  torch::manual_seed(11);
  auto net = torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 8, 1)), torch::nn::ReLU(),
                                   torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 8, 3).groups(8).padding(1)),
                                   torch::nn::ReLU(), torch::nn::Conv2d(torch::nn::Conv2dOptions(8, 4, 1)));
  {
    torch::NoGradGuard g;
    auto p = net->named_parameters();
    p["0.weight"].mul_(torch::logspace(-2, 2, 8).reshape({8, 1, 1, 1}));
    p["2.weight"].mul_(torch::logspace(2, -2, 8).reshape({8, 1, 1, 1}));
  }
  const torch::Tensor x = torch::randn({4, 3, 16, 16});
  GraphModule m = capture(net, x);
  m->eval();
  torch::NoGradGuard g;
  const torch::Tensor ref = m->forward(x);
  GraphModule eq = clone_module(*m);
  CHECK(q::equalize_cross_layer(*eq) == 2);
  CHECK(max_rel(eq->forward(x), ref) < 1e-5);
  // Equalized weights: each pair's per-channel ranges agree.
  const torch::Tensor r1 = eq->tensor("0.weight").abs().reshape({8, -1}).amax(1);
  const torch::Tensor r2 = eq->tensor("2.weight").abs().reshape({8, -1}).amax(1);
  CHECK(max_rel(r1, r2) < 0.05);
  // Per-tensor int8 weights: equalization lowers the output error.
  double err[2];
  int k = 0;
  for (bool equalize : {false, true}) {
    GraphModule c = clone_module(*m);
    q::PtqOptions o;
    o.weights.per_channel = false;
    o.equalize = equalize;
    q::quantize_static(*c, {x}, o);
    err[k++] = max_rel(c->forward(x), ref);
  }
  INFO("without " << err[0] << " with " << err[1]);
  CHECK(err[1] < err[0] / 2);
}

TEST_CASE("mixed precision chooses per layer under a size budget", "[quant]") {
  GraphModule m = trained_like("fashion-cnn", 9);
  const auto calib = random_batches(2, {8, 1, 28, 28}, 10);
  const auto sens = q::layer_sensitivity(*m, calib);
  REQUIRE(sens.size() == 4);
  for (const auto& s : sens) CHECK(s.error.at("int4") >= s.error.at("int8"));
  int64_t fp32 = 0;
  for (const auto& s : sens) fp32 += 4 * s.weight_elements;
  const auto choice = q::choose_mixed_precision(sens, fp32 / 5);
  int low = 0;
  for (const auto& [layer, p] : choice) low += p != "fp32";
  CHECK(low >= 1);
  CHECK(choice.at("fc1") != "fp32");  // fc1 holds 95% of the weights
  CHECK_THROWS_WITH(q::choose_mixed_precision(sens, 10), Catch::Contains("over the budget"));
  q::apply_mixed_precision(*m, choice);
  CHECK(count_kind(m->graph(), ops::kFakeQuant) == low);
}

TEST_CASE("quantization passes run from pipeline text", "[quant]") {
  GraphModule m = trained_like("fashion-cnn", 12);
  PassContext ctx;
  ctx.quiet = true;
  ctx.input_shapes = {{1, 1, 28, 28}};
  CHECK_THROWS_WITH(parse_pipeline("quantize-static")->run(*m, ctx), Catch::Contains("calibration data"));
  ctx.calibration = random_batches(2, {8, 1, 28, 28}, 13);
  parse_pipeline("equalize-cross-layer,quantize-static{observer=entropy,bias_correction=true}")->run(*m, ctx);
  CHECK(count_kind(m->graph(), ops::kFakeQuant) == 8);
  parse_pipeline("strip-fake-quant,quantize-weights{bits=4,group_size=64,method=gptq}")->run(*m, ctx);
  CHECK(count_kind(m->graph(), ops::kFakeQuant) == 4);
}

// Not part of the suite: tests/python/check_quant.py runs it to compare with PyTorch.
TEST_CASE("write quantized models and observer data for PyTorch", "[.][quant-export]") {
  const std::string dir = std::string(TAILOR_TEST_TMP) + "/quant_python";
  std::filesystem::create_directories(dir);
  torch::NoGradGuard g;
  const auto write = [&](const std::string& name, const c10::IValue& v) {
    const auto bytes = torch::pickle_save(v);
    std::ofstream(dir + "/" + name, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  };
  // Quantized fixture models and their outputs on one input.
  const auto manifest = fixture_manifest();
  for (const std::string name : {"resnet18", "mobilenet_v2", "fashion-resnet"}) {
    GraphModule m = name == "fashion-resnet" ? trained_like(name, 1) : load(std::string(TAILOR_FIXTURES_DIR) + "/" + name + "_traced.pt");
    m->eval();
    const std::vector<int64_t> shape = name == "fashion-resnet" ? std::vector<int64_t>{2, 1, 28, 28} : std::vector<int64_t>{1, 3, 224, 224};
    q::quantize_static(*m, random_batches(2, shape, 1));
    const torch::Tensor x = random_batches(1, shape, 2)[0];
    save(*m, dir + "/" + name + "_int8.pt");
    write(name + "_int8_io.pt", c10::ivalue::Tuple::create({x, m->forward(x)}));
    GraphModule w = name == "fashion-resnet" ? trained_like(name, 1) : load(std::string(TAILOR_FIXTURES_DIR) + "/" + name + "_traced.pt");
    w->eval();
    q::quantize_weights(*w, {}, q::WeightOnlyOptions{4, 32, false, "rtn"});
    save(*w, dir + "/" + name + "_w4.pt");
    write(name + "_w4_io.pt", c10::ivalue::Tuple::create({x, w->forward(x)}));
  }
  // Observer ranges for torch.ao.quantization's observers on the same data.
  torch::manual_seed(4);
  const torch::Tensor a = torch::randn({4, 8, 6, 6}) * 3 + 1, b = torch::randn({4, 8, 6, 6}) * 2;
  q::Observer mm(q::QScheme::activations_u8(false), {});
  mm.observe(a);
  mm.observe(b);
  q::ObserverOptions mo;
  mo.kind = "moving-minmax";
  q::Observer mov(q::QScheme::activations_u8(true), mo);
  mov.observe(a);
  mov.observe(b);
  const q::QParams pc = q::weight_qparams(a.reshape({4, -1}), q::QScheme::weights_int8());
  write("observers.pt", c10::ivalue::Tuple::create({a, b, mm.qparams().scale, mm.qparams().zero_point, mov.qparams().scale,
                                                   mov.qparams().zero_point, pc.scale, pc.zero_point}));
}
