// tailor/core/text.hpp: the few text helpers every layer uses (lists on the command line and in messages,
// counts and times in tables), written once so that they agree everywhere.
#pragma once

#include <string>
#include <vector>

namespace tailor {

/// "a, b, c" (or with `separator`).
std::string join(const std::vector<std::string>& items, const std::string& separator = ", ");
/// Splits on `separator`, trimming blanks and dropping empty items: "a, b,,c" -> {a, b, c}.
std::vector<std::string> split(const std::string& text, char separator = ',');
/// 1234 -> "1.23K", 5.6e6 -> "5.60M"; below 1000 without decimals.
std::string human_count(double value);
/// A latency or percentage with the digits that matter: 0.123, 1.23, 12.3.
std::string short_number(double value);
/// Text safe inside HTML elements and attribute values (&, <, >, " escaped), for the reports.
std::string html_escape(const std::string& text);

}  // namespace tailor
