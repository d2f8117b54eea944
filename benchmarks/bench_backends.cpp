// onednn-cpu against LibTorch on the same models, inputs, threads and timing loop, in one run.
//
//   bench_backends [--threads 1,2] [--batch 1,8] [--max-seconds S] [MODEL[:SHAPE] ...]
//
// MODEL is a zoo name (fashion-cnn, resnet18, resnet50, mobilenet_v2) or a TorchScript file with its input
// shape (vit_ti16.pt:1x3x224x224). Peers, all timed by tailor's Profiler loop (warm-up, runs until the median
// is stable):
//   torchscript   the model as a LibTorch user runs it: torch::jit::load + freeze, module.forward
//   libtorch-cpu  tailor's graph run with ATen kernels (batch norm folded)
//   onednn-cpu    tailor's oneDNN lowering
// Then: how close the largest convolutions come to the CPU's fp32 peak, and whether two profiles in a row agree.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

#include "torchscript_executable.hpp"

using namespace tailor;
using tailor::bench::TorchScriptExecutable;

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t pos = 0;
  while (pos < s.size()) {
    const size_t comma = s.find(',', pos);
    out.push_back(std::stoll(s.substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

struct Model {
  std::string name;
  GraphModule gm{nullptr};
  torch::jit::Module script;
  std::vector<int64_t> shape;
};

Model load_model(const std::string& spec, const std::string& tmp) {
  Model m;
  const auto colon = spec.rfind(':');
  std::string what = colon == std::string::npos ? spec : spec.substr(0, colon);
  if (models::is_model_name(what) && !std::filesystem::exists(what)) {
    m.name = what;
    m.gm = models::capture_model(what);
    m.shape = models::make_model(what).input_shape;
    // The same weights as TorchScript, as a user would deploy them.
    const std::string path = tmp + "/" + what + ".pt";
    save(*m.gm, path);
    m.script = torch::jit::load(path);
  } else {
    m.name = std::filesystem::path(what).stem().string();
    m.gm = load(what);
    m.script = torch::jit::load(what);
  }
  if (colon != std::string::npos) m.shape = parse_shape(spec.substr(colon + 1));
  TAILOR_CHECK(!m.shape.empty(), spec, ": give the input shape as MODEL:1x3x224x224");
  m.gm->eval();
  m.script.eval();
  m.script = torch::jit::freeze(m.script);
  return m;
}

}  // namespace

int main(int argc, char** argv) try {
  std::vector<int64_t> threads = {1, 2}, batches = {1, 8};
  double max_seconds = 6;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) batches = parse_list(argv[++i]);
    else if (a == "--max-seconds" && i + 1 < argc) max_seconds = std::stod(argv[++i]);
    else specs.push_back(a);
  }
  if (specs.empty()) specs = {"fashion-cnn", "resnet18", "resnet50", "mobilenet_v2"};
  const std::string tmp = std::filesystem::temp_directory_path() / "tailor_bench_backends";
  std::filesystem::create_directories(tmp);

  const MachineInfo machine = MachineInfo::detect();
  std::printf("machine: %s, %d logical CPUs, %.0f MHz, ISA:", machine.cpu_model.c_str(), machine.logical_cpus,
              machine.cpu_mhz);
  for (const auto& f : machine.isa) std::printf(" %s", f.c_str());
  std::printf("\nLibTorch %s, oneDNN %s, tailor %s\n\n", machine.torch_version.c_str(), machine.onednn_version.c_str(),
              machine.tailor_version.c_str());

  std::printf("| model | batch | threads | torchscript p50 ms | libtorch-cpu p50 ms | onednn-cpu p50 ms | onednn p90 ms "
              "| speed-up vs torchscript | vs libtorch-cpu | onednn bf16 p50 ms | bf16 max rel. error |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::vector<Model> loaded;
  for (const auto& spec : specs) loaded.push_back(load_model(spec, tmp));
  for (auto& m : loaded) {
    for (int64_t b : batches) {
      std::vector<int64_t> shape = m.shape;
      shape[0] = b;
      const std::vector<c10::IValue> x = {torch::randn(shape, at::detail::createCPUGenerator(0))};
      for (int64_t t : threads) {
        set_threads(static_cast<int>(t));
        ProfileOptions po;
        po.threads = static_cast<int>(t);
        po.max_seconds = max_seconds;
        po.min_runs = 20;
        CompileOptions co;
        co.input_shapes = {shape};
        co.threads = static_cast<int>(t);
        TorchScriptExecutable ts(m.script);
        auto lt = compile("libtorch-cpu", *m.gm, co);
        auto dn = compile("onednn-cpu", *m.gm, co);
        const LatencyStats s_ts = time_executable(ts, x, po);
        const LatencyStats s_lt = time_executable(*lt, x, po);
        const LatencyStats s_dn = time_executable(*dn, x, po);
        // bfloat16 where the CPU has it: speed, and the largest output error against fp32.
        std::string bf16_ms = "n/a", bf16_err = "n/a";
        try {
          CompileOptions cb = co;
          cb.dtype = "bfloat16";
          auto bf = compile("onednn-cpu", *m.gm, cb);
          const auto y32 = dn->run(x).toTensor();
          const auto y16 = bf->run(x).toTensor();
          // Relative to the largest output; torchvision's ViT head starts at zero, so guard the division.
          const double err = ((y16 - y32).abs().max() / y32.abs().max().clamp_min(1e-12)).item<double>();
          char buf[64];
          std::snprintf(buf, sizeof buf, "%.2f", time_executable(*bf, x, po).p50_ms);
          bf16_ms = buf;
          std::snprintf(buf, sizeof buf, "%.2g", err);
          bf16_err = buf;
        } catch (const Error&) {
        }
        std::printf("| %s | %lld | %lld | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %s | %s |\n", m.name.c_str(),
                    static_cast<long long>(b), static_cast<long long>(t), s_ts.p50_ms, s_lt.p50_ms, s_dn.p50_ms,
                    s_dn.p90_ms, s_ts.p50_ms / s_dn.p50_ms, s_lt.p50_ms / s_dn.p50_ms, bf16_ms.c_str(),
                    bf16_err.c_str());
        std::fflush(stdout);
      }
    }
  }

  // Efficiency: the largest convolutions and matmuls of each model at batch 8 (or the largest batch), 2 threads.
  const int t_eff = static_cast<int>(*std::max_element(threads.begin(), threads.end()));
  const int64_t b_eff = *std::max_element(batches.begin(), batches.end());
  std::printf("\nPeak: %.1f GFLOPS fp32 at %d threads (2 FMA pipes x SIMD width x 2 flops x measured clock x cores)\n\n",
              machine.peak_gflops(t_eff), t_eff);
  std::printf("| model | node | kind | MACs | ms | GFLOPS | %% of peak |\n|---|---|---|---|---|---|---|\n");
  for (auto& m : loaded) {
    std::vector<int64_t> shape = m.shape;
    shape[0] = b_eff;
    ProfileOptions po;
    po.threads = t_eff;
    po.batches = {b_eff};
    po.max_seconds = 2;
    po.node_runs = 7;
    const LatencyProfile p = profile(*m.gm, "onednn-cpu", shape, po);
    torch::NoGradGuard g;
    const CostReport costs = analyze(*m.gm, {shape});
    std::map<std::string, int64_t> macs;
    for (const auto& n : costs.nodes) macs[n.name] = n.macs;
    std::vector<std::pair<int64_t, NodeTime>> big;
    for (const auto& n : p.nodes)
      if ((n.kind == "conv" || n.kind == "linear") && macs.count(n.node)) big.push_back({macs[n.node], n});
    std::sort(big.begin(), big.end(), [](const auto& a, const auto& c) { return a.first > c.first; });
    for (size_t i = 0; i < std::min<size_t>(3, big.size()); ++i) {
      const double gflops = 2.0 * static_cast<double>(big[i].first) / (big[i].second.ms * 1e6);
      std::printf("| %s | %s | %s | %.1fM | %.3f | %.1f | %.0f%% |\n", m.name.c_str(), big[i].second.node.c_str(),
                  big[i].second.kind.c_str(), static_cast<double>(big[i].first) / 1e6, big[i].second.ms, gflops,
                  100.0 * gflops / machine.peak_gflops(t_eff));
    }
  }

  // Repeatability: two profiles in a row, batch 1, 1 thread.
  std::printf("\n| model | backend | p50 first ms | p50 second ms | difference |\n|---|---|---|---|---|\n");
  for (auto& m : loaded) {
    for (const std::string backend : {"libtorch-cpu", "onednn-cpu"}) {
      ProfileOptions po;
      po.threads = 1;
      po.node_runs = 0;
      po.max_seconds = max_seconds;
      const double a = profile(*m.gm, backend, m.shape, po).latency.p50_ms;
      const double c = profile(*m.gm, backend, m.shape, po).latency.p50_ms;
      std::printf("| %s | %s | %.3f | %.3f | %.1f%% |\n", m.name.c_str(), backend.c_str(), a, c,
                  100.0 * std::abs(c - a) / a);
    }
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_backends: %s\n", e.what());
  return 1;
}
