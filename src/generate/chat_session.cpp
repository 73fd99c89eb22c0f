// ChatSession: the conversation loop of `lmlab chat`, on the library's
// rendering (render_conversation) and prefix reuse (Generator + CachedPrompt).
#include "lmlab/chat_session.h"

#include <fmt/format.h>

#include "lmlab/messages.h"

namespace lmlab {

using ojson = nlohmann::ordered_json;

ChatSession::ChatSession(const LoadedModel& m, GenerateOptions opts, std::string system)
    : m_(m), opts_(std::move(opts)) {
  if (!m.chat_template)
    throw std::invalid_argument("[chat] this model has no chat template, so it cannot hold a conversation");
  set_system(std::move(system));
}

void ChatSession::set_system(std::string system) {
  system_ = std::move(system);
  reset();
}

void ChatSession::reset() {
  messages_ = ojson::array();
  if (!system_.empty()) messages_.push_back({{"role", "system"}, {"content", system_}});
  cache_ = {};
}

GenerationResult ChatSession::send(const std::string& user, const TextCallback& on_text) {
  ojson turn = messages_;
  turn.push_back({{"role", "user"}, {"content", user}});
  RenderedPrompt p = render_conversation(m_.tokenizer, *m_.chat_template, make_conversation(turn));
  Generator g(m_, p.ids, opts_, std::move(cache_));
  cache_ = {};
  while (auto step = g.next())
    if (!step->text.empty() && on_text && !on_text(step->text) && !g.finished()) g.stop();
  cache_ = g.take_cache();
  GenerationResult r = g.result();
  turn.push_back({{"role", "assistant"}, {"content", r.text}});
  messages_ = std::move(turn);
  return r;
}

void ChatSession::save(const std::filesystem::path& path) const {
  if (cache_.empty())
    throw std::invalid_argument("[chat] nothing to save yet: the conversation has no turn");
  save_prompt_cache(path, *m_.model, cache_, {{"lmlab.messages", messages_.dump()}});
}

void ChatSession::load(const std::filesystem::path& path) {
  std::map<std::string, std::string> meta;
  CachedPrompt c = load_prompt_cache(path, *m_.model, &meta);
  ojson messages = ojson::array();
  if (auto it = meta.find("lmlab.messages"); it != meta.end()) {
    messages = ojson::parse(it->second, nullptr, /*allow_exceptions=*/false);
    if (!messages.is_array())
      throw std::invalid_argument(fmt::format("[chat] {}: the saved conversation is not a message list", path.string()));
  }
  messages_ = std::move(messages);
  system_.clear();
  if (!messages_.empty() && messages_[0].value("role", "") == "system")
    system_ = messages_[0].value("content", "");
  cache_ = std::move(c);
}

}  // namespace lmlab
