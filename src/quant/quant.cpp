#include "tailor/quant/quant.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <set>
#include <sstream>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/ir/ops.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/runtime/isa.hpp"
#include "tailor/prune/prune.hpp"
#include "tailor/transforms/transforms.hpp"
#include "../ir/program.hpp"

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

// ---------------------------------------------------------------------------------------------------------
// Graph surgery

namespace {

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

// Copies a successfully transformed clone back into the caller's module (so failures leave it untouched).
void adopt(GraphModuleImpl& dst, GraphModuleImpl& src) {
  torch::NoGradGuard no_grad;
  const auto buffers = src.buffer_names();
  const std::set<std::string> buffer_set(buffers.begin(), buffers.end());
  for (const auto& [name, t] : src.tensors()) {
    if (dst.has_tensor(name) && dst.is_buffer(name) == (buffer_set.count(name) != 0))
      dst.set_tensor(name, t.detach().clone());
    else
      dst.add_tensor(name, t.detach().clone(), buffer_set.count(name) != 0);
  }
  dst.mutable_graph() = src.graph();
  dst.drop_unused_tensors();
  dst.recompile();
}

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

// ---------------------------------------------------------------------------------------------------------
// Cross-layer equalization

namespace {

struct EqualizePair {
  int first = -1, second = -1;
  int relu6 = -1;  // a hardtanh(0, 6) node between them, to become relu
};

// Reads through one ReLU/ReLU6 whose input has no other reader.
std::vector<EqualizePair> equalize_pairs(const Graph& g, bool relu6_to_relu) {
  std::vector<EqualizePair> pairs;
  for (int id : g.order()) {
    const Node& a = g.node(id);
    if (!is_layer(g, a) || a.kind != ops::kConv) continue;
    int v = a.outputs[0];
    if (g.is_graph_output(v)) continue;
    auto users = g.users(v);
    if (users.size() != 1) continue;
    EqualizePair p;
    p.first = id;
    const Node* u = &g.node(users[0]);
    if (u->kind == ops::kRelu || u->kind == ops::kHardtanh) {
      if (u->kind == ops::kHardtanh) {
        if (!relu6_to_relu || u->f("min_val") != 0.0) continue;
        p.relu6 = users[0];
      }
      v = u->outputs[0];
      if (g.is_graph_output(v)) continue;
      users = g.users(v);
      if (users.size() != 1) continue;
      u = &g.node(users[0]);
    }
    if (!is_layer(g, *u) || u->kind != ops::kConv || u->inputs[0] != v) continue;
    p.second = users[0];
    pairs.push_back(p);
  }
  return pairs;
}

}  // namespace

int64_t equalize_cross_layer(GraphModuleImpl& module, bool relu6_to_relu, int iterations) {
  Graph& g = module.mutable_graph();
  for (int id : g.order())
    TAILOR_CHECK(g.node(id).kind != ops::kBatchNorm, "cross-layer equalization needs batch norm folded first (node '",
                 g.node(id).name, "')");
  const auto pairs = equalize_pairs(g, relu6_to_relu);
  torch::NoGradGuard no_grad;
  for (int it = 0; it < iterations; ++it) {
    double change = 0;
    for (const auto& p : pairs) {
      const Node& a = g.node(p.first);
      const Node& b = g.node(p.second);
      torch::Tensor w1 = module.tensor(weight_name(g, a));
      torch::Tensor w2 = module.tensor(weight_name(g, b));
      const int64_t channels = w1.size(0);
      const int64_t groups = b.i("groups", 1);
      const int64_t per_group_in = w2.size(1);
      TAILOR_CHECK(per_group_in * groups == channels, "cross-layer equalization: '", b.name, "' reads ",
                   per_group_in * groups, " channels, '", a.name, "' writes ", channels);
      const torch::Tensor r1 = w1.abs().reshape({channels, -1}).amax(1);
      // Input channel c of a grouped conv is column c % per_group_in of its group's output rows.
      const int64_t out_per_group = w2.size(0) / groups;
      const torch::Tensor r2 = w2.abs().reshape({groups, out_per_group, per_group_in, -1}).amax({1, 3}).reshape({channels});
      torch::Tensor s = torch::sqrt(r1 * r2) / r2;
      s = torch::where((r1 > 0) & (r2 > 0), s, torch::ones_like(s)).clamp(1e-4, 1e4);
      change = std::max(change, (s - 1).abs().max().item<double>());
      std::vector<int64_t> view1(static_cast<size_t>(w1.dim()), 1);
      view1[0] = channels;
      w1.div_(s.reshape(view1));
      const Node* bias = g.producer(a.inputs[2]);
      if (bias && bias->kind == ops::kParam) module.tensor(bias->s("name")).div_(s);
      torch::Tensor s2 = s.reshape({groups, 1, per_group_in}).expand({groups, out_per_group, per_group_in}).reshape({w2.size(0), per_group_in});
      std::vector<int64_t> view2 = {w2.size(0), per_group_in};
      for (int64_t d = 2; d < w2.dim(); ++d) view2.push_back(1);
      w2.mul_(s2.reshape(view2));
    }
    if (change < 1e-3) break;
  }
  for (const auto& p : pairs) {
    if (p.relu6 < 0) continue;
    Node& n = g.node(p.relu6);
    n.kind = ops::kRelu;
    n.attrs.clear();
    n.inputs.resize(1);
  }
  eliminate_dead_code(g);
  module.recompile();
  return static_cast<int64_t>(pairs.size());
}

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

namespace {

// What one layer gets in weight-only quantization; bits 0 keeps it float.
struct LayerPlan {
  int bits = 0;
  int64_t group_size = 0;
  bool symmetric = false;
};

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

}  // namespace

QuantReport quantize_weights(GraphModuleImpl& module, const std::vector<torch::Tensor>& calibration,
                             const WeightOnlyOptions& o) {
  TAILOR_CHECK(o.bits >= 2 && o.bits <= 8, "weight-only quantization: bits must be in 2..8, got ", o.bits);
  TAILOR_CHECK(o.group_size >= 0, "weight-only quantization: group_size must be >= 0, got ", o.group_size);
  TAILOR_CHECK(o.method == "rtn" || o.method == "gptq", "weight-only method '", o.method, "' is not one of: rtn, gptq");
  TAILOR_CHECK(o.damp > 0, "GPTQ: damp must be > 0, got ", o.damp);
  if (o.method == "gptq") check_calibration(calibration, "GPTQ");
  check_skip(module.graph(), o.skip);
  torch::NoGradGuard no_grad;
  GraphModule work = prepared_clone(module);
  QuantReport report;
  report.scheme = "w" + std::to_string(o.bits) + (o.group_size ? " group" + std::to_string(o.group_size) : " per-channel") +
                  (o.symmetric ? " sym" : " asym") + " " + o.method;
  const std::set<std::string> skip(o.skip.begin(), o.skip.end());
  quantize_weights_impl(*work, calibration, o, [&](const std::string& name) {
    return skip.count(name) ? LayerPlan{} : LayerPlan{o.bits, o.group_size, o.symmetric};
  }, report);
  report.calibration_batches = o.method == "gptq" ? static_cast<int64_t>(calibration.size()) : 0;
  adopt(module, *work);
  return report;
}

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
      wo.group_size = bits == 4 ? 128 : 0;
      wo.symmetric = bits == 8;
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

// ---------------------------------------------------------------------------------------------------------
// Passes

namespace detail {
namespace {

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(text);
  while (std::getline(in, cur, ';'))
    if (!cur.empty()) out.push_back(cur);
  return out;
}

class StaticQuantPass : public Pass {
 public:
  StaticQuantPass() {
    options_.declare("observer", std::string("minmax"), "activation observer: minmax, moving-minmax, percentile, mse, entropy")
        .declare("percentile", 99.99, "percentile observer: which percentile")
        .declare("weight_method", std::string("minmax"), "weight ranges: minmax or mse")
        .declare("reduce_range", std::string("true"),
                 "7-bit activations: true (exact on every x86 CPU), false (8 bits: VNNI CPUs; requantized to 7 "
                 "bits where compiled for one without), auto (as this process's ISA)")
        .declare("equalize", false, "cross-layer equalization first")
        .declare("bias_correction", false, "empirical bias correction")
        .declare("skip", std::string(""), "layers kept in float, separated by ';'");
  }
  PassInfo info() const override {
    return {"quantize-static", "calibrated post-training int8: u8 activations and s8 per-channel weights at conv/linear"};
  }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    PtqOptions o;
    o.observer.kind = options_.s("observer");
    o.observer.percentile = options_.f("percentile");
    o.weight_method = options_.s("weight_method");
    const std::string rr = options_.s("reduce_range");
    TAILOR_CHECK(rr == "auto" || rr == "true" || rr == "false", "quantize-static: reduce_range must be auto, true or false, got '", rr, "'");
    o.activations.reduce_range = rr == "auto" ? !cpu_has_vnni() : rr == "true";
    o.equalize = options_.b("equalize");
    o.bias_correction = options_.b("bias_correction");
    o.skip = split_names(options_.s("skip"));
    o.progress = !context.quiet;
    TAILOR_CHECK(!context.calibration.empty(), "quantize-static needs calibration data in the pass context (give --data)");
    quantize_static(module, context.calibration, o);
    return true;
  }
};

class WeightQuantPass : public Pass {
 public:
  WeightQuantPass() {
    options_.declare("bits", int64_t{4}, "weight bits (8 or 4)")
        .declare("group_size", int64_t{128}, "weights per scale along a row; 0 for one scale per output channel")
        .declare("method", std::string("rtn"), "rtn (round to nearest) or gptq (needs calibration data)")
        .declare("symmetric", false, "symmetric (zero point 0) instead of asymmetric")
        .declare("damp", 0.01, "GPTQ dampening")
        .declare("skip", std::string(""), "layers kept in float, separated by ';'");
  }
  PassInfo info() const override { return {"quantize-weights", "weight-only int8/int4 (group-wise) by round-to-nearest or GPTQ"}; }
  bool run(GraphModuleImpl& module, PassContext& context) override {
    WeightOnlyOptions o;
    o.bits = static_cast<int>(options_.i("bits"));
    o.group_size = options_.i("group_size");
    o.method = options_.s("method");
    o.symmetric = options_.b("symmetric");
    o.damp = options_.f("damp");
    o.skip = split_names(options_.s("skip"));
    o.progress = !context.quiet;
    quantize_weights(module, context.calibration, o);
    return true;
  }
};

class EqualizePass : public Pass {
 public:
  EqualizePass() { options_.declare("relu6_to_relu", true, "turn ReLU6 between pairs into ReLU (as AIMET does)"); }
  PassInfo info() const override { return {"equalize-cross-layer", "cross-layer equalization of conv pairs (folds batch norm first)"}; }
  bool run(GraphModuleImpl& module, PassContext&) override {
    const bool folded = fold_batch_norm(module);
    if (folded) module.recompile();
    return equalize_cross_layer(module, options_.b("relu6_to_relu")) > 0 || folded;
  }
};

}  // namespace

void register_quant_passes(const std::function<void(const std::string&, PassFactory)>& add) {
  add("quantize-static", [] { return std::make_shared<StaticQuantPass>(); });
  add("quantize-weights", [] { return std::make_shared<WeightQuantPass>(); });
  add("equalize-cross-layer", [] { return std::make_shared<EqualizePass>(); });
  add("strip-fake-quant", [] {
    return std::make_shared<FunctionPass>(PassInfo{"strip-fake-quant", "remove fake_quant nodes (back to float)"},
                                          [](GraphModuleImpl& m, PassContext&) { return strip_fake_quant(m) > 0; });
  });
}

}  // namespace detail

}  // namespace tailor::quant
