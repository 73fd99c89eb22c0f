// Stop strings over streamed text: text that could still turn into a stop
// string is held back, so a stop string never reaches the output.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lmlab::generation {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds text; returns the part that is safe to emit and whether a stop string
  // was found (the text before it is emitted, the rest dropped).
  std::pair<std::string, bool> feed(const std::string& text);
  // Releases held-back text at the end of generation.
  std::string flush(const std::string& text = "");
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace lmlab::generation
