// Tokenizers exact to Hugging Face `tokenizers`: byte-level BPE (GPT-2, Llama 3,
// Qwen, DeepSeek V3 pre-tokenizers) and SentencePiece-style BPE (Llama 2,
// Mistral, Gemma), loaded from tokenizer.json (+ tokenizer_config.json) or
// from GGUF metadata.
//
// Tokenizer is an immutable value type: copies share one loaded vocabulary and
// every const method may be called from several threads at once.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lmlab/core.h"

namespace lmlab {

struct TokenizerImpl;

class Tokenizer {
 public:
  // tokenizer.json file, or a directory holding tokenizer.json and (optionally)
  // tokenizer_config.json, whose special tokens and chat_template are read too.
  static Tokenizer from_file(const std::filesystem::path& path);
  // tokenizer.json text held in memory (and optionally tokenizer_config.json text).
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view config_json = "");
  // The tokenizer.* keys of a GGUF header (tokenizer.ggml.model "gpt2" or "llama").
  static Tokenizer from_gguf(const Metadata& meta);

  // add_special_tokens adds BOS/EOS as HF's post-processor would.
  std::vector<int> encode(std::string_view text, bool add_special_tokens = true) const;
  std::string decode(std::span<const int> ids, bool skip_special_tokens = false) const;

  int vocab_size() const;
  // The raw vocabulary string of an id (e.g. "Ġthe"); throws std::out_of_range.
  const std::string& id_to_token(int id) const;
  std::optional<int> token_to_id(std::string_view token) const;
  // The raw bytes behind a vocabulary entry, for showing pieces of a UTF-8
  // character: <0xXX> byte tokens give their byte, byte-level (GPT-2) token
  // strings their bytes through GPT-2's table, any other token its own text.
  std::string token_bytes(int id) const;
  bool is_special(int id) const;  // added tokens marked special, and control tokens

  std::optional<int> bos_id() const;
  // Every id that ends generation (eos_token plus the model's extra end ids).
  const std::vector<int>& eos_ids() const;
  std::string bos_token() const;  // "" when none
  std::string eos_token() const;
  // The chat template carried by tokenizer_config.json or GGUF; "" when none.
  const std::string& chat_template() const;

  // The token strings of encode(text, add_special_tokens), e.g. {"Hello", "Ġworld"}.
  std::vector<std::string> encode_pieces(std::string_view text,
                                         bool add_special_tokens = false) const;
  // Tokens matched verbatim before normalisation (special or not), in id order.
  struct AddedToken {
    std::string content;
    int id;
    bool special;
  };
  std::vector<AddedToken> added_tokens() const;
  // The model algorithm: "bpe" (byte-level or with byte fallback) or
  // "spm-bpe" (SentencePiece scores from GGUF).
  const std::string& model_type() const;

 private:
  std::shared_ptr<const TokenizerImpl> impl_;
  friend class StreamingDetokenizer;
};

// The tokenizer of a GGUF header as Hugging Face files, for saving a GGUF
// model as a model directory: Tokenizer::from_file on them tokenizes exactly
// as from_gguf does (from_gguf is built from the same tokenizer.json).
// Throws lmlab::Unsupported for SentencePiece ("llama") vocabularies, which
// GGUF stores as scores without the merge list tokenizer.json needs.
struct TokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};
TokenizerFiles gguf_tokenizer_files(const Metadata& meta);

// Turns a stream of ids into text pieces that are always complete UTF-8:
// bytes of an unfinished character are held back until it completes. The
// pieces concatenated (after finish()) equal tok.decode(all ids). Each add()
// decodes only the ids since the previous emitted piece, so a stream costs
// O(length). Not thread-safe (one stream per generation).
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(Tokenizer tok, bool skip_special_tokens = false);
  // Returns the newly completed text (possibly empty).
  std::string add(int id);
  // Flushes whatever is held (invalid trailing bytes become U+FFFD).
  std::string finish();
  const std::string& text() const { return text_; }

 private:
  Tokenizer tok_;
  bool skip_special_;
  std::vector<int> ids_;
  std::string text_;
  size_t emitted_ = 0;      // ids_[.. emitted_) are in text_
  size_t prefix_ = 0;       // window start: ids_[prefix_ .. emitted_) give context
  std::string prefix_text_;  // decode of ids_[prefix_ .. emitted_)
};

}  // namespace lmlab
