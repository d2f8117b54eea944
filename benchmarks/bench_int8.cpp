// int8 on onednn-cpu against fp32 and against the peers users pick instead, in one run, on the ISA in force.
//
//   /usr/bin/python3 benchmarks/export_pytorch_int8.py DIR      (once: the torchvision peers, TorchScript and ONNX)
//   npm install --prefix DIR/node --ignore-scripts onnxruntime-node@1.30.0   (optional: the ONNX Runtime column)
//   [ONEDNN_MAX_CPU_ISA=AVX2] bench_int8 DIR [--threads 1,2] [--batches 1,8] [--max-seconds S] [MODEL ...]
//
// Models: fashion-cnn and fashion-resnet from the zoo, resnet18, resnet50 and mobilenet_v2 from DIR. For each
// model, batch and thread count: LibTorch fp32 (the frozen traced file; for zoo models the graph on
// libtorch-cpu), tailor onednn-cpu fp32, tailor int8 (quantize_static with its defaults on 8 random batches, run
// by onednn-cpu), PyTorch 1.13's FX PTQ int8 run from C++ with the onednn and qnnpack engines, and ONNX Runtime
// fp32 on PyTorch's ONNX export (node benchmarks/ort_time.js, intraOpNumThreads = threads). Ratios > 1 mean
// tailor is faster. Then, per model, the largest int8 convolution as a share of the ISA's int8 peak.
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ATen/Context.h>
#include <fmt/format.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

#include "torchscript_executable.hpp"

using namespace tailor;
using tailor::bench::TorchScriptExecutable;

namespace {

std::vector<int> int_list(const std::string& text) {
  std::vector<int> out;
  std::string cur;
  for (char c : text + ",") {
    if (c == ',') {
      if (!cur.empty()) out.push_back(std::stoi(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  return out;
}

// ONNX Runtime's median in ms from the Node helper, or 0 when Node or the package is missing.
double ort_p50(const std::string& dir, const std::string& onnx, int threads, const std::vector<int64_t>& shape,
               double seconds, std::string& version) {
  if (!std::filesystem::exists(onnx) || !std::filesystem::exists(dir + "/node/node_modules/onnxruntime-node")) return 0;
  std::string s;
  for (auto d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
  const std::string cmd = "NODE_PATH=" + dir + "/node/node_modules node " + std::string(TAILOR_BENCH_DIR) +
                          "/ort_time.js " + onnx + " " + std::to_string(threads) + " " + s + " " +
                          std::to_string(seconds) + " 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return 0;
  std::array<char, 512> buf{};
  std::string out;
  while (fgets(buf.data(), buf.size(), pipe.get())) out += buf.data();
  const auto at = out.find("\"p50_ms\":");
  if (at == std::string::npos) return 0;
  const auto v = out.find("\"ort\":\"");
  if (v != std::string::npos) version = out.substr(v + 7, out.find('"', v + 7) - v - 7);
  return std::stod(out.substr(at + 9));
}

std::vector<torch::Tensor> calibration(const std::vector<int64_t>& sample) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> calib;
  std::vector<int64_t> s = sample;
  s[0] = 2;
  for (int b = 0; b < 8; ++b) calib.push_back(torch::randn(s));
  return calib;
}

}  // namespace

int main(int argc, char** argv) try {
  TAILOR_CHECK(argc >= 2, "usage: bench_int8 DIR [--threads 1,2] [--batches 1,8] [--max-seconds S] [MODEL ...]");
  const std::string dir = argv[1];
  std::vector<int> threads = {1, 2}, batches = {1, 8};
  double max_seconds = 3;
  std::vector<std::string> names;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = int_list(argv[++i]);
    else if (a == "--batches" && i + 1 < argc) batches = int_list(argv[++i]);
    else if (a == "--max-seconds" && i + 1 < argc) max_seconds = std::stod(argv[++i]);
    else names.push_back(a);
  }
  if (names.empty()) names = {"fashion-cnn", "fashion-resnet", "resnet18", "resnet50", "mobilenet_v2"};
  const MachineInfo machine = MachineInfo::detect();
  const std::string isa = effective_isa();
  std::printf("machine: %s, %d logical CPUs, %.0f MHz measured; kernels on %s (int8 without 16-bit saturation: %s)\n\n",
              machine.cpu_model.c_str(), machine.logical_cpus, machine.cpu_mhz, isa.c_str(),
              isa_has_int8_dot(isa) ? "yes" : "no");
  std::printf("| model | batch | threads | LibTorch fp32 ms | onednn-cpu fp32 ms | tailor int8 ms | PyTorch int8 onednn ms | "
              "PyTorch int8 qnnpack ms | ORT fp32 ms | int8 vs onednn fp32 | int8 vs LibTorch fp32 | int8 vs PyTorch int8 "
              "(best engine) | onednn fp32 vs ORT fp32 | int8 vs fake-quant max rel. diff |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::string ort_version;
  std::map<std::string, std::string> peak_lines;
  for (const auto& name : names) {
    const bool zoo = models::is_model_name(name) && name.rfind("fashion", 0) == 0;
    const std::string fp32_path = dir + "/" + name + "_fp32.pt";
    GraphModule fp = zoo ? models::capture_model(name, models::ZooOptions().num_classes(10).in_channels(1).seed(1))
                         : load(fp32_path);
    fp->eval();
    const std::vector<int64_t> sample = zoo ? std::vector<int64_t>{1, 1, 28, 28} : std::vector<int64_t>{1, 3, 224, 224};
    GraphModule q8 = clone_module(*fp);
    quant::quantize_static(*q8, calibration(sample));
    std::unique_ptr<Executable> ts, pt_onednn, pt_qnnpack;
    if (!zoo) {
      ts = std::make_unique<TorchScriptExecutable>(torch::jit::freeze(torch::jit::load(fp32_path)));
      pt_onednn = std::make_unique<TorchScriptExecutable>(torch::jit::load(dir + "/" + name + "_int8_onednn.pt"));
      pt_qnnpack = std::make_unique<TorchScriptExecutable>(torch::jit::load(dir + "/" + name + "_int8_qnnpack.pt"));
    }
    for (int batch : batches)
      for (int t : threads) {
        std::vector<int64_t> shape = sample;
        shape[0] = batch;
        CompileOptions co;
        co.input_shapes = {shape};
        co.threads = t;
        auto dn = compile("onednn-cpu", *fp, co);
        auto i8 = compile("onednn-cpu", *q8, co);
        std::unique_ptr<Executable> lt = zoo ? compile("libtorch-cpu", *fp, co) : nullptr;
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
        // Two interleaved rounds, each runner's best median kept: drift on these VMs falls on all alike.
        std::vector<Executable*> runners = {zoo ? lt.get() : ts.get(), dn.get(), i8.get()};
        if (!zoo) {
          runners.push_back(pt_onednn.get());
          runners.push_back(pt_qnnpack.get());
        }
        std::vector<double> best(runners.size(), 1e30);
        po.max_seconds = max_seconds / 2;
        for (int round = 0; round < 2; ++round)
          for (size_t k = 0; k < runners.size(); ++k) {
            const size_t r = (k + round) % runners.size();
            if (r == 3) at::globalContext().setQEngine(at::QEngine::ONEDNN);
            if (r == 4) at::globalContext().setQEngine(at::QEngine::QNNPACK);
            best[r] = std::min(best[r], time_executable(*runners[r], x, po).p50_ms);
          }
        const double ort = zoo ? 0 : ort_p50(dir, dir + "/" + name + "_fp32.onnx", t, shape, max_seconds, ort_version);
        auto ms = [](double v) { return v > 0 && v < 1e29 ? fmt::format("{:.2f}", v) : std::string("-"); };
        auto ratio = [](double a, double b) { return a > 0 && b > 0 && a < 1e29 && b < 1e29 ? fmt::format("{:.2f}x", a / b) : std::string("-"); };
        const double pt_best = zoo ? 0 : std::min(best[3], best[4]);
        std::printf("| %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1e |\n", name.c_str(), batch, t,
                    ms(best[0]).c_str(), ms(best[1]).c_str(), ms(best[2]).c_str(), ms(zoo ? 0 : best[3]).c_str(),
                    ms(zoo ? 0 : best[4]).c_str(), ms(ort).c_str(), ratio(best[1], best[2]).c_str(),
                    ratio(best[0], best[2]).c_str(), ratio(pt_best, best[2]).c_str(), ratio(ort, best[1]).c_str(), diff);
        std::fflush(stdout);
        if (batch == batches.front() && t == threads.front()) std::fprintf(stderr, "%s: %s\n", name.c_str(), i8->summary().c_str());
        // The largest int8 convolution against the int8 peak of this ISA at this thread count.
        if (t == threads.back() && batch == batches.back() && machine.cpu_mhz > 0) {
          const CostReport cost = analyze(*q8, {shape});
          std::map<std::string, int64_t> macs;
          for (const auto& nc : cost.nodes) macs[nc.name] = nc.macs;
          std::map<std::string, std::vector<double>> secs;
          for (int r = 0; r < 5; ++r) {
            std::vector<StepTime> steps;
            i8->run_timed(x, steps);
            for (const auto& s : steps)
              if (s.kind.rfind("conv int8", 0) == 0) secs[s.node].push_back(s.seconds);
          }
          std::string top;
          int64_t top_macs = 0;
          for (const auto& [node, v] : secs)
            if (macs[node] > top_macs) {
              top_macs = macs[node];
              top = node;
            }
          if (!top.empty()) {
            auto v = secs[top];
            std::sort(v.begin(), v.end());
            const double gops = 2.0 * static_cast<double>(top_macs) / v[v.size() / 2] * 1e-9;
            const double peak = 2.0 * isa_throughput(isa).int8_macs_per_cycle * machine.cpu_mhz * 1e-3 *
                                std::min(t, machine.logical_cpus);
            peak_lines[name] = fmt::format("{}: largest int8 conv {} ({:.1f} M MACs, batch {}, {} threads): {:.0f} GOPS, "
                                           "{:.0f}% of the {} int8 peak ({:.0f} GOPS)",
                                           name, top, static_cast<double>(top_macs) * 1e-6, batch, t, gops,
                                           100.0 * gops / peak, isa, peak);
          }
        }
      }
  }
  std::printf("\nONNX Runtime %s\n", ort_version.empty() ? "not found (see the header of this file)" : ort_version.c_str());
  for (const auto& [n, line] : peak_lines) std::printf("%s\n", line.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_int8: %s\n", e.what());
  return 1;
}
