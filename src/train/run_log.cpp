// The CSV log and the SVG loss curve of a run.
#include "train/run_log.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "lmlab/core.h"

namespace lmlab::train {

namespace {

const char* kHeader = "iteration,train_loss,val_loss,learning_rate,it_per_sec,tokens_per_sec,trained_tokens,peak_memory_gb";

// Losses with every digit a float32 has, so that two runs' logs can be
// compared below the printed three decimals (bench/lora_parity.py).
std::string cell(const std::optional<double>& v) { return v ? fmt::format("{:.9g}", *v) : ""; }

std::optional<double> parse_cell(const std::string& s) {
  if (s.empty()) return std::nullopt;
  return std::stod(s);
}

// "Nice" tick step for a range: 1, 2 or 5 times a power of ten.
double tick_step(double range, int want) {
  const double raw = range / std::max(1, want);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

}  // namespace

void RunLog::resume(int iteration) {
  rows_.clear();
  std::ifstream f(dir_ / "train_log.csv");
  std::string line;
  if (!f || !std::getline(f, line)) return;
  while (std::getline(f, line)) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    for (std::string part; std::getline(ss, part, ',');) c.push_back(part);
    c.resize(8);
    LogRow r;
    try {
      r.iteration = std::stoi(c[0]);
      r.train_loss = parse_cell(c[1]);
      r.val_loss = parse_cell(c[2]);
      r.learning_rate = parse_cell(c[3]).value_or(0);
      r.it_per_sec = parse_cell(c[4]).value_or(0);
      r.tokens_per_sec = parse_cell(c[5]).value_or(0);
      r.trained_tokens = static_cast<long long>(parse_cell(c[6]).value_or(0));
      r.peak_memory_gb = parse_cell(c[7]).value_or(0);
    } catch (const std::exception&) {
      continue;  // a row from another tool; the rest still counts
    }
    if (r.iteration <= iteration) rows_.push_back(r);
  }
}

void RunLog::add(const LogRow& row) { rows_.push_back(row); }

void RunLog::write() const {
  std::string csv = std::string(kHeader) + "\n";
  for (const LogRow& r : rows_)
    csv += fmt::format("{},{},{},{:.6g},{:.4g},{:.4g},{},{:.4g}\n", r.iteration, cell(r.train_loss), cell(r.val_loss),
                       r.learning_rate, r.it_per_sec, r.tokens_per_sec, r.trained_tokens, r.peak_memory_gb);
  write_file_atomic(dir_ / "train_log.csv", csv);
  write_file_atomic(dir_ / "loss_curve.svg", loss_curve_svg(rows_, "loss · " + dir_.filename().string()));
}

std::string loss_curve_svg(const std::vector<LogRow>& rows, const std::string& title) {
  const double W = 720, H = 400, left = 60, right = 20, top = 40, bottom = 50;
  std::vector<std::pair<double, double>> train, val;
  for (const LogRow& r : rows) {
    if (r.train_loss) train.emplace_back(r.iteration, *r.train_loss);
    if (r.val_loss) val.emplace_back(r.iteration, *r.val_loss);
  }
  double x0 = 0, x1 = 1, y0 = INFINITY, y1 = -INFINITY;
  for (const auto* s : {&train, &val})
    for (auto [x, y] : *s) x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (y1 - y0 < 1e-9) y0 -= 0.5, y1 += 0.5;
  const double pad = (y1 - y0) * 0.05;
  y0 = std::max(0.0, y0 - pad), y1 += pad;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * (W - left - right); };
  auto py = [&](double y) { return top + (y1 - y) / (y1 - y0) * (H - top - bottom); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{}\" y=\"22\" font-size=\"15\">{}</text>\n",
      W, H, left, title);
  const double ys = tick_step(y1 - y0, 6), xs = tick_step(x1 - x0, 8);
  for (double y = std::ceil(y0 / ys) * ys; y <= y1; y += ys)
    s += fmt::format("<line x1=\"{:.1f}\" x2=\"{:.1f}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                     "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{:.3g}</text>\n",
                     left, W - right, py(y), py(y), left - 6, py(y) + 4, y);
  for (double x = 0; x <= x1; x += xs)
    s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{:g}</text>\n", px(x), H - bottom + 18, x);
  s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">iteration</text>\n", (left + W - right) / 2,
                   H - 12);
  s += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#888\"/>\n", left, top,
                   W - left - right, H - top - bottom);
  auto line = [&](const std::vector<std::pair<double, double>>& pts, const char* color, const char* name, int row) {
    if (pts.empty()) return;
    std::string d;
    for (auto [x, y] : pts) d += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.8\" points=\"{}\"/>\n", color, d);
    if (pts.size() < 40)
      for (auto [x, y] : pts) s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"2.5\" fill=\"{}\"/>\n", px(x), py(y), color);
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"3\"/>"
                     "<text x=\"{}\" y=\"{}\">{}</text>\n",
                     W - right - 120, W - right - 100, top + 14 + 16 * row, top + 14 + 16 * row, color,
                     W - right - 94, top + 18 + 16 * row, name);
  };
  line(train, "#1f77b4", "train loss", 0);
  line(val, "#d62728", "validation loss", 1);
  return s + "</svg>\n";
}

}  // namespace lmlab::train
