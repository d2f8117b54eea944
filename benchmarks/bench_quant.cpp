// Quantization, measured on Fashion-MNIST.
//
//   bench_quant [--seeds 3] [--epochs 3] [--limit 20000] [--calib 512] [--out DIR] [--only SUBSTR,...] [MODEL ...]
//   bench_quant --cle [--seeds 3] [--epochs 2] [--limit 20000]
//
// Per model (default fashion-cnn, fashion-resnet) and seed: train fp32 on the first `limit` training images,
// save it to DIR/<model>_s<seed>.pt (for benchmarks/pytorch_ptq.py, which quantizes the same file with
// PyTorch's FX PTQ on the same calibration images), then measure top-1 on the 10k test images of:
// int8 PTQ with each observer, with bias correction, QAT (LSQ, Adam, 1 epoch), weight-only w8, and w4 (group 32)
// by round-to-nearest and by GPTQ. Calibration: the first `calib` training images in order, batches of 64.
// --cle: a MobileNetV2 (1 input channel, 10 classes) trained per seed, then int8 PTQ with per-tensor and
// per-channel weights, each without and with cross-layer equalization: top-1 and the logits' relative error.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <tailor/tailor.hpp>
#include <tailor/train/train.hpp>

#include "trainer.hpp"

using namespace tailor;
using tailor::bench::Trainer;

namespace {

using tailor::bench::mean;
using tailor::bench::stdev;

int cle_bench(Trainer& t, const std::vector<torch::Tensor>& calib, int seeds, int epochs) {
  std::map<std::string, std::vector<double>> acc, err;
  std::vector<std::string> order;
  const torch::Tensor probe = t.test.images.slice(0, 0, 500);
  for (int s = 0; s < seeds; ++s) {
    torch::manual_seed(static_cast<uint64_t>(s));
    GraphModule fp = models::capture_model("mobilenet_v2", models::ZooOptions().num_classes(10).in_channels(1).seed(static_cast<uint64_t>(s)));
    t.fit(*fp, epochs, 0.05, static_cast<uint64_t>(s), nullptr);
    torch::Tensor ref;
    {
      torch::NoGradGuard g;
      fp->eval();
      ref = fp->forward(probe);
    }
    auto record = [&](const std::string& key, GraphModuleImpl& m) {
      if (!acc.count(key)) order.push_back(key);
      acc[key].push_back(t.accuracy(m));
      torch::NoGradGuard g;
      err[key].push_back((m.forward(probe) - ref).norm().item<double>() / ref.norm().item<double>());
    };
    record("fp32", *fp);
    for (bool per_channel : {false, true})
      for (bool equalize : {false, true}) {
        GraphModule m = clone_module(*fp);
        quant::PtqOptions o;
        o.weights.per_channel = per_channel;
        o.equalize = equalize;
        quant::quantize_static(*m, calib, o);
        record(std::string("int8, ") + (per_channel ? "per-channel" : "per-tensor") + " weights" +
                   (equalize ? " + CLE" : ""),
               *m);
      }
    std::fprintf(stderr, "mobilenet_v2 seed %d done\n", s);
  }
  std::printf("\nmobilenet_v2 (width 1, 1x28x28 input) on Fashion-MNIST (%lld training images, %d epoch(s), %d seed(s)); "
              "error: relative L2 error of the logits against fp32 on 500 test images\n\n"
              "| variant | top-1 %% (mean +- std) | vs fp32 (points) | logits error (mean) |\n|---|---|---|---|\n",
              static_cast<long long>(t.train.size()), epochs, seeds);
  const double base = mean(acc["fp32"]);
  for (const auto& key : order)
    std::printf("| %s | %.2f +- %.2f | %+.2f | %.4f |\n", key.c_str(), 100 * mean(acc[key]), 100 * stdev(acc[key]),
                100 * (mean(acc[key]) - base), mean(err[key]));
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  int seeds = 3, epochs = 3;
  bool cle = false;
  int64_t limit = 20000, calib_images = 512;
  std::string only;  // comma-separated substrings of the variants to run (fp32 always runs)
  std::string out_dir = "bench_quant_models";
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      TAILOR_CHECK(i + 1 < argc, a, " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--seeds") seeds = std::stoi(next());
    else if (a == "--epochs") epochs = std::stoi(next());
    else if (a == "--limit") limit = std::stoll(next());
    else if (a == "--calib") calib_images = std::stoll(next());
    else if (a == "--out") out_dir = next();
    else if (a == "--cle") cle = true;
    else if (a == "--only") only = next();
    else names.push_back(a);
  }
  if (names.empty()) names = {"fashion-cnn", "fashion-resnet"};
  std::filesystem::create_directories(out_dir);
  Trainer t;
  t.train = data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), limit);
  t.test = data::load_fashion_mnist(data::Split::Test);
  std::vector<torch::Tensor> calib;
  for (const auto& b : data::batches(data::load_fashion_mnist(data::Split::Train, data::fashion_mnist_root(), calib_images), 64, false))
    calib.push_back(b.images);
  if (cle) return cle_bench(t, calib, seeds, epochs);
  const auto start = std::chrono::steady_clock::now();
  for (const auto& name : names) {
    std::map<std::string, std::vector<double>> acc;
    std::map<std::string, int64_t> bytes;
    std::vector<std::string> order;
    auto wanted = [&](const std::string& key) {
      if (only.empty()) return true;
      std::stringstream list(only);
      for (std::string part; std::getline(list, part, ',');)
        if (key.find(part) != std::string::npos) return true;
      return false;
    };
    auto record = [&](const std::string& key, GraphModuleImpl& m) {
      if (!acc.count(key)) order.push_back(key);
      acc[key].push_back(t.accuracy(m));
      torch::NoGradGuard g;
      bytes[key] = analyze(m, {{1, 1, 28, 28}}).weight_bytes;
    };
    for (int s = 0; s < seeds; ++s) {
      torch::manual_seed(static_cast<uint64_t>(s));
      GraphModule fp = models::capture_model(name, models::ZooOptions().seed(static_cast<uint64_t>(s)));
      t.fit(*fp, epochs, 0.1, static_cast<uint64_t>(s), nullptr);
      record("fp32", *fp);
      save(*fp, out_dir + "/" + name + "_s" + std::to_string(s) + ".pt");
      for (const std::string obs : {"minmax", "moving-minmax", "percentile", "mse", "entropy"}) {
        if (!wanted("int8 PTQ, " + obs)) continue;
        GraphModule m = clone_module(*fp);
        quant::PtqOptions o;
        o.observer.kind = obs;
        quant::quantize_static(*m, calib, o);
        record("int8 PTQ, " + obs, *m);
      }
      if (wanted("bias correction")) {
        GraphModule m = clone_module(*fp);
        quant::PtqOptions o;
        o.observer.kind = "mse";
        o.weight_method = "mse";
        o.bias_correction = true;
        quant::quantize_static(*m, calib, o);
        record("int8 PTQ, mse + mse weights + bias correction", *m);
      }
      if (wanted("QAT")) {
        // LSQ scales on a batch-norm-folded model: Adam at 1e-4 (SGD at the float model's rates diverges).
        GraphModule m = clone_module(*fp);
        quant::QatOptions o;
        o.ptq.observer.kind = "mse";
        quant::prepare_qat(*m, calib, o);
        train::TrainOptions to;
        to.epochs = 1;
        to.optimizer = "adam";
        to.lr = 1e-4;
        to.weight_decay = 0;
        to.seed = static_cast<uint64_t>(s) + 500;
        to.progress = false;
        to.batch_size = t.batch;
        train::finetune(m, t.train, nullptr, to);
        record("int8 QAT (LSQ, Adam 1e-4, 1 epoch)", *m);
      }
      for (const auto& [label, bits, group, method] :
           std::vector<std::tuple<std::string, int, int64_t, std::string>>{{"w8 per-channel, rtn", 8, 0, "rtn"},
                                                                          {"w4 group 32, rtn", 4, 32, "rtn"},
                                                                          {"w4 group 32, gptq", 4, 32, "gptq"},
                                                                          {"w4 per-channel, rtn", 4, 0, "rtn"},
                                                                          {"w4 per-channel, gptq", 4, 0, "gptq"}}) {
        if (!wanted(label)) continue;
        GraphModule m = clone_module(*fp);
        quant::WeightOnlyOptions o;
        o.bits = bits;
        o.group_size = group;
        o.symmetric = bits == 8;
        o.method = method;
        quant::quantize_weights(*m, calib, o);
        record(label, *m);
      }
      std::fprintf(stderr, "%s seed %d done after %.0f s\n", name.c_str(), s,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::printf("\n%s on Fashion-MNIST (%lld training images, %d epoch(s), %d seed(s); calibration: first %lld "
                "training images)\n\n| variant | top-1 %% (mean +- std) | vs fp32 (points) | weight bytes |\n|---|---|---|---|\n",
                name.c_str(), static_cast<long long>(t.train.size()), epochs, seeds,
                static_cast<long long>(calib_images));
    const double base = mean(acc["fp32"]);
    for (const auto& key : order)
      std::printf("| %s | %.2f +- %.2f | %+.2f | %lld |\n", key.c_str(), 100 * mean(acc[key]), 100 * stdev(acc[key]),
                  100 * (mean(acc[key]) - base), static_cast<long long>(bytes[key]));
    std::fflush(stdout);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_quant: %s\n", e.what());
  return 1;
}
