// What the pruners share (private to src/prune).
#pragma once

#include <cmath>
#include <cstdint>

#include "tailor/core/error.hpp"

namespace tailor::prune_detail {

inline int64_t count_to_prune(double ratio, int64_t n) {
  // torch.nn.utils.prune._compute_nparams_toprune: round(amount * tensor_size).
  return static_cast<int64_t>(std::nearbyint(ratio * static_cast<double>(n)));
}

inline void check_ratio(double ratio, const char* what) {
  TAILOR_CHECK(ratio >= 0 && ratio < 1, what, ": ratio must be in [0, 1), got ", ratio);
}

}  // namespace tailor::prune_detail

namespace tailor {
using prune_detail::check_ratio;
using prune_detail::count_to_prune;
}  // namespace tailor
