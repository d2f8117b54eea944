#include "tailor/ir/provenance.hpp"

#include "../core/json_number.hpp"
#include "attr_json.hpp"
#include "tailor/core/error.hpp"

namespace tailor {

using nlohmann::json;

const AttrValue* PassRecord::stat(const std::string& key) const {
  for (const auto& [k, v] : stats)
    if (k == key) return &v;
  return nullptr;
}

std::string provenance_to_json(const std::vector<PassRecord>& records) {
  json out = json::array();
  for (const auto& r : records) {
    json stats = json::array();
    for (const auto& [k, v] : r.stats) stats.push_back({{"key", k}, {"value", detail::attr_to_json(v)}});
    out.push_back({{"pass", r.pass},
                   {"changed", r.changed},
                   {"seconds", r.seconds},
                   {"params", {r.params_before, r.params_after}},
                   {"macs", {r.macs_before, r.macs_after}},
                   {"weight_bytes", {r.weight_bytes_before, r.weight_bytes_after}},
                   {"stats", stats}});
  }
  return out.dump();
}

std::vector<PassRecord> provenance_from_json(const std::string& text) {
  std::vector<PassRecord> out;
  try {
    const json j = json::parse(text);
    TAILOR_CHECK(j.is_array(), "provenance is not a JSON array");
    for (const auto& r : j) {
      TAILOR_CHECK(r.is_object(), "provenance record ", out.size(), " is not an object");
      PassRecord rec;
      rec.pass = r.at("pass").get<std::string>();
      rec.changed = r.value("changed", false);
      rec.seconds = r.value("seconds", 0.0);
      auto pair = [&](const char* key, int64_t& a, int64_t& b) {
        if (r.contains(key)) {
          const std::string what = detail::concat("provenance record ", out.size(), ": '", key, "'");
          a = tailor::detail::json_whole(r[key].at(0), what);
          b = tailor::detail::json_whole(r[key].at(1), what);
        }
      };
      pair("params", rec.params_before, rec.params_after);
      pair("macs", rec.macs_before, rec.macs_after);
      pair("weight_bytes", rec.weight_bytes_before, rec.weight_bytes_after);
      for (const auto& s : r.value("stats", json::array()))
        rec.stats.emplace_back(s.at("key").get<std::string>(), detail::attr_from_json(s.at("value")));
      out.push_back(std::move(rec));
    }
  } catch (const json::exception& e) {
    TAILOR_FAIL("malformed provenance (record ", out.size(), "): ", e.what());
  }
  return out;
}

}  // namespace tailor
