// lmlab tokenize: the tokenizer experiment. Ids and the piece behind each id
// (whitespace and partial UTF-8 made visible), counts, vocabulary facts,
// round-trip check, several strings side by side, and --chat to see the
// tokens of a conversation rendered by the model's own template.
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/utf8.h"
#include "lmlab/analysis.h"
#include "lmlab/messages.h"

namespace lmlab::cli {

namespace {

namespace an = lmlab::analysis;
using json = nlohmann::json;

struct TokenizeOptions {
  std::string tokenizer;  // path; default: --model's, else the default model
  std::string model;
  std::vector<std::string> texts;
  std::string input;
  std::string system;
  bool chat = false;
  bool no_special = false;
  bool json = false;
  bool vocab = false;
  std::string messages;  // a JSON conversation file ("-": stdin)
  bool no_generation_prompt = false;
};

std::string piece_text(const Tokenizer& tok, int id) {
  std::string t = tok.decode(std::vector<int>{id});
  if (t.find(utf8::kReplacement) == std::string::npos && utf8::is_valid(t)) return an::visible(t);
  std::string hex;
  for (unsigned char b : tok.token_bytes(id)) hex += fmt::format("{}<{:02X}>", hex.empty() ? "" : " ", b);
  return hex + "  (part of a UTF-8 character)";
}

std::vector<std::string> gather_texts(const TokenizeOptions& o) {
  std::vector<std::string> texts = o.texts;
  if (!o.input.empty()) {
    std::ifstream f(o.input);
    if (!f) throw std::runtime_error(fmt::format("[tokenize] cannot read {}", o.input));
    json j;
    try {
      j = json::parse(f);
    } catch (const json::exception& e) {
      throw std::invalid_argument(fmt::format("[tokenize] {}: invalid JSON: {}", o.input, e.what()));
    }
    if (!j.is_array())
      throw std::invalid_argument(fmt::format("[tokenize] {}: expected a JSON array of strings", o.input));
    for (size_t i = 0; i < j.size(); ++i) {
      if (!j[i].is_string())
        throw std::invalid_argument(fmt::format("[tokenize] {}: element {} is not a string", o.input, i));
      texts.push_back(j[i].get<std::string>());
    }
  }
  if (texts.empty()) texts.push_back(read_stdin_prompt(/*wait=*/false));
  for (size_t i = 0; i < texts.size(); ++i) check_utf8(texts[i], fmt::format("text {}", i + 1));
  return texts;
}

json describe(const Tokenizer& tok, const std::string& text, const std::vector<int>& ids) {
  json pieces = json::array();
  for (int id : ids) pieces.push_back(tok.id_to_token(id));
  std::string back = tok.decode(ids);
  return {{"text", text}, {"ids", ids}, {"pieces", pieces}, {"count", ids.size()},
          {"decoded", back}, {"round_trip", back == text}};
}

void print_one(const Tokenizer& tok, const json& d) {
  fmt::print("\"{}\" → {} tokens{}\n", an::visible(d["text"].get<std::string>()), d["count"].get<int>(),
             d["round_trip"].get<bool>() ? "" : "   (decode differs from the input)");
  fmt::print("  {:>7}  {:<24} {}\n", "id", "token", "text");
  for (int id : d["ids"]) {
    std::string flag = tok.is_special(id) ? "  [special]" : "";
    fmt::print("  {:>7}  {:<24} {}{}\n", id, tok.id_to_token(id), piece_text(tok, id), flag);
  }
}

nlohmann::ordered_json read_conversation(const std::string& path) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(fmt::format("[tokenize] cannot read {}", path));
    text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(text);
  } catch (const nlohmann::ordered_json::exception& e) {
    throw std::invalid_argument(fmt::format("[tokenize] {}: invalid JSON: {}", path, e.what()));
  }
  // A bare message list is taken as {"messages": [...]}.
  if (j.is_array()) j = nlohmann::ordered_json{{"messages", std::move(j)}};
  return j;
}

// --messages: a whole conversation through the chat template, as the server renders it.
void run_messages(const TokenizeOptions& o) {
  Tokenizer tok = load_tokenizer(resolve(o.tokenizer.empty() ? o.model : o.tokenizer, ""));
  if (tok.chat_template().empty())
    throw std::invalid_argument("[tokenize] this tokenizer has no chat template to render messages with");
  Conversation c;
  try {
    c = parse_conversation(read_conversation(o.messages));
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("[tokenize] {}: {}", o.messages, e.what()));
  }
  RenderedPrompt r = render_conversation(tok, ChatTemplate(tok.chat_template()), c, !o.no_generation_prompt);
  if (o.json) {
    std::cout << nlohmann::ordered_json{{"text", r.text}, {"ids", r.ids}}.dump(2) << "\n";
    return;
  }
  fmt::print("{}\n", r.text);
  print_one(tok, describe(tok, r.text, r.ids));
}

void run_tokenize(const TokenizeOptions& o) {
  if (!o.messages.empty()) {
    run_messages(o);
    return;
  }
  Tokenizer tok = load_tokenizer(resolve(o.tokenizer.empty() ? o.model : o.tokenizer, ""));
  const bool add_special = !o.no_special;
  json results = json::array();
  if (o.chat) {
    if (tok.chat_template().empty())
      throw std::invalid_argument("[tokenize] this tokenizer has no chat template");
    ChatTemplate tpl(tok.chat_template());
    json messages = json::array();
    if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
    for (const auto& t : gather_texts(o)) messages.push_back({{"role", "user"}, {"content", t}});
    std::string rendered = tpl.apply(messages, {.add_generation_prompt = true,
                                                .bos_token = tok.bos_token(),
                                                .eos_token = tok.eos_token()});
    results.push_back(describe(tok, rendered, tok.encode(rendered, false)));
  } else {
    for (const auto& t : gather_texts(o)) results.push_back(describe(tok, t, tok.encode(t, add_special)));
  }
  if (o.json) {
    if (!o.input.empty() && !o.vocab) {
      json ids = json::array();
      for (auto& r : results) ids.push_back(r["ids"]);
      print_json(ids, -1);
      return;
    }
    json out = {{"results", results}, {"vocab_size", tok.vocab_size()}};
    if (o.vocab) {
      json special = json::array();
      for (auto& a : tok.added_tokens())
        if (a.special) special.push_back({{"id", a.id}, {"content", a.content}});
      out["special_tokens"] = special;
      out["eos_ids"] = tok.eos_ids();
      if (auto b = tok.bos_id()) out["bos_id"] = *b;
    }
    print_json(out);
    return;
  }
  for (const auto& r : results) {
    print_one(tok, r);
    fmt::print("\n");
  }
  if (results.size() > 1) {
    fmt::print("{:<40} {:>7}\n", "text", "tokens");
    for (const auto& r : results)
      fmt::print("{:<40} {:>7}\n", "\"" + an::visible(r["text"].get<std::string>()).substr(0, 36) + "\"",
                 r["count"].get<int>());
    fmt::print("\n");
  }
  fmt::print("vocabulary: {} tokens ({})\n", tok.vocab_size(), tok.model_type());
  if (o.vocab) {
    fmt::print("special tokens:\n");
    for (auto& a : tok.added_tokens())
      if (a.special) fmt::print("  {:>7}  {}\n", a.id, a.content);
    if (auto b = tok.bos_id()) fmt::print("bos: {} ({})\n", *b, tok.bos_token());
    fmt::print("eos: {}\n", fmt::join(tok.eos_ids(), ", "));
  }
}

}  // namespace

void setup_tokenize(CLI::App& app) {
  auto o = std::make_shared<TokenizeOptions>();
  app.add_option("texts", o->texts, "strings to tokenize (several compare side by side)");
  app.add_option("-p,--prompt", o->texts, "a string to tokenize (repeatable)");
  app.add_option("-m,--model", o->model, "model whose tokenizer to use (GGUF, directory or Hugging Face id)");
  app.add_option("--tokenizer", o->tokenizer, "tokenizer.json, model directory or GGUF");
  app.add_option("--input", o->input, "JSON file with an array of strings");
  app.add_option("-s,--system,--system-prompt", o->system, "system message for --chat");
  app.add_flag("--chat", o->chat, "render the texts as user messages through the chat template");
  app.add_option("--messages", o->messages,
                 "JSON file ('-': stdin) with an OpenAI-style conversation {\"messages\": [...], \"tools\": [...]}: "
                 "its text through the chat template and its tokens (--json: {\"text\", \"ids\"})");
  app.add_flag("--no-generation-prompt", o->no_generation_prompt,
               "--messages: leave off the assistant turn's opening");
  app.add_flag("--no-special-tokens", o->no_special, "encode without BOS/EOS (add_special_tokens=False)");
  app.add_flag("--vocab", o->vocab, "also list special tokens, BOS and EOS");
  add_json_flag(app, o->json, "ids, pieces and counts (--input: an array of id arrays)");
  app.callback([o] { run_tokenize(*o); });
}

}  // namespace lmlab::cli
