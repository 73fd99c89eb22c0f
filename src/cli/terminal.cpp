// Progress lines, notes and JSON output of the CLI (see terminal.h).
#include "cli/terminal.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace lmlab::cli {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kShowAfter = std::chrono::seconds(1);
constexpr auto kRedraw = std::chrono::milliseconds(200);

// One status line on stderr, shared by progress events and activities.
std::mutex g_line_mutex;
bool g_line_open = false;

bool stderr_is_terminal() { return ::isatty(STDERR_FILENO) == 1; }

void draw(const std::string& text) {
  std::lock_guard lock(g_line_mutex);
  std::fprintf(stderr, "\r\x1b[K%s", text.c_str());
  std::fflush(stderr);
  g_line_open = !text.empty();
}

void erase() { draw(""); }

std::string amount(double v, const std::string& unit) {
  if (unit != "bytes") return fmt::format("{:.0f}", v);
  return v >= 1e9 ? fmt::format("{:.2f} GB", v / 1e9) : v >= 1e6 ? fmt::format("{:.1f} MB", v / 1e6)
                                                            : fmt::format("{:.0f} KB", v / 1e3);
}

}  // namespace

ProgressCallback terminal_progress() {
  struct State {
    std::string what;
    Clock::time_point started, drawn;
    bool shown = false;
  };
  auto st = std::make_shared<State>();
  const bool tty = stderr_is_terminal();
  return [st, tty](const Progress& p) {
    const auto now = Clock::now();
    if (p.what != st->what) {
      st->what = p.what;
      st->started = now;
      st->shown = false;
      if (!tty && p.unit == "bytes")
        std::fprintf(stderr, "%s (%s)\n", p.what.c_str(), amount(p.total, p.unit).c_str());
    }
    if (!tty) return;
    if (p.finished) {
      if (st->shown) erase();
      st->shown = false;
      st->what.clear();
      return;
    }
    if (now - st->started < kShowAfter || (st->shown && now - st->drawn < kRedraw)) return;
    st->shown = true;
    st->drawn = now;
    std::string unit = p.unit == "bytes" ? "" : " " + p.unit;
    draw(p.total > 0 ? fmt::format("{} {}/{}{} {:.0f}%", p.what, amount(p.done, p.unit), amount(p.total, p.unit),
                                   unit, 100 * p.done / p.total)
                     : fmt::format("{} {}{}", p.what, amount(p.done, p.unit), unit));
  };
}

Activity::Activity(std::string what) : what_(std::move(what)) {
  if (!stderr_is_terminal()) return;
  thread_ = std::thread([this] {
    const auto start = Clock::now();
    bool shown = false;
    while (!done_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const auto t = Clock::now() - start;
      if (t < kShowAfter) continue;
      const auto s = std::chrono::duration_cast<std::chrono::seconds>(t).count();
      draw(fmt::format("{}… {} s", what_, s));
      shown = true;
      std::this_thread::sleep_for(kRedraw);
    }
    if (shown) erase();
  });
}

Activity::~Activity() {
  done_ = true;
  if (thread_.joinable()) thread_.join();
}

void clear_status() {
  std::lock_guard lock(g_line_mutex);
  if (!g_line_open) return;
  std::fprintf(stderr, "\r\x1b[K");
  g_line_open = false;
}

void note(const std::string& message) {
  clear_status();
  std::lock_guard lock(g_line_mutex);
  std::fprintf(stderr, "note: %s\n", message.c_str());
}

void print_json(const nlohmann::json& j, int indent) {
  std::cout << j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

}  // namespace lmlab::cli
