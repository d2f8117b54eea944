// A run-time value as a static attribute, shared by the exporters that fold values computed at a known input shape
// into constants (ONNX export, split parts of a placement). Private to src/.
#pragma once

#include <optional>
#include <vector>

#include <ATen/core/ivalue.h>

#include "tailor/ir/graph.hpp"

namespace tailor::detail {

/// None, bool, int, float, string, and lists of int, float or bool (as ints); nullopt for anything else.
inline std::optional<AttrValue> attr_from_ivalue(const c10::IValue& v) {
  if (v.isNone()) return AttrValue{std::monostate{}};
  if (v.isBool()) return AttrValue{v.toBool()};
  if (v.isInt()) return AttrValue{v.toInt()};
  if (v.isDouble()) return AttrValue{v.toDouble()};
  if (v.isString()) return AttrValue{v.toStringRef()};
  if (v.isIntList()) return AttrValue{v.toIntVector()};
  if (v.isDoubleList()) return AttrValue{v.toDoubleVector()};
  if (v.isBoolList()) {
    std::vector<int64_t> out;
    for (bool b : v.toBoolList()) out.push_back(b);
    return AttrValue{out};
  }
  return std::nullopt;
}

}  // namespace tailor::detail
