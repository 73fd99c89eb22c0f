// Unknown keys and value brevity for json_fields.h; the did-you-mean helper.
#include "core/json_fields.h"

#include <algorithm>

#include "core/utf8.h"

namespace lmlab {

namespace {

// Optimal string alignment distance (Levenshtein plus adjacent swaps).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

}  // namespace

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  // Long inputs are not typos of short names; the bound also keeps the table small.
  if (word.empty() || word.size() > 64) return std::nullopt;
  std::optional<std::string> best;
  size_t best_d = 0;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    // A third of the word may be wrong, at least one character.
    if (d <= std::max<size_t>(1, word.size() / 3) && (!best || d < best_d)) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

namespace json_fields {

std::string brief(const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return utf8::length(s) <= 40 ? s : std::string(utf8::prefix(s, 37)) + "...";
}

void check_keys(const nlohmann::json& j, std::initializer_list<std::string_view> known, std::string_view where) {
  if (!j.is_object())
    throw std::invalid_argument(fmt::format("[{}] expected a JSON object, got {}", where, brief(j)));
  std::vector<std::string> names(known.begin(), known.end());
  for (const auto& [key, _] : j.items()) {
    if (std::find(names.begin(), names.end(), key) != names.end()) continue;
    auto guess = closest_match(key, names);
    throw std::invalid_argument(fmt::format("[{}] unknown key {}{} (known: {})", where, brief(key),
                                            guess ? fmt::format(" (did you mean \"{}\"?)", *guess) : "",
                                            fmt::join(names, ", ")));
  }
}

}  // namespace json_fields

}  // namespace lmlab
