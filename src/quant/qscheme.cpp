// Quantization schemes, their parameters from ranges, quantize/dequantize, and the report.
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
#include <nlohmann/json.hpp>
#include "internal.hpp"

namespace tailor::quant {

// ---------------------------------------------------------------------------------------------------------
// Schemes and parameters

int64_t QScheme::qmin() const {
  const int b = reduce_range ? bits - 1 : bits;
  return is_signed ? -(int64_t{1} << (b - 1)) : 0;
}

int64_t QScheme::qmax() const {
  const int b = reduce_range ? bits - 1 : bits;
  return is_signed ? (int64_t{1} << (b - 1)) - 1 : (int64_t{1} << b) - 1;
}

QScheme QScheme::activations_u8(bool reduce_range) {
  QScheme s;
  s.bits = 8;
  s.is_signed = false;
  s.symmetric = false;
  s.reduce_range = reduce_range;
  return s;
}

QScheme QScheme::weights_int8() {
  QScheme s;
  s.per_channel = true;
  return s;
}

QScheme QScheme::weights_int4(int64_t group_size) {
  QScheme s;
  s.bits = 4;
  s.symmetric = false;
  s.per_channel = true;
  s.group_size = group_size;
  return s;
}

std::string QScheme::str() const {
  std::string s = (is_signed ? "s" : "u") + std::to_string(reduce_range ? bits - 1 : bits);
  s += symmetric ? " sym" : " asym";
  if (group_size > 0) s += " group" + std::to_string(group_size);
  else s += per_channel ? " per-channel" : " per-tensor";
  return s;
}

bool cpu_has_vnni() { return isa_has_int8_dot(effective_isa()); }

QParams qparams_from_range(const torch::Tensor& min_val, const torch::Tensor& max_val, const QScheme& scheme) {
  TAILOR_CHECK(scheme.bits >= 2 && scheme.bits <= 16, "quantization: bits must be in 2..16, got ", scheme.bits);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor lo = min_val.to(torch::kFloat).reshape({-1}).clamp_max(0);
  torch::Tensor hi = max_val.to(torch::kFloat).reshape({-1}).clamp_min(0);
  TAILOR_CHECK(torch::isfinite(lo).all().item<bool>() && torch::isfinite(hi).all().item<bool>(),
               "quantization: the range to quantize is not finite");
  const int64_t qmin = scheme.qmin(), qmax = scheme.qmax();
  const torch::Tensor eps = torch::full({1}, std::numeric_limits<float>::epsilon(), f32);
  torch::Tensor scale, zp;
  if (scheme.symmetric) {
    hi = torch::max(-lo, hi);
    scale = torch::max(hi / (static_cast<float>(qmax - qmin) / 2.0f), eps);
    const int64_t z = scheme.is_signed ? 0 : (qmin + qmax + 1) / 2;
    zp = torch::full(scale.sizes(), z, torch::TensorOptions().dtype(torch::kInt));
  } else {
    scale = torch::max((hi - lo) / static_cast<float>(qmax - qmin), eps);
    zp = (static_cast<float>(qmin) - torch::round(lo / scale)).clamp(qmin, qmax).to(torch::kInt);
  }
  QParams qp;
  qp.scale = scale;
  qp.zero_point = zp;
  qp.qmin = qmin;
  qp.qmax = qmax;
  qp.axis = scheme.per_channel || scheme.group_size > 0 ? 0 : -1;
  qp.group_size = scheme.group_size;
  return qp;
}

namespace {

// Rows of a weight as the scheme groups them: [channels, K] per channel, [channels * K / g, g] group-wise.
torch::Tensor weight_rows(const torch::Tensor& w, const QScheme& scheme) {
  if (scheme.group_size > 0) return w.reshape({-1, scheme.group_size});
  if (scheme.per_channel) return w.reshape({w.size(0), -1});
  return w.reshape({1, -1});
}

// Per-row fake quantization error for given parameters, rows as weight_rows gives them.
torch::Tensor row_errors(const torch::Tensor& rows, const QParams& qp) {
  QParams per_row = qp;
  per_row.axis = 0;
  per_row.group_size = 0;
  const torch::Tensor fq = tailor::detail::fake_quant(rows, per_row.scale, per_row.zero_point, {qp.qmin, qp.qmax, 0, 0}, false);
  return (fq - rows).pow(2).sum(1);
}

}  // namespace

QParams weight_qparams(const torch::Tensor& weight, const QScheme& scheme, const std::string& method) {
  TAILOR_CHECK(method == "minmax" || method == "mse", "weight quantization method '", method,
               "' is not one of: minmax, mse");
  torch::NoGradGuard no_grad;
  const torch::Tensor w = weight.detach().to(torch::kFloat);
  TAILOR_CHECK(torch::isfinite(w).all().item<bool>(), "quantization: the weight contains NaN or Inf");
  if (scheme.group_size > 0)
    TAILOR_CHECK(w.numel() % scheme.group_size == 0, "quantization: ", w.numel(),
                 " weights do not split into groups of ", scheme.group_size);
  const torch::Tensor rows = weight_rows(w, scheme);
  const torch::Tensor lo = std::get<0>(rows.min(1)), hi = std::get<0>(rows.max(1));
  QParams best = qparams_from_range(lo, hi, scheme);
  if (method == "mse") {
    torch::Tensor best_err = row_errors(rows, best);
    for (int step = 1; step < 40; ++step) {
      const double a = 1.0 - 0.0125 * step;  // clip the range down to 51% of its extent
      QParams cand = qparams_from_range(lo * a, hi * a, scheme);
      const torch::Tensor err = row_errors(rows, cand);
      const torch::Tensor better = err < best_err;
      best.scale = torch::where(better, cand.scale, best.scale);
      best.zero_point = torch::where(better, cand.zero_point, best.zero_point);
      best_err = torch::where(better, err, best_err);
    }
  }
  if (!scheme.per_channel && scheme.group_size == 0) best.axis = -1;
  return best;
}

namespace {

// Broadcast shape of per-channel parameters along `axis` of x.
std::vector<int64_t> param_view(const torch::Tensor& x, int64_t axis) {
  std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
  shape[static_cast<size_t>(axis)] = -1;
  return shape;
}

}  // namespace

torch::Tensor quantize(const torch::Tensor& x, const QParams& qp) {
  if (qp.group_size > 0) {
    QParams rows = qp;
    rows.group_size = 0;
    rows.axis = 0;
    return quantize(x.reshape({-1, qp.group_size}), rows).reshape(x.sizes());
  }
  torch::Tensor inv = qp.scale.to(torch::kFloat).reciprocal();
  torch::Tensor zp = qp.zero_point.to(torch::kFloat);
  if (qp.axis >= 0) {
    inv = inv.reshape(param_view(x, qp.axis));
    zp = zp.reshape(param_view(x, qp.axis));
  }
  // As ATen's quantize_val: zero_point + nearbyint(x * (1 / scale)), clamped.
  return (torch::round(x.to(torch::kFloat) * inv) + zp).clamp(qp.qmin, qp.qmax).to(torch::kInt);
}

torch::Tensor dequantize(const torch::Tensor& q, const QParams& qp) {
  if (qp.group_size > 0) {
    QParams rows = qp;
    rows.group_size = 0;
    rows.axis = 0;
    return dequantize(q.reshape({-1, qp.group_size}), rows).reshape(q.sizes());
  }
  torch::Tensor scale = qp.scale.to(torch::kFloat), zp = qp.zero_point.to(torch::kFloat);
  if (qp.axis >= 0) {
    scale = scale.reshape(param_view(q, qp.axis));
    zp = zp.reshape(param_view(q, qp.axis));
  }
  return (q.to(torch::kFloat) - zp) * scale;
}

torch::Tensor fake_quantize(const torch::Tensor& x, const QParams& qp) {
  return tailor::detail::fake_quant(x, qp.scale, qp.zero_point, {qp.qmin, qp.qmax, qp.axis, qp.group_size}, false);
}

// ---------------------------------------------------------------------------------------------------------
// Reports

std::string QuantReport::str() const {
  std::ostringstream out;
  out << "scheme " << scheme << ", " << layers.size() << " layers, " << calibration_batches << " calibration batches";
  if (equalized_pairs) out << ", " << equalized_pairs << " pairs equalized";
  if (bias_corrected) out << ", " << bias_corrected << " biases corrected";
  out << "\n";
  for (const auto& l : layers) {
    out << "  " << l.layer << " (" << l.kind << "): weight " << l.weight << ", input " << l.activation;
    if (l.activation != "float") out << " [" << l.input_min << ", " << l.input_max << "]";
    if (l.weight != "float") out << ", weight error " << l.weight_error;
    if (!l.note.empty()) out << " (" << l.note << ")";
    out << "\n";
  }
  return out.str();
}

std::string QuantReport::to_json() const {
  nlohmann::json ls = nlohmann::json::array();
  for (const auto& l : layers)
    ls.push_back({{"layer", l.layer}, {"kind", l.kind}, {"weight", l.weight}, {"activation", l.activation},
                  {"input_min", l.input_min}, {"input_max", l.input_max}, {"weight_error", l.weight_error},
                  {"note", l.note}});
  return nlohmann::json{{"scheme", scheme},
                        {"calibration_batches", calibration_batches},
                        {"equalized_pairs", equalized_pairs},
                        {"bias_corrected", bias_corrected},
                        {"layers", ls}}
      .dump(2);
}

}  // namespace tailor::quant
