// Weight-only quantization: round to nearest and GPTQ (Frantar et al., 2022).
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
#include <Eigen/Dense>
#include "internal.hpp"

namespace tailor::quant {

using namespace detail;

// ---------------------------------------------------------------------------------------------------------
// Weight-only quantization: round to nearest and GPTQ

namespace {

using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A conv layer's input unfolded into [K, n] columns, so that its weight acts as a [out, K] matrix.
torch::Tensor conv_columns(const Node& layer, const torch::Tensor& input, const torch::Tensor& weight) {
  const auto& stride = layer.ints("stride");
  const auto& padding = layer.ints("padding");
  const auto& dilation = layer.ints("dilation");
  const torch::Tensor cols = at::im2col(input, {weight.size(2), weight.size(3)}, dilation, padding, stride);  // [N, K, L]
  return cols.permute({1, 0, 2}).reshape({cols.size(1), -1});
}

// GPTQ (Frantar et al., 2022) on a [rows, K] weight with Hessian H = 2 X X^T / n. Returns the dequantized
// weight and fills `qp` with the per-row or per-group parameters it chose on the fly.
torch::Tensor gptq(const torch::Tensor& weight2d, const torch::Tensor& hessian, const QScheme& scheme, double damp,
                   int64_t block, QParams& qp) {
  const int64_t rows = weight2d.size(0), cols = weight2d.size(1);
  Eigen::MatrixXd H(cols, cols);
  const torch::Tensor h = hessian.to(torch::kDouble).contiguous();
  std::copy(h.data_ptr<double>(), h.data_ptr<double>() + cols * cols, H.data());  // symmetric: layout is moot
  MatrixF W(rows, cols);
  const torch::Tensor wc = weight2d.to(torch::kFloat).contiguous();
  std::copy(wc.data_ptr<float>(), wc.data_ptr<float>() + rows * cols, W.data());
  for (int64_t j = 0; j < cols; ++j) {
    if (H(j, j) == 0) {  // an input that is always zero: its weights do not matter
      H(j, j) = 1;
      W.col(j).setZero();
    }
  }
  const double mean_diag = H.diagonal().mean();
  H.diagonal().array() += damp * mean_diag;
  Eigen::LLT<Eigen::MatrixXd> llt(H);
  TAILOR_CHECK(llt.info() == Eigen::Success, "GPTQ: the layer Hessian is not positive definite; raise damp");
  const Eigen::MatrixXd Hinv = llt.solve(Eigen::MatrixXd::Identity(cols, cols));
  Eigen::LLT<Eigen::MatrixXd> llt2(Hinv);
  TAILOR_CHECK(llt2.info() == Eigen::Success, "GPTQ: the inverse Hessian is not positive definite; raise damp");
  const MatrixF U = Eigen::MatrixXd(llt2.matrixU()).cast<float>();  // upper Cholesky factor of H^-1

  const int64_t group = scheme.group_size > 0 ? scheme.group_size : cols;
  const int64_t ngroups = cols / group;
  std::vector<float> scales(static_cast<size_t>(rows * ngroups)), zps(static_cast<size_t>(rows * ngroups));
  const float qmin = static_cast<float>(scheme.qmin()), qmax = static_cast<float>(scheme.qmax());
  MatrixF Q(rows, cols);
  auto choose = [&](int64_t g0) {
    const torch::Tensor slice = torch::from_blob(W.data(), {rows, cols}, torch::kFloat).slice(1, g0, g0 + group);
    QScheme per_row = scheme;
    per_row.group_size = 0;
    per_row.per_channel = true;
    const QParams p = qparams_from_range(std::get<0>(slice.min(1)), std::get<0>(slice.max(1)), per_row);
    for (int64_t r = 0; r < rows; ++r) {
      scales[static_cast<size_t>(r * ngroups + g0 / group)] = p.scale[r].item<float>();
      zps[static_cast<size_t>(r * ngroups + g0 / group)] = static_cast<float>(p.zero_point[r].item<int>());
    }
  };
  for (int64_t i1 = 0; i1 < cols; i1 += block) {
    const int64_t i2 = std::min(i1 + block, cols), count = i2 - i1;
    MatrixF Err(rows, count);
    for (int64_t i = i1; i < i2; ++i) {
      // A group's parameters come from its weights as updated so far (as the reference implementation does).
      if (i % group == 0) choose(i);
      const float d = U(i, i);
      for (int64_t r = 0; r < rows; ++r) {
        const size_t gi = static_cast<size_t>(r * ngroups + i / group);
        const float s = scales[gi], z = zps[gi];
        const float w = W(r, i);
        const float q = std::clamp(std::nearbyint(w * (1.0f / s)) + z, qmin, qmax);
        const float deq = (q - z) * s;
        Q(r, i) = deq;
        Err(r, i - i1) = (w - deq) / d;
      }
      // Spread this column's error over the rest of the block.
      if (i + 1 < i2)
        W.block(0, i + 1, rows, i2 - i - 1).noalias() -= Err.col(i - i1) * U.block(i, i + 1, 1, i2 - i - 1);
    }
    if (i2 < cols) W.block(0, i2, rows, cols - i2).noalias() -= Err * U.block(i1, i2, count, cols - i2);
  }
  qp.scale = torch::from_blob(scales.data(), {rows * ngroups}, torch::kFloat).clone();
  qp.zero_point = torch::from_blob(zps.data(), {rows * ngroups}, torch::kFloat).clone().to(torch::kInt);
  qp.qmin = scheme.qmin();
  qp.qmax = scheme.qmax();
  qp.axis = 0;
  qp.group_size = scheme.group_size > 0 ? scheme.group_size : 0;
  return torch::from_blob(Q.data(), {rows, cols}, torch::kFloat).clone();
}

QScheme weight_only_scheme(int bits, int64_t group, bool symmetric) {
  QScheme s;
  s.bits = bits;
  s.is_signed = true;
  s.symmetric = symmetric;
  s.per_channel = true;
  s.group_size = group;
  return s;
}

}  // namespace

namespace detail {

void quantize_weights_impl(GraphModuleImpl& work, const std::vector<torch::Tensor>& calibration,
                           const WeightOnlyOptions& o, const std::function<LayerPlan(const std::string&)>& plan_of,
                           QuantReport& report) {
  const std::vector<int> layers = layer_nodes(work.graph());
  size_t done = 0;
  for (int id : layers) {
    const Node layer = work.graph().node(id);
    const LayerPlan plan = plan_of(layer.name);
    LayerQuant lq;
    lq.layer = layer.name;
    lq.kind = layer.kind;
    lq.activation = "float";
    if (plan.bits == 0) {
      lq.weight = "float";
      lq.note = "skipped";
      report.layers.push_back(lq);
      continue;
    }
    const std::string wname = weight_name(work.graph(), layer);
    const torch::Tensor w = work.tensor(wname).clone();  // set_tensor below overwrites the registered tensor
    const int64_t rows = w.size(0), k = w.numel() / rows;
    int64_t group = plan.group_size;
    if (group > 0 && (k % group != 0 || k < group)) {
      lq.note = "per channel: rows of " + std::to_string(k) + " do not split into groups of " + std::to_string(group);
      group = 0;
    }
    const QScheme scheme = weight_only_scheme(plan.bits, group, plan.symmetric);
    QParams qp;
    torch::Tensor quantized;
    const bool conv2d = layer.kind == ops::kConv && w.dim() == 4;
    const bool can_gptq = layer.kind == ops::kLinear || (conv2d && layer.i("groups", 1) == 1);
    if (o.method == "gptq" && can_gptq) {
      torch::Tensor H = torch::zeros({k, k}, torch::kDouble);
      int64_t n = 0;
      for (const auto& batch : calibration) {
        const torch::Tensor x = work.run_with_value_taps({batch}, {layer.inputs[0]}).second.at(layer.inputs[0]);
        const torch::Tensor cols =
            (layer.kind == ops::kLinear ? x.reshape({-1, x.size(-1)}).t() : conv_columns(layer, x, w)).to(torch::kFloat);
        H += torch::mm(cols, cols.t()).to(torch::kDouble);
        n += cols.size(1);
      }
      H *= 2.0 / static_cast<double>(std::max<int64_t>(n, 1));
      quantized = gptq(w.reshape({rows, k}), H, scheme, o.damp, o.block, qp).reshape(w.sizes());
      work.set_tensor(wname, quantized);
      lq.note += std::string(lq.note.empty() ? "" : "; ") + "gptq";
    } else {
      if (o.method == "gptq")
        lq.note += std::string(lq.note.empty() ? "" : "; ") + "rtn (GPTQ handles linear and ungrouped 2-d conv)";
      qp = weight_qparams(w, scheme, "minmax");
      quantized = fake_quantize(w, qp);
    }
    const int fq = insert_fake_quant(work, layer.inputs[1], qp, layer.name + ".weight_quant", false, id);
    work.mutable_graph().node(id).inputs[1] = fq;
    // Later layers' Hessians see this layer quantized.
    work.recompile();
    lq.weight = scheme.str();
    lq.weight_error = relative_error(quantized, w);
    report.layers.push_back(lq);
    progress_line(o.progress, o.method == "gptq" ? "gptq" : "rtn", ++done, layers.size());
  }
}

}  // namespace detail

QuantReport quantize_weights(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                             const WeightOnlyOptions& options) {
  WeightOnlyOptions o = options;
  TAILOR_CHECK(o.bits >= 2 && o.bits <= 8, "weight-only quantization: bits must be in 2..8, got ", o.bits);
  TAILOR_CHECK(o.group_size >= -1, "weight-only quantization: group_size must be >= 0 (or -1: automatic), got ", o.group_size);
  o.group_size = o.resolved_group_size();
  o.symmetric = o.resolved_symmetric();
  const bool symmetric = *o.symmetric;
  TAILOR_CHECK(o.method == "rtn" || o.method == "gptq", "weight-only method '", o.method, "' is not one of: rtn, gptq");
  TAILOR_CHECK(o.damp > 0, "GPTQ: damp must be > 0, got ", o.damp);
  if (o.method == "gptq") check_calibration(calibration, "GPTQ");
  check_skip(module.graph(), o.skip);
  torch::NoGradGuard no_grad;
  GraphModule work = prepared_clone(module);
  QuantReport report;
  report.scheme = "w" + std::to_string(o.bits) + (o.group_size ? " group" + std::to_string(o.group_size) : " per-channel") +
                  (symmetric ? " sym" : " asym") + " " + o.method;
  const std::set<std::string> skip(o.skip.begin(), o.skip.end());
  quantize_weights_impl(*work, calibration, o, [&](const std::string& name) {
    return skip.count(name) ? LayerPlan{} : LayerPlan{o.bits, o.group_size, symmetric};
  }, report);
  report.calibration_batches = o.method == "gptq" ? static_cast<int64_t>(calibration.size()) : 0;
  adopt(module, *work);
  return report;
}

}  // namespace tailor::quant
