// Request bodies → GenerateOptions, and Generator output → OpenAI JSON.
#include "server/openai.h"

#include <chrono>
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "server/errors.h"
#include "server/params.h"
#include "server/tool_calls.h"

namespace lmlab::server {

namespace {

using ojson = nlohmann::ordered_json;
using json = nlohmann::json;

using params::bad;
using params::boolean;
using params::field;
using params::integer;
using params::number;

std::string model_name(const ojson& body) {
  const ojson* v = field(body, "model");
  if (!v) return "";
  if (!v->is_string()) bad("model", fmt::format("expected a string, got {}", v->type_name()));
  return v->get<std::string>();
}

std::vector<std::string> stop_strings(const ojson& body) {
  const ojson* v = field(body, "stop");
  if (!v) return {};
  if (v->is_string()) return {v->get<std::string>()};
  if (!v->is_array()) bad("stop", fmt::format("expected a string or an array of strings, got {}", v->type_name()));
  if (v->size() > 16) bad("stop", fmt::format("{} stop strings (at most 16)", v->size()));
  std::vector<std::string> out;
  for (const auto& s : *v) {
    if (!s.is_string()) bad("stop", "every stop sequence must be a string");
    out.push_back(s.get<std::string>());
  }
  return out;
}

// Fields lmlab cannot honour are refused rather than ignored, except at
// their neutral values (which clients send by default).
void refuse_unsupported(const ojson& body) {
  for (const char* name : {"presence_penalty", "frequency_penalty"}) {
    auto x = number(body, name, -2, 2);
    if (x && *x != 0) bad(name, "not supported (use repetition_penalty)");
  }
  if (const ojson* v = field(body, "logit_bias"); v && !(v->is_object() && v->empty()))
    bad("logit_bias", "not supported");
  if (auto n = integer(body, "n", 1, 128); n && *n != 1) bad("n", "only n = 1 is supported");
  if (auto n = integer(body, "best_of", 1, 128); n && *n != 1) bad("best_of", "only best_of = 1 is supported");
  if (const ojson* v = field(body, "suffix"); v) bad("suffix", "not supported");
  if (const ojson* v = field(body, "response_format"); v) {
    if (!v->is_object() || !v->contains("type") || !(*v)["type"].is_string())
      bad("response_format", "expected an object with a string \"type\"");
    const std::string type = (*v)["type"];
    if (type == "json_object" || type == "json_schema")
      throw ApiError(400, "invalid_request_error", "unsupported_response_format",
                     fmt::format("response_format {}: lmlab does not constrain decoding to JSON yet; ask for JSON in "
                                 "the prompt and parse the text",
                                 type),
                     "response_format");
    if (type != "text") bad("response_format", fmt::format("unknown type \"{}\"", type));
  }
}

GenerateOptions generation_options(const ojson& body, const Limits& limits, const char* max_name) {
  GenerateOptions g;
  g.max_tokens = limits.default_max_tokens;
  for (const char* name : {"max_tokens", max_name})
    if (auto n = integer(body, name, 1, limits.max_tokens)) g.max_tokens = static_cast<int>(*n);
  if (auto t = number(body, "temperature", 0, 2)) g.sampler.temp = static_cast<float>(*t);
  if (auto p = number(body, "top_p", 0, 1)) {
    if (*p == 0) bad("top_p", "must be greater than 0");
    g.sampler.top_p = static_cast<float>(*p);
  }
  if (auto k = integer(body, "top_k", 0, 1 << 30)) g.sampler.top_k = static_cast<int>(*k);
  if (auto p = number(body, "min_p", 0, 1)) g.sampler.min_p = static_cast<float>(*p);
  if (auto r = number(body, "repetition_penalty", 1e-3, 100)) g.sampler.repetition_penalty = static_cast<float>(*r);
  if (auto s = integer(body, "seed", INT64_MIN, INT64_MAX)) g.sampler.seed = static_cast<uint64_t>(*s);
  g.stop = stop_strings(body);
  refuse_unsupported(body);
  return g;
}

bool stream_flag(const ojson& body, bool& include_usage) {
  const bool stream = boolean(body, "stream").value_or(false);
  if (const ojson* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", fmt::format("expected an object, got {}", so->type_name()));
    include_usage = boolean(*so, "include_usage").value_or(false);
  }
  return stream;
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}", prefix, rng());
}

}  // namespace

std::string system_fingerprint() { return "lmlab-0.1.0"; }

ChatRequest parse_chat_request(const ojson& body, const Limits& limits) {
  if (!body.is_object()) bad("body", fmt::format("expected a JSON object, got {}", body.type_name()));
  ChatRequest r;
  r.model = model_name(body);
  if (!body.contains("messages")) bad("messages", "missing (a chat completion needs a messages array)");
  try {
    r.conversation = parse_conversation(body);
  } catch (const std::invalid_argument& e) {
    std::string msg = e.what();
    if (msg.rfind("[messages] ", 0) == 0) msg = msg.substr(11);
    bad(msg.substr(0, msg.find(':')), msg.substr(msg.find(':') + 2));
  }
  if (const ojson* tc = field(body, "tool_choice")) {
    if (tc->is_string() && *tc == "none") r.conversation.tools = nullptr;
    else if (!(tc->is_string() && *tc == "auto"))
      bad("tool_choice", "only \"auto\" and \"none\" are supported");
  }
  r.gen = generation_options(body, limits, "max_completion_tokens");
  r.stream = stream_flag(body, r.include_usage);
  r.logprobs = boolean(body, "logprobs").value_or(false);
  r.top_logprobs = static_cast<int>(integer(body, "top_logprobs", 0, 20).value_or(0));
  if (r.top_logprobs > 0 && !r.logprobs) bad("top_logprobs", "needs logprobs: true");
  r.gen.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

CompletionRequest parse_completion_request(const ojson& body, const Limits& limits) {
  if (!body.is_object()) bad("body", fmt::format("expected a JSON object, got {}", body.type_name()));
  CompletionRequest r;
  r.model = model_name(body);
  const ojson* p = field(body, "prompt");
  if (!p) bad("prompt", "missing");
  if (p->is_string()) r.prompt_text = p->get<std::string>();
  else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) r.prompt_text = (*p)[0].get<std::string>();
  else if (p->is_array() && !p->empty() && (*p)[0].is_number()) {
    for (const auto& x : *p) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
        bad("prompt", "token ids must be non-negative integers");
      r.prompt_ids.push_back(x.get<int>());
    }
  } else {
    bad("prompt", "expected a string, one string in an array, or an array of token ids");
  }
  if (r.prompt_text && r.prompt_text->empty()) bad("prompt", "empty");
  r.gen = generation_options(body, limits, "max_tokens");
  r.stream = stream_flag(body, r.include_usage);
  r.echo = boolean(body, "echo").value_or(false);
  if (auto lp = integer(body, "logprobs", 0, 5)) r.logprobs = static_cast<int>(*lp);
  r.gen.logprobs = r.logprobs;
  return r;
}

// ---------------------------------------------------------------- responses

ResponseBuilder::ResponseBuilder(Endpoint kind, std::string model, const Tokenizer& tok, int logprobs,
                                 bool legacy_logprobs)
    : kind_(kind), model_(std::move(model)),
      id_(random_id(kind == Endpoint::Chat ? "chatcmpl-" : "cmpl-")),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch()).count()),
      tok_(tok), logprobs_(logprobs), legacy_(legacy_logprobs) {}

json ResponseBuilder::chunk_base() const {
  return {{"id", id_},
          {"object", kind_ == Endpoint::Chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created_},
          {"model", model_},
          {"system_fingerprint", system_fingerprint()}};
}

namespace {

json token_json(const Tokenizer& tok, int id, float logprob) {
  std::string text = tok.decode(std::vector<int>{id});
  json bytes = json::array();
  for (unsigned char c : text) bytes.push_back(c);
  return {{"token", text}, {"logprob", logprob}, {"bytes", bytes}};
}

}  // namespace

json ResponseBuilder::logprob_entry(const GenerationStep& s) const {
  json e = token_json(tok_, s.token, s.logprob);
  json top = json::array();
  for (auto [id, lp] : s.top_logprobs) top.push_back(token_json(tok_, id, lp));
  e["top_logprobs"] = top;
  return e;
}

// Completions' legacy shape over a list of steps.
static json legacy_logprobs(const Tokenizer& tok, const std::vector<GenerationStep>& steps, size_t offset0) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  size_t offset = offset0;
  for (const auto& s : steps) {
    std::string text = tok.decode(std::vector<int>{s.token});
    tokens.push_back(text);
    lps.push_back(s.logprob);
    json top = json::object();
    for (auto [id, lp] : s.top_logprobs) top[tok.decode(std::vector<int>{id})] = lp;
    tops.push_back(top);
    offsets.push_back(offset);
    offset += text.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

json ResponseBuilder::opening_chunk() const {
  json c = chunk_base();
  c["choices"] = json::array({{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}},
                               {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  return c;
}

json ResponseBuilder::step_chunk(const GenerationStep& step) {
  const bool has_lp = logprobs_ >= 0 && step.token >= 0;
  if (step.text.empty() && !has_lp) return nullptr;
  json c = chunk_base();
  json choice = {{"index", 0}, {"finish_reason", nullptr}};
  std::string text = step.text;
  if (kind_ == Endpoint::Chat && tools_) {
    held_ += text;
    const bool calling = held_.find(kToolCallOpen) != std::string::npos;
    const size_t safe = calling ? 0 : tool_call_safe_prefix(held_);
    text = held_.substr(0, safe);
    held_.erase(0, safe);
    if (text.empty() && !has_lp) return nullptr;
  }
  if (kind_ == Endpoint::Chat) {
    choice["delta"] = {{"content", text}};
    choice["logprobs"] = has_lp ? json{{"content", json::array({logprob_entry(step)})}} : json(nullptr);
  } else {
    choice["text"] = text;
    choice["logprobs"] = has_lp ? legacy_logprobs(tok_, {step}, text_.size()) : json(nullptr);
  }
  text_ += text;
  c["choices"] = json::array({choice});
  return c;
}

std::string ResponseBuilder::finish_reason(const GenerationResult& r) const {
  return r.stats.finish_reason.empty() ? "stop" : r.stats.finish_reason;
}

json ResponseBuilder::usage(const GenerationResult& r) const {
  const int completion = static_cast<int>(r.tokens.size());
  return {{"prompt_tokens", r.stats.prompt_tokens},
          {"completion_tokens", completion},
          {"total_tokens", r.stats.prompt_tokens + completion},
          {"prompt_tokens_details", {{"cached_tokens", r.stats.cached_tokens}}}};
}

static json stats_json(const GenerationStats& s) {
  return {{"prompt_tokens", s.prompt_tokens},       {"cached_tokens", s.cached_tokens},
          {"prompt_tps", s.prompt_tps},             {"generation_tokens", s.generation_tokens},
          {"generation_tps", s.generation_tps},     {"time_to_first_token", s.time_to_first_token},
          {"peak_memory_gb", s.peak_memory_gb}};
}

std::vector<json> ResponseBuilder::closing_chunks(const GenerationResult& r, bool include_usage) const {
  std::vector<json> out;
  std::string reason = finish_reason(r);
  if (!held_.empty()) {  // what a possible tool call held back: calls, or text after all
    ParsedAnswer a = parse_tool_calls(held_);
    json delta = json::object();
    if (a.tool_calls.empty()) {
      delta["content"] = held_;
    } else {
      if (!a.content.empty()) delta["content"] = a.content;
      for (size_t i = 0; i < a.tool_calls.size(); ++i) a.tool_calls[i]["index"] = i;
      delta["tool_calls"] = a.tool_calls;
      reason = "tool_calls";
    }
    json c = chunk_base();
    c["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
    out.push_back(c);
  }
  json c = chunk_base();
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason}};
  if (kind_ == Endpoint::Chat) choice["delta"] = json::object();
  else choice["text"] = "";
  c["choices"] = json::array({choice});
  c["stats"] = stats_json(r.stats);
  out.push_back(c);
  if (include_usage) {
    json u = chunk_base();
    u["choices"] = json::array();
    u["usage"] = usage(r);
    out.push_back(u);
  }
  return out;
}

void ResponseBuilder::add(const GenerationStep& step) {
  if (logprobs_ >= 0 && step.token >= 0) steps_.push_back(step);
}

json ResponseBuilder::response(const GenerationResult& r, const std::string& prefix) const {
  json out = chunk_base();
  out["object"] = kind_ == Endpoint::Chat ? "chat.completion" : "text_completion";
  json choice = {{"index", 0}, {"finish_reason", finish_reason(r)}};
  if (kind_ == Endpoint::Chat) {
    choice["message"] = {{"role", "assistant"}, {"content", r.text}};
    if (tools_) {
      ParsedAnswer a = parse_tool_calls(r.text);
      if (!a.tool_calls.empty()) {
        choice["message"]["content"] = a.content.empty() ? json(nullptr) : json(a.content);
        choice["message"]["tool_calls"] = a.tool_calls;
        choice["finish_reason"] = "tool_calls";
      }
    }
    json content = json::array();
    for (const auto& s : steps_) content.push_back(logprob_entry(s));
    choice["logprobs"] = logprobs_ >= 0 ? json{{"content", content}} : json(nullptr);
  } else {
    choice["text"] = prefix + r.text;
    choice["logprobs"] = logprobs_ >= 0 ? legacy_logprobs(tok_, steps_, prefix.size()) : json(nullptr);
  }
  out["choices"] = json::array({choice});
  out["usage"] = usage(r);
  out["stats"] = stats_json(r.stats);
  return out;
}

}  // namespace lmlab::server
