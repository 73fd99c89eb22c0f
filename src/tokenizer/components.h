// The tokenizer.json pipeline stages of HF `tokenizers`, each a small class:
// normalizers rewrite text, pre-tokenizers cut it into pieces, decoders turn
// token strings back into text and post-processors add BOS/EOS. Every stage is
// immutable after construction, so a pipeline may be shared across threads.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmlab::detail {

// One pre-token. `at_start` is true when it begins at offset 0 of the original
// text (Metaspace's prepend_scheme "first" needs it).
struct Piece {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(std::string s) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces each piece by the pieces it splits into; empty pieces are dropped.
  virtual void split(std::vector<Piece>& pieces) const = 0;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // HF's decode_chain: token strings in, (possibly fewer) strings out.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // True when the stage turns <0xXX> tokens into bytes (streaming must hold them).
  virtual bool has_byte_fallback() const { return false; }
};

// Adds special tokens around one sequence (HF's post_processor, single input).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  virtual std::vector<int> process(std::vector<int> ids) const = 0;
};

// Builders from tokenizer.json nodes; `null` gives nullptr. They throw
// std::invalid_argument (without the file prefix) for bad or unknown nodes.
// `token_id` resolves a token string for post-processors (-1 when unknown).
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j);
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j,
                                                   const std::function<int(const std::string&)>& token_id);

// Direct builders used by the GGUF loader.
std::unique_ptr<PreTokenizer> make_regex_split(const std::string& pattern);
std::unique_ptr<PreTokenizer> make_byte_level(bool add_prefix_space, bool use_regex);
std::unique_ptr<PreTokenizer> make_sequence(std::vector<std::unique_ptr<PreTokenizer>> steps);
std::unique_ptr<Decoder> make_byte_level_decoder();
// SentencePiece-style decoding: ▁ -> space, <0xXX> bytes, fuse, strip one leading space.
std::unique_ptr<Decoder> make_sentencepiece_decoder(bool strip_leading_space);
// Prepend ▁ (optional) then replace spaces by ▁, as HF's Llama 2 tokenizer.json does.
std::unique_ptr<Normalizer> make_sentencepiece_normalizer(bool add_space_prefix);
std::unique_ptr<PostProcessor> make_bos_eos(std::optional<int> bos, std::optional<int> eos);

}  // namespace lmlab::detail
