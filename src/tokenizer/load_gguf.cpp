// Tokenizer::from_gguf: rebuilds the HF pipeline from GGUF's tokenizer.ggml.*
// keys. "gpt2" vocabularies are byte-level BPE whose pre-tokenizer regexes are
// chosen by tokenizer.ggml.pre (the table llama.cpp keeps in llama-vocab.cpp);
// "llama" vocabularies are SentencePiece BPE driven by token scores.
#include <algorithm>
#include <stdexcept>

#include "tokenizer/impl.h"

namespace lmlab {

namespace {

[[noreturn]] void bad(const std::string& what) {
  throw std::invalid_argument("[tokenizer] GGUF metadata: " + what);
}

// Local typed lookups (the same contract as core.h's meta_* helpers).
template <typename T>
const T* get(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  const T* v = std::get_if<T>(&it->second);
  if (!v) bad("key '" + key + "' has an unexpected type");
  return v;
}

std::optional<int64_t> get_int(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto v = std::get_if<int64_t>(&it->second)) return *v;
  if (auto v = std::get_if<bool>(&it->second)) return *v ? 1 : 0;
  bad("key '" + key + "' must be an integer");
}

bool get_bool(const Metadata& m, const std::string& key, bool fallback) {
  auto it = m.find(key);
  if (it == m.end()) return fallback;
  if (auto v = std::get_if<bool>(&it->second)) return *v;
  if (auto v = std::get_if<int64_t>(&it->second)) return *v != 0;
  bad("key '" + key + "' must be a boolean");
}

const char* const kGpt2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char* const kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// Split regexes (applied in order, each isolating its matches) for a
// tokenizer.ggml.pre name; mirrors the groups of llama.cpp's table.
std::vector<std::string> pre_regexes(const std::string& pre) {
  auto is = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (pre == n) return true;
    return false;
  };
  if (pre.empty() || is({"default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "trillion",
                         "granite-docling"}))
    return {kGpt2};
  if (is({"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}))
    return {"\\p{N}", kGpt2};
  if (is({"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral", "dbrx", "smaug-bpe"}))
    return {kLlama3};
  if (is({"qwen2", "stablelm2", "deepseek-r1-qwen", "hunyuan", "megrez"})) return {kQwen2};
  if (is({"deepseek-v3"}))
    return {"\\p{N}{1,3}", "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F\xE3\x82\xA0-\xE3\x83\xBF]+",
            "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
            "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"};
  throw Unsupported("[tokenizer] GGUF pre-tokenizer '" + pre +
                    "' is not supported (known: gpt-2, smollm, llama-bpe, qwen2, deepseek-v3...)");
}

enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// Tokens llama.cpp ends generation at by their text, whatever the metadata says
// (llama-vocab.cpp), and treats as control tokens: Gemma's GGUF names only <eos>,
// yet its chat turns end with <end_of_turn>.
bool ends_generation(const std::string& text) {
  static const char* const kTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>",
                                       "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                       "<|end_of_text|>", "<end_of_utterance>", "</s>"};
  for (const char* t : kTexts)
    if (text == t) return true;
  return false;
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const Metadata& meta) {
  auto model_name = get<std::string>(meta, "tokenizer.ggml.model");
  if (!model_name) bad("missing tokenizer.ggml.model");
  auto tokens = get<std::vector<std::string>>(meta, "tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) bad("missing tokenizer.ggml.tokens");
  auto types = get<std::vector<int64_t>>(meta, "tokenizer.ggml.token_type");
  if (types && types->size() != tokens->size()) bad("token_type and tokens differ in length");

  auto impl = std::make_shared<TokenizerImpl>();
  detail::TokenMap vocab;
  vocab.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) vocab.emplace((*tokens)[i], static_cast<int>(i));

  bool is_spm = *model_name == "llama";
  if (*model_name == "gpt2") {
    auto merges_meta = get<std::vector<std::string>>(meta, "tokenizer.ggml.merges");
    if (!merges_meta) bad("missing tokenizer.ggml.merges for a gpt2 vocabulary");
    std::vector<std::pair<std::string, std::string>> merges;
    merges.reserve(merges_meta->size());
    for (const std::string& s : *merges_meta) {
      size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) bad("merge '" + s + "' is not of the form 'a b'");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    }
    try {
      impl->model = detail::BpeModel(std::move(vocab), merges, {});
    } catch (const std::invalid_argument& e) {
      bad(e.what());
    }
    std::vector<std::unique_ptr<detail::PreTokenizer>> steps;
    auto pre = get<std::string>(meta, "tokenizer.ggml.pre");
    for (const std::string& re : pre_regexes(pre ? *pre : "")) steps.push_back(detail::make_regex_split(re));
    steps.push_back(detail::make_byte_level(/*add_prefix_space=*/false, /*use_regex=*/false));
    impl->pre_tokenizer = detail::make_sequence(std::move(steps));
    impl->decoder = detail::make_byte_level_decoder();
  } else if (is_spm) {
    auto scores = get<std::vector<double>>(meta, "tokenizer.ggml.scores");
    detail::BpeOptions opt;
    opt.byte_fallback = true;
    opt.fuse_unk = true;
    std::optional<int64_t> unk = get_int(meta, "tokenizer.ggml.unknown_token_id");
    if (!unk && types)
      for (size_t i = 0; i < types->size(); ++i)
        if ((*types)[i] == kUnknown) unk = static_cast<int64_t>(i);
    if (unk && *unk >= 0 && static_cast<size_t>(*unk) < tokens->size()) opt.unk_token = (*tokens)[*unk];
    impl->model = detail::BpeModel::from_scores(std::move(vocab), scores ? *scores : std::vector<double>{},
                                                std::move(opt));
    impl->model_type = "spm-bpe";
    bool space_prefix = get_bool(meta, "tokenizer.ggml.add_space_prefix", true);
    impl->normalizer = detail::make_sentencepiece_normalizer(space_prefix);
    impl->decoder = detail::make_sentencepiece_decoder(space_prefix);
  } else {
    throw Unsupported("[tokenizer] GGUF tokenizer model '" + *model_name +
                      "' is not supported (gpt2 and llama are)");
  }

  // Control and user-defined tokens are matched verbatim in the text.
  if (types) {
    for (size_t i = 0; i < types->size(); ++i) {
      int64_t t = (*types)[i];
      if (t != kControl && t != kUserDefined && t != kUnknown) continue;
      detail::AddedToken a;
      a.content = (*tokens)[i];
      a.id = static_cast<int>(i);
      a.special = t != kUserDefined || ends_generation(a.content);
      impl->added.push_back(std::move(a));
    }
  }
  impl->finish();

  auto token_at = [&](std::optional<int64_t> id) -> std::optional<int> {
    if (!id || *id < 0 || static_cast<size_t>(*id) >= tokens->size()) return std::nullopt;
    return static_cast<int>(*id);
  };
  std::optional<int> bos = token_at(get_int(meta, "tokenizer.ggml.bos_token_id"));
  std::optional<int> eos = token_at(get_int(meta, "tokenizer.ggml.eos_token_id"));
  impl->bos_id = bos;
  if (bos) impl->bos_token = (*tokens)[*bos];
  if (eos) impl->eos_token = (*tokens)[*eos], impl->eos_ids.push_back(*eos);
  auto push_eos = [&](int id) {
    if (std::find(impl->eos_ids.begin(), impl->eos_ids.end(), id) == impl->eos_ids.end())
      impl->eos_ids.push_back(id);
  };
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (auto id = token_at(get_int(meta, key))) push_eos(*id);
  for (size_t i = 0; i < tokens->size(); ++i)
    if (ends_generation((*tokens)[i])) push_eos(static_cast<int>(i));
  bool add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token", is_spm);
  bool add_eos = get_bool(meta, "tokenizer.ggml.add_eos_token", false);
  impl->post_processor = detail::make_bos_eos(add_bos ? bos : std::nullopt, add_eos ? eos : std::nullopt);
  if (auto tmpl = get<std::string>(meta, "tokenizer.chat_template")) impl->chat_template = *tmpl;

  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

}  // namespace lmlab
