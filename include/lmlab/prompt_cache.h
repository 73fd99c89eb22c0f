// Prompt caches: the keys and values a prefill computed, kept with the token
// ids they cover, so a later prompt sharing the prefix prefills only the rest
// (a conversation's next turn, many requests with one system prompt). Saved to
// a file, a cache skips the same prefill in another process. MLX-free: the
// arrays stay behind nn::KVCache.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace lmlab {

class Model;
namespace nn {
class KVCache;
}

// A KV cache and the ids whose keys and values it holds, in order
// (ids.size() equals the cache's offset).
struct CachedPrompt {
  std::vector<int> ids;
  std::shared_ptr<nn::KVCache> cache;

  bool empty() const { return !cache || ids.empty(); }
  size_t nbytes() const;  // bytes of the cache's buffers
};

// How many leading ids two sequences share.
size_t common_prefix(std::span<const int> a, std::span<const int> b);

// A copy of the first n positions of `c` in fresh buffers (evaluated); `c` is untouched.
CachedPrompt copy_prefix(const CachedPrompt& c, size_t n);

// Identifies the model whose forward pass filled a cache: family, cache
// geometry, compute dtype and a hash of every weight byte. Reads all weights.
std::string model_fingerprint(const Model& m);

// Writes `c` as safetensors (keys and values up to the offset, float as
// computed) with the ids, the model's fingerprint and `metadata` in the
// header; atomic (temp file, then rename).
void save_prompt_cache(const std::filesystem::path& path, const Model& m, const CachedPrompt& c,
                       const std::map<std::string, std::string>& metadata = {});

// Reads a file written by save_prompt_cache; `metadata` (when given) receives
// the extra header entries. Throws std::invalid_argument when the file was made
// by another model (fingerprints differ) or is not a prompt cache, and
// std::runtime_error when it cannot be read.
CachedPrompt load_prompt_cache(const std::filesystem::path& path, const Model& m,
                               std::map<std::string, std::string>* metadata = nullptr);

struct PromptCacheStats {
  int entries = 0;
  size_t bytes = 0;
  size_t max_bytes = 0;
  int64_t lookups = 0;
  int64_t hits = 0;           // lookups that reused at least one token
  int64_t tokens_reused = 0;  // prompt tokens not prefilled thanks to the cache
};

// A pool of cached prompts shared by many requests, bounded in bytes (the
// least recently used entries go first). take() hands out the entry sharing the
// longest prefix with a prompt: moved out when the prompt continues all of it
// (the entry's owner comes back with a longer one through put()), copied up to
// the shared prefix when only a part is shared, so the entry stays for others.
// Methods are serialised by a mutex; take() and put() run MLX work and belong
// on the thread that runs the model.
class PromptCache {
 public:
  explicit PromptCache(size_t max_bytes);

  // The best reuse for `prompt`, trimmed to at most prompt.size() - 1 tokens
  // (the last prompt token is always run to get the next token's logits); empty on a miss.
  CachedPrompt take(std::span<const int> prompt);
  // Keeps `c` (ids + cache), dropping entries it makes redundant, then evicts to the byte bound.
  void put(CachedPrompt c);
  void clear();
  PromptCacheStats stats() const;

 private:
  struct Entry {
    CachedPrompt prompt;
    uint64_t used = 0;
  };
  void evict();
  mutable std::mutex mu_;
  std::vector<Entry> entries_;
  size_t max_bytes_;
  uint64_t clock_ = 0;
  PromptCacheStats stats_;
};

}  // namespace lmlab
