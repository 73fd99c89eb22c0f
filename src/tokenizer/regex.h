// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with the
// find-all semantics HF `tokenizers` gets from Oniguruma: leftmost,
// non-overlapping matches, scanning on after each one.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace lmlab::detail {

class Regex {
 public:
  // Throws std::invalid_argument naming the pattern when it does not compile.
  explicit Regex(const std::string& pattern);
  // Appends the [start, end) byte ranges of every match in s (valid UTF-8).
  // Safe to call from several threads at once.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::shared_ptr<Code> code_;
  std::string pattern_;
};

// Escapes a literal for use inside a PCRE2 pattern.
std::string regex_escape(std::string_view literal);

}  // namespace lmlab::detail
