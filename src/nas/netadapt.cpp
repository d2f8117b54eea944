// NetAdapt: a trained model shrunk one channel group at a time, each step the most accurate of the proposals
// that cut the predicted latency by the schedule's step.
#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tailor/core/error.hpp"
#include "tailor/nas/nas.hpp"
#include "tailor/prune/prune.hpp"

namespace tailor::nas {

std::string NetAdaptResult::json() const {
  nlohmann::json its = nlohmann::json::array();
  for (const auto& i : iterations)
    its.push_back({{"iteration", i.iteration},
                   {"group", i.group},
                   {"channels_before", i.channels_before},
                   {"channels_after", i.channels_after},
                   {"predicted_ms", i.predicted_ms},
                   {"accuracy", i.accuracy},
                   {"proposals", i.proposals}});
  nlohmann::json j = {{"start_ms", start_ms},
                      {"predicted_ms", predicted_ms},
                      {"measured_ms", measured_ms},
                      {"start_accuracy", start_accuracy},
                      {"short_term_accuracy", short_term_accuracy},
                      {"accuracy", accuracy},
                      {"iterations", its}};
  return j.dump(2);
}

namespace {

std::string group_key(const ChannelGroup& g) {
  std::string key;
  for (const auto& p : g.producers) key += (key.empty() ? "" : "+") + p;
  return key;
}

GraphModule pruned_copy(const GraphModuleImpl& m, const std::vector<std::vector<int64_t>>& shapes,
                        const ChannelGroup& g, int64_t remove) {
  GraphModule copy = clone_module(m);
  ChannelPruneOptions o;
  o.ratio = 0;
  o.max_ratio = 1;
  // floor(ratio * channels) == remove
  o.layer_ratios[g.producers.front()] = (static_cast<double>(remove) + 0.5) / static_cast<double>(g.channels);
  prune_channels(*copy, shapes, o);
  return copy;
}

double accuracy_of(GraphModuleImpl& m, const data::Dataset& data) {
  train::Model model = train::as_model(m);
  return train::accuracy(model, data);
}

}  // namespace

NetAdaptResult netadapt(GraphModuleImpl& module, const data::Dataset& train_set, const data::Dataset& validation,
                        const NetAdaptOptions& o) {
  TAILOR_CHECK(o.table && o.table->fitted(), "netadapt needs a fitted latency table of the target");
  TAILOR_CHECK(o.budget_ms > 0, "netadapt: the latency budget must be positive, got ", o.budget_ms);
  TAILOR_CHECK(!o.input_shape.empty(), "netadapt needs the model's input shape");
  TAILOR_CHECK(o.step > 0 && o.step < 1, "netadapt: step must be in (0, 1), got ", o.step);
  TAILOR_CHECK(o.max_ratio > 0 && o.max_ratio < 1, "netadapt: max_ratio must be in (0, 1), got ", o.max_ratio);
  TAILOR_CHECK(o.round_to >= 1, "netadapt: round_to must be >= 1");
  TAILOR_CHECK(o.short_term_images > 0 && o.short_term_images <= train_set.size(), "netadapt: short_term_images (",
               o.short_term_images, ") must be in 1..", train_set.size(), " (the training data)");
  TAILOR_CHECK(o.remeasure_seconds >= 0, "netadapt: remeasure_seconds must be >= 0, got ", o.remeasure_seconds);
  const std::vector<std::vector<int64_t>> shapes{o.input_shape};
  const latency::Target& target = o.table->target();
  auto predict = [&](const GraphModuleImpl& m) {
    GraphModule prepared = latency::prepare_for_target(clone_module(m), o.input_shape, target);
    return o.table->predict(latency::detect_kernels(*prepared, o.input_shape, target)).total_ms;
  };

  GraphModule work = clone_module(module);
  work->eval();
  NetAdaptResult result;
  result.start_ms = predict(*work);
  result.start_accuracy = accuracy_of(*work, validation);
  double current = result.start_ms;
  const double step_ms = o.step * result.start_ms;
  std::map<std::string, int64_t> original;
  for (const auto& g : channel_groups(*work, shapes))
    if (g.prunable) original[group_key(g)] = g.channels;

  int64_t data_offset = 0;
  double goal_ms = o.budget_ms;  // as predicted; lowered when a measurement shows the prediction optimistic
  int it = 1;
  for (int round = 0;; ++round) {
    for (; current > goal_ms && it <= o.max_iterations; ++it) {
      double target_ms = std::max(goal_ms, current - step_ms);
      struct Proposal {
        ChannelGroup group;
        int64_t remove;
        double ms;
      };
      std::vector<Proposal> proposals, fallback;
      for (const ChannelGroup& g : channel_groups(*work, shapes)) {
        if (!g.prunable || g.channels <= 1) continue;
        const std::string key = group_key(g);
        const int64_t orig = original.count(key) ? original[key] : g.channels;
        const int64_t floor_keep = std::max<int64_t>(
            std::min<int64_t>(o.round_to, orig), static_cast<int64_t>(std::ceil((1 - o.max_ratio) * orig)));
        // Kept counts this group may go down to, largest first (multiples of round_to).
        std::vector<int64_t> removals;
        for (int64_t keep = g.channels - 1; keep >= floor_keep; --keep)
          if (keep % o.round_to == 0) removals.push_back(g.channels - keep);
        if (removals.empty()) continue;
        // The fewest channels that reach the target: latency falls as channels go, so bisect.
        const double most = predict(*pruned_copy(*work, shapes, g, removals.back()));
        if (most > target_ms) {
          fallback.push_back({g, removals.back(), most});
          continue;
        }
        size_t lo = 0, hi = removals.size() - 1;
        double hi_ms = most;
        while (lo < hi) {
          const size_t mid = (lo + hi) / 2;
          const double ms = predict(*pruned_copy(*work, shapes, g, removals[mid]));
          if (ms <= target_ms) {
            hi = mid;
            hi_ms = ms;
          } else {
            lo = mid + 1;
          }
        }
        proposals.push_back({g, removals[hi], hi_ms});
      }
      if (proposals.empty()) {
        // No single group reaches this step: take the group that gets closest, as far as it may go.
        if (fallback.empty()) break;
        std::sort(fallback.begin(), fallback.end(), [](const Proposal& a, const Proposal& b) { return a.ms < b.ms; });
        if (fallback.front().ms >= current) break;
        proposals.push_back(fallback.front());
      }
      // Short-term fine-tuning of each proposal on the next slice of the training data, then judge on validation.
      const int64_t n = o.short_term_images;
      if (data_offset + n > train_set.size()) data_offset = 0;
      data::Dataset slice;
      slice.images = train_set.images.slice(0, data_offset, data_offset + n);
      slice.labels = train_set.labels.slice(0, data_offset, data_offset + n);
      data_offset += n;
      GraphModule best{nullptr};
      double best_acc = -1;
      const Proposal* chosen = nullptr;
      for (const Proposal& p : proposals) {
        GraphModule copy = pruned_copy(*work, shapes, p.group, p.remove);
        if (o.short_term.epochs > 0) {
          train::TrainOptions st = o.short_term;
          st.progress = false;
          st.checkpoint.clear();
          train::Model model = train::as_model(copy, "proposal");
          train::fit(model, nullptr, slice, nullptr, st);
        }
        const double acc = accuracy_of(*copy, validation);
        if (acc > best_acc) {
          best_acc = acc;
          best = copy;
          chosen = &p;
        }
      }
      work = best;
      current = chosen->ms;
      NetAdaptIteration rec;
      rec.iteration = it;
      rec.group = group_key(chosen->group);
      rec.channels_before = chosen->group.channels;
      rec.channels_after = chosen->group.channels - chosen->remove;
      rec.predicted_ms = current;
      rec.accuracy = best_acc;
      rec.proposals = static_cast<int>(proposals.size());
      result.iterations.push_back(rec);
      if (o.progress) o.progress(it, current, best_acc, rec.group);
    }
    TAILOR_CHECK(current <= goal_ms, "netadapt cannot reach ", o.budget_ms, " ms on ", target.str(),
                 round > 0 ? " as measured" : "", ": pruning every channel group as far as max_ratio allows leaves ",
                 current, " ms predicted (from ", result.start_ms, " ms)",
                 round > 0 ? detail::concat(", measured ", result.measured_ms, " ms before the last round") : "");
    if (o.remeasure_seconds <= 0) break;
    result.measured_ms = measure_latency({work}, shapes, target, o.remeasure_seconds)[0];
    if (result.measured_ms <= o.budget_ms || round == 3) break;
    goal_ms = current * o.budget_ms / result.measured_ms;
  }
  result.predicted_ms = current;
  result.short_term_accuracy = result.iterations.empty() ? result.start_accuracy : result.iterations.back().accuracy;
  if (o.long_term.epochs > 0) {
    train::Model model = train::as_model(work, "netadapt");
    train::fit(model, nullptr, train_set, &validation, o.long_term);
  }
  work->eval();
  result.accuracy = accuracy_of(*work, validation);
  assign_module(module, *work);
  module.eval();
  return result;
}

}  // namespace tailor::nas
