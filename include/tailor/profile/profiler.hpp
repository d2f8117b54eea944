// tailor/profile/profiler.hpp: measures how fast a compiled model runs, the same way on every backend, and
// records where it was measured. Method: fixed threads, mandatory warm-up, timed runs until the median is stable
// (capped), p50/p90/p99 (p90 is MLPerf's single-stream statistic), a batch-size sweep, peak memory, per-node times.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tailor/ir/graph_module.hpp"
#include "tailor/runtime/backend.hpp"

namespace tailor {

/// The machine and software a profile was measured with.
struct MachineInfo {
  std::string cpu_model;
  std::vector<std::string> isa;  ///< the ISA extensions that matter for kernels (avx2, fma, avx512f, vnni, ...)
  int logical_cpus = 0;
  double cpu_mhz = 0;  ///< clock measured under load (a chain of dependent adds); 0 when unknown
  std::string gpu;     ///< CUDA device name, when the profile ran on one
  std::string torch_version, onednn_version, tailor_version;
  /// FMA units x SIMD width x 2 flops x clock x cores: this CPU's fp32 peak in GFLOPS (0 when unknown).
  double peak_gflops(int threads) const;
  static MachineInfo detect();
  std::string to_json() const;
};

struct LatencyStats {
  int runs = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, mean_ms = 0, std_ms = 0, min_ms = 0, max_ms = 0;
  /// Percentiles by linear interpolation between order statistics (numpy's default). Needs samples.
  static LatencyStats from_samples(std::vector<double> ms);
};

struct NodeTime {
  std::string node, kind;
  std::vector<std::string> fused;
  double ms = 0;     ///< median over the per-node runs
  double share = 0;  ///< of the summed node times
};

struct ThroughputPoint {
  int64_t batch = 0;
  double p50_ms = 0;
  double samples_per_s = 0;
};

struct LatencyProfile {
  std::string backend, device, dtype;
  std::string isa;  ///< the x86 ISA level CPU kernels ran with (the CPU's best, or the cap in force)
  int threads = 0;
  int64_t batch = 0;
  std::vector<std::vector<int64_t>> input_shapes;
  MachineInfo machine;
  LatencyStats latency;
  bool stable = false;  ///< the median settled within the tolerance before the run cap
  std::vector<ThroughputPoint> throughput;
  int64_t peak_activation_bytes = 0, weight_bytes = 0;
  std::vector<NodeTime> nodes;
  std::string executable;  ///< the backend's summary of what it compiled
  std::string to_json() const;
  static LatencyProfile from_json(const std::string& text);
};

struct ProfileOptions {
  int threads = 1;
  int warmup = 10;         ///< untimed runs first (first calls of LibTorch and oneDNN are slow)
  int min_runs = 20;
  int max_runs = 2000;
  double max_seconds = 10;  ///< wall-clock cap of the timed runs for one batch size
  double tolerance = 0.01;  ///< stop when the median moves less than this (relative) between rounds
  std::vector<int64_t> batches = {1};  ///< the first one is the profile's batch; all feed the throughput sweep
  int node_runs = 5;        ///< runs timed node by node (0: no per-node times)
  uint64_t seed = 0;
  bool fold = true;
  std::string dtype = "float32";  ///< "bfloat16" on onednn-cpu where the CPU has avx512_core
  std::string isa;  ///< cap the x86 ISA before compiling (CompileOptions::isa); empty: the level in force
};

/// Compiles `module` on `backend` for `input_shape` (its first dimension is replaced by each batch size) and
/// measures it. The input is normal random data from `seed`.
LatencyProfile profile(const GraphModuleImpl& module, const std::string& backend,
                       const std::vector<int64_t>& input_shape, const ProfileOptions& options = {});

/// Times several models on one backend in `rounds` interleaved rounds (A B C, B C A, C A B, ...), each slot
/// getting max_seconds / rounds, so that the machine's drift during the measurement falls on all of them alike.
/// Returns, per model, the statistics of its median round (by p50). For comparing variants with each other.
std::vector<LatencyStats> time_interleaved(const std::vector<const GraphModuleImpl*>& modules,
                                           const std::string& backend, const std::vector<int64_t>& input_shape,
                                           const ProfileOptions& options, int rounds);

/// The same interleaving over executables already compiled, each with its own inputs (models of different
/// input sizes compare too).
std::vector<LatencyStats> time_interleaved(const std::vector<Executable*>& executables,
                                           const std::vector<std::vector<c10::IValue>>& inputs,
                                           const ProfileOptions& options, int rounds);

/// The input the Profiler times with: normal random data from `seed`.
std::vector<c10::IValue> random_inputs(const std::vector<int64_t>& shape, uint64_t seed);

/// Times an already compiled executable at its compiled shape (statistics only, no sweep or node times). `runs`,
/// when given, receives every timed run in order.
LatencyStats time_executable(Executable& exe, const std::vector<c10::IValue>& inputs, const ProfileOptions& options,
                             bool* stable = nullptr, std::vector<double>* runs = nullptr);

}  // namespace tailor
