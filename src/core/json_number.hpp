// src/core/json_number.hpp: whole numbers read from tailor's JSON files, checked. nlohmann converts a JSON float to
// an integer with a plain cast (2.5 reads as 2, 1e300 is undefined behaviour), so every reader takes its whole
// numbers through here and a damaged file is refused with the field's name.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tailor/core/error.hpp"

namespace tailor::detail {

/// `v` as a whole number in [least, most]; `what` names the file and field for the message.
inline int64_t json_whole(const nlohmann::json& v, const std::string& what,
                          int64_t least = std::numeric_limits<int64_t>::min(),
                          int64_t most = std::numeric_limits<int64_t>::max()) {
  TAILOR_CHECK(v.is_number_integer(), what, " must be a whole number, not ", v.dump());
  const bool too_large = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max());
  const int64_t x = too_large ? 0 : v.get<int64_t>();
  TAILOR_CHECK(!too_large && x >= least && x <= most, what, " = ", v.dump(), " is out of range");
  return x;
}

/// A list of whole numbers, each in [least, most].
inline std::vector<int64_t> json_wholes(const nlohmann::json& v, const std::string& what,
                                        int64_t least = std::numeric_limits<int64_t>::min(),
                                        int64_t most = std::numeric_limits<int64_t>::max()) {
  TAILOR_CHECK(v.is_array(), what, " must be a list of whole numbers, not ", v.dump());
  std::vector<int64_t> out;
  for (const auto& e : v) out.push_back(json_whole(e, what, least, most));
  return out;
}

/// A list of tensor shapes (each a list of dimensions, none negative).
inline std::vector<std::vector<int64_t>> json_shapes(const nlohmann::json& v, const std::string& what) {
  TAILOR_CHECK(v.is_array(), what, " must be a list of shapes, not ", v.dump());
  std::vector<std::vector<int64_t>> out;
  for (const auto& shape : v) out.push_back(json_wholes(shape, what + " (a dimension)", 0));
  return out;
}

/// obj[key] as a whole number in [least, most], or `fallback` where obj has no `key`; `where` names the file.
inline int64_t json_whole_or(const nlohmann::json& obj, const char* key, int64_t fallback, const std::string& where,
                             int64_t least = std::numeric_limits<int64_t>::min(),
                             int64_t most = std::numeric_limits<int64_t>::max()) {
  if (!obj.is_object() || !obj.contains(key)) return fallback;
  return json_whole(obj.at(key), where + ": '" + key + "'", least, most);
}

/// obj[key] as a list of whole numbers, or empty where obj has no `key`.
inline std::vector<int64_t> json_wholes_or_empty(const nlohmann::json& obj, const char* key, const std::string& where,
                                                 int64_t least = std::numeric_limits<int64_t>::min(),
                                                 int64_t most = std::numeric_limits<int64_t>::max()) {
  if (!obj.is_object() || !obj.contains(key)) return {};
  return json_wholes(obj.at(key), where + ": '" + key + "'", least, most);
}

}  // namespace tailor::detail
