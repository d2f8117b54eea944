// The recipe's results: Pareto fronts, goals, and the self-contained HTML report.
#include "tailor/recipe/recipe.hpp"

#include "tailor/core/text.hpp"
#include "tailor/runtime/isa.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include "tailor/capture/capture.hpp"
#include "tailor/core/error.hpp"
#include "tailor/data/fashion_mnist.hpp"
#include "tailor/export/export.hpp"
#include "tailor/ir/analysis.hpp"
#include "tailor/models/zoo.hpp"
#include "tailor/pass/pass.hpp"
#include "tailor/place/simulate.hpp"
#include "tailor/runtime/backend.hpp"
#include "tailor/train/train.hpp"
#include "tailor/version.hpp"

#include "internal.hpp"

namespace fs = std::filesystem;

namespace tailor::recipe {

namespace detail {
const LatencyProfile* profile_of(const VariantCard& c, const std::string& backend) {
  const auto it = c.profiles.find(backend);
  return it == c.profiles.end() ? nullptr : &it->second;
}

std::vector<std::string> goal_misses(const Recipe& r, const VariantCard& c, const VariantCard& base) {
  std::vector<std::string> out;
  if (r.max_accuracy_drop && c.accuracy && base.accuracy &&
      100 * (*base.accuracy - *c.accuracy) > *r.max_accuracy_drop + 1e-9)
    out.push_back(short_number(100 * (*base.accuracy - *c.accuracy)) + " points below the baseline");
  for (const auto& [b, budget] : r.latency_ms) {
    const auto* p = profile_of(c, b);
    if (!p) out.push_back("not profiled on " + b);
    else if (p->latency.p50_ms > budget) out.push_back("over the " + short_number(budget) + " ms budget on " + b);
  }
  for (const auto& [b, budget] : r.predicted_latency_ms) {
    const auto it = c.predicted_ms.find(b);
    if (it == c.predicted_ms.end()) out.push_back("no predicted latency on " + b + " (no table for its dtype)");
    else if (it->second > budget) out.push_back("predicted over the " + short_number(budget) + " ms budget on " + b);
  }
  return out;
}

bool meets_goals(const Recipe& r, const VariantCard& c, const VariantCard& base) { return goal_misses(r, c, base).empty(); }

std::string size_or_dash(const VariantCard& c, int64_t v, const char* unit) {
  return c.name == "baseline" || !c.file.empty() ? human_count(static_cast<double>(v)) + unit : std::string("-");
}
}  // namespace detail

using namespace detail;


std::vector<std::string> pareto_front(const Manifest& m, const std::string& backend) {
  std::vector<const VariantCard*> cards;
  for (const auto& c : m.variants)
    if (profile_of(c, backend)) cards.push_back(&c);
  std::vector<std::string> front;
  for (const auto* c : cards) {
    const double lat = profile_of(*c, backend)->latency.p50_ms;
    const double acc = c->accuracy.value_or(0);
    bool dominated = false;
    for (const auto* o : cards) {
      if (o == c) continue;
      const double ol = profile_of(*o, backend)->latency.p50_ms, oa = o->accuracy.value_or(0);
      if (ol <= lat && oa >= acc && (ol < lat || oa > acc)) dominated = true;
    }
    if (!dominated) front.push_back(c->name);
  }
  std::sort(front.begin(), front.end(), [&](const std::string& a, const std::string& b) {
    return profile_of(*m.find(a), backend)->latency.p50_ms < profile_of(*m.find(b), backend)->latency.p50_ms;
  });
  return front;
}

std::string render_report(const Recipe& r, const Manifest& m, const std::vector<std::string>& kept,
                          const std::vector<place::Plan>& plans, const std::vector<std::string>& placement_failures) {
  const VariantCard* base = m.find("baseline");
  std::ostringstream h;
  h << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>tailor report: " << html_escape(r.name)
    << "</title>\n<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}"
       "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "td:first-child,th:first-child{text-align:left}tr.kept{background:#e8f6e8}.flag{color:#b00;text-align:left;max-width:260px}td.pipe{text-align:left;max-width:340px;word-break:break-word}"
       "h2{margin-top:1.6em}.note{color:#555;font-size:14px}svg{background:#fff;border:1px solid #ddd}</style>"
       "</head><body>\n";
  h << "<h1>" << html_escape(r.name) << "</h1>\n<p class=\"note\">Recipe <code>" << html_escape(r.file)
    << "</code>, tailor " << m.tailor_version << ", " << m.created << ". Accuracy: top-1 on "
    << (base && base->accuracy ? html_escape(base->accuracy_data) : "no data") << ". Latency: p50 at batch "
    << r.batch << ", " << (r.threads > 0 ? std::to_string(r.threads) : "all") << " thread(s)"
    << (r.rounds > 1 ? ", the median of " + std::to_string(r.rounds) + " rounds in which all variants were timed in turn"
                     : std::string())
    << ".</p>\n";
  if (!r.latency_ms.empty() || r.max_accuracy_drop) {
    h << "<p><b>Goals:</b> ";
    if (r.max_accuracy_drop) h << "at most " << *r.max_accuracy_drop << " point(s) below the baseline; ";
    for (const auto& [b, v] : r.latency_ms) h << "p50 &le; " << v << " ms on " << b << "; ";
    h << (kept.empty() ? "<b>no variant meets them.</b>" : std::to_string(kept.size()) + " variant(s) meet them (green).")
      << "</p>\n";
  }
  h << "<table><tr><th>variant</th><th>pipeline</th><th>params</th><th>MACs</th><th>weights</th><th>top-1 %</th>";
  for (const auto& b : r.backends) h << "<th>" << b << " p50 ms</th>";
  for (const auto& [b, files] : r.latency_tables) h << "<th>" << b << " predicted ms</th>";
  h << "<th>flags</th></tr>\n";
  std::map<std::string, std::string> written;  // each variant's pipeline as the recipe wrote it
  for (const auto& v : r.variants) {
    std::string t;
    for (const auto& p : v.pipeline) t += (t.empty() ? "" : ", ") + p.str();
    written[v.name] = t;
  }
  for (const auto& c : m.variants) {
    const bool k = std::find(kept.begin(), kept.end(), c.name) != kept.end();
    std::string pipe = written.count(c.name) ? written[c.name] : "";
    if (c.name == "baseline")
      pipe = !r.zoo.empty() ? r.zoo + (r.train_epochs > 0 ? " trained " + std::to_string(r.train_epochs) + " epoch(s)" : "")
                            : r.model_file;
    auto count = [&](int64_t v, const char* unit) { return size_or_dash(c, v, unit); };
    h << "<tr" << (k ? " class=\"kept\"" : "") << "><td>" << html_escape(c.name) << "</td><td class=\"pipe\">"
      << html_escape(pipe) << "</td><td>" << count(c.params, "") << "</td><td>" << count(c.macs, "") << "</td><td>"
      << count(c.weight_bytes, "B") << "</td><td>" << (c.accuracy ? short_number(100 * *c.accuracy) : "-") << "</td>";
    for (const auto& b : r.backends) {
      const auto* p = profile_of(c, b);
      h << "<td>" << (p ? short_number(p->latency.p50_ms) : "-") << "</td>";
    }
    for (const auto& [b, files] : r.latency_tables) {
      const auto it = c.predicted_ms.find(b);
      h << "<td>" << (it != c.predicted_ms.end() ? short_number(it->second) : "-") << "</td>";
    }
    h << "<td class=\"flag\">" << html_escape(join(c.flags, "; ")) << "</td></tr>\n";
  }
  h << "</table>\n";
  for (const auto& b : r.backends) {
    const auto front = pareto_front(m, b);
    std::vector<const VariantCard*> pts;
    for (const auto& c : m.variants)
      if (profile_of(c, b)) pts.push_back(&c);
    if (pts.empty()) continue;
    double xmax = 0, ymin = 100, ymax = 0;
    for (const auto* c : pts) {
      xmax = std::max(xmax, profile_of(*c, b)->latency.p50_ms);
      const double a = 100 * c->accuracy.value_or(0);
      ymin = std::min(ymin, a);
      ymax = std::max(ymax, a);
    }
    // Budget and floor are drawn when they fall near the measured points; far away they would squash the
    // plot, so the caption gives them instead.
    std::string off_chart;
    const bool draw_budget = r.latency_ms.count(b) && r.latency_ms.at(b) <= 2 * xmax;
    if (draw_budget) xmax = std::max(xmax, r.latency_ms.at(b));
    else if (r.latency_ms.count(b)) off_chart += " Latency budget " + short_number(r.latency_ms.at(b)) + " ms (off the chart).";
    double floor_acc = -1;
    if (r.max_accuracy_drop && base && base->accuracy) {
      const double f = 100 * *base->accuracy - *r.max_accuracy_drop;
      if (f >= ymin - std::max(2.0, ymax - ymin)) {
        floor_acc = f;
        ymin = std::min(ymin, floor_acc);
      } else {
        off_chart += " Accuracy floor " + short_number(f) + "% (off the chart).";
      }
    }
    xmax *= 1.1;
    const double pad = std::max(0.5, (ymax - ymin) * 0.1);
    ymin -= pad;
    ymax += pad;
    const double W = 720, H = 420, L = 60, R = 20, T = 20, B = 50;
    auto X = [&](double v) { return L + (W - L - R) * v / xmax; };
    auto Y = [&](double v) { return T + (H - T - B) * (1 - (v - ymin) / (ymax - ymin)); };
    h << "<h2>" << b << ": accuracy vs latency</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W
      << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H << "\" font-size=\"12\">\n";
    h << "<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>"
      << "<line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>\n";
    for (int i = 0; i <= 5; ++i) {
      const double xv = xmax * i / 5, yv = ymin + (ymax - ymin) * i / 5;
      h << "<text x=\"" << X(xv) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << short_number(xv) << "</text>"
        << "<text x=\"" << L - 6 << "\" y=\"" << Y(yv) + 4 << "\" text-anchor=\"end\">" << short_number(yv) << "</text>\n";
    }
    h << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">p50 latency (ms), batch "
      << r.batch << "</text><text x=\"14\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 14 " << (T + H - B) / 2
      << ")\" text-anchor=\"middle\">top-1 %</text>\n";
    if (draw_budget)
      h << "<line x1=\"" << X(r.latency_ms.at(b)) << "\" y1=\"" << T << "\" x2=\"" << X(r.latency_ms.at(b)) << "\" y2=\""
        << H - B << "\" stroke=\"#c60\" stroke-dasharray=\"5,4\"/><text x=\"" << X(r.latency_ms.at(b)) - 4 << "\" y=\""
        << T + 12 << "\" text-anchor=\"end\" fill=\"#c60\">latency budget</text>\n";
    if (floor_acc >= 0)
      h << "<line x1=\"" << L << "\" y1=\"" << Y(floor_acc) << "\" x2=\"" << W - R << "\" y2=\"" << Y(floor_acc)
        << "\" stroke=\"#c60\" stroke-dasharray=\"5,4\"/><text x=\"" << W - R - 4 << "\" y=\"" << Y(floor_acc) - 4
        << "\" text-anchor=\"end\" fill=\"#c60\">accuracy floor</text>\n";
    std::string poly;
    for (const auto& n : front) {
      const auto* c = m.find(n);
      poly += std::to_string(X(profile_of(*c, b)->latency.p50_ms)) + "," + std::to_string(Y(100 * c->accuracy.value_or(0))) + " ";
    }
    h << "<polyline points=\"" << poly << "\" fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\"/>\n";
    // Variants of nearly equal latency and accuracy (e.g. fp32 and weight-only int4) sit on one spot: their
    // labels are stacked downwards instead of printed over each other.
    struct Label {
      double x0, x1, y;
    };
    std::vector<Label> labels;
    for (const auto* c : pts) {
      const bool on = std::find(front.begin(), front.end(), c->name) != front.end();
      const double x = X(profile_of(*c, b)->latency.p50_ms), y = Y(100 * c->accuracy.value_or(0));
      const double width = 7.0 * static_cast<double>(c->name.size());
      const bool left = x + 7 + width > W - R;
      const double x0 = left ? x - 7 - width : x + 7, x1 = x0 + width;
      double ly = y - 6;
      for (bool moved = true; moved;) {
        moved = false;
        for (const auto& l : labels)
          if (x0 < l.x1 + 4 && l.x0 < x1 + 4 && std::abs(l.y - ly) < 13) {
            ly = l.y + 14;
            moved = true;
          }
      }
      labels.push_back({x0, x1, ly});
      h << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"5\" fill=\"" << (on ? "#2a7" : "#888") << "\"/>"
        << "<text x=\"" << (left ? x - 7 : x + 7) << "\" y=\"" << ly << "\"" << (left ? " text-anchor=\"end\"" : "")
        << ">" << html_escape(c->name) << "</text>\n";
    }
    h << "</svg>\n<p class=\"note\">Green: the Pareto front on " << b << " (no other variant is both faster and more "
      << "accurate): " << html_escape(join(front)) << "." << off_chart << "</p>\n";
  }
  h << place::render_html(plans);
  if (r.placement && r.placement->fleet)
    for (const auto& plan : plans) {
      const auto& fleet = *r.placement->fleet;
      auto setup = place::fleet_setup(plan.to_json(), "link " + plan.link.name);
      std::vector<place::FleetResult> results;
      for (auto& s : setup.scenarios) {
        s.executors = fleet.executors;
        s.arrivals = place::Arrivals::parse(fleet.arrivals);
        results.push_back(place::simulate_fleet(s, fleet.devices, setup.objective));
      }
      h << place::render_fleet_html(results, setup.objective);
    }
  for (const auto& f : placement_failures) h << "<p class=\"flag\">No placement on " << html_escape(f) << "</p>\n";
  h << "<p class=\"note\">Variant files are in <code>variants/</code>; every card, with full latency profiles and "
       "provenance, is in <code>manifest.json</code>.</p>\n</body></html>\n";
  return h.str();
}

}  // namespace tailor::recipe
