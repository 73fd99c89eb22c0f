// Added-token matcher (see impl.h).
#include "tokenizer/impl.h"

namespace lmlab::detail {

int AddedMatcher::child(int node, unsigned char c) const {
  for (const auto& [byte, next] : nodes_[node].children)
    if (byte == c) return next;
  return -1;
}

void AddedMatcher::add(const std::string& pattern, int token_index) {
  if (pattern.empty()) return;
  int node = 0;
  for (unsigned char c : pattern) {
    int next = child(node, c);
    if (next < 0) {
      next = static_cast<int>(nodes_.size());
      nodes_.push_back({});
      nodes_[node].children.emplace_back(c, next);
    }
    node = next;
  }
  // The first token with a given content wins, like HF's content->id map.
  if (nodes_[node].token < 0) nodes_[node].token = token_index;
  first_byte_[static_cast<unsigned char>(pattern[0])] = true;
}

bool AddedMatcher::find(std::string_view s, size_t pos, size_t& start, size_t& end,
                        int& index) const {
  if (empty()) return false;
  for (size_t i = pos; i < s.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(s[i])]) continue;
    int node = 0, best = -1;
    size_t best_end = 0;
    for (size_t j = i; j < s.size(); ++j) {
      node = child(node, static_cast<unsigned char>(s[j]));
      if (node < 0) break;
      if (nodes_[node].token >= 0) {
        best = nodes_[node].token;
        best_end = j + 1;
      }
    }
    if (best >= 0) {
      start = i;
      end = best_end;
      index = best;
      return true;
    }
  }
  return false;
}

}  // namespace lmlab::detail
