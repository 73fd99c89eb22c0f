// Tokenizer::from_file: tokenizer.json (the HF `tokenizers` serialisation)
// plus tokenizer_config.json and generation_config.json when they sit beside
// it. Every problem in the files becomes std::invalid_argument
// "[tokenizer] <file>: <what is wrong>".
#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "tokenizer/impl.h"

namespace lmlab {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

std::string read_text(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("[tokenizer] cannot open " + path.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    bad(std::string("invalid JSON: ") + e.what());
  }
}

std::optional<std::string> opt_string(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) bad("field '" + std::string(key) + "' must be a string or null");
  return it->get<std::string>();
}

bool opt_bool(const json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) bad("field '" + std::string(key) + "' must be a boolean");
  return it->get<bool>();
}

detail::BpeModel load_bpe(const json& m) {
  if (!m.is_object()) bad("'model' must be an object");
  std::string type = m.contains("type") ? opt_string(m, "type").value_or("") : "BPE";
  if (type != "BPE")
    bad("unsupported model type '" + type + "' (lmlab implements BPE only)");
  auto vit = m.find("vocab");
  if (vit == m.end() || !vit->is_object()) bad("model.vocab must be an object");
  detail::TokenMap vocab;
  vocab.reserve(vit->size());
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > INT32_MAX)
      bad("model.vocab['" + it.key() + "'] must be a non-negative integer id");
    vocab.emplace(it.key(), it->get<int>());
  }
  std::vector<std::pair<std::string, std::string>> merges;
  auto mit = m.find("merges");
  if (mit != m.end() && !mit->is_null()) {
    if (!mit->is_array()) bad("model.merges must be an array");
    merges.reserve(mit->size());
    for (const json& e : *mit) {
      if (e.is_string()) {
        // Legacy "a b" form: split at the first space.
        const std::string& s = e.get_ref<const std::string&>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos) bad("merge '" + s + "' is not of the form 'a b'");
        merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        merges.emplace_back(e[0].get<std::string>(), e[1].get<std::string>());
      } else {
        bad("each merge must be \"a b\" or [\"a\", \"b\"]");
      }
    }
  }
  detail::BpeOptions opt;
  opt.unk_token = opt_string(m, "unk_token");
  opt.fuse_unk = opt_bool(m, "fuse_unk", false);
  opt.byte_fallback = opt_bool(m, "byte_fallback", false);
  opt.ignore_merges = opt_bool(m, "ignore_merges", false);
  opt.continuing_subword_prefix = opt_string(m, "continuing_subword_prefix").value_or("");
  opt.end_of_word_suffix = opt_string(m, "end_of_word_suffix").value_or("");
  return detail::BpeModel(std::move(vocab), merges, std::move(opt));
}

std::vector<detail::AddedToken> load_added(const json& j) {
  std::vector<detail::AddedToken> out;
  if (j.is_null()) return out;
  if (!j.is_array()) bad("'added_tokens' must be an array");
  for (const json& t : j) {
    if (!t.is_object()) bad("each added token must be an object");
    detail::AddedToken a;
    auto id = t.find("id");
    if (id == t.end() || !id->is_number_integer() || id->get<int64_t>() < 0 ||
        id->get<int64_t>() > INT32_MAX)
      bad("added token without a valid 'id'");
    a.id = id->get<int>();
    auto content = opt_string(t, "content");
    if (!content) bad("added token " + std::to_string(a.id) + " has no 'content'");
    a.content = *content;
    a.special = opt_bool(t, "special", false);
    a.lstrip = opt_bool(t, "lstrip", false);
    a.rstrip = opt_bool(t, "rstrip", false);
    a.single_word = opt_bool(t, "single_word", false);
    a.normalized = opt_bool(t, "normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

// bos_token / eos_token in tokenizer_config.json: a string or {"content": ...}.
std::string token_text(const json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  bad("field '" + std::string(key) + "' must be a string or an AddedToken object");
}

std::string chat_template_of(const json& cfg) {
  auto it = cfg.find("chat_template");
  if (it == cfg.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  // A list of named templates: take "default", else the first.
  if (it->is_array()) {
    std::string first;
    for (const json& t : *it) {
      if (!t.is_object() || !t.contains("template") || !t["template"].is_string()) continue;
      if (first.empty()) first = t["template"].get<std::string>();
      if (t.value("name", "") == "default") return t["template"].get<std::string>();
    }
    return first;
  }
  bad("'chat_template' must be a string or a list of {name, template}");
}

// End-of-turn markers that stop generation in common chat formats, added to
// eos_ids when present as special tokens (llama.cpp keeps a similar list).
const char* const kEndOfTurn[] = {"<|eot_id|>",   "<|eom_id|>",     "<|im_end|>",
                                  "<end_of_turn>", "<|end|>",        "<|endoftext|>",
                                  "<|end_of_text|>", "<｜end▁of▁sentence｜>", "<|EOT|>"};

void add_unique(std::vector<int>& v, int id) {
  if (std::find(v.begin(), v.end(), id) == v.end()) v.push_back(id);
}

void apply_configs(TokenizerImpl& impl, const json& cfg, const json& gen) {
  if (!cfg.is_null()) {
    if (!cfg.is_object()) bad("tokenizer_config.json must hold an object");
    impl.bos_token = token_text(cfg, "bos_token");
    impl.eos_token = token_text(cfg, "eos_token");
    impl.chat_template = chat_template_of(cfg);
  }
  if (!impl.bos_token.empty()) impl.bos_id = impl.find_token(impl.bos_token);
  if (!impl.eos_token.empty())
    if (auto id = impl.find_token(impl.eos_token)) add_unique(impl.eos_ids, *id);
  if (gen.is_object() && gen.contains("eos_token_id")) {
    const json& e = gen["eos_token_id"];
    if (e.is_number_integer()) add_unique(impl.eos_ids, e.get<int>());
    if (e.is_array())
      for (const json& x : e)
        if (x.is_number_integer()) add_unique(impl.eos_ids, x.get<int>());
  }
  for (const char* name : kEndOfTurn) {
    auto it = impl.added_by_content.find(std::string_view(name));
    if (it != impl.added_by_content.end() && impl.special[it->second])
      add_unique(impl.eos_ids, it->second);
  }
}

std::shared_ptr<TokenizerImpl> build(const json& root, const json& cfg, const json& gen) {
  if (!root.is_object()) bad("top level must be an object");
  auto impl = std::make_shared<TokenizerImpl>();
  auto get = [&](const char* key) -> const json& {
    static const json null_value;
    auto it = root.find(key);
    return it == root.end() ? null_value : *it;
  };
  if (!root.contains("model")) bad("missing field 'model'");
  impl->model = load_bpe(root["model"]);
  impl->added = load_added(get("added_tokens"));
  impl->normalizer = detail::make_normalizer(get("normalizer"));
  impl->pre_tokenizer = detail::make_pre_tokenizer(get("pre_tokenizer"));
  impl->decoder = detail::make_decoder(get("decoder"));
  impl->finish();
  TokenizerImpl* raw = impl.get();
  impl->post_processor = detail::make_post_processor(
      get("post_processor"), [raw](const std::string& t) { return raw->find_token(t).value_or(-1); });
  apply_configs(*impl, cfg, gen);
  return impl;
}

json load_optional(const fs::path& path) {
  if (!fs::exists(path)) return json();
  try {
    return parse(read_text(path));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("[tokenizer] " + path.string() + ": " + e.what());
  }
}

}  // namespace

namespace {

std::shared_ptr<TokenizerImpl> build_reported(std::string_view text, const json& cfg,
                                              const json& gen, const std::string& name) {
  try {
    return build(parse(std::string(text)), cfg, gen);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  } catch (const json::exception& e) {
    // Type errors nlohmann reports while we read a field.
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  } catch (const std::out_of_range& e) {
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  } catch (const std::length_error& e) {
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  }
}

}  // namespace

std::shared_ptr<TokenizerImpl> detail::tokenizer_from_json(const json& root, const json& config,
                                                           const std::string& name) {
  try {
    return build(root, config, json());
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  } catch (const json::exception& e) {
    throw std::invalid_argument("[tokenizer] " + name + ": " + e.what());
  }
}

Tokenizer Tokenizer::from_file(const fs::path& path) {
  fs::path file = path, dir = path.parent_path();
  if (fs::is_directory(path)) {
    file = path / "tokenizer.json";
    dir = path;
  }
  if (!fs::exists(file)) throw std::runtime_error("[tokenizer] no tokenizer.json at " + file.string());
  std::string text = read_text(file);
  json cfg = load_optional(dir / "tokenizer_config.json");
  json gen = load_optional(dir / "generation_config.json");
  // transformers (since 4.47) and mlx_lm save the template as chat_template.jinja
  // beside tokenizer_config.json, and that file wins over the config's entry.
  if (const fs::path jinja = dir / "chat_template.jinja"; fs::exists(jinja)) {
    if (cfg.is_null()) cfg = json::object();
    if (cfg.is_object()) cfg["chat_template"] = read_text(jinja);
  }
  Tokenizer tok;
  tok.impl_ = build_reported(text, cfg, gen, file.string());
  return tok;
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json) {
  json cfg;
  if (!config_json.empty()) {
    try {
      cfg = parse(std::string(config_json));
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("[tokenizer] tokenizer_config: ") + e.what());
    }
  }
  Tokenizer tok;
  tok.impl_ = build_reported(tokenizer_json, cfg, json(), "<tokenizer.json>");
  return tok;
}

}  // namespace lmlab
