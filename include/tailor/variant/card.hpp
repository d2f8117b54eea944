// tailor/variant/card.hpp: a VariantCard describes one compressed variant (where it came from, its size, cost,
// accuracy and one latency profile per backend) and a Manifest lists the cards of a run in manifest.json, which
// reports and the placement planner read.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tailor/ir/analysis.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/profile/profiler.hpp"

namespace tailor {

struct VariantCard {
  std::string name;
  std::string file;    ///< the exported model, relative to the manifest's folder when written by a run
  std::string onnx_file;  ///< the same variant as ONNX (QDQ when quantized), when the run exported one
  std::string parent;  ///< the variant this one was derived from (empty for a baseline)
  std::vector<PassRecord> provenance;  ///< passes with their options, in the order they ran
  std::vector<std::vector<int64_t>> input_shapes;
  int64_t params = 0, macs = 0, weight_bytes = 0, file_bytes = 0;
  std::optional<double> accuracy;  ///< top-1 in [0, 1] on `accuracy_data` when an evaluator was given
  std::string accuracy_data;
  std::map<std::string, LatencyProfile> profiles;  ///< by backend name
  /// p50 predicted by a latency table (tailor/latency), by backend: beside the measured profile, so a reader
  /// sees how far the model was off.
  std::map<std::string, double> predicted_ms;
  /// Problems a reader must see, e.g. "not faster than parent on onednn-cpu".
  std::vector<std::string> flags;

  /// Adds a profile: it replaces the one of the same backend, threads and ISA, and sits beside those of other
  /// threads or ISAs (keyed "backend:Nt:isa" when the backend's plain key is taken), so one card can describe
  /// several devices of one backend.
  void add_profile(LatencyProfile profile);
  /// Fills params/MACs/bytes from a cost analysis.
  void set_costs(const CostReport& costs);
  std::string to_json() const;
  static VariantCard from_json(const std::string& text);
};

struct Manifest {
  std::string tailor_version;
  std::string created;  ///< UTC, ISO 8601
  std::vector<VariantCard> variants;

  const VariantCard* find(const std::string& name) const;
  /// Adds or replaces the card with the same name.
  void upsert(VariantCard card);
  std::string to_json() const;
  static Manifest from_json(const std::string& text);
  /// Written to a temporary name and renamed, so a reader never sees half a manifest.
  void save(const std::string& path) const;
  static Manifest load(const std::string& path);
};

}  // namespace tailor
