// tailor/ir/provenance.hpp: the record of one pass run. A GraphModule carries the records of every pass that
// made it (saved inside its archive), so a model says how it was made whether a CLI verb, a recipe or C++
// code ran the passes.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "tailor/ir/graph.hpp"

namespace tailor {

struct PassRecord {
  std::string pass;     ///< the pass as pipeline text, every option included
  bool changed = false;
  double seconds = 0;
  int64_t params_before = 0, params_after = 0;
  int64_t macs_before = 0, macs_after = 0;
  int64_t weight_bytes_before = 0, weight_bytes_after = 0;
  /// What the pass reports about its run (channels removed, layers quantized, final top-1, ...), in order.
  std::vector<std::pair<std::string, AttrValue>> stats;
  const AttrValue* stat(const std::string& key) const;
};

/// JSON text of records (an array), and back; a malformed array fails naming the field.
std::string provenance_to_json(const std::vector<PassRecord>& records);
std::vector<PassRecord> provenance_from_json(const std::string& text);

}  // namespace tailor
