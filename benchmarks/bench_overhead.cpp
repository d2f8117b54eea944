// GraphModule forward vs the original TorchScript module's forward, same inputs, same threads, same run.
//   bench_overhead [--threads N] [--runs N] MODEL.pt:1x3x224x224 ...
// Prints p50 per side and the ratio (GraphModule / TorchScript); below 1.05 meets the 5% budget.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/script.h>
#include <torch/torch.h>

#include <tailor/tailor.hpp>

namespace {

template <typename F>
std::vector<double> time_runs(F&& f, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) f();
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

double pct(const std::vector<double>& s, double p) { return s[static_cast<size_t>(p * (s.size() - 1))]; }

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, runs = 50;
  std::vector<std::string> specs;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::stoi(argv[++i]);
    else if (a == "--runs" && i + 1 < argc) runs = std::stoi(argv[++i]);
    else specs.push_back(a);
  }
  at::set_num_threads(threads);
  std::printf("threads %d, runs %d (after 10 warm-up), batch as given; LibTorch %s\n", threads, runs,
              tailor::build_info().torch_version.c_str());
  std::printf("%-32s %12s %12s %8s\n", "model", "torchscript", "graphmodule", "ratio");
  torch::NoGradGuard no_grad;
  for (const auto& spec : specs) {
    const auto colon = spec.rfind(':');
    const std::string path = spec.substr(0, colon);
    const auto shape = tailor::parse_shape(spec.substr(colon + 1));
    torch::jit::Module ts = torch::jit::load(path);
    ts.eval();
    tailor::GraphModule gm = tailor::load(path);
    const auto x = torch::randn(shape);
    // Interleave the two sides in rounds so that drift in machine speed hits both alike.
    std::vector<double> a, b;
    for (int round = 0; round < 5; ++round) {
      auto ra = time_runs([&] { ts.forward({x}); }, round == 0 ? 10 : 2, runs / 5);
      auto rb = time_runs([&] { gm->run({x}); }, round == 0 ? 10 : 2, runs / 5);
      a.insert(a.end(), ra.begin(), ra.end());
      b.insert(b.end(), rb.begin(), rb.end());
    }
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::printf("%-32s %9.3f ms %9.3f ms %8.3f\n", path.substr(path.rfind('/') + 1).c_str(), pct(a, 0.5), pct(b, 0.5),
                pct(b, 0.5) / pct(a, 0.5));
  }
  return 0;
}
