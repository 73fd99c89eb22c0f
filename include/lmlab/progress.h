// Progress of long steps (downloads, prefill), reported through a callback so
// the library never prints: the CLI draws a line on a terminal, the server can
// stream events. Callbacks run on the thread doing the work.
#pragma once

#include <functional>
#include <string>

namespace lmlab {

struct Progress {
  std::string what;   // "download config.json", "prefill"
  double done = 0;    // units so far
  double total = 0;   // 0: unknown
  std::string unit;   // "bytes" or "tokens"
  bool finished = false;  // the last call for this step
};

using ProgressCallback = std::function<void(const Progress&)>;

}  // namespace lmlab
