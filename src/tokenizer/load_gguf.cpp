// Tokenizer::from_gguf: rebuilds the HF pipeline from GGUF's tokenizer.ggml.*
// keys. "gpt2" vocabularies are byte-level BPE whose pre-tokenizer regexes are
// chosen by tokenizer.ggml.pre (the table llama.cpp keeps in llama-vocab.cpp);
// "llama" vocabularies are SentencePiece BPE driven by token scores.
#include <algorithm>
#include <stdexcept>

#include <nlohmann/json.hpp>

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

std::optional<int> token_at(const Metadata& meta, const std::vector<std::string>& tokens, const char* key) {
  auto id = get_int(meta, key);
  if (!id || *id < 0 || static_cast<size_t>(*id) >= tokens.size()) return std::nullopt;
  return static_cast<int>(*id);
}

// Control, unknown and user-defined tokens, matched verbatim in the text.
nlohmann::json added_tokens_json(const std::vector<std::string>& tokens, const std::vector<int64_t>* types) {
  nlohmann::json added = nlohmann::json::array();
  if (!types) return added;
  for (size_t i = 0; i < types->size(); ++i) {
    const int64_t t = (*types)[i];
    if (t != kControl && t != kUserDefined && t != kUnknown) continue;
    added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", t != kUserDefined || ends_generation(tokens[i])}});
  }
  return added;
}

// BOS/EOS around the sequence as llama.cpp's add_bos/add_eos flags say.
nlohmann::json post_processor_json(const Metadata& meta, const std::vector<std::string>& tokens, bool is_spm) {
  nlohmann::json single = nlohmann::json::array(), specials = nlohmann::json::object();
  auto special = [&](int id) {
    single.push_back({{"SpecialToken", {{"id", tokens[id]}, {"type_id", 0}}}});
    specials[tokens[id]] = {{"id", tokens[id]}, {"ids", {id}}, {"tokens", {tokens[id]}}};
  };
  auto bos = token_at(meta, tokens, "tokenizer.ggml.bos_token_id");
  auto eos = token_at(meta, tokens, "tokenizer.ggml.eos_token_id");
  if (bos && get_bool(meta, "tokenizer.ggml.add_bos_token", is_spm)) special(*bos);
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (eos && get_bool(meta, "tokenizer.ggml.add_eos_token", false)) special(*eos);
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", nlohmann::json::array()},
          {"special_tokens", specials}};
}

// A "gpt2" vocabulary as the tokenizer.json HF `tokenizers` would hold:
// byte-level BPE after the pre-tokenizer regexes of tokenizer.ggml.pre.
nlohmann::json gpt2_tokenizer_json(const Metadata& meta, const std::vector<std::string>& tokens,
                                   const std::vector<int64_t>* types) {
  auto merges_meta = get<std::vector<std::string>>(meta, "tokenizer.ggml.merges");
  if (!merges_meta) bad("missing tokenizer.ggml.merges for a gpt2 vocabulary");
  nlohmann::json vocab = nlohmann::json::object();
  for (size_t i = 0; i < tokens.size(); ++i)
    if (!vocab.contains(tokens[i])) vocab[tokens[i]] = i;  // a repeated string keeps its first id
  nlohmann::json merges = nlohmann::json::array();
  for (const std::string& m : *merges_meta) {
    size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) bad("merge '" + m + "' is not of the form 'a b'");
    merges.push_back({m.substr(0, sp), m.substr(sp + 1)});
  }
  nlohmann::json steps = nlohmann::json::array();
  auto pre = get<std::string>(meta, "tokenizer.ggml.pre");
  for (const std::string& re : pre_regexes(pre ? *pre : ""))
    steps.push_back({{"type", "Split"}, {"pattern", {{"Regex", re}}}, {"behavior", "Isolated"}, {"invert", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}});
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_tokens_json(tokens, types)},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", steps}}},
          {"post_processor", post_processor_json(meta, tokens, /*is_spm=*/false)},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
            {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
}

nlohmann::json tokenizer_config_json(const Metadata& meta, const std::vector<std::string>& tokens, bool is_spm) {
  nlohmann::json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                        {"add_bos_token", get_bool(meta, "tokenizer.ggml.add_bos_token", is_spm)},
                        {"add_eos_token", get_bool(meta, "tokenizer.ggml.add_eos_token", false)},
                        {"clean_up_tokenization_spaces", false}};
  if (auto id = token_at(meta, tokens, "tokenizer.ggml.bos_token_id")) cfg["bos_token"] = tokens[*id];
  if (auto id = token_at(meta, tokens, "tokenizer.ggml.eos_token_id")) cfg["eos_token"] = tokens[*id];
  if (auto id = token_at(meta, tokens, "tokenizer.ggml.unknown_token_id")) cfg["unk_token"] = tokens[*id];
  if (auto id = token_at(meta, tokens, "tokenizer.ggml.padding_token_id")) cfg["pad_token"] = tokens[*id];
  if (auto tmpl = get<std::string>(meta, "tokenizer.chat_template")) cfg["chat_template"] = *tmpl;
  return cfg;
}

const std::vector<std::string>& vocab_tokens(const Metadata& meta) {
  auto tokens = get<std::vector<std::string>>(meta, "tokenizer.ggml.tokens");
  if (!tokens || tokens->empty()) bad("missing tokenizer.ggml.tokens");
  return *tokens;
}

}  // namespace

TokenizerFiles gguf_tokenizer_files(const Metadata& meta) {
  auto model_name = get<std::string>(meta, "tokenizer.ggml.model");
  if (!model_name) bad("missing tokenizer.ggml.model");
  if (*model_name != "gpt2")
    throw Unsupported("[tokenizer] a GGUF '" + *model_name +
                      "' vocabulary (SentencePiece scores, no merge list) cannot be written as tokenizer.json; "
                      "use the model's original tokenizer files");
  const auto& tokens = vocab_tokens(meta);
  auto types = get<std::vector<int64_t>>(meta, "tokenizer.ggml.token_type");
  if (types && types->size() != tokens.size()) bad("token_type and tokens differ in length");
  try {
    return {gpt2_tokenizer_json(meta, tokens, types).dump(2), tokenizer_config_json(meta, tokens, false).dump(2)};
  } catch (const nlohmann::json::type_error&) {
    // JSON holds only UTF-8: such a vocabulary (or template) has no faithful tokenizer.json.
    throw std::invalid_argument(
        "[tokenizer] GGUF metadata: a token, special token or the chat template is not valid UTF-8, so it "
        "cannot be written as tokenizer.json");
  }
}

Tokenizer Tokenizer::from_gguf(const Metadata& meta) {
  auto model_name = get<std::string>(meta, "tokenizer.ggml.model");
  if (!model_name) bad("missing tokenizer.ggml.model");
  const auto& tokens = vocab_tokens(meta);
  auto types = get<std::vector<int64_t>>(meta, "tokenizer.ggml.token_type");
  if (types && types->size() != tokens.size()) bad("token_type and tokens differ in length");

  const bool is_spm = *model_name == "llama";
  std::shared_ptr<TokenizerImpl> impl;
  if (*model_name == "gpt2") {
    // Built through the tokenizer.json it is saved as, so that a saved
    // directory holds exactly the tokenizer lmlab ran.
    impl = detail::tokenizer_from_json(gpt2_tokenizer_json(meta, tokens, types), nlohmann::json(), "GGUF metadata");
  } else if (is_spm) {
    impl = std::make_shared<TokenizerImpl>();
    detail::TokenMap vocab;
    vocab.reserve(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) vocab.emplace(tokens[i], static_cast<int>(i));
    auto scores = get<std::vector<double>>(meta, "tokenizer.ggml.scores");
    detail::BpeOptions opt;
    opt.byte_fallback = true;
    opt.fuse_unk = true;
    std::optional<int64_t> unk = get_int(meta, "tokenizer.ggml.unknown_token_id");
    if (!unk && types)
      for (size_t i = 0; i < types->size(); ++i)
        if ((*types)[i] == kUnknown) unk = static_cast<int64_t>(i);
    if (unk && *unk >= 0 && static_cast<size_t>(*unk) < tokens.size()) opt.unk_token = tokens[*unk];
    impl->model = detail::BpeModel::from_scores(std::move(vocab), scores ? *scores : std::vector<double>{},
                                                std::move(opt));
    impl->model_type = "spm-bpe";
    bool space_prefix = get_bool(meta, "tokenizer.ggml.add_space_prefix", true);
    impl->normalizer = detail::make_sentencepiece_normalizer(space_prefix);
    impl->decoder = detail::make_sentencepiece_decoder(space_prefix);
    for (const auto& a : added_tokens_json(tokens, types))
      impl->added.push_back(
          {.content = a["content"].get<std::string>(), .id = a["id"].get<int>(), .special = a["special"].get<bool>()});
    impl->finish();
    std::optional<int> bos = token_at(meta, tokens, "tokenizer.ggml.bos_token_id");
    std::optional<int> eos = token_at(meta, tokens, "tokenizer.ggml.eos_token_id");
    bool add_bos = get_bool(meta, "tokenizer.ggml.add_bos_token", is_spm);
    bool add_eos = get_bool(meta, "tokenizer.ggml.add_eos_token", false);
    impl->post_processor = detail::make_bos_eos(add_bos ? bos : std::nullopt, add_eos ? eos : std::nullopt);
  } else {
    throw Unsupported("[tokenizer] GGUF tokenizer model '" + *model_name +
                      "' is not supported (gpt2 and llama are)");
  }

  // BOS and the end-of-generation ids as llama.cpp reads them.
  std::optional<int> bos = token_at(meta, tokens, "tokenizer.ggml.bos_token_id");
  std::optional<int> eos = token_at(meta, tokens, "tokenizer.ggml.eos_token_id");
  impl->bos_id = bos;
  impl->bos_token = bos ? tokens[*bos] : "";
  impl->eos_token = eos ? tokens[*eos] : "";
  impl->eos_ids.clear();
  if (eos) impl->eos_ids.push_back(*eos);
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"})
    if (auto id = token_at(meta, tokens, key))
      if (std::find(impl->eos_ids.begin(), impl->eos_ids.end(), *id) == impl->eos_ids.end())
        impl->eos_ids.push_back(*id);
  for (size_t i = 0; i < tokens.size(); ++i)
    if (ends_generation(tokens[i]) &&
        std::find(impl->eos_ids.begin(), impl->eos_ids.end(), static_cast<int>(i)) == impl->eos_ids.end())
      impl->eos_ids.push_back(static_cast<int>(i));
  if (auto tmpl = get<std::string>(meta, "tokenizer.chat_template")) impl->chat_template = *tmpl;

  Tokenizer tok;
  tok.impl_ = std::move(impl);
  return tok;
}

}  // namespace lmlab
