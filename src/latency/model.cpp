// The latency model of one target: kernel table, regressors, overhead fit, prediction, and its JSON file.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "../core/json_number.hpp"

#include "internal.hpp"
#include "regressor.hpp"
#include "tailor/core/text.hpp"
#include "tailor/export/export.hpp"
#include "tailor/latency/latency.hpp"

namespace tailor::latency {
using json = nlohmann::json;

namespace {

constexpr const char* kFormat = "tailor-latency-table";
constexpr int kVersion = 1;

using detail::median;

// The work a kernel does, the unit its regressor predicts time per.
double work(const Kernel& k) { return k.macs + k.bytes / 4 + 1; }

// A reference timing that spreads wider than this (90th over 10th percentile) is not used to normalize.
constexpr double kReferenceSpread = 1.5;

// A table entry answers alone from this many samples on; below, it is blended with its regressor.
constexpr size_t kTrustedSamples = 8;
constexpr double kRegressorVotes = 2;

// Models whose total work is within a factor of sqrt(2) of each other share table entries: a kernel's time
// depends on how much of its data the rest of the run evicted.
std::string context_suffix(double model_work) {
  return "|w" + std::to_string(model_work > 0 ? std::lround(2 * std::log2(model_work)) : 0);
}
std::string entry_key(const Kernel& k, double model_work) { return k.key() + context_suffix(model_work); }

// The summed work of a model's kernels, from a kernel listing or from its measured samples alike.
template <class Items, class KernelOf>
double summed_work(const Items& items, KernelOf kernel_of) {
  double w = 0;
  for (const auto& item : items) w += work(kernel_of(item));
  return w;
}

std::vector<float> features(const Kernel& k, double working_set, double model_work) {
  std::vector<float> f = k.features();
  f.push_back(static_cast<float>(std::log2(1 + working_set)));
  f.push_back(static_cast<float>(std::log2(1 + model_work)));
  return f;
}

std::vector<std::string> feature_names() {
  std::vector<std::string> names = kernel_feature_names();
  names.push_back("log2_working_set_bytes");
  names.push_back("log2_model_work");
  return names;
}

json kernel_to_json(const Kernel& k) {
  json j = {{"node", k.node}, {"kind", k.kind}, {"op", k.op}, {"impl", k.impl}, {"dtype", k.dtype},
            {"layout", k.layout}, {"inputs", k.inputs}, {"output", k.output}, {"macs", k.macs}, {"bytes", k.bytes}};
  if (!k.fused.empty()) j["fused"] = k.fused;
  if (!k.post_ops.empty()) j["post_ops"] = k.post_ops;
  if (!k.weight.empty()) j["weight"] = k.weight;
  if (!k.stride.empty()) j["stride"] = k.stride;
  if (!k.padding.empty()) j["padding"] = k.padding;
  if (!k.dilation.empty()) j["dilation"] = k.dilation;
  if (k.groups != 1) j["groups"] = k.groups;
  return j;
}

Kernel kernel_from_json(const json& j) {
  Kernel k;
  k.node = j.at("node").get<std::string>();
  k.kind = j.at("kind").get<std::string>();
  k.op = j.at("op").get<std::string>();
  k.impl = j.at("impl").get<std::string>();
  k.dtype = j.at("dtype").get<std::string>();
  k.layout = j.at("layout").get<std::string>();
  const std::string where = "kernel '" + k.node + "'";
  k.inputs = tailor::detail::json_shapes(j.at("inputs"), where + ": 'inputs'");
  k.output = tailor::detail::json_wholes(j.at("output"), where + ": 'output'", 0);
  k.macs = j.at("macs").get<double>();
  k.bytes = j.at("bytes").get<double>();
  k.fused = j.value("fused", std::vector<std::string>{});
  k.post_ops = j.value("post_ops", std::string{});
  k.weight = tailor::detail::json_wholes_or_empty(j, "weight", where, 0);
  k.stride = tailor::detail::json_wholes_or_empty(j, "stride", where, 1);
  k.padding = tailor::detail::json_wholes_or_empty(j, "padding", where, 0);
  k.dilation = tailor::detail::json_wholes_or_empty(j, "dilation", where, 1);
  k.groups = tailor::detail::json_whole_or(j, "groups", 1, where, 1);
  return k;
}

json target_to_json(const Target& t) {
  return {{"backend", t.backend}, {"threads", t.threads}, {"dtype", t.dtype}, {"isa", t.isa},
          {"cpu_model", t.cpu_model}, {"gpu", t.gpu}, {"torch_version", t.torch_version},
          {"onednn_version", t.onednn_version}, {"lowering", t.lowering}};
}

Target target_from_json(const json& j, const std::string& where) {
  Target t;
  t.backend = j.at("backend").get<std::string>();
  t.threads = static_cast<int>(tailor::detail::json_whole(j.at("threads"), where + ".threads'", 1, 4096));
  t.dtype = j.at("dtype").get<std::string>();
  t.isa = j.at("isa").get<std::string>();
  t.cpu_model = j.at("cpu_model").get<std::string>();
  t.gpu = j.at("gpu").get<std::string>();
  t.torch_version = j.at("torch_version").get<std::string>();
  t.onednn_version = j.at("onednn_version").get<std::string>();
  t.lowering = j.contains("lowering")
                   ? static_cast<int>(tailor::detail::json_whole(j.at("lowering"), where + ".lowering'", 0, 1000000))
                   : 1;  // written before the field existed
  return t;
}

}  // namespace

namespace detail {
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Line fit_line(const std::vector<double>& x, const std::vector<double>& y) {
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (!(y[i] > 0)) continue;
    const double w = 1.0 / (y[i] * y[i]);
    sw += w;
    sx += w * x[i];
    sy += w * y[i];
    sxx += w * x[i] * x[i];
    sxy += w * x[i] * y[i];
  }
  Line line;
  const double det = sw * sxx - sx * sx;
  if (x.size() < 2 || !(det > 1e-12 * sw * sxx)) return line;
  line.a = (sw * sxy - sx * sy) / det;
  line.b = (sy - line.a * sx) / sw;
  line.ok = true;
  return line;
}
}  // namespace detail

const char* to_string(Source s) {
  switch (s) {
    case Source::Table: return "table";
    case Source::Regressor: return "regressor";
    case Source::Uncovered: return "uncovered";
  }
  return "?";
}

std::string Target::differences(const Target& o) const {
  std::vector<std::string> out;
  auto cmp = [&](const char* field, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(std::string(field) + ": '" + a + "' vs '" + b + "'");
  };
  cmp("backend", backend, o.backend);
  cmp("threads", std::to_string(threads), std::to_string(o.threads));
  cmp("dtype", dtype, o.dtype);
  cmp("isa", isa, o.isa);
  cmp("cpu_model", cpu_model, o.cpu_model);
  cmp("gpu", gpu, o.gpu);
  cmp("torch_version", torch_version, o.torch_version);
  cmp("onednn_version", onednn_version, o.onednn_version);
  if (lowering != o.lowering)
    out.push_back("lowering: revision " + std::to_string(lowering) + " vs " + std::to_string(o.lowering) +
                  ": tailor's lowering has changed the kernels it runs since the table was built; rebuild it");
  return join(out, "; ");
}

std::string Target::str() const {
  std::string s = backend + " " + std::to_string(threads) + (threads == 1 ? " thread " : " threads ") + dtype;
  if (!isa.empty()) s += " " + isa;
  if (!gpu.empty()) s += " on " + gpu;
  else if (!cpu_model.empty()) s += " on " + cpu_model;
  return s;
}

double Prediction::up_to(const std::string& node) const {
  for (const auto& k : kernels) {
    if (k.node == node) return k.cumulative_ms;
    for (const auto& f : k.fused)
      if (f == node) return k.cumulative_ms;
  }
  // A node no kernel names ran inside another step (a constant, a folded batch norm) or does not exist.
  TAILOR_FAIL("latency prediction: no kernel runs node '", node, "'");
}

std::string Prediction::to_json() const {
  json ks = json::array();
  for (const auto& k : kernels)
    ks.push_back({{"node", k.node}, {"kind", k.kind}, {"op", k.op}, {"fused", k.fused}, {"ms", k.ms},
                  {"cumulative_ms", k.cumulative_ms}, {"source", to_string(k.source)}});
  return json{{"total_ms", total_ms}, {"overhead_ms", overhead_ms}, {"scale", scale}, {"from_table", from_table},
              {"from_regressor", from_regressor}, {"uncovered", uncovered}, {"kernels", ks}}
      .dump(2);
}

Model::Model(Target target) : target_(std::move(target)) {}
Model::Model(Model&& o) noexcept { *this = std::move(o); }
Model& Model::operator=(Model&& o) noexcept {
  target_ = std::move(o.target_);
  samples_ = std::move(o.samples_);
  models_ = std::move(o.models_);
  table_ = std::move(o.table_);
  sample_model_ = std::move(o.sample_model_);
  model_work_ = std::move(o.model_work_);
  regressors_ = std::move(o.regressors_);
  overhead_ms_ = o.overhead_ms_;
  scale_ = o.scale_;
  reference_architecture_ = std::move(o.reference_architecture_);
  reference_ms_ = o.reference_ms_;
  calibration_ = o.calibration_;
  fitted_ = o.fitted_;
  memo_.clear();
  return *this;
}

void Model::clear_memo() const {
  std::lock_guard<std::mutex> lock(memo_mutex_);
  memo_.clear();
}
Model::~Model() = default;

double KernelList::total_work() const {
  return summed_work(kernels, [](const Kernel& k) -> const Kernel& { return k; });
}

double Model::normalization(size_t model) const {
  if (reference_ms_ <= 0 || model >= models_.size()) return 1.0;
  // The median over the model and its two neighbours on each side: a spell lasts several models, a single
  // timing's noise does not, so this keeps the spells and damps the reference's own jitter.
  std::vector<double> near;
  for (size_t i = model >= 2 ? model - 2 : 0; i <= model + 2 && i < models_.size(); ++i)
    if (models_[i].reference_ms > 0) near.push_back(models_[i].reference_ms);
  return models_[model].reference_ms > 0 ? reference_ms_ / median(near) : 1.0;
}

void Model::calibrate(double reference_ms_now) {
  calibration_ = reference_ms_now > 0 && reference_ms_ > 0 ? reference_ms_now / reference_ms_ : 1.0;
}

void Model::add(const ModelSample& model, const std::vector<KernelSample>& kernels) {
  clear_memo();  // remembered answers may rest on table entries this changes
  const size_t index = models_.size();
  models_.push_back(model);
  model_work_.push_back(summed_work(kernels, [](const KernelSample& k) -> const Kernel& { return k.kernel; }));
  // Until the next fit, the new model's entries use its neighbourhood as far as it has been measured.
  const double factor = normalization(index);
  for (const auto& s : kernels) {
    samples_.push_back(s);
    sample_model_.push_back(index);
    Entry& e = add_entry(s, model_work_.back(), factor);
    e.median = median(e.ms);
  }
}

Model::Entry& Model::add_entry(const KernelSample& sample, double model_work, double factor) {
  Entry& e = table_[entry_key(sample.kernel, model_work)];
  if (e.ms.empty()) e.kernel = sample.kernel;
  e.ms.push_back(sample.ms * factor);
  return e;
}

std::vector<double> Model::normalizations() const {
  std::vector<double> factors(models_.size());
  for (size_t m = 0; m < models_.size(); ++m) factors[m] = normalization(m);
  return factors;
}

void Model::rebuild_entries(const std::vector<double>& factors) {
  table_.clear();
  for (size_t i = 0; i < samples_.size(); ++i) {
    const size_t m = sample_model_[i];
    add_entry(samples_[i], model_work_[m], factors[m]);
  }
  for (auto& [key, e] : table_) e.median = median(e.ms);
}

std::optional<double> Model::lookup(const Kernel& kernel, double model_work) const {
  auto it = table_.find(entry_key(kernel, model_work > 0 ? model_work : work(kernel)));
  if (it == table_.end()) return std::nullopt;
  return it->second.median;
}

std::map<std::string, size_t> Model::regressor_types() const {
  std::map<std::string, size_t> out;
  for (const auto& [op, r] : regressors_) out[op] = r->samples();
  return out;
}

void Model::fit() {
  TAILOR_CHECK(!samples_.empty(), "latency model for ", target_.str(), ": no measured kernels to fit");
  const size_t cols = feature_names().size();
  // The machine's usual state: the median reference time over the table's models. A reference whose times spread
  // more than kReferenceSpread between their 10th and 90th percentiles measures its own jitter (thread wake-ups
  // on several threads, the interpreter's allocations) more than the machine, and normalizing by it would move
  // every model by that jitter (measured on onednn-cpu 2 threads: 0.25 / 0.54 ms, mobilenets predicted 21% low).
  std::vector<double> references;
  for (const auto& m : models_)
    if (m.reference_ms > 0) references.push_back(m.reference_ms);
  std::sort(references.begin(), references.end());
  const size_t n = references.size();
  const bool steady = n >= 5 && references[9 * n / 10] <= kReferenceSpread * references[n / 10];
  reference_ms_ = steady ? median(references) : 0;
  const std::vector<double> factors = normalizations();
  rebuild_entries(factors);
  std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> data;
  for (size_t i = 0; i < samples_.size(); ++i) {
    const KernelSample& s = samples_[i];
    const size_t m = sample_model_[i];
    const std::vector<float> f = features(s.kernel, s.working_set_bytes, model_work_[m]);
    const double ms = s.ms * factors[m];
    const float y = static_cast<float>(std::log(std::max(ms, 1e-6) / work(s.kernel)));
    for (const std::string& op : {s.kernel.op, std::string("*")}) {
      auto& [x, ys] = data[op];
      x.insert(x.end(), f.begin(), f.end());
      ys.push_back(y);
    }
  }
  regressors_.clear();
  clear_memo();
  uint64_t seed = 1;
  for (auto& [op, d] : data) regressors_[op] = Regressor::train(d.first, cols, d.second, seed++);
  // total = scale x kernel sum + overhead, fitted to the end-to-end measurements.
  std::vector<double> sums, totals, gaps;
  for (size_t i = 0; i < models_.size(); ++i) {
    const ModelSample& m = models_[i];
    if (m.p50_ms <= 0 || m.kernel_sum_ms <= 0) continue;
    const double factor = factors[i];
    sums.push_back(m.kernel_sum_ms * factor);
    totals.push_back(m.p50_ms * factor);
    gaps.push_back((m.p50_ms - m.kernel_sum_ms) * factor);
  }
  scale_ = 1;
  overhead_ms_ = std::max(0.0, median(gaps));
  const detail::Line line = detail::fit_line(sums, totals);
  // A fit that makes kernels worth less than half or more than twice their measured time is noise.
  if (sums.size() >= 5 && line.ok && line.a > 0.5 && line.a < 2.0) {
    scale_ = line.a;
    overhead_ms_ = line.b;
  }
  fitted_ = true;
}

std::vector<Prediction> Model::predict_many(const std::vector<KernelList>& lists, bool breakdown) const {
  TAILOR_CHECK(fitted_, "latency model for ", target_.str(), " is not fitted (call fit() after adding samples)");
  const size_t cols = feature_names().size();
  // Kernel times and sources first: remembered answers, then the table, then the rest batched per kernel type
  // for the regressors. The per-kernel breakdown is built only when asked (search needs totals, placement the
  // breakdown).
  std::vector<std::vector<double>> ms(lists.size());
  std::vector<std::vector<Source>> sources(lists.size());
  struct Miss {
    size_t list, index;
    std::string key;
    const Entry* entry;  // a table entry with too few samples to trust alone, or null
  };
  std::map<std::string, std::pair<std::vector<Miss>, std::vector<float>>> misses;
  {
    std::lock_guard<std::mutex> lock(memo_mutex_);
    std::string key;
    for (size_t l = 0; l < lists.size(); ++l) {
      const std::vector<Kernel>& ks = lists[l].kernels;
      const double model_work = lists[l].total_work();
      const std::string suffix = context_suffix(model_work);
      ms[l].resize(ks.size());
      sources[l].resize(ks.size(), Source::Table);
      for (size_t i = 0; i < ks.size(); ++i) {
        const Kernel& k = ks[i];
        key.clear();
        k.append_key(key);
        key += suffix;
        if (auto m = memo_.find(key); m != memo_.end()) {
          ms[l][i] = m->second.first;
          sources[l][i] = m->second.second;
          continue;
        }
        const auto it = table_.find(key);
        const Entry* entry = it == table_.end() ? nullptr : &it->second;
        if (entry && entry->ms.size() >= kTrustedSamples) {
          ms[l][i] = entry->median;
          memo_.emplace(key, std::make_pair(entry->median, Source::Table));
          continue;
        }
        const std::string op = regressors_.count(k.op) ? k.op : "*";
        TAILOR_CHECK(regressors_.count(op), "latency model for ", target_.str(), ": node '", k.node, "' runs a ", k.op,
                     " kernel and the table has no regressor at all");
        sources[l][i] = entry ? Source::Table : op == "*" ? Source::Uncovered : Source::Regressor;
        auto& [who, x] = misses[op];
        who.push_back({l, i, key, entry});
        const std::vector<float> f = features(k, lists[l].working_set_bytes, model_work);
        x.insert(x.end(), f.begin(), f.end());
      }
    }
  }
  for (const auto& [op, m] : misses) {
    const std::vector<float> y = regressors_.at(op)->predict(m.second, cols);
    std::lock_guard<std::mutex> lock(memo_mutex_);
    for (size_t r = 0; r < m.first.size(); ++r) {
      const Miss& miss = m.first[r];
      double t = std::exp(static_cast<double>(y[r])) * work(lists[miss.list].kernels[miss.index]);
      if (miss.entry) {
        // Shrinkage: a table entry of n samples (each one model measured once, at one moment of a noisy machine)
        // counts as n votes, the regressor (fitted on every similar kernel) as kRegressorVotes.
        const double n = static_cast<double>(miss.entry->ms.size());
        t = (n * miss.entry->median + kRegressorVotes * t) / (n + kRegressorVotes);
      }
      ms[miss.list][miss.index] = t;
      memo_.emplace(miss.key, std::make_pair(t, sources[miss.list][miss.index]));
    }
  }
  std::vector<Prediction> out(lists.size());
  for (size_t l = 0; l < lists.size(); ++l) {
    Prediction& p = out[l];
    // Calibration scales the whole prediction to the machine's state of the moment (1: its usual state).
    p.scale = scale_ * calibration_;
    p.overhead_ms = overhead_ms_ * calibration_;
    if (breakdown) p.kernels.resize(lists[l].kernels.size());
    double cumulative = p.overhead_ms;
    for (size_t i = 0; i < ms[l].size(); ++i) {
      const double t = ms[l][i] * p.scale;
      cumulative += t;
      const Source source = sources[l][i];
      (source == Source::Table ? p.from_table : source == Source::Regressor ? p.from_regressor : p.uncovered)++;
      if (!breakdown) continue;
      const Kernel& k = lists[l].kernels[i];
      KernelPrediction& kp = p.kernels[i];
      kp.node = k.node;
      kp.kind = k.kind;
      kp.op = k.op;
      kp.fused = k.fused;
      kp.ms = t;
      kp.cumulative_ms = cumulative;
      kp.source = source;
    }
    p.total_ms = cumulative;
  }
  return out;
}

Prediction Model::predict(const KernelList& kernels) const { return std::move(predict_many({kernels})[0]); }

KernelList Model::without_fusion(const KernelList& list) {
  KernelList result;
  result.working_set_bytes = list.working_set_bytes;
  std::vector<Kernel>& out = result.kernels;
  for (const Kernel& k : list.kernels) {
    if (k.op == "reorder" || k.op == "quantize" || k.op == "convert") continue;
    Kernel anchor = k;
    anchor.fused.clear();
    anchor.post_ops.clear();
    out.push_back(anchor);
    if (k.post_ops.empty()) continue;
    const std::string type = k.dtype.substr(k.dtype.rfind(':') == std::string::npos ? 0 : k.dtype.rfind(':') + 1);
    double elements = 1;
    for (int64_t d : k.output) elements *= static_cast<double>(d);
    const std::vector<std::string> kinds = split(k.post_ops, '+');
    for (size_t i = 0; i < kinds.size(); ++i) {
      Kernel alone;
      alone.node = i < k.fused.size() ? k.fused[i] : k.node;
      alone.kind = kinds[i];
      const bool binary = kinds[i] == "add" || kinds[i] == "mul" || kinds[i] == "sub";
      alone.op = (binary ? "binary:" : "eltwise:") + kinds[i];
      alone.impl = k.impl;
      alone.dtype = type;
      alone.layout = k.layout;
      alone.inputs = binary ? std::vector<std::vector<int64_t>>{k.output, k.output} : std::vector<std::vector<int64_t>>{k.output};
      alone.output = k.output;
      alone.bytes = (binary ? 3 : 2) * 4 * elements;
      out.push_back(alone);
    }
  }
  return result;
}

std::string Model::to_json() const {
  json models = json::array();
  for (const auto& m : models_) {
    models.push_back({{"name", m.name}, {"p50_ms", m.p50_ms}, {"kernel_sum_ms", m.kernel_sum_ms},
                      {"kernels", m.kernels}, {"macs", m.macs}, {"predicted_ms", m.predicted_ms}});
    if (m.reference_ms > 0) models.back()["reference_ms"] = m.reference_ms;
  }
  json samples = json::array();
  for (const auto& s : samples_)
    samples.push_back({{"kernel", kernel_to_json(s.kernel)}, {"ms", s.ms}, {"working_set_bytes", s.working_set_bytes}});
  json j = {{"format", kFormat}, {"version", kVersion}, {"target", target_to_json(target_)},
            {"features", feature_names()}, {"models", models}, {"samples", samples}};
  if (!reference_architecture_.empty())
    j["reference"] = {{"architecture", reference_architecture_}, {"ms", reference_ms_}};
  if (fitted_) {
    json regs = json::object();
    for (const auto& [op, r] : regressors_) regs[op] = {{"samples", r->samples()}, {"model", r->serialize()}};
    j["fit"] = {{"overhead_ms", overhead_ms_}, {"scale", scale_}, {"regressors", regs}};
  }
  return j.dump();
}

Model Model::from_json(const std::string& text, const std::string& file) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TAILOR_FAIL("latency table '", file, "' is not valid JSON (truncated or corrupted?): ", e.what());
  }
  std::string field = "format";
  try {
    TAILOR_CHECK(j.is_object() && j.value("format", std::string{}) == kFormat, "latency table '", file,
                 "': field 'format' is not '", kFormat, "' (not a tailor latency table)");
    field = "version";
    const int64_t version = tailor::detail::json_whole(j.at("version"), "latency table '" + file + "': field 'version'");
    TAILOR_CHECK(version == kVersion, "latency table '", file, "': field 'version' is ", version, "; this tailor reads version ",
                 kVersion, " (rebuild the table with tailor latency build)");
    field = "target";
    Model m(target_from_json(j.at("target"), "latency table '" + file + "': field 'target"));
    field = "features";
    TAILOR_CHECK(j.at("features").get<std::vector<std::string>>() == feature_names(), "latency table '", file,
                 "': field 'features' lists other kernel features than this tailor computes (rebuild the table)");
    field = "models";
    std::vector<ModelSample> models;
    for (const auto& mj : j.at("models")) {
      ModelSample s;
      s.name = mj.at("name").get<std::string>();
      s.p50_ms = mj.at("p50_ms").get<double>();
      s.kernel_sum_ms = mj.at("kernel_sum_ms").get<double>();
      s.kernels = static_cast<int>(tailor::detail::json_whole(mj.at("kernels"), "latency table '" + file + "': field '" + field + ".kernels'", 0, INT32_MAX));
      s.macs = mj.at("macs").get<double>();
      s.predicted_ms = mj.at("predicted_ms").get<double>();
      s.reference_ms = mj.value("reference_ms", 0.0);
      TAILOR_CHECK(std::isfinite(s.reference_ms) && s.reference_ms >= 0, "latency table '", file,
                   "': field 'models.reference_ms' is ", s.reference_ms);
      models.push_back(s);
    }
    if (j.contains("reference")) {
      field = "reference";
      m.reference_architecture_ = j.at("reference").at("architecture").get<std::string>();
      m.reference_ms_ = j.at("reference").at("ms").get<double>();
      TAILOR_CHECK(std::isfinite(m.reference_ms_) && m.reference_ms_ >= 0, "latency table '", file,
                   "': field 'reference.ms' is ", m.reference_ms_);
    }
    field = "samples";
    std::vector<KernelSample> samples;
    for (const auto& sj : j.at("samples")) {
      KernelSample s{kernel_from_json(sj.at("kernel")), sj.at("ms").get<double>(), sj.at("working_set_bytes").get<double>()};
      TAILOR_CHECK(std::isfinite(s.ms) && s.ms >= 0, "latency table '", file, "': field 'samples' holds a time of ", s.ms, " ms");
      samples.push_back(std::move(s));
    }
    size_t total = 0;
    for (const auto& s : models) total += static_cast<size_t>(s.kernels);
    TAILOR_CHECK(total == samples.size(), "latency table '", file, "': field 'samples' holds ", samples.size(),
                 " kernels but field 'models' counts ", total);
    size_t at = 0;
    for (const auto& s : models) {
      std::vector<KernelSample> mine(samples.begin() + static_cast<long>(at), samples.begin() + static_cast<long>(at + s.kernels));
      at += static_cast<size_t>(s.kernels);
      m.add(s, mine);
    }
    m.rebuild_entries(m.normalizations());  // each model's normalization looks at the models after it too
    if (j.contains("fit")) {
      field = "fit";
      const json& f = j.at("fit");
      m.overhead_ms_ = f.at("overhead_ms").get<double>();
      m.scale_ = f.at("scale").get<double>();
      for (const auto& [op, r] : f.at("regressors").items()) {
        field = "fit.regressors." + op;
        auto reg = Regressor::deserialize(r.at("model").get<std::string>(), "latency table '" + file + "': field '" + field + "'");
        reg->samples_ = static_cast<size_t>(tailor::detail::json_whole(r.at("samples"), "latency table '" + file + "': field '" + field + ".samples'", 0));
        m.regressors_[op] = std::move(reg);
      }
      m.fitted_ = true;
    }
    return m;
  } catch (const json::exception& e) {
    TAILOR_FAIL("latency table '", file, "': field '", field, "' is malformed: ", e.what());
  }
}

Model Model::load(const std::string& file, const Target* expected) {
  std::ifstream in(file, std::ios::binary);
  TAILOR_CHECK(in, "latency table '", file, "' cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  Model m = from_json(ss.str(), file);
  if (expected) {
    const std::string diff = m.target().differences(*expected);
    TAILOR_CHECK(diff.empty(), "latency table '", file, "' was built for ", m.target().str(), ", not for ", expected->str(),
                 " (", diff, "); build one for this target with `tailor latency build`");
  }
  return m;
}

void Model::save(const std::string& file) const { write_file_atomically(file, to_json()); }

}  // namespace tailor::latency
