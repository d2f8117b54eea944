// Placement in reports: a table per link and a latency-vs-bandwidth plot per variant, as an HTML fragment with
// inline SVG (no scripts), for the recipe report.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "tailor/core/text.hpp"
#include "tailor/place/place.hpp"
#include "svg_plot.hpp"

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
  detail::Plot p;
  p.title = v.variant + ": predicted latency vs uplink bandwidth (RTT " + short_number(plans[0].link.rtt_ms) + " ms)";
  p.x_label = "uplink Mbit/s";
  p.y_label = "ms, end to end";
  p.lines = {{s.uplink_mbps, s.edge_ms, "#c60", "edge only"},
             {s.uplink_mbps, s.cloud_ms, "#36c", "cloud only"},
             {s.uplink_mbps, s.best_ms, "#2a7", "best (split where it wins)", true}};
  for (const auto& plan : plans)
    p.x_marks.push_back({std::clamp(plan.link.uplink_mbps, s.uplink_mbps.front(), s.uplink_mbps.back()),
                         plan.link.name});
  detail::svg_plot(h, p);
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

namespace detail {

void svg_plot(std::ostringstream& h, const Plot& p) {
  double ymin = 1e300, ymax = 0, xmin = 1e300, xmax = -1e300;
  for (const auto& line : p.lines)
    for (size_t i = 0; i < line.y.size() && i < line.x.size(); ++i)
      if (std::isfinite(line.y[i]) && line.y[i] > 0) {
        ymin = std::min(ymin, line.y[i]);
        ymax = std::max(ymax, line.y[i]);
        xmin = std::min(xmin, line.x[i]);
        xmax = std::max(xmax, line.x[i]);
      }
  for (const auto& m : p.y_marks)
    if (m.at > 0) {
      ymin = std::min(ymin, m.at);
      ymax = std::max(ymax, m.at);
    }
  if (!(ymax > 0) || !(xmax > xmin) || (p.log_x && xmin <= 0)) return;
  const double ly0 = std::floor(std::log10(ymin)), ly1 = std::max(ly0 + 1, std::ceil(std::log10(ymax)));
  auto fx = [&](double x) { return p.log_x ? std::log10(x) : x; };
  const double fx0 = fx(xmin), fx1 = fx(xmax);
  const double W = 720, H = 360, L = 60, R = 190, T = 20, B = 45;
  auto X = [&](double x) { return L + (W - L - R) * (fx(x) - fx0) / (fx1 - fx0); };
  auto Y = [&](double ms) { return T + (H - T - B) * (1 - (std::log10(ms) - ly0) / (ly1 - ly0)); };
  h << "<h3>" << html_escape(p.title) << "</h3>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W
    << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " " << H << "\" font-size=\"12\">\n<line x1=\"" << L
    << "\" y1=\"" << H - B << "\" x2=\"" << W - R << "\" y2=\"" << H - B << "\" stroke=\"#333\"/><line x1=\"" << L
    << "\" y1=\"" << T << "\" x2=\"" << L << "\" y2=\"" << H - B << "\" stroke=\"#333\"/>\n";
  std::vector<double> ticks = p.x_ticks;
  if (p.log_x && ticks.empty())
    for (double e = std::ceil(fx0); e <= fx1; ++e) ticks.push_back(std::pow(10, e));
  for (double x : ticks)
    h << "<text x=\"" << X(x) << "\" y=\"" << H - B + 16 << "\" text-anchor=\"middle\">" << short_number(x)
      << "</text>\n";
  for (double e = ly0; e <= ly1; ++e)
    h << "<text x=\"" << L - 6 << "\" y=\"" << Y(std::pow(10, e)) + 4 << "\" text-anchor=\"end\">"
      << short_number(std::pow(10, e)) << "</text>\n";
  h << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 8 << "\" text-anchor=\"middle\">" << html_escape(p.x_label)
    << "</text><text x=\"14\" y=\"" << (T + H - B) / 2 << "\" transform=\"rotate(-90 14 " << (T + H - B) / 2
    << ")\" text-anchor=\"middle\">" << html_escape(p.y_label) << "</text>\n";
  for (const auto& m : p.x_marks) {
    const double x = X(m.at);
    h << "<line x1=\"" << x << "\" y1=\"" << T << "\" x2=\"" << x << "\" y2=\"" << H - B
      << "\" stroke=\"#bbb\" stroke-dasharray=\"4,4\"/><text x=\"" << x + 3 << "\" y=\"" << T + 10
      << "\" fill=\"#777\">" << html_escape(m.label) << "</text>\n";
  }
  for (const auto& m : p.y_marks) {
    const double y = Y(m.at);
    h << "<line x1=\"" << L << "\" y1=\"" << y << "\" x2=\"" << W - R << "\" y2=\"" << y
      << "\" stroke=\"#a33\" stroke-dasharray=\"4,4\"/><text x=\"" << L + 4 << "\" y=\"" << y - 4
      << "\" fill=\"#a33\">" << html_escape(m.label) << "</text>\n";
  }
  double legend_y = T + 40;  // below the marks' labels
  for (const auto& line : p.lines) {
    std::string pts;
    for (size_t i = 0; i < line.x.size() && i < line.y.size(); ++i)
      if (std::isfinite(line.y[i]) && line.y[i] > 0)
        pts += std::to_string(X(line.x[i])) + "," + std::to_string(Y(line.y[i])) + " ";
    h << "<polyline points=\"" << pts << "\" fill=\"none\" stroke=\"" << line.color << "\" stroke-width=\"2\""
      << (line.dashed ? " stroke-dasharray=\"6,3\"" : "") << "/><text x=\"" << W - R + 16 << "\" y=\"" << legend_y
      << "\" fill=\"" << line.color << "\">" << html_escape(line.label) << "</text>\n";
    legend_y += 16;
  }
  h << "</svg>\n";
}

}  // namespace detail
}  // namespace tailor::place
