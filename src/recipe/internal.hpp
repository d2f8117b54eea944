// What the recipe runner and the report share (private to src/recipe).
#pragma once

#include <string>
#include <vector>

#include "tailor/recipe/recipe.hpp"

namespace tailor::recipe::detail {

const LatencyProfile* profile_of(const VariantCard& c, const std::string& backend);
/// The goals of the recipe that `c` misses, as sentences ("0.8 points below the baseline"), against the
/// baseline's accuracy; a variant without a profile on a budgeted backend misses that budget.
std::vector<std::string> goal_misses(const Recipe& r, const VariantCard& c, const VariantCard& base);
bool meets_goals(const Recipe& r, const VariantCard& c, const VariantCard& base);
/// A failed variant's card has no file and no sizes of its own: a dash, not a zero.
std::string size_or_dash(const VariantCard& c, int64_t v, const char* unit);

}  // namespace tailor::recipe::detail
