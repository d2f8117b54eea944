// Targets, preparing and measuring models for a latency table, and the workloads tables are built from.
#include <chrono>
#include <random>

#include <torch/torch.h>

#include "internal.hpp"
#include "tailor/core/build_info.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/models/space.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/profile/profiler.hpp"
#include "tailor/prune/prune.hpp"
#include "tailor/quant/quant.hpp"
#include "tailor/runtime/isa.hpp"

namespace tailor::latency {

int lowering_revision(const std::string& backend) { return backend == "onednn-cpu" ? 2 : 1; }

Target Target::here(const std::string& backend, int threads, const std::string& dtype, const std::string& isa_cap) {
  TAILOR_CHECK(threads > 0, "latency target: threads must be positive, got ", threads);
  TAILOR_CHECK(dtype == "float32" || dtype == "int8", "latency target: dtype must be float32 or int8, got '", dtype, "'");
  TAILOR_CHECK(dtype != "int8" || backend == "onednn-cpu",
               "latency target: int8 variants run as int8 on onednn-cpu only; backend '", backend, "' runs them as fake-quant");
  const bool cuda = backend == "libtorch-cuda";
  auto b = make_backend(backend);  // unknown names fail listing the backends
  if (!isa_cap.empty() && !cuda) set_isa_cap(isa_cap);
  static const MachineInfo machine = MachineInfo::detect();
  Target t;
  t.backend = backend;
  t.threads = threads;
  t.dtype = dtype;
  t.isa = cuda ? "" : effective_isa();
  t.cpu_model = machine.cpu_model;
  t.gpu = cuda ? "cuda:0" : "";
  t.torch_version = machine.torch_version;
  t.onednn_version = machine.onednn_version;
  t.lowering = lowering_revision(backend);
  return t;
}

GraphModule prepare_for_target(GraphModule module, const std::vector<int64_t>& input_shape, const Target& target,
                               uint64_t seed) {
  if (target.dtype != "int8") return module;
  for (int id : module->graph().order())
    if (module->graph().node(id).kind == ops::kFakeQuant) return module;  // quantized already
  GraphModule q = clone_module(*module);
  auto gen = at::detail::createCPUGenerator(seed);
  std::vector<torch::Tensor> calibration;
  for (int i = 0; i < 2; ++i) calibration.push_back(torch::randn(input_shape, gen));
  quant::quantize_static(*q, calibration);
  return q;
}


Reference Reference::compile_for(const Target& target, const std::string& architecture) {
  const models::ArchConfig config = models::ArchConfig::parse(architecture);
  const std::vector<int64_t> shape = config.input_shape(3);
  GraphModule module = prepare_for_target(models::capture_arch(config, {}), shape, target, 7);
  Reference r;
  r.architecture = architecture;
  r.executable = compile(target.backend, *module, compile_options(shape, target));
  r.inputs = random_inputs(shape, 7);
  for (int i = 0; i < 3; ++i) r.executable->run(r.inputs);
  r.executable->synchronize();
  return r;
}

double Reference::time_ms(int runs) {
  // Untimed runs first: right after another model the reference's weights are out of cache, and its first run
  // would measure that model's footprint rather than the machine.
  ProfileOptions o;
  o.warmup = 2;
  o.min_runs = o.max_runs = runs;
  return time_executable(*executable, inputs, o).p50_ms;
}

KernelList kernels_of(const Executable& exe) {
  return {exe.kernels(), static_cast<double>(exe.weight_bytes() + exe.peak_activation_bytes())};
}

KernelList detect_kernels(const GraphModuleImpl& module, const std::vector<int64_t>& input_shape, const Target& target) {
  CompileOptions options = compile_options(input_shape, target);
  options.kernels_only = true;
  return kernels_of(*compile(target.backend, module, options));
}

std::pair<ModelSample, std::vector<KernelSample>> measure(Executable& exe, const std::vector<int64_t>& input_shape,
                                                          const MeasureOptions& o) {
  TAILOR_CHECK(o.rounds > 0 && o.kernel_runs > 0 && o.model_runs > 0, "latency measurement: rounds and runs must be positive");
  const auto inputs = random_inputs(input_shape, o.seed);
  // The reference brackets the measurement rather than joining its rounds: run between them it slows the
  // model's per-kernel runs that follow (measured: +35-50% on the kernel sum of a 0.4 ms model).
  std::vector<double> reference;
  if (o.reference) reference.push_back(o.reference->time_ms());
  for (int i = 0; i < o.warmup; ++i) exe.run(inputs);
  exe.synchronize();
  std::vector<std::vector<double>> per_kernel;
  std::vector<double> end_to_end;
  std::vector<StepTime> steps;
  for (int r = 0; r < o.rounds; ++r) {
    for (int i = 0; i < o.kernel_runs; ++i) {
      exe.run_timed(inputs, steps);
      if (per_kernel.empty()) per_kernel.resize(steps.size());
      TAILOR_INTERNAL_ASSERT(steps.size() == per_kernel.size(), "run_timed gave a different number of steps");
      for (size_t s = 0; s < steps.size(); ++s) per_kernel[s].push_back(steps[s].seconds * 1e3);
    }
    for (int i = 0; i < o.model_runs; ++i) {
      exe.synchronize();
      const auto t0 = std::chrono::steady_clock::now();
      exe.run(inputs);
      exe.synchronize();
      end_to_end.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  if (o.reference) reference.push_back(o.reference->time_ms());
  const KernelList list = kernels_of(exe);
  const std::vector<Kernel>& kernels = list.kernels;
  TAILOR_INTERNAL_ASSERT(kernels.size() == per_kernel.size(), exe.backend(), " lists ", kernels.size(),
                         " kernels but run_timed() timed ", per_kernel.size(), " steps");
  ModelSample m;
  m.p50_ms = detail::median(end_to_end);
  m.reference_ms = detail::median(reference);
  m.kernels = static_cast<int>(kernels.size());
  std::vector<KernelSample> samples;
  for (size_t s = 0; s < kernels.size(); ++s) {
    samples.push_back({kernels[s], detail::median(per_kernel[s]), list.working_set_bytes});
    m.kernel_sum_ms += samples.back().ms;
    m.macs += kernels[s].macs;
  }
  return {m, samples};
}

namespace {

// Model files load once per process; every draw prunes a copy.
const GraphModule& loaded(const std::string& file) {
  static std::map<std::string, GraphModule> cache;
  auto it = cache.find(file);
  if (it == cache.end()) it = cache.emplace(file, models::load_model(file)).first;
  return it->second;
}

}  // namespace

WorkloadItem draw(const Workload& w, uint64_t seed, int64_t index, const std::string* parent) {
  const size_t sources = w.spaces.size() + w.models.size();
  TAILOR_CHECK(sources > 0, "latency workload: give at least one search space or model");
  std::mt19937_64 rng(seed * 1000003ULL + static_cast<uint64_t>(index));
  if (parent && parent->find('@') != std::string::npos) {
    const models::ArchConfig p = models::ArchConfig::parse(*parent);
    for (const std::string& name : w.spaces) {
      const models::SearchSpace space = models::SearchSpace::named(name);
      if (!space.contains(p)) continue;
      const models::ArchConfig a = space.mutate(p, rng);
      return {a.str(), models::capture_arch(a, space.zoo_options(static_cast<uint64_t>(index))),
              a.input_shape(space.in_channels)};
    }
  }
  const size_t source = static_cast<size_t>(index) % sources;
  if (source < w.spaces.size()) {
    const models::SearchSpace space = models::SearchSpace::named(w.spaces[source]);
    const models::ArchConfig a = space.sample(rng);
    return {a.str(), models::capture_arch(a, space.zoo_options(static_cast<uint64_t>(index))),
            a.input_shape(space.in_channels)};
  }
  const std::string& file = w.models[source - w.spaces.size()];
  GraphModule m = clone_module(*loaded(file));
  std::string name = file;
  ChannelPruneOptions o;
  o.round_to = std::bernoulli_distribution(0.5)(rng) ? 8 : 1;
  // Half the variants cut every channel group alike, half each group by its own ratio: NetAdapt and
  // sensitivity-based pruning leave unbalanced networks, and a table that saw only uniform cuts predicted
  // those 25-30% fast (a stage cut to a few channels runs other kernels than its neighbours expect).
  if (std::bernoulli_distribution(0.5)(rng)) {
    o.ratio = 0;
    std::string ratios;
    for (const ChannelGroup& g : channel_groups(*m, {w.model_input})) {
      if (!g.prunable) continue;
      const int step = std::uniform_int_distribution<int>(0, 18)(rng);
      o.layer_ratios[g.producers.front()] = 0.05 * step;
      ratios += (ratios.empty() ? "" : ",") + std::to_string(5 * step);
    }
    prune_channels(*m, {w.model_input}, o);
    name += " pruned per group " + ratios + "% round " + std::to_string(o.round_to);
  } else {
    o.ratio = 0.05 * std::uniform_int_distribution<int>(0, 14)(rng);
    if (o.ratio > 0) {
      prune_channels(*m, {w.model_input}, o);
      name += " pruned " + std::to_string(o.ratio).substr(0, 4) + " round " + std::to_string(o.round_to);
    }
  }
  return {name, m, w.model_input};
}

}  // namespace tailor::latency
