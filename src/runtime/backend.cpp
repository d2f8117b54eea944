// The backend registry and the LibTorch backends (CPU and CUDA): the graph run node by node with ATen, as
// GraphModule runs it, under inference mode.
#include "tailor/runtime/backend.hpp"

#include <chrono>
#include <unordered_set>

#include <torch/cuda.h>
#include <torch/torch.h>

#include "../ir/program.hpp"
#include "backends.hpp"
#include "tailor/ir/op_table.hpp"
#include "tailor/ir/ops.hpp"
#include "tailor/runtime/isa.hpp"
#include "tailor/transforms/transforms.hpp"

namespace tailor {

void set_threads(int n) {
  TAILOR_CHECK(n > 0, "thread count must be positive, got ", n);
  at::set_num_threads(n);
}

int get_threads() { return at::get_num_threads(); }

namespace detail {

std::shared_ptr<GraphModuleImpl> prepare_for_inference(const GraphModuleImpl& module, const CompileOptions& options) {
  // detach(): new tensor objects over the same storage, so folding replaces the copy's weights, not the user's.
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [name, t] : module.tensors()) tensors[name] = t.detach();
  auto copy = std::make_shared<GraphModuleImpl>(module.graph(), tensors, module.buffer_names());
  copy->eval();
  if (options.fold) {
    torch::NoGradGuard no_grad;
    fold_batch_norm(*copy);
    remove_dropout(*copy);
  }
  TAILOR_CHECK(!options.input_shapes.empty() || copy->graph().inputs().empty(),
               "compiling needs the input shapes (e.g. 1x3x224x224)");
  copy->infer_shapes(options.input_shapes);
  return copy;
}

int64_t storage_bytes(const torch::Tensor& t) { return static_cast<int64_t>(t.storage().nbytes()); }

namespace {
// A value known at compile time: a parameter or constant, or a fake_quant of one (a quantized weight).
bool is_weight_value(const Graph& g, int v) {
  const int p = g.value(v).producer;
  if (p < 0) return false;
  const Node& n = g.node(p);
  if (n.kind == ops::kParam) return true;
  return n.kind == ops::kFakeQuant && !n.inputs.empty() && g.value(n.inputs[0]).producer >= 0 &&
         g.node(g.value(n.inputs[0]).producer).kind == ops::kParam;
}
double elements(const std::vector<int64_t>& shape) {
  double e = 1;
  for (int64_t d : shape) e *= static_cast<double>(d);
  return e;
}
}  // namespace

Kernel graph_kernel(const Graph& g, const Node& n) {
  Kernel k;
  k.node = n.name;
  k.kind = n.kind == ops::kOpaque ? n.s("schema") : n.kind;
  k.op = "aten";
  k.impl = "aten";
  k.dtype = "f32";
  k.layout = "plain";
  double bytes = 0;
  for (int v : n.inputs) {
    const Value& value = g.value(v);
    if (value.type != ValueType::Tensor) continue;
    if (is_weight_value(g, v)) {
      if (k.weight.empty() && value.shape.size() >= 2) k.weight = value.shape;
    } else {
      k.inputs.push_back(value.shape);
    }
    bytes += 4 * elements(value.shape);
  }
  if (!n.outputs.empty() && g.value(n.outputs[0]).type == ValueType::Tensor) {
    k.output = g.value(n.outputs[0]).shape;
    bytes += 4 * elements(k.output);
  }
  auto ints = [&](const char* key, std::vector<int64_t>& out) {
    if (n.has(key) && std::holds_alternative<std::vector<int64_t>>(n.attr(key))) out = n.ints(key);
  };
  ints("stride", k.stride);
  ints("padding", k.padding);
  ints("dilation", k.dilation);
  if (n.has("groups") && std::holds_alternative<int64_t>(n.attr("groups"))) k.groups = n.i("groups");
  try {
    k.macs = static_cast<double>(ops::op_def(n.kind).macs(g, n));
  } catch (const std::exception&) {
    k.macs = 0;  // a node whose shapes are unknown does no countable work
  }
  k.bytes = bytes;
  return k;
}

}  // namespace detail

namespace {

// Runs the graph with ATen on one device. Activation memory is measured in run_timed() as the bytes of the
// distinct storages alive after each node, weights excluded.
class LibTorchExecutable final : public Executable {
 public:
  LibTorchExecutable(std::shared_ptr<GraphModuleImpl> module, const CompileOptions& options, c10::Device device,
                     std::string name)
      : module_(std::move(module)), device_(device), name_(std::move(name)) {
    options_ = options;
    module_->to(device_);
    program_ = detail::build_program(module_->graph(), [this](const std::string& n) { return module_->tensor(n); });
    for (const auto& [n, t] : module_->tensors()) {
      weight_storages_.insert(t.storage().unsafeGetStorageImpl());
      weight_bytes_ += detail::storage_bytes(t);
    }
  }

  std::string backend() const override { return name_; }
  c10::Device device() const override { return device_; }

  c10::IValue run(const std::vector<c10::IValue>& inputs) override {
    c10::InferenceMode guard;
    std::vector<c10::IValue> slots(program_->num_values);
    load_inputs(inputs, slots);
    detail::execute(*program_, slots, false, nullptr);
    return outputs(slots);
  }

  c10::IValue run_timed(const std::vector<c10::IValue>& inputs, std::vector<StepTime>& steps) override {
    c10::InferenceMode guard;
    std::vector<c10::IValue> slots(program_->num_values);
    load_inputs(inputs, slots);
    steps.clear();
    int64_t peak = 0;
    const Graph& g = module_->graph();
    detail::InstrClock clock = [&](const detail::Instr& ins, double) {
      const Node& n = g.node(ins.node);
      if (n.kind == ops::kParam || n.kind == ops::kConstant) return;
      std::unordered_set<const c10::StorageImpl*> seen;
      int64_t live = 0;
      for (const auto& v : slots) {
        if (!v.isTensor()) continue;
        const auto& t = v.toTensor();
        if (!t.defined() || !t.has_storage()) continue;
        const auto* s = t.storage().unsafeGetStorageImpl();
        if (weight_storages_.count(s) || !seen.insert(s).second) continue;
        live += static_cast<int64_t>(s->nbytes());
      }
      peak = std::max(peak, live);
    };
    // Time each instruction with the device synchronized around it; the clock above only samples memory.
    torch::jit::Stack stack;
    for (const auto& ins : program_->instrs) {
      synchronize();
      const auto start = std::chrono::steady_clock::now();
      detail::execute_instr(ins, slots, false, stack);
      synchronize();
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      clock(ins, seconds);
      const Node& n = g.node(ins.node);
      if (n.kind != ops::kParam && n.kind != ops::kConstant)
        steps.push_back({n.name, n.kind == ops::kOpaque ? n.s("schema") : n.kind, {}, seconds});
      for (int v : ins.release) slots[v] = c10::IValue();
    }
    peak_ = peak;
    return outputs(slots);
  }

  void synchronize() override {
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  }
  int64_t peak_activation_bytes() const override { return peak_; }
  int64_t weight_bytes() const override { return weight_bytes_; }
  std::string summary() const override {
    return name_ + ": " + std::to_string(program_->instrs.size()) + " nodes run with ATen on " + device_.str();
  }
  std::vector<Kernel> kernels() const override {
    const Graph& g = module_->graph();
    const std::string impl = device_.is_cuda() ? "aten:cuda" : "aten:" + effective_isa();
    std::vector<Kernel> out;
    for (const auto& ins : program_->instrs) {
      const Node& n = g.node(ins.node);
      if (n.kind == ops::kParam || n.kind == ops::kConstant) continue;
      Kernel k = detail::graph_kernel(g, n);
      k.op = n.kind == ops::kOpaque ? "aten" : n.kind;
      k.impl = impl;
      out.push_back(std::move(k));
    }
    return out;
  }

 private:
  void load_inputs(const std::vector<c10::IValue>& inputs, std::vector<c10::IValue>& slots) const {
    TAILOR_CHECK(inputs.size() == program_->inputs.size(), name_, ": the graph takes ", program_->inputs.size(),
                 " inputs, got ", inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i)
      slots[program_->inputs[i]] = inputs[i].isTensor() ? c10::IValue(inputs[i].toTensor().to(device_)) : inputs[i];
  }
  c10::IValue outputs(std::vector<c10::IValue>& slots) const {
    if (program_->outputs.size() == 1) return slots[program_->outputs[0]];
    std::vector<c10::IValue> outs;
    for (int v : program_->outputs) outs.push_back(slots[v]);
    return c10::ivalue::Tuple::create(std::move(outs));
  }

  std::shared_ptr<GraphModuleImpl> module_;
  std::unique_ptr<detail::Program> program_;
  c10::Device device_;
  std::string name_;
  std::unordered_set<const c10::StorageImpl*> weight_storages_;
  int64_t weight_bytes_ = 0;
  int64_t peak_ = 0;
};

void check_dtype(const std::string& backend, const CompileOptions& options) {
  TAILOR_CHECK(options.dtype == "float32", "backend ", backend, " runs float32 graphs; dtype '", options.dtype,
               "' is not supported (quantized and reduced-precision variants run on onednn-cpu)");
}

class LibTorchBackend final : public Backend {
 public:
  explicit LibTorchBackend(bool cuda) : cuda_(cuda) {}
  std::string name() const override { return cuda_ ? "libtorch-cuda" : "libtorch-cpu"; }
  std::string unavailable_reason() const override {
    if (cuda_ && !torch::cuda::is_available())
      return "no CUDA device is visible to LibTorch (or this LibTorch was built without CUDA)";
    return {};
  }
  std::unique_ptr<Executable> compile(const GraphModuleImpl& module, const CompileOptions& options) const override {
    check_dtype(name(), options);
    const std::string why = unavailable_reason();
    TAILOR_CHECK(why.empty(), "backend ", name(), " is not available: ", why);
    if (options.threads > 0) set_threads(options.threads);
    if (!options.isa.empty() && !cuda_) set_isa_cap(options.isa);
    auto prepared = detail::prepare_for_inference(module, options);
    return std::make_unique<LibTorchExecutable>(prepared, options,
                                                cuda_ ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU), name());
  }

 private:
  bool cuda_;
};

}  // namespace

std::vector<std::string> backend_names() { return {"onednn-cpu", "libtorch-cpu", "libtorch-cuda"}; }

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "libtorch-cpu") return std::make_unique<LibTorchBackend>(false);
  if (name == "libtorch-cuda") return std::make_unique<LibTorchBackend>(true);
  if (name == "onednn-cpu") return detail::make_onednn_backend();
  std::string valid;
  for (const auto& n : backend_names()) valid += (valid.empty() ? "" : ", ") + n;
  TAILOR_FAIL("unknown backend '", name, "'; valid backends: ", valid);
}

std::unique_ptr<Executable> compile(const std::string& backend, const GraphModuleImpl& module,
                                    const CompileOptions& options) {
  auto b = make_backend(backend);
  const std::string why = b->unavailable_reason();
  TAILOR_CHECK(why.empty(), "backend ", backend, " is not available: ", why);
  return b->compile(module, options);
}

}  // namespace tailor
