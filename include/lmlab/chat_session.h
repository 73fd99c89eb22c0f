// A multi-turn conversation with one model that keeps its KV cache between
// turns: each turn renders the whole conversation through the chat template,
// reuses the cached prefix and prefills only the new tokens. The state (the
// messages and the cache) saves to one file and loads in another process.
// Not thread-safe; borrows the model, which must outlive it.
#pragma once

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "lmlab/generate.h"
#include "lmlab/prompt_cache.h"

namespace lmlab {

class ChatSession {
 public:
  // Throws std::invalid_argument when the model has no chat template.
  ChatSession(const LoadedModel& m, GenerateOptions opts, std::string system = "");

  // One turn: the user's message in, the reply streamed to on_text (return
  // false to cut it short). The reply joins the conversation; stats say how
  // many prompt tokens came from the cache (cached_tokens).
  GenerationResult send(const std::string& user, const TextCallback& on_text = {});

  // Forgets the turns and the cache; the system message stays.
  void reset();
  // A new system message ("" for none); the conversation restarts.
  void set_system(std::string system);
  const std::string& system() const { return system_; }

  // Messages so far (system first when set), OpenAI format.
  const nlohmann::ordered_json& messages() const { return messages_; }
  // Ids the cache holds (empty before the first turn) and its buffers' bytes.
  const std::vector<int>& cached_ids() const { return cache_.ids; }
  size_t cache_bytes() const { return cache_.nbytes(); }
  GenerateOptions& options() { return opts_; }

  // The conversation and its cache, in save_prompt_cache's format (the messages
  // in the header). load() replaces this session's state; it throws as
  // load_prompt_cache does (another model's file is refused).
  void save(const std::filesystem::path& path) const;
  void load(const std::filesystem::path& path);

 private:
  const LoadedModel& m_;
  GenerateOptions opts_;
  std::string system_;
  nlohmann::ordered_json messages_;
  CachedPrompt cache_;
};

}  // namespace lmlab
