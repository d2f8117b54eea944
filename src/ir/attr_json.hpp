// Attribute values as JSON, shared by the graph and provenance serializers (private to src/ir).
#pragma once

#include <nlohmann/json.hpp>

#include "tailor/ir/graph.hpp"

namespace tailor::detail {
nlohmann::json attr_to_json(const AttrValue& value);
/// Throws tailor::Error for an unknown type tag, nlohmann::json errors for missing fields.
AttrValue attr_from_json(const nlohmann::json& j);
}  // namespace tailor::detail
