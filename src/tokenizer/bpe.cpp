// BPE model (see bpe.h).
#include "tokenizer/bpe.h"

#include <algorithm>
#include <cstdio>
#include <numeric>
#include <queue>
#include <stdexcept>

#include "tokenizer/unicode.h"

namespace lmlab::detail {

namespace {

uint64_t pair_key(int left, int right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

std::vector<std::string> invert(const TokenMap& vocab) {
  int max_id = -1;
  for (const auto& [tok, id] : vocab) {
    if (id < 0) throw std::invalid_argument("negative id for token '" + tok + "'");
    max_id = std::max(max_id, id);
  }
  check_id_range(max_id, vocab.size(), "vocabulary");
  std::vector<std::string> out(static_cast<size_t>(max_id + 1));
  for (const auto& [tok, id] : vocab) out[id] = tok;
  return out;
}

}  // namespace

void check_id_range(int max_id, size_t count, const std::string& what) {
  constexpr int64_t kMaxGap = int64_t{1} << 20;
  if (static_cast<int64_t>(max_id) >= static_cast<int64_t>(count) + kMaxGap)
    throw std::invalid_argument(what + " id " + std::to_string(max_id) + " is far beyond the " +
                                std::to_string(count) + " tokens defined (ids must be dense)");
}

BpeModel::BpeModel(TokenMap vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  id_to_token_ = invert(vocab_);
  const std::string& prefix = options_.continuing_subword_prefix;
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a), ib = vocab_.find(b);
    if (ia == vocab_.end() || ib == vocab_.end())
      throw std::invalid_argument("merge " + std::to_string(rank) + " ('" + a + "' '" + b +
                                  "') uses a token missing from the vocabulary");
    std::string merged = a + (b.compare(0, prefix.size(), prefix) == 0 ? b.substr(prefix.size()) : b);
    auto im = vocab_.find(merged);
    if (im == vocab_.end())
      throw std::invalid_argument("merge " + std::to_string(rank) + " gives '" + merged +
                                  "', which is missing from the vocabulary");
    // Later duplicates win, as when HF collects the merges into a map.
    merges_[pair_key(ia->second, ib->second)] = {static_cast<int>(rank), im->second};
  }
  if (options_.unk_token) {
    auto it = vocab_.find(*options_.unk_token);
    if (it != vocab_.end()) unk_id_ = it->second;
  }
}

BpeModel BpeModel::from_scores(TokenMap vocab, const std::vector<double>& scores,
                               BpeOptions options) {
  BpeModel m(std::move(vocab), {}, std::move(options));
  // Rank = position in decreasing score order (ties: lower id first).
  std::vector<int> order(m.id_to_token_.size());
  std::iota(order.begin(), order.end(), 0);
  auto score = [&](int id) { return static_cast<size_t>(id) < scores.size() ? scores[id] : 0.0; };
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score(a) > score(b); });
  m.score_rank_.assign(order.size(), 0);
  for (size_t r = 0; r < order.size(); ++r) m.score_rank_[order[r]] = static_cast<int>(r);
  return m;
}

std::optional<BpeModel::Merge> BpeModel::find_merge(int left, int right) const {
  if (!score_rank_.empty()) {
    std::string merged = id_to_token_[left] + id_to_token_[right];
    auto it = vocab_.find(merged);
    if (it == vocab_.end()) return std::nullopt;
    return Merge{score_rank_[it->second], it->second};
  }
  auto it = merges_.find(pair_key(left, right));
  if (it == merges_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<int>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache_->mutex);
    auto it = cache_->words.find(word);
    if (it != cache_->words.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  merge_word(word, out);
  std::lock_guard<std::mutex> lock(cache_->mutex);
  if (cache_->words.size() < kCacheCapacity)
    cache_->words.emplace(std::string(word), std::vector<int>(out.begin() + start, out.end()));
}

void BpeModel::merge_word(std::string_view word, std::vector<int>& out) const {
  struct Symbol {
    int id;
    int prev;
    int next;
    bool alive;
  };
  std::vector<Symbol> syms;
  syms.reserve(word.size());
  auto add = [&](int id) {
    int idx = static_cast<int>(syms.size());
    syms.push_back({id, idx - 1, -1, true});
    if (idx > 0) syms[idx - 1].next = idx;
  };

  // 1. Characters to initial symbols, with byte fallback and <unk> fusing.
  std::optional<int> pending_unk;
  std::string key;
  for (size_t i = 0; i < word.size();) {
    size_t start = i;
    i += std::min(utf8::lead_len(static_cast<unsigned char>(word[i])), word.size() - i);
    std::string_view ch = word.substr(start, i - start);
    key.clear();
    if (start > 0) key += options_.continuing_subword_prefix;
    key += ch;
    if (i == word.size()) key += options_.end_of_word_suffix;
    auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      if (pending_unk) add(*pending_unk), pending_unk.reset();
      add(it->second);
      continue;
    }
    if (options_.byte_fallback) {
      std::vector<int> bytes;
      for (unsigned char b : key) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto ib = vocab_.find(std::string_view(name));
        if (ib == vocab_.end()) break;
        bytes.push_back(ib->second);
      }
      if (bytes.size() == key.size()) {
        for (int b : bytes) add(b);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !options_.fuse_unk) add(*pending_unk);
      pending_unk = *unk_id_;
    } else if (options_.unk_token) {
      throw std::invalid_argument("unk_token '" + *options_.unk_token + "' is not in the vocabulary");
    }
  }
  if (pending_unk) add(*pending_unk);
  if (syms.empty()) return;

  // 2. Merge lowest rank first; ties go to the leftmost pair.
  struct Candidate {
    int rank;
    int pos;
    int new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int left) {
    int right = syms[left].next;
    if (right < 0) return;
    if (auto m = find_merge(syms[left].id, syms[right].id)) queue.push({m->rank, left, m->new_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(syms.size()); ++i) consider(i);
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = syms[top.pos];
    if (!left.alive || left.next < 0) continue;
    auto m = find_merge(left.id, syms[left.next].id);
    if (!m || m->new_id != top.new_id) continue;  // stale entry
    Symbol& right = syms[left.next];
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : syms)
    if (s.alive) out.push_back(s.id);
}

}  // namespace lmlab::detail
