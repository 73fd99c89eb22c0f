// Plain-text pieces the terminal reports are built from: bars, shades and
// visible token text.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "lmlab/analysis.h"

namespace lmlab::analysis {

std::string bar(double fraction, int width) {
  static const char* kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  const int eighths = static_cast<int>(std::lround(std::clamp(fraction, 0.0, 1.0) * width * 8));
  std::string s;
  for (int i = 0; i < eighths / 8; ++i) s += "█";
  s += kEighths[eighths % 8];
  return s;
}

std::string shade(float p) {
  static const char* kShades[] = {" ", "░", "▒", "▓", "█"};
  if (!(p > 0)) return kShades[0];
  // A square-root ramp, so 1% attention still shows.
  int i = 1 + static_cast<int>(std::sqrt(std::min(p, 1.0f)) * 3.999f);
  return kShades[std::min(i, 4)];
}

std::string visible(const std::string& piece) {
  std::string out;
  for (char c : piece) {
    if (c == ' ') out += "·";
    else if (c == '\n') out += "↵";
    else if (c == '\t') out += "→";
    else if (c == '\r') out += "␍";
    else if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\x{:02x}", c);
    else out += c;
  }
  return out;
}

}  // namespace lmlab::analysis
