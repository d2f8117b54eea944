// Private to src/place: the inline SVG line plot the placement and fleet reports draw (log-scaled y, log or
// linear x, vertical and horizontal reference lines, a legend on the right).
#pragma once

#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace tailor::place::detail {

struct PlotLine {
  std::vector<double> x, y;  ///< points with y <= 0 or non-finite are skipped
  std::string color, label;
  bool dashed = false;
};
struct PlotMark {
  double at = 0;
  std::string label;
};
struct Plot {
  std::string title, x_label, y_label;
  bool log_x = true;
  std::vector<PlotLine> lines;
  std::vector<PlotMark> x_marks;  ///< vertical dashed lines (links' bandwidths)
  std::vector<PlotMark> y_marks;  ///< horizontal dashed lines (an objective)
  std::vector<double> x_ticks;    ///< for a linear x axis; a log axis ticks the powers of ten
};
void svg_plot(std::ostringstream& h, const Plot& plot);

}  // namespace tailor::place::detail
