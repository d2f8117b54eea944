// What the quantizers share (private to src/quant): graph surgery on conv/linear layers, transactional clones,
// and the weight-only driver that mixed precision reuses.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "tailor/quant/quant.hpp"

namespace tailor::quant::detail {

/// A conv or linear node whose weight is a `param` (what the quantizers quantize).
bool is_layer(const Graph& g, const Node& n);
std::vector<int> layer_nodes(const Graph& g);
std::string weight_name(const Graph& g, const Node& layer);
/// Fails naming the first `skip` entry that is not a layer of `g`.
void check_skip(const Graph& g, const std::vector<std::string>& skip);
/// Adds a parameter or buffer and the `param` node reading it, placed before node `before`.
int add_param(GraphModuleImpl& m, const std::string& name, const torch::Tensor& t, bool buffer, int before);
std::string free_tensor_name(const GraphModuleImpl& m, const std::string& base);
/// Inserts `fake_quant(value)` before node `before` and returns the new value (tensors `<base>.scale`,
/// `<base>.zero_point`).
int insert_fake_quant(GraphModuleImpl& m, int value, const QParams& qp, const std::string& base, bool learnable,
                      int before);
/// Copies a successfully transformed clone back into the caller's module (so failures leave it untouched).
void adopt(GraphModuleImpl& dst, GraphModuleImpl& src);
/// A copy with batch norm folded and dropout removed, to transform and then adopt.
GraphModule prepared_clone(const GraphModuleImpl& module);
void check_calibration(const std::vector<torch::Tensor>& calibration, const char* what);
void progress_line(bool on, const char* what, size_t done, size_t total);
double relative_error(const torch::Tensor& a, const torch::Tensor& ref);
/// Adds a zero bias to a layer without one, so bias correction has something to correct.
void ensure_bias(GraphModuleImpl& m, int layer);

/// What one layer gets in weight-only quantization; bits 0 keeps it float.
struct LayerPlan {
  int bits = 0;
  int64_t group_size = 0;
  bool symmetric = false;
};
/// Quantizes the weights of `work` layer by layer as `plan_of` says (GPTQ when `o.method` is gptq).
void quantize_weights_impl(GraphModuleImpl& work, const std::vector<torch::Tensor>& calibration,
                           const WeightOnlyOptions& o, const std::function<LayerPlan(const std::string&)>& plan_of,
                           QuantReport& report);

}  // namespace tailor::quant::detail
