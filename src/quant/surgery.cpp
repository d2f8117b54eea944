// Graph surgery shared by the quantizers: layers, fake_quant insertion, transactional clones.
#include "tailor/quant/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include <torch/torch.h>

#include "tailor/ir/ops.hpp"
#include "tailor/prune/prune.hpp"
#include "tailor/transforms/transforms.hpp"
#include "tailor/runtime/isa.hpp"
#include "../ir/program.hpp"
#include <unistd.h>
#include "internal.hpp"

namespace tailor::quant {

// ---------------------------------------------------------------------------------------------------------
// Graph surgery

namespace detail {

bool is_layer(const Graph& g, const Node& n) {
  if (n.kind != ops::kConv && n.kind != ops::kLinear) return false;
  const Node* w = g.producer(n.inputs[1]);
  return w && w->kind == ops::kParam;
}

std::vector<int> layer_nodes(const Graph& g) {
  std::vector<int> out;
  for (int id : g.order())
    if (is_layer(g, g.node(id))) out.push_back(id);
  return out;
}

std::string weight_name(const Graph& g, const Node& layer) { return g.producer(layer.inputs[1])->s("name"); }

void check_skip(const Graph& g, const std::vector<std::string>& skip) {
  std::set<std::string> names;
  for (int id : layer_nodes(g)) names.insert(g.node(id).name);
  for (const auto& s : skip) {
    if (names.count(s)) continue;
    std::string valid;
    int shown = 0;
    for (const auto& n : names) {
      if (shown++ == 10) break;
      valid += (valid.empty() ? "" : ", ") + n;
    }
    TAILOR_FAIL("cannot skip '", s, "': it is not a conv or linear layer of this model; layers include: ", valid);
  }
}

// Adds a parameter or buffer and the `param` node reading it, placed before node `before`.
int add_param(GraphModuleImpl& m, const std::string& name, const torch::Tensor& t, bool buffer, int before) {
  m.add_tensor(name, t, buffer);
  Graph& g = m.mutable_graph();
  Node p;
  p.kind = ops::kParam;
  p.name = g.unique_name(name);
  p.attrs["name"] = name;
  p.attrs["buffer"] = buffer;
  const int id = g.add_node(std::move(p), {ValueType::Tensor}, before);
  Value& v = g.value(g.node(id).outputs[0]);
  v.shape = t.sizes().vec();
  v.dtype = t.scalar_type() == torch::kInt ? "int32" : "float32";
  return g.node(id).outputs[0];
}

std::string free_tensor_name(const GraphModuleImpl& m, const std::string& base) {
  if (!m.has_tensor(base + ".scale")) return base;
  for (int k = 1;; ++k)
    if (!m.has_tensor(base + "_" + std::to_string(k) + ".scale")) return base + "_" + std::to_string(k);
}

// Inserts `fake_quant(value)` before node `before` and returns the new value. Tensors are named
// `<base>.scale` and `<base>.zero_point`.
int insert_fake_quant(GraphModuleImpl& m, int value, const QParams& qp, const std::string& base, bool learnable,
                      int before) {
  const std::string tname = free_tensor_name(m, base);
  const int s = add_param(m, tname + ".scale", qp.scale.to(torch::kFloat).contiguous(), !learnable, before);
  const int z = add_param(m, tname + ".zero_point", qp.zero_point.to(torch::kInt).contiguous(), true, before);
  Graph& g = m.mutable_graph();
  Node n;
  n.kind = ops::kFakeQuant;
  n.name = g.unique_name(base);
  n.inputs = {value, s, z};
  n.attrs["qmin"] = qp.qmin;
  n.attrs["qmax"] = qp.qmax;
  n.attrs["axis"] = qp.axis;
  n.attrs["group_size"] = qp.group_size;
  n.attrs["learnable"] = learnable;
  const int id = g.add_node(std::move(n), {ValueType::Tensor}, before);
  const int out = g.node(id).outputs[0];
  g.value(out).shape = g.value(value).shape;
  g.value(out).dtype = g.value(value).dtype;
  return out;
}

void adopt(GraphModuleImpl& dst, GraphModuleImpl& src) { assign_module(dst, src); }

GraphModule prepared_clone(const GraphModuleImpl& module) {
  for (int id : module.graph().order())
    TAILOR_CHECK(module.graph().node(id).kind != ops::kFakeQuant, "the model is already quantized (node '",
                 module.graph().node(id).name, "'); strip_fake_quant() first to quantize it again");
  GraphModule work = clone_module(module);
  work->eval();
  fold_batch_norm(*work);
  remove_dropout(*work);
  eliminate_dead_code(work->mutable_graph());
  work->drop_unused_tensors();
  work->recompile();
  return work;
}

void check_calibration(const std::vector<torch::Tensor>& calibration, const char* what) {
  TAILOR_CHECK(!calibration.empty(), what, " needs calibration data: the calibration set is empty");
  for (size_t i = 0; i < calibration.size(); ++i) {
    TAILOR_CHECK(calibration[i].defined() && calibration[i].numel() > 0, what, ": calibration batch ", i, " is empty");
    TAILOR_CHECK(torch::isfinite(calibration[i]).all().item<bool>(), what, ": calibration batch ", i,
                 " contains NaN or Inf");
  }
}

void progress_line(bool on, const char* what, size_t done, size_t total) {
  if (!on) return;
  // A counter that redraws itself on a terminal; in a log file only the final count.
  static const bool tty = isatty(2) != 0;
  if (!tty && done != total) return;
  std::fprintf(stderr, "%s%s %zu/%zu", tty ? "\r" : "", what, done, total);
  if (done == total) std::fprintf(stderr, "\n");
  std::fflush(stderr);
}

double relative_error(const torch::Tensor& a, const torch::Tensor& ref) {
  const double n = ref.norm().item<double>();
  return n > 0 ? (a - ref).norm().item<double>() / n : (a - ref).norm().item<double>();
}

// Adds a zero bias to a layer without one, so bias correction has something to correct.
void ensure_bias(GraphModuleImpl& m, int layer) {
  Graph& g = m.mutable_graph();
  const Node* b = g.producer(g.node(layer).inputs[2]);
  if (b && b->kind == ops::kParam) return;
  const std::string wname = weight_name(g, g.node(layer));
  const std::string prefix = wname.substr(0, wname.rfind('.') == std::string::npos ? 0 : wname.rfind('.') + 1);
  std::string name = prefix + "bias";
  for (int k = 1; m.has_tensor(name); ++k) name = prefix + "bias_" + std::to_string(k);
  const int64_t channels = m.tensor(wname).size(0);
  const int v = add_param(m, name, torch::zeros({channels}), false, layer);
  g.node(layer).inputs[2] = v;
}

}  // namespace detail

}  // namespace tailor::quant
