#include "tailor/core/text.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace tailor {

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    size_t b = 0, e = cur.size();
    while (b < e && std::isspace(static_cast<unsigned char>(cur[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(cur[e - 1]))) --e;
    if (e > b) out.push_back(cur.substr(b, e - b));
    cur.clear();
  };
  for (char c : text) {
    if (c == separator) flush();
    else cur += c;
  }
  flush();
  return out;
}

std::string human_count(double v) {
  const char* units[] = {"", "K", "M", "G", "T"};
  int u = 0;
  while (std::abs(v) >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char b[32];
  std::snprintf(b, sizeof b, u ? "%.2f%s" : "%.0f%s", v, units[u]);
  return b;
}

std::string short_number(double v) {
  char b[32];
  std::snprintf(b, sizeof b, v < 1 ? "%.3f" : v < 10 ? "%.2f" : "%.1f", v);
  return b;
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

}  // namespace tailor
