#include "cli/eta.h"

#include <unistd.h>

#include <chrono>
#include <memory>

#include <fmt/format.h>

namespace lmlab::cli {

namespace {

using Clock = std::chrono::steady_clock;

std::string duration(double s) {
  if (s < 60) return fmt::format("{:.0f} s", s);
  if (s < 3600) return fmt::format("{}:{:02d} min", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return fmt::format("{}:{:02d} h", static_cast<int>(s) / 3600, static_cast<int>(s) % 3600 / 60);
}

}  // namespace

ProgressCallback eta_progress() {
  if (!isatty(STDERR_FILENO)) return {};
  struct State {
    std::string what;
    Clock::time_point start;
    double start_done = 0;
  };
  auto st = std::make_shared<State>();
  return [st](const Progress& p) {
    if (p.what != st->what) *st = {p.what, Clock::now(), p.done};
    if (p.finished) {
      fmt::print(stderr, "\r\033[K");
      return;
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - st->start).count();
    const double rate = p.done > st->start_done ? elapsed / (p.done - st->start_done) : 0;
    std::string line = fmt::format("{} {:.0f}/{:.0f} {}", p.what, p.done, p.total, p.unit);
    if (p.total > 0) line += fmt::format(" {:.0f}%", 100 * p.done / p.total);
    if (rate > 0 && p.total > p.done) line += fmt::format("  ETA {}", duration(rate * (p.total - p.done)));
    fmt::print(stderr, "\r\033[K{}", line);
    std::fflush(stderr);
  };
}

}  // namespace lmlab::cli
