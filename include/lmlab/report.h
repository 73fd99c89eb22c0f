// Report writers shared by the lab commands: tables as markdown and CSV, and
// SVG charts (panels of metrics against a perturbation, heatmaps). Plain
// strings in, plain strings out; callers write them (write_file_atomic).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace lmlab::report {

struct Table {
  std::vector<std::string> columns{};
  std::vector<std::vector<std::string>> rows{};  // each as wide as columns
  std::string align{};  // per column 'l' or 'r' (markdown); missing: 'l'
};
// A GitHub-flavoured markdown table; '|' and newlines in cells are escaped.
std::string markdown(const Table& t);
// RFC 4180: cells with commas, quotes or newlines quoted, quotes doubled.
std::string csv(const Table& t);

// Text safe inside SVG/XML elements and attributes.
std::string xml_escape(std::string_view s);

// One metric against the perturbation: a panel of a PanelChart.
struct Panel {
  std::string label{};       // "KL (nats)"
  std::vector<double> y{};   // one per x; NaN: no value
  bool log_y = false;      // values ≤ floor drawn on the floor
  double floor = 1e-4;
};

// Panels stacked over one x axis. Categorical x (one slot per point, labelled
// by x_labels) suits hand-picked values such as 1e6, 1e6+1 ... 1e8; otherwise
// x is numeric, on a log scale when log_x.
struct PanelChart {
  std::string title{};
  std::string x_label{};
  std::vector<double> x{};
  std::vector<std::string> x_labels{};  // categorical when non-empty
  bool log_x = false;
  std::vector<Panel> panels{};
  // Optional background colour per point ("#rrggbb", "" for none), e.g. a status.
  std::vector<std::string> point_colors{};
  std::vector<std::pair<std::string, std::string>> legend{};  // (colour, meaning)
};
std::string svg(const PanelChart& c);

// A rows × cols grid of values, white (low) to dark (high); NaN cells empty.
struct Heatmap {
  std::string title{};
  std::vector<std::string> row_labels{}, col_labels{};
  std::vector<double> values{};  // row-major
  bool log_scale = true;       // colour by log10 (values ≤ 0 drawn at the lowest)
  std::string unit{};            // shown on the colour scale
};
std::string svg(const Heatmap& h);

// Numbers for reports: full precision for integers up to 2^53 ("1000005", never
// "1e+06"), otherwise the shortest form that reads back to the same double.
std::string number(double v);

}  // namespace lmlab::report
