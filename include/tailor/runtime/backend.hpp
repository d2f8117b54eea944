// tailor/runtime/backend.hpp: a Backend compiles a GraphModule's graph, for fixed input shapes, into an
// Executable that runs it on one device (onednn-cpu, libtorch-cpu, libtorch-cuda). The Profiler times every
// Executable the same way, so numbers from different backends compare.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <ATen/core/ivalue.h>
#include <c10/core/Device.h>

#include "tailor/ir/graph_module.hpp"
#include "tailor/runtime/kernel.hpp"

namespace tailor {

struct CompileOptions {
  /// Shapes the executable is specialized for, batch included (one per graph input).
  std::vector<std::vector<int64_t>> input_shapes;
  /// Threads for intra-op parallelism (LibTorch and oneDNN share one OpenMP pool); 0 keeps the current setting.
  int threads = 0;
  /// "float32"; "bfloat16" and "int8" are refused with the reason where a backend cannot run them.
  std::string dtype = "float32";
  /// Fold batch norms into convolutions and drop dropouts before compiling (what inference deployment does).
  bool fold = true;
  /// Caps the x86 ISA of CPU kernels ("avx2", "avx512_core_vnni", ...; see isa.hpp) before compiling; empty: the
  /// level in force. The cap is process-wide and fixed once the first oneDNN kernel exists.
  std::string isa;
  /// Lower only as far as listing kernels(): the executable reports the kernels, weight_bytes() and
  /// peak_activation_bytes() a full compile would, but makes no code and reorders no weights, and cannot run
  /// (onednn-cpu: 1.3-3x faster to compile; the latency model's detect_kernels uses it). Backends whose
  /// compile is cheap ignore it and compile in full.
  bool kernels_only = false;
};

/// The time of one step of a run. A step is one graph node, or an anchor node with the nodes fused into it.
struct StepTime {
  std::string node;
  std::string kind;
  std::vector<std::string> fused;  ///< other graph nodes this step computes (post-ops, reorders are not nodes)
  double seconds = 0;
};

class Executable {
 public:
  virtual ~Executable() = default;
  virtual std::string backend() const = 0;
  virtual c10::Device device() const = 0;
  /// Runs on inputs of the compiled shapes (CPU tensors are moved to the device); outputs stay on the device.
  /// One output is returned as itself, several as a tuple.
  virtual c10::IValue run(const std::vector<c10::IValue>& inputs) = 0;
  /// Runs once, timing each step (device work is synchronized per step, so this is slower than run()).
  virtual c10::IValue run_timed(const std::vector<c10::IValue>& inputs, std::vector<StepTime>& steps) = 0;
  /// Waits for queued device work; CUDA timings call this before reading the clock.
  virtual void synchronize() {}
  /// Most bytes of activations alive at once during the last run_timed() (or as planned), weights excluded.
  virtual int64_t peak_activation_bytes() const = 0;
  /// Bytes of the weights as the executable holds them (after any reordering or packing).
  virtual int64_t weight_bytes() const = 0;
  /// What was lowered, fused and left to fallbacks, for logs and `tailor profile`.
  virtual std::string summary() const = 0;
  /// The kernels run() executes, one per step of run_timed() and in its order (what the latency model reads).
  virtual std::vector<Kernel> kernels() const = 0;
  const CompileOptions& options() const { return options_; }

 protected:
  CompileOptions options_;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  /// Empty when the backend can run here; otherwise why not (no CUDA device, built without oneDNN).
  virtual std::string unavailable_reason() const = 0;
  bool available() const { return unavailable_reason().empty(); }
  /// Compiles a snapshot of the module (its graph and current weights). Throws tailor::Error naming the node and
  /// the backend when a node or dtype cannot be run.
  virtual std::unique_ptr<Executable> compile(const GraphModuleImpl& module, const CompileOptions& options) const = 0;
};

/// Every backend this build knows, available here or not: onednn-cpu, libtorch-cpu, libtorch-cuda.
std::vector<std::string> backend_names();
/// The backend with this name; throws listing the valid names. Does not check availability.
std::unique_ptr<Backend> make_backend(const std::string& name);
/// Compiles with the named backend, failing with the backend's reason when it is unavailable here.
std::unique_ptr<Executable> compile(const std::string& backend, const GraphModuleImpl& module,
                                    const CompileOptions& options);

/// Sets the intra-op thread count LibTorch and oneDNN use (n > 0).
void set_threads(int n);
int get_threads();

namespace detail {
/// A copy of the module sharing its tensors, with shapes inferred for `options` and, when asked, batch norms
/// folded and dropouts removed: what every backend compiles from.
std::shared_ptr<GraphModuleImpl> prepare_for_inference(const GraphModuleImpl& module, const CompileOptions& options);
}  // namespace detail

}  // namespace tailor
