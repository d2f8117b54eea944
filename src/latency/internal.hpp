// Internal helpers of the latency model shared by its translation units.
#pragma once

#include <vector>

#include "tailor/latency/latency.hpp"

namespace tailor::latency::detail {

/// y = a x + b by least squares weighted by 1 / y^2, so that every model's relative error counts alike.
/// ok is false with fewer than 2 points or when x does not vary.
struct Line {
  double a = 1, b = 0;
  bool ok = false;
};
Line fit_line(const std::vector<double>& x, const std::vector<double>& y);

double median(std::vector<double> v);

}  // namespace tailor::latency::detail
