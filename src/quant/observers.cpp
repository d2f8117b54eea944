// Range observers: minmax, moving-minmax, percentile, MSE and entropy (KL) thresholds.
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

// ---------------------------------------------------------------------------------------------------------
// Observers

std::vector<std::string> observer_kinds() { return {"minmax", "moving-minmax", "percentile", "mse", "entropy"}; }

Observer::Observer(QScheme scheme, ObserverOptions options) : scheme_(scheme), options_(std::move(options)) {
  const auto kinds = observer_kinds();
  if (std::find(kinds.begin(), kinds.end(), options_.kind) == kinds.end()) {
    std::string valid;
    for (const auto& k : kinds) valid += (valid.empty() ? "" : ", ") + k;
    TAILOR_FAIL("unknown observer '", options_.kind, "'; valid observers: ", valid);
  }
  TAILOR_CHECK(options_.percentile > 50 && options_.percentile <= 100, "percentile observer: percentile must be in (50, 100], got ",
               options_.percentile);
}

void Observer::observe(const torch::Tensor& x, const std::string& where) {
  torch::NoGradGuard no_grad;
  const torch::Tensor flat = x.detach().to(torch::kFloat).reshape({-1});
  TAILOR_CHECK(flat.numel() > 0, "calibration: an empty tensor", where.empty() ? "" : " at " + where);
  TAILOR_CHECK(torch::isfinite(flat).all().item<bool>(), "calibration activations",
               where.empty() ? "" : " at '" + where + "'", " contain NaN or Inf");
  const double lo = flat.min().item<double>(), hi = flat.max().item<double>();
  if (batches_ == 0 || options_.kind != "moving-minmax") {
    min_ = batches_ == 0 ? lo : std::min(min_, lo);
    max_ = batches_ == 0 ? hi : std::max(max_, hi);
  } else {
    min_ += options_.averaging * (lo - min_);
    max_ += options_.averaging * (hi - max_);
  }
  ++batches_;
  if (options_.kind == "minmax" || options_.kind == "moving-minmax") return;
  // A uniform random sample of the values seen, bounded in memory.
  auto gen = at::detail::createCPUGenerator(options_.seed + static_cast<uint64_t>(batches_));
  const int64_t per_batch = std::max<int64_t>(1, options_.max_samples / 8);
  torch::Tensor s = flat;
  if (flat.numel() > per_batch) s = flat.index_select(0, torch::randint(flat.numel(), {per_batch}, gen, torch::kLong));
  samples_.push_back(s.clone());
  sampled_ += s.numel();
  if (sampled_ > options_.max_samples) {
    torch::Tensor all = torch::cat(samples_);
    all = all.index_select(0, torch::randperm(all.numel(), gen, torch::kLong).slice(0, 0, options_.max_samples));
    samples_ = {all};
    sampled_ = all.numel();
  }
}

namespace {

// Expected squared error of quantizing `values` to [lo, hi].
double clip_error(const torch::Tensor& values, double lo, double hi, const QScheme& scheme) {
  const QParams qp = qparams_from_range(torch::tensor({lo}), torch::tensor({hi}), scheme);
  return (fake_quantize(values, qp) - values).pow(2).mean().item<double>();
}

// TensorRT-style entropy calibration: the threshold whose quantized histogram diverges least from the data's.
double entropy_threshold(const torch::Tensor& magnitudes, double amax, int64_t bins, int64_t levels) {
  if (amax <= 0) return amax;
  const torch::Tensor hist_t = torch::histc(magnitudes, bins, 0.0, amax).to(torch::kDouble);
  std::vector<double> hist(hist_t.data_ptr<double>(), hist_t.data_ptr<double>() + bins);
  // Exact zeros (half of a post-ReLU tensor) all land in bin 0 and would dominate the divergence, pulling the
  // threshold far down; like NVIDIA's calibrator, count bin 0 as its neighbour.
  if (bins > 1) hist[0] = hist[1];
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = bins;
  for (int64_t i = std::min(levels, bins); i <= bins; ++i) {
    std::vector<double> p(hist.begin(), hist.begin() + i);
    for (int64_t k = i; k < bins; ++k) p[static_cast<size_t>(i - 1)] += hist[static_cast<size_t>(k)];
    std::vector<double> q(static_cast<size_t>(i), 0.0);
    for (int64_t l = 0; l < levels; ++l) {
      const int64_t a = l * i / levels, b = (l + 1) * i / levels;
      double sum = 0;
      int64_t nonzero = 0;
      for (int64_t k = a; k < b; ++k) {
        sum += hist[static_cast<size_t>(k)];
        nonzero += hist[static_cast<size_t>(k)] > 0;
      }
      for (int64_t k = a; k < b; ++k)
        if (hist[static_cast<size_t>(k)] > 0) q[static_cast<size_t>(k)] = sum / static_cast<double>(nonzero);
    }
    double ps = 0, qs = 0;
    for (int64_t k = 0; k < i; ++k) {
      ps += p[static_cast<size_t>(k)];
      qs += q[static_cast<size_t>(k)];
    }
    if (ps <= 0 || qs <= 0) continue;
    double kl = 0;
    for (int64_t k = 0; k < i; ++k) {
      const double pk = p[static_cast<size_t>(k)] / ps;
      if (pk <= 0) continue;
      const double qk = std::max(q[static_cast<size_t>(k)] / qs, 1e-12);
      kl += pk * std::log(pk / qk);
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return amax * static_cast<double>(best_i) / static_cast<double>(bins);
}

}  // namespace

QParams Observer::qparams() const {
  TAILOR_CHECK(batches_ > 0, "observer '", options_.kind, "': no calibration data was observed");
  double lo = min_, hi = max_;
  if (options_.kind == "percentile" || options_.kind == "mse" || options_.kind == "entropy") {
    torch::NoGradGuard no_grad;
    const torch::Tensor values = torch::cat(samples_);
    if (options_.kind == "percentile") {
      const torch::Tensor sorted = std::get<0>(values.sort());
      const auto at = [&](double pct) {
        const int64_t k = std::clamp<int64_t>(static_cast<int64_t>(std::llround(pct / 100.0 * (values.numel() - 1))), 0,
                                              values.numel() - 1);
        return sorted[k].item<double>();
      };
      lo = std::max(lo, at(100.0 - options_.percentile));
      hi = std::min(hi, at(options_.percentile));
    } else if (options_.kind == "mse") {
      double best = clip_error(values, lo, hi, scheme_);
      double best_lo = lo, best_hi = hi;
      for (int step = 1; step < 60; ++step) {
        const double a = 1.0 - step / 64.0;
        const double err = clip_error(values, lo * a, hi * a, scheme_);
        if (err < best) {
          best = err;
          best_lo = lo * a;
          best_hi = hi * a;
        }
      }
      lo = best_lo;
      hi = best_hi;
    } else {
      const int64_t levels = scheme_.qmax() - scheme_.qmin() + 1;
      if (lo < 0 && hi > 0 && !scheme_.symmetric) {
        // An affine scheme spends its levels on [lo, hi] as it lies: each tail gets its own threshold, with the
        // levels it covers. (Folding |x| into one symmetric threshold clipped a normalized image's bright side,
        // [-0.81, 2.02], down to its dark side's magnitude: -10 points on a trained fashion-resnet.)
        const auto share = [&](double extent) {
          return std::max<int64_t>(2, static_cast<int64_t>(std::llround(levels * extent / (hi - lo))));
        };
        const torch::Tensor pos = values.masked_select(values > 0), neg = -values.masked_select(values < 0);
        if (pos.numel() > 0) hi = std::min(hi, entropy_threshold(pos, hi, options_.bins, share(hi)));
        if (neg.numel() > 0) lo = std::max(lo, -entropy_threshold(neg, -lo, options_.bins, share(-lo)));
      } else {
        const bool signed_data = lo < 0;
        const double t = entropy_threshold(values.abs(), std::max(std::abs(lo), std::abs(hi)), options_.bins,
                                           levels / (signed_data ? 2 : 1));
        lo = std::max(lo, -t);
        hi = std::min(hi, t);
      }
    }
  }
  return qparams_from_range(torch::tensor({lo}), torch::tensor({hi}), scheme_);
}

}  // namespace tailor::quant
