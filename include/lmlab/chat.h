// Chat templates: a Jinja engine of lmlab's own, complete enough for the real
// templates models ship (Llama 3, Qwen3, Gemma 3, DeepSeek V3, Mistral, SmolLM),
// rendering byte-identically to transformers' apply_chat_template.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace lmlab {

struct ChatOptions {
  bool add_generation_prompt = true;
  nlohmann::json tools = nullptr;          // list of tool specs, or null
  std::string bos_token;
  std::string eos_token;
  nlohmann::json extra = nlohmann::json::object();  // e.g. enable_thinking
};

struct JinjaTemplate;

class ChatTemplate {
 public:
  // Parses the template; throws std::invalid_argument "[chat_template] line L,
  // column C: ..." on a syntax error.
  explicit ChatTemplate(const std::string& source);

  // messages: array of {"role", "content", ...}. Runtime errors (including
  // raise_exception) throw std::invalid_argument with line and column.
  std::string apply(const nlohmann::json& messages, const ChatOptions& opts = {}) const;

  // Same, for messages and tools whose objects keep their keys' insertion
  // order, as Python dicts do: tojson output (tool specs, tool-call
  // arguments) follows it, so use this to match transformers byte for byte.
  // A non-null `tools` here replaces opts.tools.
  std::string apply_ordered(const nlohmann::ordered_json& messages, const ChatOptions& opts = {},
                            const nlohmann::ordered_json& tools = nullptr) const;

  const std::string& source() const;

 private:
  std::shared_ptr<const JinjaTemplate> impl_;
};

}  // namespace lmlab
