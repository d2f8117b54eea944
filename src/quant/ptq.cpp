// Post-training static int8 and QAT preparation: calibrate, insert fake_quant, bias correction.
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
#include "internal.hpp"

namespace tailor::quant {

using namespace detail;

namespace {

QuantReport quantize_static_impl(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                                 const PtqOptions& o, bool learnable) {
  check_calibration(calibration, "post-training quantization");
  check_skip(module.graph(), o.skip);
  TAILOR_CHECK(o.weight_method == "minmax" || o.weight_method == "mse", "weight_method '", o.weight_method,
               "' is not one of: minmax, mse");
  Observer probe(o.activations, o.observer);  // validates the observer options before any work
  (void)probe;
  torch::NoGradGuard no_grad;
  GraphModule work = prepared_clone(module);
  QuantReport report;
  report.scheme = "w:" + o.weights.str() + " a:" + o.activations.str() + " (" + o.observer.kind + ")";
  if (o.equalize) report.equalized_pairs = equalize_cross_layer(*work);
  GraphModule reference = o.bias_correction ? clone_module(*work) : GraphModule(nullptr);

  const Graph& g = work->graph();
  const std::set<std::string> skip(o.skip.begin(), o.skip.end());
  std::vector<int> layers;
  std::vector<int> values;  // distinct input values to observe
  std::map<int, Observer> observers;
  for (int id : layer_nodes(g)) {
    if (skip.count(g.node(id).name)) {
      report.layers.push_back({g.node(id).name, g.node(id).kind, "float", "float", 0, 0, 0, "skipped"});
      continue;
    }
    layers.push_back(id);
    const int v = g.node(id).inputs[0];
    if (!observers.count(v)) {
      ObserverOptions oo = o.observer;
      oo.seed = o.observer.seed + static_cast<uint64_t>(v);
      observers.emplace(v, Observer(o.activations, oo));
      values.push_back(v);
    }
  }
  TAILOR_CHECK(!layers.empty(), "post-training quantization: the model has no conv or linear layer to quantize");
  for (size_t b = 0; b < calibration.size(); ++b) {
    auto tapped = work->run_with_value_taps({calibration[b]}, values).second;
    for (int v : values) {
      const Node* p = g.producer(v);
      observers.at(v).observe(tapped.at(v), p ? p->name : g.value(v).name);
    }
    progress_line(o.progress, "calibrating", b + 1, calibration.size());
  }
  report.calibration_batches = static_cast<int64_t>(calibration.size());

  std::map<int, int> quantized_value;
  std::map<std::string, int> quantized_weight;
  for (int id : layers) {
    const std::string name = work->graph().node(id).name;
    LayerQuant lq;
    lq.layer = name;
    lq.kind = work->graph().node(id).kind;
    const int v = work->graph().node(id).inputs[0];
    const Observer& ob = observers.at(v);
    if (!quantized_value.count(v))
      quantized_value[v] = insert_fake_quant(*work, v, ob.qparams(), name + ".input_quant", learnable, id);
    work->mutable_graph().node(id).inputs[0] = quantized_value[v];
    lq.activation = o.activations.str();
    lq.input_min = ob.min();
    lq.input_max = ob.max();
    const std::string wname = weight_name(work->graph(), work->graph().node(id));
    const torch::Tensor w = work->tensor(wname);
    const QParams wq = weight_qparams(w, o.weights, o.weight_method);
    if (!quantized_weight.count(wname))
      quantized_weight[wname] = insert_fake_quant(*work, work->graph().node(id).inputs[1], wq, name + ".weight_quant",
                                                  learnable, id);
    work->mutable_graph().node(id).inputs[1] = quantized_weight[wname];
    lq.weight = o.weights.str();
    lq.weight_error = relative_error(fake_quantize(w, wq), w);
    report.layers.push_back(lq);
  }
  work->recompile();

  if (o.bias_correction) {
    // Empirical bias correction: the quantized layer's mean output per channel is moved back to the float
    // layer's, measured on the calibration batches with everything upstream quantized.
    for (int id : layers) ensure_bias(*work, id);
    work->recompile();
    std::vector<int> outs;
    for (int id : layers) outs.push_back(work->graph().node(id).outputs[0]);
    std::map<int, torch::Tensor> shift;
    const size_t n = std::min<size_t>(calibration.size(), 16);
    for (size_t b = 0; b < n; ++b) {
      auto fq = work->run_with_value_taps({calibration[b]}, outs).second;
      auto fp = reference->run_with_value_taps({calibration[b]}, outs).second;
      for (int v : outs) {
        const torch::Tensor diff = fq.at(v) - fp.at(v);
        std::vector<int64_t> dims;
        for (int64_t d = 0; d < diff.dim(); ++d)
          if (d != (diff.dim() > 2 ? 1 : diff.dim() - 1)) dims.push_back(d);
        const torch::Tensor m = diff.mean(dims);
        shift[v] = shift.count(v) ? shift[v] + m : m;
      }
      progress_line(o.progress, "bias correction", b + 1, n);
    }
    for (int id : layers) {
      const Node& layer = work->graph().node(id);
      const std::string bname = work->graph().producer(layer.inputs[2])->s("name");
      work->tensor(bname).sub_(shift.at(layer.outputs[0]) / static_cast<double>(n));
      ++report.bias_corrected;
    }
  }
  adopt(module, *work);
  return report;
}

}  // namespace

std::vector<std::string> quantizable_layers(const GraphModuleImpl& module) {
  std::vector<std::string> out;
  for (int id : layer_nodes(module.graph())) out.push_back(module.graph().node(id).name);
  return out;
}

QuantReport quantize_static(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                            const PtqOptions& options) {
  return quantize_static_impl(module, calibration, options, false);
}

QuantReport prepare_qat(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                        const QatOptions& options) {
  QuantReport r = quantize_static_impl(module, calibration, options.ptq, options.learnable);
  r.scheme += options.learnable ? ", QAT (LSQ learnable scales)" : ", QAT (fixed scales, straight-through)";
  return r;
}

int64_t strip_fake_quant(GraphModuleImpl& module) {
  Graph& g = module.mutable_graph();
  int64_t removed = 0;
  const std::vector<int> order = g.order();
  for (int id : order) {
    if (!g.alive(id) || g.node(id).kind != ops::kFakeQuant) continue;
    g.replace_all_uses(g.node(id).outputs[0], g.node(id).inputs[0]);
    g.remove_node(id);
    ++removed;
  }
  if (removed) {
    eliminate_dead_code(g);
    module.drop_unused_tensors();
    module.recompile();
  }
  return removed;
}

}  // namespace tailor::quant
