// tailor/quant/quant.hpp: quantization on the graph IR. Quantization parameters and observers; calibrated
// post-training int8 (with cross-layer equalization and bias correction); quantization-aware training with
// fixed or learnable (LSQ) step sizes; weight-only int8/int4 by round-to-nearest or GPTQ; mixed precision.
// A quantized model is an ordinary GraphModule whose layers read `fake_quant` nodes: it trains in a C++ loop,
// exports to TorchScript that stock PyTorch runs with the same outputs, and carries its scales in the IR.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tailor/ir/graph_module.hpp"
#include "tailor/pass/pass.hpp"

namespace tailor::quant {

/// How values map to integers. Example: `QScheme::weights_int4(128)`.
struct QScheme {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool per_channel = false;   ///< one scale per output channel (axis 0); for weights
  int64_t group_size = 0;     ///< > 0: one scale per `group_size` consecutive weights of a row (implies per-row)
  bool reduce_range = false;  ///< one bit less (PyTorch's reduce_range): exact on int8 CPUs without VNNI too
  int64_t qmin() const;
  int64_t qmax() const;
  /// uint8 affine per-tensor: what activations use (7 bits with `reduce_range`).
  static QScheme activations_u8(bool reduce_range);
  static QScheme weights_int8();  ///< int8 symmetric per channel
  static QScheme weights_int4(int64_t group_size);  ///< int4 asymmetric, group-wise (0: per channel)
  std::string str() const;  ///< e.g. "u8 asym per-tensor", "s4 asym group128"
};

/// True when the ISA in force (the CPU's, or lower when capped: see tailor/runtime/isa.hpp) multiplies int8
/// without the 16-bit saturation of pre-VNNI instructions (so full-range u8 activations are exact).
bool cpu_has_vnni();

/// Scales and zero points for a scheme: scale float32 and zero_point int32, shape [1] per tensor, [C] per
/// channel, [rows * groups] group-wise (rows of the weight viewed as [-1, group_size]).
struct QParams {
  torch::Tensor scale;
  torch::Tensor zero_point;
  int64_t qmin = 0, qmax = 255;
  int64_t axis = -1;        ///< -1: per tensor
  int64_t group_size = 0;
};

/// PyTorch's rule (torch.ao.quantization observers' calculate_qparams): ranges are widened to include 0;
/// symmetric schemes use zero point 0 (128 for unsigned); scales are at least float32 epsilon.
QParams qparams_from_range(const torch::Tensor& min_val, const torch::Tensor& max_val, const QScheme& scheme);
/// Quantization parameters of a weight tensor (axis 0 = output channels). `method` "minmax" or "mse"
/// (per-row search of the clipping range that minimizes the squared error).
QParams weight_qparams(const torch::Tensor& weight, const QScheme& scheme, const std::string& method = "minmax");
/// Integer values (int32 tensor) of `x`, equal to torch.quantize_per_tensor/per_channel(...).int_repr().
torch::Tensor quantize(const torch::Tensor& x, const QParams& qp);
torch::Tensor dequantize(const torch::Tensor& q, const QParams& qp);
/// quantize then dequantize, as the fake_quant node computes it.
torch::Tensor fake_quantize(const torch::Tensor& x, const QParams& qp);

/// Observers choose an activation range from calibration data.
/// minmax: the running min/max. moving-minmax: exponential moving average of each batch's min/max.
/// percentile: the p-th percentile of |x| (both tails). mse: the clipping range with the least squared
/// quantization error. entropy: the range whose quantized histogram has the least KL divergence from the
/// data's (TensorRT's calibration).
struct ObserverOptions {
  std::string kind = "minmax";
  double averaging = 0.01;     ///< moving-minmax: weight of the new batch
  double percentile = 99.99;   ///< percentile: which percentile (of the absolute value... of each tail)
  int64_t bins = 2048;         ///< entropy: histogram bins
  int64_t max_samples = 1 << 18;  ///< percentile/mse/entropy keep a random sample of this many values
  uint64_t seed = 0;
};
/// Valid observer kinds, for help texts and errors.
std::vector<std::string> observer_kinds();

class Observer {
 public:
  Observer(QScheme scheme, ObserverOptions options);
  /// Adds a batch. NaN or Inf values are an error (naming `where` when given).
  void observe(const torch::Tensor& x, const std::string& where = "");
  /// The chosen parameters; an error when nothing was observed.
  QParams qparams() const;
  int64_t batches() const { return batches_; }
  double min() const { return min_; }
  double max() const { return max_; }

 private:
  QScheme scheme_;
  ObserverOptions options_;
  int64_t batches_ = 0;
  double min_ = 0, max_ = 0;
  std::vector<torch::Tensor> samples_;
  int64_t sampled_ = 0;
};

/// One layer's quantization as applied, for reports and cards.
struct LayerQuant {
  std::string layer;
  std::string kind;            ///< conv / linear
  std::string weight;          ///< weight scheme, or "float"
  std::string activation;      ///< input activation scheme, or "float"
  double input_min = 0, input_max = 0;  ///< observed range of the input (activations only)
  double weight_error = 0;     ///< relative L2 error of the quantized weight
  std::string note;            ///< why a layer stayed float, or what was done (e.g. "gptq")
};
struct QuantReport {
  std::vector<LayerQuant> layers;
  int64_t calibration_batches = 0;
  int64_t equalized_pairs = 0;
  int64_t bias_corrected = 0;
  std::string scheme;
  std::string str() const;
  std::string to_json() const;
};

/// Post-training static quantization: int8 weights and uint8 activations at the inputs of every conv and
/// linear layer. Batch norm is folded and dropout removed first.
struct PtqOptions {
  /// 7-bit activations by default: the same variant then runs exactly on every x86 ISA (onednn-cpu requantizes
  /// 8-bit ones to 7 bits when compiled for a CPU without VNNI, which the fake-quant graph does not model).
  QScheme activations = QScheme::activations_u8(true);
  QScheme weights = QScheme::weights_int8();
  ObserverOptions observer;
  std::string weight_method = "minmax";  ///< minmax | mse
  bool equalize = false;         ///< cross-layer equalization before quantizing (depthwise networks)
  bool bias_correction = false;  ///< empirical bias correction from the calibration batches
  std::vector<std::string> skip;  ///< layer names kept in float
  bool progress = false;          ///< a progress line on stderr
};
/// `calibration` holds input batches (at least one). The module is modified only when everything succeeded:
/// bad calibration data (empty, NaN/Inf) or a bad skip name throw with the module untouched.
QuantReport quantize_static(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                            const PtqOptions& options = {});

/// Quantization-aware training: calibrates like quantize_static (scales become the starting point), then
/// makes the fake_quant nodes trainable: with `learnable`, scales are parameters updated by the optimizer
/// (LSQ); otherwise they stay fixed and gradients pass straight through. Train the module as usual.
struct QatOptions {
  PtqOptions ptq;
  bool learnable = true;
};
QuantReport prepare_qat(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                        const QatOptions& options = {});

/// Weight-only quantization of conv and linear weights (activations stay float).
struct WeightOnlyOptions {
  int bits = 4;                 ///< 8 or 4
  /// Weights per scale along a row; 0: per output channel (layers whose row length does not divide fall back to
  /// per channel); -1: the usual choice for `bits` (per channel at 8 bits, 128 below).
  int64_t group_size = -1;
  /// Zero point 0; unset: symmetric at 8 bits, asymmetric below (int4's 16 levels need the offset).
  std::optional<bool> symmetric;
  int64_t resolved_group_size() const { return group_size >= 0 ? group_size : (bits >= 8 ? 0 : 128); }
  bool resolved_symmetric() const { return symmetric.value_or(bits >= 8); }
  std::string method = "rtn";   ///< rtn (round to nearest) | gptq
  double damp = 0.01;           ///< GPTQ: dampening, fraction of the mean Hessian diagonal
  int64_t block = 128;          ///< GPTQ: columns updated lazily per block
  std::vector<std::string> skip;
  bool progress = false;
};
/// `calibration` is needed by GPTQ (layer Hessians from the inputs each layer sees, computed with the layers
/// before it already quantized); round to nearest ignores it.
QuantReport quantize_weights(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                             const WeightOnlyOptions& options = {});

/// Cross-layer equalization (Nagel et al., 2019) on conv->(ReLU)->conv pairs whose middle value has one
/// reader: rescales output channel i of the first and input channel i of the second so both have the same
/// range; the function is unchanged (ReLU6 between them is turned into ReLU when `relu6_to_relu`, as AIMET
/// does, otherwise such pairs are left alone). Batch norm must be folded first. Returns the pairs equalized.
int64_t equalize_cross_layer(GraphModuleImpl& module, bool relu6_to_relu = true, int iterations = 20);

/// Removes every fake_quant node (back to float, keeping the weights as they are).
int64_t strip_fake_quant(GraphModuleImpl& module);

/// The quantizable layers (conv and linear nodes reading a weight parameter), in graph order.
std::vector<std::string> quantizable_layers(const GraphModuleImpl& module);

/// Mixed precision: per-layer sensitivity (the model's output error when only that layer is quantized to each
/// precision), then a choice per layer that fits the budget.
struct LayerSensitivity {
  std::string layer;
  int64_t weight_elements = 0;
  std::map<std::string, double> error;  ///< precision ("int8", "int4") -> relative L2 error of the model output
};
std::vector<LayerSensitivity> layer_sensitivity(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                                                const std::vector<std::string>& precisions = {"int8", "int4"});
/// Chooses per layer "fp32", "int8" or "int4" weights so that weight storage is at most `max_weight_bytes`,
/// lowering the least sensitive layers (sensitivity per byte saved) first. Fails when even all-int4 does not fit.
std::map<std::string, std::string> choose_mixed_precision(const std::vector<LayerSensitivity>& sensitivity,
                                                          int64_t max_weight_bytes, int64_t group_size = 128);
/// Applies a per-layer choice from choose_mixed_precision (weight-only, round to nearest).
QuantReport apply_mixed_precision(GraphModuleImpl& module, const std::map<std::string, std::string>& choice,
                                  int64_t group_size = 128);

namespace detail {
/// Adds quantize-static, quantize-weights, equalize-cross-layer and strip-fake-quant to the pass registry.
void register_quant_passes(const std::function<void(const std::string&, PassFactory)>& add);
}

}  // namespace tailor::quant
