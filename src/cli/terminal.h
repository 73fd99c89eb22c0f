// What the CLI shows besides results: progress of long steps on stderr (only
// when stderr is a terminal, erased when the step ends), notes, and JSON on
// stdout. The library reports progress through callbacks; this draws them.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include <nlohmann/json_fwd.hpp>

#include "lmlab/progress.h"

namespace lmlab::cli {

// Draws Progress events: after a step has run for a second, one line
// rewritten a few times a second ("prefill 2048/9000 tokens 23%"). Off a
// terminal it prints one line when a download starts, for logs.
ProgressCallback terminal_progress();

// A step of unknown length: "loading the model… 3 s" after a second on a
// terminal, erased when the scope ends.
class Activity {
 public:
  explicit Activity(std::string what);
  ~Activity();
  Activity(const Activity&) = delete;
  Activity& operator=(const Activity&) = delete;

 private:
  std::string what_;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Erases a progress line left open (before an error is printed).
void clear_status();

// "note: ..." on stderr, for things that work but a user should know.
void note(const std::string& message);

// One JSON document on stdout; text that is not UTF-8 (a user's raw bytes)
// is replaced rather than failing the whole output.
void print_json(const nlohmann::json& j, int indent = 2);

}  // namespace lmlab::cli
