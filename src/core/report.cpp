// Tables (markdown, CSV) and SVG charts for reports (see report.h). Charts are
// hand-written SVG: no plotting library, and a file that opens in any browser.
#include "lmlab/report.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

namespace lmlab::report {

namespace {

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += "<br>";
    else if (c != '\r') out += c;
  }
  return out;
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

// About five round tick values covering [lo, hi].
std::vector<double> nice_ticks(double lo, double hi) {
  const double span = hi - lo;
  if (!(span > 0)) return {lo};
  double step = std::pow(10.0, std::floor(std::log10(span / 4)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (span / (step * m) <= 5.5) {
      step *= m;
      break;
    }
  std::vector<double> out;
  for (double t = std::ceil(lo / step) * step; t <= hi + step * 1e-9; t += step)
    out.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  return out;
}

std::string tick_label(double v) {
  if (v != 0 && (std::abs(v) >= 1e5 || std::abs(v) < 1e-3)) return fmt::format("{:.0e}", v);
  return fmt::format("{:g}", v);
}

// White → yellow → orange → dark red for t in [0, 1].
std::string ramp(double t) {
  static const int stops[][3] = {{255, 255, 255}, {255, 237, 160}, {253, 141, 60}, {189, 0, 38}, {80, 0, 20}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  auto mix = [&](int c) { return static_cast<int>(std::lround(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]))); };
  return fmt::format("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2));
}

std::string open_svg(int w, int h, const std::string& title) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" viewBox=\"0 0 {} {}\" "
      "font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
      w, h, w, h, w / 2, xml_escape(title));
}

// Where point i sits on the x axis, in [0, 1].
std::vector<double> x_positions(const PanelChart& c) {
  const size_t n = c.x.size();
  std::vector<double> pos(n, 0.5);
  if (!c.x_labels.empty()) {
    for (size_t i = 0; i < n; ++i) pos[i] = (i + 0.5) / static_cast<double>(n);
    return pos;
  }
  auto tx = [&](double v) { return c.log_x ? std::log10(std::max(v, 1e-300)) : v; };
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : c.x)
    if (!c.log_x || v > 0) lo = std::min(lo, tx(v)), hi = std::max(hi, tx(v));
  const double pad = hi > lo ? (hi - lo) * 0.04 : 1.0;
  lo -= pad, hi += pad;
  for (size_t i = 0; i < n; ++i)
    pos[i] = (c.log_x && c.x[i] <= 0) ? 0.0 : (tx(c.x[i]) - lo) / (hi - lo);
  return pos;
}

struct Frame {
  double left, top, width, height;
};

std::string draw_panel(const Panel& p, const std::vector<double>& pos, const Frame& f) {
  auto ty = [&](double v) { return p.log_y ? std::log10(std::max(v, p.floor)) : v; };
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : p.y)
    if (std::isfinite(v)) lo = std::min(lo, ty(v)), hi = std::max(hi, ty(v));
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) lo -= p.log_y ? 0.5 : (std::abs(lo) > 0 ? std::abs(lo) * 0.1 : 1), hi += p.log_y ? 0.5 : (std::abs(hi) > 0 ? std::abs(hi) * 0.1 : 1);
  const double pad = (hi - lo) * 0.06;
  lo -= pad, hi += pad;
  auto Y = [&](double v) { return f.top + f.height * (1 - (ty(v) - lo) / (hi - lo)); };
  std::string s = fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n"
      "<text x=\"{}\" y=\"{}\" transform=\"rotate(-90 {} {})\" text-anchor=\"middle\">{}</text>\n",
      f.left, f.top, f.width, f.height, f.left - 52, f.top + f.height / 2, f.left - 52, f.top + f.height / 2,
      xml_escape(p.label));
  std::vector<double> ticks;
  if (p.log_y) {
    // Decades, thinned to about five labels.
    const double step = std::max(1.0, std::ceil((std::floor(hi) - std::ceil(lo) + 1) / 5));
    for (double d = std::ceil(lo); d <= hi; d += step) ticks.push_back(std::pow(10.0, d));
  } else {
    ticks = nice_ticks(lo, hi);
  }
  const bool floored = p.log_y && std::any_of(p.y.begin(), p.y.end(), [&](double v) { return std::isfinite(v) && v <= p.floor; });
  if (floored && (ticks.empty() || ticks.front() > p.floor * 1.0001)) ticks.insert(ticks.begin(), p.floor);
  for (double t : ticks) {
    const double y = Y(t);
    const bool at_floor = floored && std::abs(t - p.floor) <= p.floor * 1e-4;
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#eee\"/>"
                     "<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}{}</text>\n",
                     f.left, f.left + f.width, y, y, f.left - 4, y + 4, at_floor ? "≤" : "", tick_label(t));
  }
  std::string path;
  for (size_t i = 0; i < p.y.size(); ++i) {
    if (!std::isfinite(p.y[i])) {
      path += " ";
      continue;
    }
    const double x = f.left + pos[i] * f.width;
    path += fmt::format("{}{:.1f},{:.1f}", path.empty() || path.back() == ' ' ? " M" : " L", x, Y(p.y[i]));
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"#1f4e8c\"><title>{}</title></circle>\n", x,
                     Y(p.y[i]), number(p.y[i]));
  }
  if (path.find('M') != std::string::npos)
    s += fmt::format("<path d=\"{}\" fill=\"none\" stroke=\"#1f4e8c\" stroke-width=\"1.5\"/>\n", path);
  return s;
}

}  // namespace

std::string markdown(const Table& t) {
  auto row = [](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (const auto& c : cells) s += " " + md_cell(c) + " |";
    return s + "\n";
  };
  std::string s = row(t.columns) + "|";
  for (size_t i = 0; i < t.columns.size(); ++i) s += i < t.align.size() && t.align[i] == 'r' ? " ---: |" : " --- |";
  s += "\n";
  for (const auto& r : t.rows) s += row(r);
  return s;
}

std::string csv(const Table& t) {
  auto row = [](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t i = 0; i < cells.size(); ++i) s += (i ? "," : "") + csv_cell(cells[i]);
    return s + "\n";
  };
  std::string s = row(t.columns);
  for (const auto& r : t.rows) s += row(r);
  return s;
}

std::string xml_escape(std::string_view in) {
  std::string out;
  for (char ch : in) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default:
        if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\t' || ch == '\n') out += ch;
    }
  }
  return out;
}

std::string number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::abs(v) <= 9007199254740992.0) return fmt::format("{:.0f}", v);
  return fmt::format("{}", v);
}

std::string svg(const PanelChart& c) {
  const double left = 90, width = 640, panel_h = 130, gap = 22, top = 40;
  const bool categorical = !c.x_labels.empty();
  const double bottom = categorical ? 110 : 60;
  const double plot_h = c.panels.size() * (panel_h + gap) - gap;
  const int W = static_cast<int>(left + width + 30);
  const int H = static_cast<int>(top + plot_h + bottom + (c.legend.empty() ? 0 : 24));
  std::string s = open_svg(W, H, c.title);
  std::vector<double> pos = x_positions(c);
  // Status colours behind every panel: each point owns the band to the midpoints with its neighbours.
  if (!c.point_colors.empty()) {
    std::vector<size_t> order(pos.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return pos[a] < pos[b]; });
    for (size_t k = 0; k < order.size(); ++k) {
      const size_t i = order[k];
      if (i >= c.point_colors.size() || c.point_colors[i].empty()) continue;
      const double a = k == 0 ? 0.0 : (pos[order[k - 1]] + pos[i]) / 2;
      const double b = k + 1 == order.size() ? 1.0 : (pos[i] + pos[order[k + 1]]) / 2;
      s += fmt::format("<rect x=\"{:.1f}\" y=\"{}\" width=\"{:.1f}\" height=\"{}\" fill=\"{}\" opacity=\"0.35\"/>\n",
                       left + a * width, top, (b - a) * width, plot_h, c.point_colors[i]);
    }
  }
  for (size_t p = 0; p < c.panels.size(); ++p)
    s += draw_panel(c.panels[p], pos, {left, top + p * (panel_h + gap), width, panel_h});
  const double axis_y = top + plot_h;
  if (categorical) {
    for (size_t i = 0; i < pos.size() && i < c.x_labels.size(); ++i) {
      const double x = left + pos[i] * width;
      s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" transform=\"rotate(45 {:.1f} {})\">{}</text>\n", x - 3,
                       axis_y + 14, x - 3, axis_y + 14, xml_escape(c.x_labels[i]));
    }
  } else if (!pos.empty()) {
    // Ticks at the points themselves: sweeps have few, and their exact values matter.
    for (size_t i = 0; i < pos.size(); ++i) {
      const double x = left + pos[i] * width;
      s += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{}\" y2=\"{}\" stroke=\"#888\"/>\n", x, x, axis_y,
                       axis_y + 4);
    }
    auto minmax = std::minmax_element(c.x.begin(), c.x.end());
    s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left,
                     axis_y + 18, xml_escape(number(*minmax.first)), left + width, axis_y + 18,
                     xml_escape(number(*minmax.second)));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + width / 2,
                   axis_y + bottom - 12, xml_escape(c.x_label + (c.log_x && !categorical ? " (log scale)" : "")));
  double lx = left;
  for (const auto& [colour, meaning] : c.legend) {
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\" opacity=\"0.6\"/>"
                     "<text x=\"{}\" y=\"{}\">{}</text>\n",
                     lx, H - 20, colour, lx + 16, H - 10, xml_escape(meaning));
    lx += 26 + 7.0 * meaning.size();
  }
  return s + "</svg>\n";
}

std::string svg(const Heatmap& h) {
  const int rows = static_cast<int>(h.row_labels.size()), cols = static_cast<int>(h.col_labels.size());
  const int cw = 56, ch = 16, left = 150, top = 64;
  const int W = left + cols * cw + 110, H = top + std::max(rows * ch, 100) + 30;
  std::string s = open_svg(W, H, h.title);
  auto tv = [&](double v) { return h.log_scale ? std::log10(std::max(v, 1e-12)) : v; };
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : h.values)
    if (std::isfinite(v) && (!h.log_scale || v > 0)) lo = std::min(lo, tv(v)), hi = std::max(hi, tv(v));
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-12) hi = lo + 1;
  for (int c = 0; c < cols; ++c)
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + c * cw + cw / 2, top - 8,
                     xml_escape(h.col_labels[c]));
  for (int r = 0; r < rows; ++r) {
    s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, top + r * ch + 12,
                     xml_escape(h.row_labels[r]));
    for (int c = 0; c < cols; ++c) {
      const double v = h.values[static_cast<size_t>(r) * cols + c];
      if (!std::isfinite(v)) continue;
      const double t = h.log_scale && v <= 0 ? 0.0 : (tv(v) - lo) / (hi - lo);
      s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\" stroke=\"white\">"
                       "<title>{} {}: {} {}</title></rect>\n",
                       left + c * cw, top + r * ch, cw, ch, ramp(t), xml_escape(h.row_labels[r]),
                       xml_escape(h.col_labels[c]), number(v), xml_escape(h.unit));
    }
  }
  // The colour scale.
  const int sx = left + cols * cw + 30, steps = 20, sh = std::max(rows * ch, 100);
  for (int i = 0; i < steps; ++i)
    s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"{}\" fill=\"{}\"/>\n", sx,
                     top + sh - (i + 1) * sh / steps, sh / steps + 1, ramp((i + 0.5) / steps));
  auto label = [&](double t) { return tick_label(h.log_scale ? std::pow(10.0, t) : t); };
  s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text><text x=\"{}\" y=\"{}\">{}</text>\n", sx + 18, top + 10,
                   label(hi), sx + 18, top + sh, label(lo));
  s += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n", sx, top - 8, xml_escape(h.unit));
  return s + "</svg>\n";
}

}  // namespace lmlab::report
