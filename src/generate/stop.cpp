#include "generate/stop.h"

namespace lmlab::generation {

namespace {

// Bytes at the end of s that are a proper prefix of some stop string.
size_t partial_suffix(const std::string& s, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& stop : stops)
    for (size_t n = std::min(stop.size() - 1, s.size()); n > best; --n)
      if (s.compare(s.size() - n, n, stop, 0, n) == 0) {
        best = n;
        break;
      }
  return best;
}

// Back up to a UTF-8 boundary so held text never splits a character.
size_t char_boundary(const std::string& s, size_t pos) {
  while (pos > 0 && pos < s.size() && (static_cast<unsigned char>(s[pos]) & 0xC0) == 0x80) --pos;
  return pos;
}

}  // namespace

StopMatcher::StopMatcher(std::vector<std::string> stops) {
  for (auto& s : stops)
    if (!s.empty()) stops_.push_back(std::move(s));
}

std::pair<std::string, bool> StopMatcher::feed(const std::string& text) {
  if (stopped_) return {"", true};
  held_ += text;
  if (stops_.empty()) return {std::exchange(held_, ""), false};
  size_t first = std::string::npos;
  for (const auto& stop : stops_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return {out, true};
  }
  size_t emit = char_boundary(held_, held_.size() - partial_suffix(held_, stops_));
  std::string out = held_.substr(0, emit);
  held_.erase(0, emit);
  return {out, false};
}

std::string StopMatcher::flush(const std::string& text) {
  auto [out, stopped] = feed(text);
  if (stopped) return out;
  return out + std::exchange(held_, "");
}

}  // namespace lmlab::generation
