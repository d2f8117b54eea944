// Placement in reports: a table per link and a latency-vs-bandwidth plot per variant, as an HTML fragment with
// inline SVG (no scripts), for the recipe report.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "tailor/core/text.hpp"
#include "tailor/place/place.hpp"

namespace tailor::place {
namespace {

void table(std::ostringstream& h, const Plan& plan) {
  h << "<h3>" << html_escape(plan.link.str()) << "</h3>\n<p class=\"note\">Devices: " << html_escape(plan.edge.str()) << "; "
    << html_escape(plan.cloud.str()) << "; objective: " << plan.objective.percentile << " end to end"
    << (plan.objective.latency_ms ? " &le; " + short_number(*plan.objective.latency_ms) + " ms" : "")
    << (plan.objective.min_accuracy ? ", top-1 &ge; " + short_number(100 * *plan.objective.min_accuracy) + "%" : "")
    << ", tensors sent as " << to_string(plan.objective.codec) << ". Chosen: <b>" << html_escape(plan.chosen.variant)
    << "</b> (green).</p>\n<table><tr><th>variant</th><th>top-1 %</th><th>placement</th><th>sent</th>"
       "<th>edge ms</th><th>up ms</th><th>RTT ms</th><th>cloud ms</th><th>down ms</th><th>total ms</th>"
       "<th>edge only ms</th><th>cloud only ms</th><th>misses</th></tr>\n";
  std::vector<const VariantPlan*> rows = {&plan.chosen};
  for (const auto& r : plan.runners_up) rows.push_back(&r);
  for (const auto* v : rows) {
    const auto& b = v->best.predicted;
    auto site_total = [&](Site s) {
      for (const auto& c : v->candidates)
        if (c.site == s) return short_number(c.predicted.total_ms);
      return std::string("-");
    };
    h << "<tr" << (v == &plan.chosen ? " class=\"kept\"" : "") << "><td>" << html_escape(v->variant) << "</td><td>"
      << (v->accuracy ? short_number(100 * *v->accuracy) : "-") << "</td><td>" << to_string(v->best.site)
      << (v->best.site == Site::Split ? " (" + v->best.method + ")" : "") << "</td><td>"
      << (v->best.site == Site::Edge ? "-" : human_count(static_cast<double>(v->best.up_bytes)) + "B") << "</td><td>"
      << short_number(b.edge_ms) << "</td><td>" << short_number(b.up_ms) << "</td><td>" << short_number(b.rtt_ms)
      << "</td><td>" << short_number(b.cloud_ms) << "</td><td>" << short_number(b.down_ms) << "</td><td><b>"
      << short_number(b.total_ms) << "</b></td><td>" << site_total(Site::Edge) << "</td><td>"
      << site_total(Site::Cloud) << "</td><td class=\"flag\">" << html_escape(join(v->misses, "; ")) << "</td></tr>\n";
  }
  h << "</table>\n";
}

// One plot per variant: x = uplink bandwidth (log), y = predicted latency (log); lines for the whole edge, the
// whole cloud and the best placement; each planned link's bandwidth marked.
void plot(std::ostringstream& h, const VariantPlan& v, const std::vector<Plan>& plans) {
  const BandwidthSweep& s = v.sweep;
  if (s.uplink_mbps.empty()) return;
  double ymin = 1e300, ymax = 0;
  for (const auto* series : {&s.edge_ms, &s.cloud_ms, &s.best_ms})
    for (double y : *series)
      if (std::isfinite(y) && y > 0) {
        ymin = std::min(ymin, y);
        ymax = std::max(ymax, y);
      }
  if (!(ymax > 0)) return;
  const double ly0 = std::floor(std::log10(ymin)), ly1 = std::max(ly0 + 1, std::ceil(std::log10(ymax)));
  const double lx0 = std::log10(s.uplink_mbps.front()), lx1 = std::log10(s.uplink_mbps.back());
  const double W = 720, H = 360, L = 60, R = 190, T = 20, B = 45;
  auto X = [&](double mbps) { return L + (W - L - R) * (std::log10(mbps) - lx0) / (lx1 - lx0); };
  auto Y = [&](double ms) { return T + (H - T - B) * (1 - (std::log10(ms) - ly0) / (ly1 - ly0)); };
  h << "<h3>" << html_escape(v.variant) << ": predicted latency vs uplink bandwidth (RTT " << short_number(plans[0].link.rtt_ms)
    << " ms)</h3>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 "
    << W << " " << H << "\" font-size=\"12\">\n<line x1=\"" << L << "\" y1=\"" << H - B << "\" x2=\"" << W - R
    << "\" y2=\"" << H - B << "\" stroke=\"#333\"/><line x1=\"" << L << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\""
    << H - B << "\" stroke=\"#333\"/>\n";
  for (double e = std::ceil(lx0); e <= lx1; ++e)
    h << "<text x=\"" << X(std::pow(10, e)) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">"
      << short_number(std::pow(10, e)) << "</text>\n";
  for (double e = ly0; e <= ly1; ++e)
    h << "<text x=\"" << L - 6 << "\" y=\"" << Y(std::pow(10, e)) + 4 << "\" text-anchor=\"end\">"
      << short_number(std::pow(10, e)) << "</text>\n";
  h << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">uplink Mbit/s</text>"
    << "<text x=\"14\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 14 " << (T + H - B) / 2
    << ")\" text-anchor=\"middle\">ms, end to end</text>\n";
  for (const auto& p : plans) {
    const double x = X(std::clamp(p.link.uplink_mbps, s.uplink_mbps.front(), s.uplink_mbps.back()));
    h << "<line x1=\"" << x << "\" y1=\"" << T << "\" x2=\"" << x << "\" y2=\"" << H - B
      << "\" stroke=\"#bbb\" stroke-dasharray=\"4,4\"/><text x=\"" << x + 3 << "\" y=\"" << T + 10 << "\" fill=\"#777\">"
      << html_escape(p.link.name) << "</text>\n";
  }
  const struct {
    const std::vector<double>* ys;
    const char *color, *label, *dash;
  } lines[] = {{&s.edge_ms, "#c60", "edge only", ""},
               {&s.cloud_ms, "#36c", "cloud only", ""},
               {&s.best_ms, "#2a7", "best (split where it wins)", " stroke-dasharray=\"6,3\""}};
  double legend_y = T + 40;  // below the links' labels
  for (const auto& line : lines) {
    std::string pts;
    for (size_t i = 0; i < s.uplink_mbps.size(); ++i)
      if (std::isfinite((*line.ys)[i]) && (*line.ys)[i] > 0)
        pts += std::to_string(X(s.uplink_mbps[i])) + "," + std::to_string(Y((*line.ys)[i])) + " ";
    h << "<polyline points=\"" << pts << "\" fill=\"none\" stroke=\"" << line.color << "\" stroke-width=\"2\""
      << line.dash << "/><text x=\"" << W - R + 16 << "\" y=\"" << legend_y << "\" fill=\"" << line.color << "\">"
      << line.label << "</text>\n";
    legend_y += 16;
  }
  h << "</svg>\n";
}

}  // namespace

std::string render_html(const std::vector<Plan>& plans) {
  std::ostringstream h;
  if (plans.empty()) return "";
  h << "<h2>Placement</h2>\n<p class=\"note\">Predicted from each variant's per-node profiles on the two devices and "
       "the link model (bytes / bandwidth + one round trip); split plans cut the graph where the transfer is "
       "cheapest (a min-cut for DAGs). Each link's chosen plan is in <code>placement/&lt;link&gt;/</code> "
       "(edge.pt, cloud.pt, plan.json).</p>\n";
  for (const auto& p : plans) table(h, p);
  std::vector<const VariantPlan*> variants = {&plans[0].chosen};
  for (const auto& r : plans[0].runners_up) variants.push_back(&r);
  for (const auto* v : variants) plot(h, *v, plans);
  return h.str();
}

}  // namespace tailor::place
