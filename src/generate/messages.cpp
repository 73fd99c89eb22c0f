// Conversations in the OpenAI chat format, checked field by field and rendered
// through the model's chat template.
#include "lmlab/messages.h"

#include <fmt/format.h>

namespace lmlab {

namespace {

using ojson = nlohmann::ordered_json;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw std::invalid_argument(fmt::format("[messages] {}: {}", where, what));
}

const char* type_name(const ojson& j) { return j.type_name(); }

// A string, null or an array of text parts → one string.
std::string content_text(const ojson& content, const std::string& where) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    fail(where, fmt::format("expected a string, null or an array of text parts, got {}", type_name(content)));
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const ojson& part = content[i];
    const std::string at = fmt::format("{}[{}]", where, i);
    if (!part.is_object()) fail(at, fmt::format("expected an object, got {}", type_name(part)));
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) fail(at + ".type", "missing (expected \"text\")");
    if (*type != "text")
      fail(at + ".type", fmt::format("{} parts are not supported (this server reads text only)", type->dump()));
    auto t = part.find("text");
    if (t == part.end() || !t->is_string()) fail(at + ".text", "missing or not a string");
    text += t->get<std::string>();
  }
  return text;
}

ojson tool_call(const ojson& call, const std::string& where) {
  if (!call.is_object()) fail(where, fmt::format("expected an object, got {}", type_name(call)));
  ojson out = call;
  auto fn = out.find("function");
  if (fn == out.end() || !fn->is_object()) fail(where + ".function", "missing or not an object");
  auto name = fn->find("name");
  if (name == fn->end() || !name->is_string()) fail(where + ".function.name", "missing or not a string");
  auto args = fn->find("arguments");
  if (args != fn->end() && args->is_string()) {
    try {
      *args = ojson::parse(args->get<std::string>());
    } catch (const ojson::exception& e) {
      fail(where + ".function.arguments", fmt::format("not valid JSON ({})", e.what()));
    }
  } else if (args != fn->end() && !args->is_object() && !args->is_null()) {
    fail(where + ".function.arguments", fmt::format("expected a JSON string or an object, got {}", type_name(*args)));
  }
  if (auto id = out.find("id"); id != out.end() && !id->is_string()) fail(where + ".id", "not a string");
  return out;
}

ojson message(const ojson& m, const std::string& where) {
  if (!m.is_object()) fail(where, fmt::format("expected an object, got {}", type_name(m)));
  auto role = m.find("role");
  if (role == m.end()) fail(where + ".role", "missing");
  if (!role->is_string() || role->get<std::string>().empty()) fail(where + ".role", "expected a non-empty string");
  ojson out = m;
  out["content"] = content_text(m.contains("content") ? m["content"] : ojson(), where + ".content");
  if (auto calls = out.find("tool_calls"); calls != out.end() && !calls->is_null()) {
    if (!calls->is_array()) fail(where + ".tool_calls", fmt::format("expected an array, got {}", type_name(*calls)));
    for (size_t i = 0; i < calls->size(); ++i)
      (*calls)[i] = tool_call((*calls)[i], fmt::format("{}.tool_calls[{}]", where, i));
  }
  for (const char* key : {"name", "tool_call_id"})
    if (auto v = out.find(key); v != out.end() && !v->is_string() && !v->is_null())
      fail(fmt::format("{}.{}", where, key), "not a string");
  return out;
}

ojson tools_list(const ojson& tools) {
  if (tools.is_null()) return nullptr;
  if (!tools.is_array()) fail("tools", fmt::format("expected an array, got {}", type_name(tools)));
  if (tools.empty()) return nullptr;  // as transformers: no tools section at all
  for (size_t i = 0; i < tools.size(); ++i) {
    const std::string at = fmt::format("tools[{}]", i);
    const ojson& t = tools[i];
    if (!t.is_object()) fail(at, fmt::format("expected an object, got {}", type_name(t)));
    auto fn = t.find("function");
    if (fn == t.end() || !fn->is_object()) fail(at + ".function", "missing or not an object");
    auto name = fn->find("name");
    if (name == fn->end() || !name->is_string()) fail(at + ".function.name", "missing or not a string");
  }
  return tools;
}

}  // namespace

Conversation make_conversation(const ojson& messages, const ojson& tools) {
  if (!messages.is_array()) fail("messages", fmt::format("expected an array, got {}", type_name(messages)));
  if (messages.empty()) fail("messages", "empty (give at least one message)");
  Conversation c;
  for (size_t i = 0; i < messages.size(); ++i)
    c.messages.push_back(message(messages[i], fmt::format("messages[{}]", i)));
  c.tools = tools_list(tools);
  return c;
}

Conversation parse_conversation(const ojson& body) {
  if (!body.is_object()) fail("body", fmt::format("expected an object with a \"messages\" array, got {}", type_name(body)));
  auto messages = body.find("messages");
  if (messages == body.end()) fail("messages", "missing");
  Conversation c = make_conversation(*messages, body.contains("tools") ? body["tools"] : ojson());
  if (auto kw = body.find("chat_template_kwargs"); kw != body.end() && !kw->is_null()) {
    if (!kw->is_object()) fail("chat_template_kwargs", fmt::format("expected an object, got {}", type_name(*kw)));
    c.template_kwargs = nlohmann::json::parse(kw->dump());
  }
  return c;
}

RenderedPrompt render_conversation(const Tokenizer& tok, const ChatTemplate& tpl, const Conversation& c,
                                   bool add_generation_prompt) {
  ChatOptions opts{.add_generation_prompt = add_generation_prompt,
                   .bos_token = tok.bos_token(),
                   .eos_token = tok.eos_token(),
                   .extra = c.template_kwargs};
  RenderedPrompt r;
  r.text = tpl.apply_ordered(c.messages, opts, c.tools);
  r.ids = tok.encode(r.text, /*add_special_tokens=*/false);
  return r;
}

}  // namespace lmlab
