// Mixed precision: per-layer sensitivity and the cheapest precision per layer under a budget.
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

// ---------------------------------------------------------------------------------------------------------
// Mixed precision

namespace {

int precision_bits(const std::string& p) {
  if (p == "int8") return 8;
  if (p == "int4") return 4;
  if (p == "fp32") return 32;
  TAILOR_FAIL("unknown precision '", p, "'; valid: fp32, int8, int4");
}

int64_t precision_bytes(const std::string& p, int64_t elements, int64_t rows, int64_t group) {
  const int bits = precision_bits(p);
  if (bits == 32) return elements * 4;
  const int64_t scales = bits == 4 && group > 0 ? elements / group : rows;
  return (elements * bits + 7) / 8 + scales * 8;  // float32 scale + int32 zero point each
}

}  // namespace

std::vector<LayerSensitivity> layer_sensitivity(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                                                const std::vector<std::string>& precisions) {
  check_calibration(calibration, "sensitivity analysis");
  torch::NoGradGuard no_grad;
  GraphModule base = prepared_clone(module);
  const size_t nb = std::min<size_t>(calibration.size(), 4);
  std::vector<torch::Tensor> reference;
  for (size_t b = 0; b < nb; ++b) reference.push_back(base->forward(calibration[b]));
  std::vector<LayerSensitivity> out;
  for (const auto& name : quantizable_layers(*base)) {
    LayerSensitivity s;
    s.layer = name;
    s.weight_elements = base->tensor(weight_name(base->graph(), *base->graph().find(name))).numel();
    for (const auto& p : precisions) {
      const int bits = precision_bits(p);
      if (bits == 32) {
        s.error[p] = 0;
        continue;
      }
      GraphModule copy = clone_module(*base);
      WeightOnlyOptions wo;
      wo.bits = bits;
      for (const auto& other : quantizable_layers(*base))
        if (other != name) wo.skip.push_back(other);
      quantize_weights(*copy, {}, wo);
      double err = 0;
      for (size_t b = 0; b < nb; ++b) err += relative_error(copy->forward(calibration[b]), reference[b]);
      s.error[p] = err / static_cast<double>(nb);
    }
    out.push_back(s);
  }
  return out;
}

std::map<std::string, std::string> choose_mixed_precision(const std::vector<LayerSensitivity>& sensitivity,
                                                          int64_t max_weight_bytes, int64_t group_size) {
  std::map<std::string, std::string> choice;
  int64_t total = 0;
  for (const auto& s : sensitivity) {
    choice[s.layer] = "fp32";
    total += precision_bytes("fp32", s.weight_elements, 1, group_size);
  }
  const std::vector<std::string> ladder = {"fp32", "int8", "int4"};
  while (total > max_weight_bytes) {
    double best = std::numeric_limits<double>::infinity();
    const LayerSensitivity* pick = nullptr;
    std::string next;
    int64_t saved_best = 0;
    for (const auto& s : sensitivity) {
      const std::string& cur = choice[s.layer];
      const auto pos = std::find(ladder.begin(), ladder.end(), cur) - ladder.begin();
      if (pos + 1 >= static_cast<long>(ladder.size())) continue;
      const std::string& nxt = ladder[static_cast<size_t>(pos + 1)];
      if (!s.error.count(nxt)) continue;
      const int64_t rows = std::max<int64_t>(1, s.weight_elements / 512);  // only the scale overhead depends on rows
      const int64_t saved = precision_bytes(cur, s.weight_elements, rows, group_size) -
                            precision_bytes(nxt, s.weight_elements, rows, group_size);
      if (saved <= 0) continue;
      const double cost = (s.error.at(nxt) - (s.error.count(cur) ? s.error.at(cur) : 0.0) + 1e-12) / static_cast<double>(saved);
      if (cost < best) {
        best = cost;
        pick = &s;
        next = nxt;
        saved_best = saved;
      }
    }
    TAILOR_CHECK(pick, "mixed precision: even int4 everywhere needs ", total, " bytes, over the budget of ",
                 max_weight_bytes);
    choice[pick->layer] = next;
    total -= saved_best;
  }
  return choice;
}

QuantReport apply_mixed_precision(GraphModuleImpl& module, const std::map<std::string, std::string>& choice,
                                  int64_t group_size) {
  const auto layers = quantizable_layers(module);
  for (const auto& [layer, p] : choice) {
    precision_bits(p);
    TAILOR_CHECK(std::find(layers.begin(), layers.end(), layer) != layers.end(), "mixed precision: '", layer,
                 "' is not a conv or linear layer of this model");
  }
  torch::NoGradGuard no_grad;
  GraphModule work = prepared_clone(module);
  QuantReport report;
  report.scheme = "mixed precision (weight-only, round to nearest)";
  WeightOnlyOptions o;
  quantize_weights_impl(*work, {}, o, [&](const std::string& name) {
    const auto it = choice.find(name);
    const int bits = it == choice.end() ? 32 : precision_bits(it->second);
    if (bits == 8) return LayerPlan{8, 0, true};
    if (bits == 4) return LayerPlan{4, group_size, false};
    return LayerPlan{};
  }, report);
  adopt(module, *work);
  return report;
}

}  // namespace tailor::quant
