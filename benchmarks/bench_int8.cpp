// int8 on onednn-cpu against fp32 and against PyTorch's own int8 models, in one run.
//
//   /usr/bin/python3 benchmarks/export_pytorch_int8.py DIR      (once: the peers)
//   bench_int8 DIR [--threads 1,2] [--max-seconds S] [MODEL ...]   (default resnet18 mobilenet_v2)
//
// For each model at batch 1: LibTorch fp32 (the traced file, frozen), tailor onednn-cpu fp32, tailor int8
// (quantize_static on 8 random batches, run by onednn-cpu as u8 x s8 primitives), and PyTorch 1.13's FX PTQ
// int8 model run from C++ with the onednn and the qnnpack quantized engines.
#include <cstdio>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

#include "torchscript_executable.hpp"

using namespace tailor;
using tailor::bench::TorchScriptExecutable;

int main(int argc, char** argv) try {
  TAILOR_CHECK(argc >= 2, "usage: bench_int8 DIR [--threads 1,2] [--max-seconds S] [MODEL ...]");
  const std::string dir = argv[1];
  std::vector<int> threads = {1, 2};
  double max_seconds = 5;
  std::vector<std::string> names;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      threads.clear();
      for (char c : std::string(argv[++i]))
        if (c >= '0' && c <= '9') threads.push_back(c - '0');
    } else if (a == "--max-seconds" && i + 1 < argc) {
      max_seconds = std::stod(argv[++i]);
    } else {
      names.push_back(a);
    }
  }
  if (names.empty()) names = {"resnet18", "mobilenet_v2"};
  const MachineInfo machine = MachineInfo::detect();
  std::printf("machine: %s, %d logical CPUs, int8 with VNNI: %s\n\n", machine.cpu_model.c_str(), machine.logical_cpus,
              quant::cpu_has_vnni() ? "yes" : "no");
  std::printf("| model | threads | LibTorch fp32 ms | onednn-cpu fp32 ms | tailor int8 ms | PyTorch int8 onednn ms | "
              "PyTorch int8 qnnpack ms | int8 vs LibTorch fp32 | vs PyTorch int8 (best engine) | int8 vs fake-quant max rel. diff |\n"
              "|---|---|---|---|---|---|---|---|---|---|\n");
  const std::vector<int64_t> shape = {1, 3, 224, 224};
  for (const auto& name : names) {
    const std::string fp32_path = dir + "/" + name + "_fp32.pt";
    GraphModule fp = load(fp32_path);
    fp->eval();
    GraphModule q8 = clone_module(*fp);
    torch::manual_seed(0);
    std::vector<torch::Tensor> calib;
    for (int b = 0; b < 8; ++b) calib.push_back(torch::randn({2, 3, 224, 224}));
    quant::quantize_static(*q8, calib);
    auto script = torch::jit::freeze(torch::jit::load(fp32_path));
    TorchScriptExecutable ts(script);
    TorchScriptExecutable pt_onednn(torch::jit::load(dir + "/" + name + "_int8_onednn.pt"));
    TorchScriptExecutable pt_qnnpack(torch::jit::load(dir + "/" + name + "_int8_qnnpack.pt"));
    CompileOptions co;
    co.input_shapes = {shape};
    for (int t : threads) {
      co.threads = t;
      auto dn = compile("onednn-cpu", *fp, co);
      auto i8 = compile("onednn-cpu", *q8, co);
      ProfileOptions po;
      po.threads = t;
      po.max_seconds = max_seconds;
      po.min_runs = 20;
      torch::manual_seed(1);
      const std::vector<c10::IValue> x = {torch::randn(shape)};
      double diff = 0;
      {
        torch::NoGradGuard g;
        const torch::Tensor ref = q8->forward(x[0].toTensor());
        diff = ((i8->run(x).toTensor() - ref).abs().max() / ref.abs().max()).item<double>();
      }
      const double p_ts = time_executable(ts, x, po).p50_ms;
      const double p_dn = time_executable(*dn, x, po).p50_ms;
      const double p_i8 = time_executable(*i8, x, po).p50_ms;
      at::globalContext().setQEngine(at::QEngine::ONEDNN);
      const double p_po = time_executable(pt_onednn, x, po).p50_ms;
      at::globalContext().setQEngine(at::QEngine::QNNPACK);
      const double p_pq = time_executable(pt_qnnpack, x, po).p50_ms;
      std::printf("| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.1e |\n", name.c_str(), t, p_ts, p_dn,
                  p_i8, p_po, p_pq, p_ts / p_i8, std::min(p_po, p_pq) / p_i8, diff);
      std::fflush(stdout);
      if (t == threads.front()) std::fprintf(stderr, "%s\n", i8->summary().c_str());
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_int8: %s\n", e.what());
  return 1;
}
