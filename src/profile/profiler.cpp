#include "tailor/profile/profiler.hpp"
#include "tailor/runtime/isa.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"
#include <torch/cuda.h>
#include <torch/torch.h>

#include "tailor/core/build_info.hpp"

namespace tailor {

using nlohmann::json;

namespace {

// What a profile compiles with: the profile's threads, folding, dtype and ISA cap at one input shape.
CompileOptions compile_options(const ProfileOptions& options, const std::vector<int64_t>& shape) {
  CompileOptions co;
  co.input_shapes = {shape};
  co.threads = options.threads;
  co.fold = options.fold;
  co.dtype = options.dtype;
  co.isa = options.isa;
  return co;
}

// The clock the core really runs at under load (turbo included; /proc/cpuinfo in a VM shows the nominal one):
// a chain of dependent integer adds retires one per cycle on every x86 core of the last two decades.
double measured_clock_mhz() {
  static const double mhz = [] {
#if defined(__x86_64__) && defined(__GNUC__)
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const uint64_t iters = 20'000'000;
      uint64_t x = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (uint64_t i = 0; i < iters; ++i)
        asm volatile(
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\t"
            "add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0"
            : "+r"(x));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::max(best, 8.0 * static_cast<double>(iters) / s / 1e6);
    }
    return best;
#else
    return 0.0;
#endif
  }();
  return mhz;
}

}  // namespace

double MachineInfo::peak_gflops(int threads) const {
  if (cpu_mhz <= 0) return 0;
  auto has = [&](const char* f) { return std::find(isa.begin(), isa.end(), f) != isa.end(); };
  double width = has("avx512f") ? 16 : (has("avx") || has("avx2")) ? 8 : 4;
  // AMD Zen 4 runs 512-bit FMAs on 256-bit pipes (Zen 5, which adds vp2intersect, has full-width ones).
  if (has("avx512f") && cpu_model.find("AMD") != std::string::npos && !has("avx512_vp2intersect")) width = 8;
  // Two FMA pipes per core on every x86 server core of the last decade; an FMA is two flops.
  const double per_cycle = has("fma") ? 2 * width * 2 : 2 * width;
  const int cores = std::max(1, std::min(threads, logical_cpus));
  return per_cycle * cpu_mhz * 1e-3 * cores;
}

MachineInfo MachineInfo::detect() {
  MachineInfo m;
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  static const std::vector<std::string> interesting = {"sse4_2",      "avx",         "avx2",     "fma",
                                                       "f16c",        "avx512f",     "avx512bw", "avx512_vnni",
                                                       "avx512_bf16", "avx_vnni",    "amx_bf16", "amx_int8",
                                                       "avx512_vp2intersect"};
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    const std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "processor") ++m.logical_cpus;
    if (key == "model name" && m.cpu_model.empty()) m.cpu_model = value;
    if (key == "flags" && m.isa.empty()) {
      std::istringstream fs(value);
      std::string f;
      std::vector<std::string> flags;
      while (fs >> f) flags.push_back(f);
      for (const auto& want : interesting)
        if (std::find(flags.begin(), flags.end(), want) != flags.end()) m.isa.push_back(want);
    }
  }
  m.cpu_mhz = measured_clock_mhz();
  const BuildInfo b = build_info();
  m.torch_version = b.torch_version;
  m.onednn_version = b.onednn_version;
  m.tailor_version = b.tailor_version;
  return m;
}

namespace {

json machine_json(const MachineInfo& m) {
  return {{"cpu_model", m.cpu_model}, {"isa", m.isa},   {"logical_cpus", m.logical_cpus},
          {"cpu_mhz", m.cpu_mhz},     {"gpu", m.gpu},   {"torch", m.torch_version},
          {"onednn", m.onednn_version}, {"tailor", m.tailor_version}};
}

MachineInfo machine_from(const json& j) {
  MachineInfo m;
  m.cpu_model = j.value("cpu_model", "");
  m.isa = j.value("isa", std::vector<std::string>{});
  m.logical_cpus = static_cast<int>(tailor::detail::json_whole_or(j, "logical_cpus", 0, "latency profile: machine", 0, 1 << 20));
  m.cpu_mhz = j.value("cpu_mhz", 0.0);
  m.gpu = j.value("gpu", "");
  m.torch_version = j.value("torch", "");
  m.onednn_version = j.value("onednn", "");
  m.tailor_version = j.value("tailor", "");
  return m;
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double quantile_sorted(const std::vector<double>& s, double q) {
  const double pos = q * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  return s[lo] + (pos - static_cast<double>(lo)) * (s[hi] - s[lo]);
}

}  // namespace

std::vector<c10::IValue> random_inputs(const std::vector<int64_t>& shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return {torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat))};
}

std::string MachineInfo::to_json() const { return machine_json(*this).dump(2); }

LatencyStats LatencyStats::from_samples(std::vector<double> ms) {
  TAILOR_CHECK(!ms.empty(), "latency statistics need at least one timed run");
  std::sort(ms.begin(), ms.end());
  LatencyStats s;
  s.runs = static_cast<int>(ms.size());
  s.p50_ms = quantile_sorted(ms, 0.50);
  s.p90_ms = quantile_sorted(ms, 0.90);
  s.p99_ms = quantile_sorted(ms, 0.99);
  s.min_ms = ms.front();
  s.max_ms = ms.back();
  double sum = 0;
  for (double x : ms) sum += x;
  s.mean_ms = sum / static_cast<double>(ms.size());
  double var = 0;
  for (double x : ms) var += (x - s.mean_ms) * (x - s.mean_ms);
  s.std_ms = ms.size() > 1 ? std::sqrt(var / static_cast<double>(ms.size() - 1)) : 0;
  return s;
}

LatencyStats time_executable(Executable& exe, const std::vector<c10::IValue>& inputs, const ProfileOptions& options,
                             bool* stable, std::vector<double>* runs) {
  TAILOR_CHECK(options.min_runs > 0 && options.max_runs >= options.min_runs, "profile: need 0 < min_runs <= max_runs");
  for (int i = 0; i < options.warmup; ++i) exe.run(inputs);
  exe.synchronize();
  std::vector<double> ms;
  const auto begin = std::chrono::steady_clock::now();
  double last_median = -1;
  int settled_rounds = 0;
  bool is_stable = false;
  const int round = std::max(5, options.min_runs / 2);
  while (static_cast<int>(ms.size()) < options.max_runs) {
    for (int i = 0; i < round && static_cast<int>(ms.size()) < options.max_runs; ++i) {
      exe.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      exe.run(inputs);
      exe.synchronize();
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    if (static_cast<int>(ms.size()) < options.min_runs) continue;
    const double med = median_of(ms);
    // Two rounds in a row that move the median less than the tolerance.
    if (last_median > 0 && std::abs(med - last_median) <= options.tolerance * last_median) {
      if (++settled_rounds >= 2) {
        is_stable = true;
        break;
      }
    } else {
      settled_rounds = 0;
    }
    last_median = med;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count() > options.max_seconds) break;
  }
  if (stable) *stable = is_stable;
  if (runs) *runs = ms;
  return LatencyStats::from_samples(ms);
}

LatencyProfile profile(const GraphModuleImpl& module, const std::string& backend, const std::vector<int64_t>& input_shape,
                       const ProfileOptions& options) {
  TAILOR_CHECK(!input_shape.empty(), "profile: the input shape is empty");
  TAILOR_CHECK(!options.batches.empty(), "profile: no batch sizes given");
  TAILOR_CHECK(options.threads > 0, "profile: threads must be positive, got ", options.threads);
  auto b = make_backend(backend);
  const std::string why = b->unavailable_reason();
  TAILOR_CHECK(why.empty(), "backend ", backend, " is not available: ", why);
  const int previous_threads = get_threads();
  set_threads(options.threads);

  LatencyProfile p;
  p.backend = backend;
  p.dtype = options.dtype;
  p.threads = options.threads;
  p.machine = MachineInfo::detect();
  for (size_t k = 0; k < options.batches.size(); ++k) {
    const int64_t batch = options.batches[k];
    TAILOR_CHECK(batch > 0, "profile: batch sizes must be positive, got ", batch);
    std::vector<int64_t> shape = input_shape;
    shape[0] = batch;
    auto exe = b->compile(module, compile_options(options, shape));
    p.isa = effective_isa();
    auto inputs = random_inputs(shape, options.seed);
    bool stable = false;
    const LatencyStats stats = time_executable(*exe, inputs, options, &stable);
    p.throughput.push_back({batch, stats.p50_ms, 1000.0 * static_cast<double>(batch) / stats.p50_ms});
    if (k != 0) continue;
    p.batch = batch;
    p.input_shapes = {shape};
    p.latency = stats;
    p.stable = stable;
    p.device = exe->device().str();
    p.executable = exe->summary();
    p.weight_bytes = exe->weight_bytes();
    if (exe->device().is_cuda()) {
      p.machine.gpu = "CUDA device " + std::to_string(exe->device().index());
    }
    // Per-node times: medians over a few step-by-step runs (slower than a plain run, reported as shares).
    std::map<std::string, std::vector<double>> per_node;
    std::vector<StepTime> order;
    for (int r = 0; r < std::max(1, options.node_runs); ++r) {
      std::vector<StepTime> steps;
      exe->run_timed(inputs, steps);
      if (r == 0) order = steps;
      for (size_t i = 0; i < steps.size(); ++i)
        per_node[steps[i].node + "\x1f" + steps[i].kind + "\x1f" + std::to_string(i)].push_back(steps[i].seconds * 1e3);
    }
    p.peak_activation_bytes = exe->peak_activation_bytes();
    if (options.node_runs > 0) {
      double total = 0;
      for (size_t i = 0; i < order.size(); ++i) {
        NodeTime nt;
        nt.node = order[i].node;
        nt.kind = order[i].kind;
        nt.fused = order[i].fused;
        nt.ms = median_of(per_node[order[i].node + "\x1f" + order[i].kind + "\x1f" + std::to_string(i)]);
        total += nt.ms;
        p.nodes.push_back(nt);
      }
      for (auto& nt : p.nodes) nt.share = total > 0 ? nt.ms / total : 0;
    }
  }
  set_threads(previous_threads);
  return p;
}

std::vector<LatencyStats> time_interleaved(const std::vector<const GraphModuleImpl*>& modules,
                                           const std::string& backend, const std::vector<int64_t>& input_shape,
                                           const ProfileOptions& options, int rounds) {
  TAILOR_CHECK(rounds >= 1, "interleaved timing: rounds must be at least 1, got ", rounds);
  TAILOR_CHECK(options.threads > 0, "profile: threads must be positive, got ", options.threads);
  TAILOR_CHECK(!input_shape.empty(), "profile: the input shape is empty");
  if (modules.empty()) return {};
  auto b = make_backend(backend);
  const std::string why = b->unavailable_reason();
  TAILOR_CHECK(why.empty(), "backend ", backend, " is not available: ", why);
  struct RestoreThreads {
    int n;
    ~RestoreThreads() { set_threads(n); }
  } restore{get_threads()};
  set_threads(options.threads);
  std::vector<std::unique_ptr<Executable>> exes;
  std::vector<Executable*> raw;
  for (const auto* m : modules) {
    exes.push_back(b->compile(*m, compile_options(options, input_shape)));
    raw.push_back(exes.back().get());
  }
  return time_interleaved(raw, std::vector<std::vector<c10::IValue>>(modules.size(), random_inputs(input_shape, options.seed)),
                          options, rounds);
}

std::vector<LatencyStats> time_interleaved(const std::vector<Executable*>& exes,
                                           const std::vector<std::vector<c10::IValue>>& inputs,
                                           const ProfileOptions& options, int rounds) {
  TAILOR_CHECK(rounds >= 1, "interleaved timing: rounds must be at least 1, got ", rounds);
  TAILOR_CHECK(inputs.size() == exes.size(), "interleaved timing: ", exes.size(), " executables but ", inputs.size(),
               " input sets");
  if (exes.empty()) return {};
  ProfileOptions slot = options;
  slot.max_seconds = options.max_seconds / rounds;
  std::vector<std::vector<LatencyStats>> per(exes.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t k = 0; k < exes.size(); ++k) {
      const size_t i = (k + static_cast<size_t>(r)) % exes.size();  // no model always follows the same one
      per[i].push_back(time_executable(*exes[i], inputs[i], slot));
    }
  std::vector<LatencyStats> out;
  for (auto& v : per) {
    std::sort(v.begin(), v.end(), [](const LatencyStats& a, const LatencyStats& c) { return a.p50_ms < c.p50_ms; });
    out.push_back(v[v.size() / 2]);
  }
  return out;
}

std::string LatencyProfile::to_json() const {
  json nodes_j = json::array();
  for (const auto& n : nodes)
    nodes_j.push_back({{"node", n.node}, {"kind", n.kind}, {"fused", n.fused}, {"ms", n.ms}, {"share", n.share}});
  json tp = json::array();
  for (const auto& t : throughput)
    tp.push_back({{"batch", t.batch}, {"p50_ms", t.p50_ms}, {"samples_per_s", t.samples_per_s}});
  json j = {{"backend", backend},
            {"device", device},
            {"dtype", dtype},
            {"threads", threads},
            {"batch", batch},
            {"input_shapes", input_shapes},
            {"machine", machine_json(machine)},
            {"latency_ms",
             {{"runs", latency.runs},
              {"p50", latency.p50_ms},
              {"p90", latency.p90_ms},
              {"p99", latency.p99_ms},
              {"mean", latency.mean_ms},
              {"std", latency.std_ms},
              {"min", latency.min_ms},
              {"max", latency.max_ms}}},
            {"stable", stable},
            {"throughput", tp},
            {"peak_activation_bytes", peak_activation_bytes},
            {"weight_bytes", weight_bytes},
            {"executable", executable},
            {"isa", isa},
            {"nodes", nodes_j}};
  return j.dump(2);
}

namespace {
int64_t whole(const json& j, const char* key, int64_t fallback, int64_t most = INT64_MAX) {
  return tailor::detail::json_whole_or(j, key, fallback, "latency profile", 0, most);
}
}  // namespace

LatencyProfile LatencyProfile::from_json(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TAILOR_FAIL("latency profile: not valid JSON: ", e.what());
  }
  LatencyProfile p;
  try {
    p.backend = j.at("backend").get<std::string>();
    p.device = j.value("device", "");
    p.dtype = j.value("dtype", "float32");
    p.threads = static_cast<int>(whole(j, "threads", 0, 4096));
    p.batch = whole(j, "batch", 0);
    p.input_shapes = tailor::detail::json_shapes(j.value("input_shapes", json::array()), "latency profile: 'input_shapes'");
    if (j.contains("machine")) p.machine = machine_from(j["machine"]);
    const json& l = j.at("latency_ms");
    p.latency.runs = static_cast<int>(whole(l, "runs", 0, INT32_MAX));
    p.latency.p50_ms = l.at("p50").get<double>();
    p.latency.p90_ms = l.value("p90", 0.0);
    p.latency.p99_ms = l.value("p99", 0.0);
    p.latency.mean_ms = l.value("mean", 0.0);
    p.latency.std_ms = l.value("std", 0.0);
    p.latency.min_ms = l.value("min", 0.0);
    p.latency.max_ms = l.value("max", 0.0);
    p.stable = j.value("stable", false);
    for (const auto& t : j.value("throughput", json::array()))
      p.throughput.push_back({whole(t, "batch", 0), t.at("p50_ms").get<double>(), t.at("samples_per_s").get<double>()});
    p.peak_activation_bytes = whole(j, "peak_activation_bytes", 0);
    p.weight_bytes = whole(j, "weight_bytes", 0);
    p.executable = j.value("executable", "");
    p.isa = j.value("isa", "");
    for (const auto& n : j.value("nodes", json::array()))
      p.nodes.push_back({n.at("node").get<std::string>(), n.value("kind", ""), n.value("fused", std::vector<std::string>{}),
                         n.value("ms", 0.0), n.value("share", 0.0)});
  } catch (const json::exception& e) {
    TAILOR_FAIL("latency profile: missing or mistyped key: ", e.what());
  }
  return p;
}

}  // namespace tailor
