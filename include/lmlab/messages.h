// OpenAI-style conversations → the model's prompt. The one rendering shared by
// `lmlab tokenize --messages`, `lmlab chat`, the server's chat route and `data`:
// check the messages, bring them into the shape chat templates expect, render
// through the model's template and encode. MLX-free.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/chat.h"
#include "lmlab/tokenizer.h"

namespace lmlab {

// A conversation in the OpenAI chat format. Objects keep their keys' order, so
// tool specs and tool-call arguments render as transformers renders them.
struct Conversation {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools = nullptr;  // array of tool specs, or null
  nlohmann::json template_kwargs = nlohmann::json::object();  // e.g. {"enable_thinking": false}
};

// Reads {"messages": [...], "tools": [...], "chat_template_kwargs": {...}}
// (tools and kwargs optional). Each message needs a string `role`; `content`
// may be a string, null (→ "") or an array of {"type": "text", "text": ...}
// parts (joined); tool-call `arguments` given as JSON text are parsed into
// objects, as templates expect (mlx-lm's server does the same). Throws
// std::invalid_argument naming the field, e.g.
// "[messages] messages[2].tool_calls[0].function.arguments: not valid JSON (...)".
Conversation parse_conversation(const nlohmann::ordered_json& body);

// The same for a bare messages array (and optional tools).
Conversation make_conversation(const nlohmann::ordered_json& messages,
                               const nlohmann::ordered_json& tools = nullptr);

struct RenderedPrompt {
  std::string text;
  std::vector<int> ids;
};

// Renders through `tpl` with the tokenizer's BOS/EOS tokens and encodes without
// adding special tokens (the template wrote the ones the model wants). Template
// errors (raise_exception included) throw std::invalid_argument.
RenderedPrompt render_conversation(const Tokenizer& tok, const ChatTemplate& tpl,
                                   const Conversation& c, bool add_generation_prompt = true);

}  // namespace lmlab
