// The BPE model of HF `tokenizers` (models/bpe): a pre-token is split into
// characters, unknown characters fall back to <0xXX> byte tokens or <unk>, and
// ranked merges are applied lowest rank first, leftmost first on ties.
// SentencePiece vocabularies from GGUF (scores, no merge list) use the same
// loop with ranks derived from the score of the merged piece.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lmlab::detail {

// Hash map keyed by std::string that can be probed with a string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int, StringHash, std::equal_to<>>;

struct BpeOptions {
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  BpeModel() = default;
  // `vocab` maps token strings to ids; merges are (left, right) pairs in rank
  // order. Throws std::invalid_argument when a merge names an unknown token.
  BpeModel(TokenMap vocab,
           const std::vector<std::pair<std::string, std::string>>& merges,
           BpeOptions options);
  // SentencePiece-style: no merge list; a pair merges when the concatenation is
  // in the vocabulary, higher `scores` first.
  static BpeModel from_scores(TokenMap vocab, const std::vector<double>& scores,
                              BpeOptions options);

  // Appends the ids of one pre-token. Thread-safe (the word cache is locked).
  void tokenize(std::string_view word, std::vector<int>& out) const;

  const TokenMap& vocab() const { return vocab_; }
  const BpeOptions& options() const { return options_; }

 private:
  struct Merge {
    int rank;
    int new_id;
  };
  std::optional<Merge> find_merge(int left, int right) const;
  void merge_word(std::string_view word, std::vector<int>& out) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<int> score_rank_;  // SentencePiece mode: rank of each id, or empty
  BpeOptions options_;
  std::optional<int> unk_id_;

  // Bounded memo of pre-token -> ids; stops growing at kCacheCapacity entries.
  // Held by pointer so the model stays movable.
  struct WordCache {
    std::mutex mutex;
    std::unordered_map<std::string, std::vector<int>, StringHash, std::equal_to<>> words;
  };
  static constexpr size_t kCacheCapacity = 1 << 16;
  std::unique_ptr<WordCache> cache_ = std::make_unique<WordCache>();
};

// Throws when the largest id leaves a gap of more than 2^20 unused ids above the
// `count` tokens defined: vocabularies are dense, and id → token tables are sized
// by the largest id, so a stray huge id (a corrupt file) must not allocate gigabytes.
void check_id_range(int max_id, size_t count, const std::string& what);

}  // namespace lmlab::detail
