// Building a latency table by adaptive sampling, and validating it against interleaved measurements.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <random>
#include <set>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "internal.hpp"
#include "tailor/latency/latency.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor::latency {
using json = nlohmann::json;

namespace {
double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

void build(Model& model, const BuildOptions& o) {
  const std::string diff = model.target().differences(o.target);
  TAILOR_CHECK(diff.empty(), "latency build: the table so far was measured on ", model.target().str(), ", not on ",
               o.target.str(), " (", diff, ")");
  TAILOR_CHECK(o.models > 0 && o.round_size > 0, "latency build: models and round size must be positive");
  TAILOR_CHECK(o.adaptive_share >= 0 && o.adaptive_share <= 1, "latency build: adaptive share must be in [0, 1]");
  const auto start = std::chrono::steady_clock::now();
  // A table keeps the reference it was started with, so that a resumed build normalizes to the same model.
  if (model.reference_architecture().empty() && model.models().empty())
    model.set_reference_architecture(Reference::kArchitecture);
  std::optional<Reference> reference;
  if (!model.reference_architecture().empty()) reference = Reference::compile_for(o.target, model.reference_architecture());
  MeasureOptions measure_options = o.measure;
  measure_options.reference = reference ? &*reference : nullptr;
  std::set<std::string> seen;
  for (const auto& m : model.models()) seen.insert(m.name);
  int64_t index = static_cast<int64_t>(model.models().size());
  int failures = 0;
  while (static_cast<int>(model.models().size()) < o.models && seconds_since(start) < o.max_minutes * 60) {
    // Adaptive sampling (nn-Meter's idea at the level of whole models): part of each round mutates the models
    // the last fit predicted worst, so that new samples land where the error is largest.
    std::vector<std::string> parents;
    if (model.fitted()) {
      std::vector<std::pair<double, std::string>> errors;
      for (size_t i = 0; i < model.models().size(); ++i) {
        const ModelSample& m = model.models()[i];
        const double p50 = m.p50_ms * model.normalization(i);
        if (m.predicted_ms > 0) errors.push_back({std::abs(m.predicted_ms - p50) / p50, m.name});
      }
      std::sort(errors.rbegin(), errors.rend());
      for (size_t i = 0; i < errors.size() && i < 10; ++i) parents.push_back(errors[i].second);
    }
    const int goal = std::min(o.round_size, o.models - static_cast<int>(model.models().size()));
    const int adaptive = parents.empty() ? 0 : static_cast<int>(std::lround(goal * o.adaptive_share));
    int added = 0, attempts = 0;
    while (added < goal && attempts < goal * 20 && seconds_since(start) < o.max_minutes * 60) {
      ++attempts;
      const std::string* parent = added < adaptive ? &parents[static_cast<size_t>(added) % parents.size()] : nullptr;
      WorkloadItem item = draw(o.workload, o.seed, index++, parent);
      if (!seen.insert(item.name).second) continue;
      try {
        GraphModule prepared = prepare_for_target(item.module, item.input_shape, o.target, o.seed + static_cast<uint64_t>(index));
        auto exe = compile(o.target.backend, *prepared, compile_options(item.input_shape, o.target));
        const double predicted = model.fitted() ? model.predict(kernels_of(*exe)).total_ms : 0;
        auto [sample, kernels] = measure(*exe, item.input_shape, measure_options);
        sample.name = item.name;
        sample.predicted_ms = predicted;
        model.add(sample, kernels);
        ++added;
        if (o.progress) o.progress(static_cast<int>(model.models().size()), o.models, seconds_since(start), sample);
      } catch (const Error& e) {
        // A sampled architecture the backend cannot run is skipped; a workload where nothing runs is an error.
        TAILOR_CHECK(++failures < 20 || !model.models().empty(), "latency build: no model of the workload runs on ",
                     o.target.str(), "; the last error: ", e.what());
      }
    }
    if (added == 0) break;  // the workload has no new models left
    model.fit();
    if (o.checkpoint) o.checkpoint(model);
  }
  if (!model.fitted() && model.sample_count() > 0) model.fit();
}

Accuracy accuracy(const std::vector<double>& predicted, const std::vector<double>& measured) {
  TAILOR_CHECK(predicted.size() == measured.size(), "accuracy: ", predicted.size(), " predictions for ", measured.size(),
               " measurements");
  Accuracy a;
  const size_t n = predicted.size();
  if (n == 0) return a;
  double se = 0, sr = 0;
  int w10 = 0, w5 = 0;
  for (size_t i = 0; i < n; ++i) {
    const double rel = (predicted[i] - measured[i]) / measured[i];
    w10 += std::abs(rel) <= 0.10;
    w5 += std::abs(rel) <= 0.05;
    se += (predicted[i] - measured[i]) * (predicted[i] - measured[i]);
    sr += rel * rel;
  }
  a.within_10 = static_cast<double>(w10) / n;
  a.within_5 = static_cast<double>(w5) / n;
  a.rmse_ms = std::sqrt(se / n);
  a.rmse_pct = 100 * std::sqrt(sr / n);
  // Kendall's tau-b: concordant minus discordant pairs, corrected for ties.
  double concordant = 0, discordant = 0, ties_p = 0, ties_m = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j) {
      const double dp = predicted[i] - predicted[j], dm = measured[i] - measured[j];
      if (dp == 0 && dm == 0) continue;
      if (dp == 0) {
        ++ties_p;
      } else if (dm == 0) {
        ++ties_m;
      } else if ((dp > 0) == (dm > 0)) {
        ++concordant;
      } else {
        ++discordant;
      }
    }
  const double denom = std::sqrt((concordant + discordant + ties_p) * (concordant + discordant + ties_m));
  a.kendall_tau = denom > 0 ? (concordant - discordant) / denom : 0;
  return a;
}

ValidationReport validate(const Model& model, const ValidateOptions& o) {
  TAILOR_CHECK(model.fitted(), "latency validate: the table is not fitted");
  TAILOR_CHECK(o.count > 0 && o.group >= 0 && o.rounds > 0,
               "latency validate: count and rounds must be positive, group positive or 0 (all)");
  const int group = o.group > 0 ? o.group : o.count;
  const Target& target = model.target();
  ValidationReport report;
  report.target = target;
  std::set<std::string> seen;
  for (const auto& m : model.models()) seen.insert(m.name);
  // MACs-proportional baseline, fitted on the table's own models.
  std::vector<double> macs, p50;
  for (size_t i = 0; i < model.models().size(); ++i) {
    macs.push_back(model.models()[i].macs);
    p50.push_back(model.models()[i].p50_ms * model.normalization(i));
  }
  const detail::Line macs_line = detail::fit_line(macs, p50);
  // The table's reference, timed in every round next to the models: the calibrated prediction scales to it.
  std::optional<Reference> reference;
  if (model.reference_ms() > 0) reference = Reference::compile_for(target, model.reference_architecture());
  std::vector<KernelList> lists;
  const auto start = std::chrono::steady_clock::now();
  double detect_seconds = 0;
  int64_t index = 0;
  int failures = 0;
  while (static_cast<int>(report.rows.size()) < o.count && index < static_cast<int64_t>(o.count) * 50) {
    std::vector<WorkloadItem> items;
    while (static_cast<int>(items.size() + report.rows.size()) < o.count && static_cast<int>(items.size()) < group &&
           index < static_cast<int64_t>(o.count) * 50) {
      WorkloadItem item = draw(o.workload, o.seed, index++);
      if (seen.insert(item.name).second) items.push_back(std::move(item));
    }
    if (items.empty()) break;
    std::vector<std::unique_ptr<Executable>> exes;
    std::vector<Executable*> raw;
    std::vector<std::vector<c10::IValue>> inputs;
    std::vector<WorkloadItem> kept;
    for (auto& item : items) {
      try {
        const auto t0 = std::chrono::steady_clock::now();
        GraphModule prepared = prepare_for_target(item.module, item.input_shape, target, static_cast<uint64_t>(index));
        const double prepare_seconds = seconds_since(t0);
        exes.push_back(compile(target.backend, *prepared, compile_options(item.input_shape, target)));
        // Predictions read the kernels as search and placement list them (no code made); the list must be the
        // one the measured executable runs.
        const auto t1 = std::chrono::steady_clock::now();
        KernelList listed = detect_kernels(*prepared, item.input_shape, target);
        detect_seconds += prepare_seconds + seconds_since(t1);
        const KernelList run = kernels_of(*exes.back());
        bool same = listed.kernels.size() == run.kernels.size() && listed.working_set_bytes == run.working_set_bytes;
        for (size_t k = 0; same && k < run.kernels.size(); ++k) same = listed.kernels[k].key() == run.kernels[k].key();
        report.detect_mismatches += !same;
        lists.push_back(std::move(listed));
        raw.push_back(exes.back().get());
        inputs.push_back(random_inputs(item.input_shape, 0));
        kept.push_back(std::move(item));
      } catch (const Error& e) {
        TAILOR_CHECK(++failures < 20 || !report.rows.empty(), "latency validate: no model of the workload runs on ",
                     target.str(), "; the last error: ", e.what());
      }
    }
    // Two measurements of the same models, in alternating interleaved rounds over the same stretch of time:
    // their disagreement is the noise floor, and drift falls on both (and on every model) alike.
    ProfileOptions timing;
    timing.warmup = 2;
    timing.min_runs = 5;
    timing.max_seconds = o.seconds_per_model / (2 * o.rounds);
    std::vector<std::array<std::vector<double>, 2>> p50s(raw.size());
    std::vector<double> reference_ms;
    for (int r = 0; r < 2 * o.rounds; ++r) {
      if (reference && r % 2 == 0) reference_ms.push_back(reference->time_ms());
      for (size_t k = 0; k < raw.size(); ++k) {
        const size_t i = (k + static_cast<size_t>(r)) % raw.size();
        p50s[i][r % 2].push_back(time_executable(*raw[i], inputs[i], timing).p50_ms);
      }
    }
    std::vector<double> first, second;
    for (auto& m : p50s) {
      first.push_back(detail::median(m[0]));
      second.push_back(detail::median(m[1]));
    }
    for (size_t i = 0; i < kept.size(); ++i) {
      ValidationRow row;
      row.name = kept[i].name;
      row.measured_ms = first[i];
      row.repeat_ms = second[i];
      row.reference_ms = detail::median(reference_ms);
      const auto& ks = lists[lists.size() - kept.size() + i].kernels;
      row.kernels = static_cast<int>(ks.size());
      for (const auto& k : ks) row.macs += k.macs;
      report.rows.push_back(row);
    }
    if (o.progress) o.progress(static_cast<int>(report.rows.size()), o.count, seconds_since(start));
  }
  TAILOR_CHECK(!report.rows.empty(), "latency validate: the workload gave no model that is not in the table");
  // Prediction speed: the kernel lists predicted in batches, repeated for at least a fifth of a second.
  model.clear_memo();
  const auto cold = std::chrono::steady_clock::now();
  std::vector<Prediction> predictions = model.predict_many(lists, false);
  report.predict_cold_per_second = static_cast<double>(lists.size()) / seconds_since(cold);
  const auto t0 = std::chrono::steady_clock::now();
  int repeats = 0;
  do {
    predictions = model.predict_many(lists, false);
    ++repeats;
  } while (seconds_since(t0) < 0.2);
  report.predict_per_second = static_cast<double>(lists.size()) * repeats / seconds_since(t0);
  report.detect_ms = 1e3 * detect_seconds / static_cast<double>(lists.size());
  std::vector<KernelList> unfused;
  for (const auto& ks : lists) unfused.push_back(Model::without_fusion(ks));
  const std::vector<Prediction> op_sums = model.predict_many(unfused);
  std::vector<double> measured, repeat, predicted, by_macs, by_ops, calibrated;
  for (size_t i = 0; i < report.rows.size(); ++i) {
    ValidationRow& row = report.rows[i];
    row.predicted_ms = predictions[i].total_ms;
    row.from_regressor = predictions[i].from_regressor;
    row.uncovered = predictions[i].uncovered;
    row.macs_ms = macs_line.ok ? macs_line.a * row.macs + macs_line.b : 0;
    row.op_sum_ms = op_sums[i].total_ms;
    row.calibrated_ms = row.reference_ms > 0 ? row.predicted_ms * row.reference_ms / model.reference_ms() : row.predicted_ms;
    calibrated.push_back(row.calibrated_ms);
    measured.push_back(row.measured_ms);
    repeat.push_back(row.repeat_ms);
    predicted.push_back(row.predicted_ms);
    by_macs.push_back(row.macs_ms);
    by_ops.push_back(row.op_sum_ms);
  }
  report.model = accuracy(predicted, measured);
  report.macs = accuracy(by_macs, measured);
  report.op_sum = accuracy(by_ops, measured);
  report.noise = accuracy(repeat, measured);
  report.calibrated = accuracy(calibrated, measured);
  return report;
}

std::string ValidationReport::to_json() const {
  auto acc = [](const Accuracy& a) {
    return json{{"within_10pct", a.within_10}, {"within_5pct", a.within_5}, {"rmse_ms", a.rmse_ms},
                {"rmse_pct", a.rmse_pct}, {"kendall_tau", a.kendall_tau}};
  };
  json rows_j = json::array();
  for (const auto& r : rows)
    rows_j.push_back({{"name", r.name}, {"measured_ms", r.measured_ms}, {"repeat_ms", r.repeat_ms},
                      {"predicted_ms", r.predicted_ms}, {"reference_ms", r.reference_ms},
                      {"calibrated_ms", r.calibrated_ms}, {"macs_ms", r.macs_ms}, {"op_sum_ms", r.op_sum_ms},
                      {"macs", r.macs}, {"kernels", r.kernels}, {"from_regressor", r.from_regressor},
                      {"uncovered", r.uncovered}});
  return json{{"target", target.str()},
              {"models", rows.size()},
              {"latency_model", acc(model)},
              {"calibrated_by_reference", acc(calibrated)},
              {"macs_proportional", acc(macs)},
              {"op_sum_without_kernel_detection", acc(op_sum)},
              {"noise_floor_repeat", acc(noise)},
              {"predictions_per_second", predict_per_second},
              {"predictions_per_second_cold", predict_cold_per_second},
              {"detect_ms_per_model", detect_ms},
              {"detect_mismatches", detect_mismatches},
              {"rows", rows_j}}
      .dump(2);
}

}  // namespace tailor::latency
