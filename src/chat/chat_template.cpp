// ChatTemplate: parses once, renders with the variables transformers'
// apply_chat_template passes (messages, tools, documents,
// add_generation_prompt, special tokens, extra kwargs).
#include "lmlab/chat.h"

#include "chat/interp.h"
#include "chat/parser.h"

namespace lmlab {

namespace jinja = detail::jinja;

struct JinjaTemplate {
  std::string source;
  std::unique_ptr<jinja::Template> tpl;
};

namespace {

template <class Json>
jinja::Value from_json(const Json& j, int depth = 0) {
  if (depth > 512) throw std::invalid_argument("[chat_template] line 1, column 1: input nested too deeply");
  switch (j.type()) {
    case nlohmann::json::value_t::null: return jinja::Value(jinja::None{});
    case nlohmann::json::value_t::boolean: return jinja::Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return jinja::Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return jinja::Value(static_cast<double>(u));
      return jinja::Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return jinja::Value(j.template get<double>());
    case nlohmann::json::value_t::string: return jinja::Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<jinja::Value> items;
      for (const auto& x : j) items.push_back(from_json(x, depth + 1));
      return jinja::Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      jinja::DictObj d;
      for (auto it = j.begin(); it != j.end(); ++it) d.set(it.key(), from_json(it.value(), depth + 1));
      return jinja::Value::dict(std::move(d));
    }
    default: return jinja::Value(jinja::None{});
  }
}

// transformers' _alias_reasoning_fields: a message's reasoning, under any of
// its names, is also passed as `thinking` (first key) and
// `reasoning_content` (last key unless already present).
jinja::Value alias_reasoning(const jinja::Value& messages) {
  if (!messages.is_list()) return messages;
  std::vector<jinja::Value> out;
  for (const jinja::Value& m : messages.items()) {
    const jinja::Value* reasoning = nullptr;
    if (m.is_dict())
      for (const char* key : {"reasoning_content", "thinking", "reasoning"}) {
        const jinja::Value* v = m.dict_obj().find(key);
        if (v && !v->is_none()) {
          reasoning = v;
          break;
        }
      }
    if (!reasoning) {
      out.push_back(m);
      continue;
    }
    jinja::DictObj d;
    d.set("thinking", *reasoning);
    for (const auto& [k, v] : m.dict_obj().items) d.set(k, v);
    d.set("reasoning_content", *reasoning);
    out.push_back(jinja::Value::dict(std::move(d)));
  }
  return jinja::Value::list(std::move(out));
}

std::string render(const JinjaTemplate& t, jinja::Value messages, jinja::Value tools, const ChatOptions& opts) {
  messages = alias_reasoning(messages);
  jinja::DictObj vars;
  vars.set("messages", std::move(messages));
  vars.set("tools", std::move(tools));
  vars.set("documents", jinja::Value(jinja::None{}));
  vars.set("add_generation_prompt", jinja::Value(opts.add_generation_prompt));
  vars.set("bos_token", jinja::Value(opts.bos_token));
  vars.set("eos_token", jinja::Value(opts.eos_token));
  if (opts.extra.is_object())
    for (auto it = opts.extra.begin(); it != opts.extra.end(); ++it) vars.set(it.key(), from_json(it.value()));
  jinja::Interp interp(jinja::Limits{});
  return interp.render(*t.tpl, std::move(vars));
}

}  // namespace

ChatTemplate::ChatTemplate(const std::string& source) {
  auto impl = std::make_shared<JinjaTemplate>();
  impl->source = source;
  impl->tpl = jinja::parse(source);
  impl_ = std::move(impl);
}

std::string ChatTemplate::apply(const nlohmann::json& messages, const ChatOptions& opts) const {
  return render(*impl_, from_json(messages), from_json(opts.tools), opts);
}

std::string ChatTemplate::apply_ordered(const nlohmann::ordered_json& messages, const ChatOptions& opts,
                                        const nlohmann::ordered_json& tools) const {
  jinja::Value t = tools.is_null() ? from_json(opts.tools) : from_json(tools);
  return render(*impl_, from_json(messages), std::move(t), opts);
}

const std::string& ChatTemplate::source() const { return impl_->source; }

}  // namespace lmlab
