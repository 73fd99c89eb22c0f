// TokenizerImpl: the loaded pipeline behind lmlab::Tokenizer, shared by the
// tokenizer.json and GGUF loaders. Immutable once finish() has run, apart from
// the BPE word cache, which locks.
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/tokenizer.h"
#include "tokenizer/bpe.h"
#include "tokenizer/components.h"

namespace lmlab {

namespace detail {

struct AddedToken {
  std::string content;
  int id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
  bool normalized = false;
};

// Leftmost-longest literal matcher over added tokens (a byte trie), the
// semantics HF gets from aho-corasick's LeftmostLongest.
class AddedMatcher {
 public:
  void add(const std::string& pattern, int token_index);
  bool empty() const { return nodes_.size() <= 1; }
  // First match starting at or after `pos`: {start, end, token_index}.
  bool find(std::string_view s, size_t pos, size_t& start, size_t& end, int& index) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int>> children;
    int token = -1;
  };
  int child(int node, unsigned char c) const;
  std::vector<Node> nodes_{Node{}};
  std::array<bool, 256> first_byte_{};
};

}  // namespace detail

struct TokenizerImpl;

namespace detail {
// A tokenizer.json document (and tokenizer_config.json, or null) already parsed;
// `name` prefixes errors. The GGUF loader builds its byte-level vocabularies this way.
std::shared_ptr<TokenizerImpl> tokenizer_from_json(const nlohmann::json& root, const nlohmann::json& config,
                                                   const std::string& name);
}  // namespace detail

struct TokenizerImpl {
  std::unique_ptr<detail::Normalizer> normalizer;
  std::unique_ptr<detail::PreTokenizer> pre_tokenizer;
  detail::BpeModel model;
  std::unique_ptr<detail::PostProcessor> post_processor;
  std::unique_ptr<detail::Decoder> decoder;
  std::vector<detail::AddedToken> added;
  std::string model_type = "bpe";

  std::optional<int> bos_id;
  std::vector<int> eos_ids;
  std::string bos_token, eos_token, chat_template;

  // Built by finish().
  detail::AddedMatcher raw_matcher, normalized_matcher;
  std::unordered_map<int, size_t> added_by_id;
  std::vector<const std::string*> id_to_token;  // model vocab overlaid with added tokens
  std::vector<bool> special;
  detail::TokenMap added_by_content;

  // Indexes the vocabulary and added tokens; call once after loading.
  void finish();
  std::optional<int> find_token(std::string_view token) const;
  std::vector<int> encode(std::string_view text, bool add_special_tokens) const;
  std::string decode(std::span<const int> ids, bool skip_special_tokens) const;

 private:
  void encode_segment(const std::string& text, bool at_start, std::vector<int>& out) const;
};

}  // namespace lmlab
