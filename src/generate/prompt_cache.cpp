// Prompt caches: prefix copies, the shared pool, and the safetensors file
// format (one array per layer and side, "layers.N.keys" / "layers.N.values"
// of shape (1, Hk, n, Dh), with the ids and the model fingerprint in the header).
#include "lmlab/prompt_cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "lmlab/model.h"

namespace mx = mlx::core;

namespace lmlab {

namespace {

constexpr const char* kFormat = "lmlab.prompt_cache";
constexpr const char* kVersion = "1";

// One 64-bit multiply-xorshift step per word: fast enough to hash every
// weight byte of a multi-GB model in about a second.
struct Hasher {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  void word(uint64_t w) {
    h ^= w + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  void bytes(const uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      word(w);
    }
    uint64_t tail = 0;
    std::memcpy(&tail, p + i, n - i);
    word(tail ^ (static_cast<uint64_t>(n) << 56));
  }
  void text(const std::string& s) { bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }
};

std::pair<mx::array, mx::array> layer_prefix(const std::vector<mx::array>& state, int layer, int n) {
  auto cut = [n](const mx::array& a) {
    mx::Shape stop = a.shape();
    stop[2] = n;
    return mx::slice(a, {0, 0, 0, 0}, stop);
  };
  return {cut(state[2 * layer]), cut(state[2 * layer + 1])};
}

std::vector<int> parse_ids(const std::string& text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) throw std::invalid_argument(fmt::format("[prompt_cache] {}: the ids entry is not a JSON array", where));
  std::vector<int> ids;
  for (const auto& x : j) {
    if (!x.is_number_integer()) throw std::invalid_argument(fmt::format("[prompt_cache] {}: an id is not an integer", where));
    ids.push_back(x.get<int>());
  }
  return ids;
}

}  // namespace

size_t CachedPrompt::nbytes() const { return cache ? cache->nbytes() : 0; }

size_t common_prefix(std::span<const int> a, std::span<const int> b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

CachedPrompt copy_prefix(const CachedPrompt& c, size_t n) {
  n = std::min(n, c.ids.size());
  CachedPrompt out;
  out.ids.assign(c.ids.begin(), c.ids.begin() + n);
  out.cache = std::make_shared<nn::KVCache>(c.cache->num_layers());
  if (n == 0) return out;
  std::vector<mx::array> state = c.cache->state();
  for (int l = 0; l < c.cache->num_layers(); ++l) {
    auto [k, v] = layer_prefix(state, l, static_cast<int>(n));
    out.cache->update(l, k, v);
  }
  mx::eval(out.cache->state());
  return out;
}

std::string model_fingerprint(const Model& m) {
  const ModelConfig& c = m.config();
  Hasher h;
  h.text(fmt::format("{} L{} H{} Hk{} Dh{} D{} V{} {}", c.model_type, c.num_hidden_layers, c.num_attention_heads,
                     c.num_key_value_heads, c.head_dim, c.hidden_size, c.vocab_size, static_cast<int>(m.dtype().val())));
  for (const auto& [name, a] : m.weights().items()) {
    h.text(name);
    mx::array w = mx::contiguous(a);
    mx::eval(w);
    h.bytes(w.data<uint8_t>(), w.nbytes());
  }
  return fmt::format("{}-{}-{:016x}", c.model_type, c.num_hidden_layers, h.h);
}

void save_prompt_cache(const std::filesystem::path& path, const Model& m, const CachedPrompt& c,
                       const std::map<std::string, std::string>& metadata) {
  if (c.empty()) throw std::invalid_argument("[prompt_cache] nothing to save: the cache is empty");
  std::unordered_map<std::string, mx::array> arrays;
  std::vector<mx::array> state = c.cache->state();
  const int n = static_cast<int>(c.ids.size());
  for (int l = 0; l < c.cache->num_layers(); ++l) {
    auto [k, v] = layer_prefix(state, l, n);
    arrays.emplace(fmt::format("layers.{}.keys", l), k);
    arrays.emplace(fmt::format("layers.{}.values", l), v);
  }
  std::unordered_map<std::string, std::string> meta(metadata.begin(), metadata.end());
  meta["format"] = kFormat;
  meta["version"] = kVersion;
  meta["fingerprint"] = model_fingerprint(m);
  meta["ids"] = nlohmann::json(c.ids).dump();
  // save_safetensors wants a .safetensors name; write beside the target, then rename.
  std::filesystem::path tmp = path;
  tmp += fmt::format(".tmp{}.safetensors", getpid());
  try {
    mx::save_safetensors(tmp.string(), arrays, meta);
    std::filesystem::rename(tmp, path);
  } catch (const std::exception& e) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error(fmt::format("[prompt_cache] cannot write {}: {}", path.string(), e.what()));
  }
}

CachedPrompt load_prompt_cache(const std::filesystem::path& path, const Model& m,
                               std::map<std::string, std::string>* metadata) {
  const std::string where = path.string();
  if (!std::filesystem::is_regular_file(path))
    throw std::runtime_error(fmt::format("[prompt_cache] {}: no such file", where));
  std::unordered_map<std::string, mx::array> arrays;
  std::unordered_map<std::string, std::string> meta;
  try {
    std::tie(arrays, meta) = mx::load_safetensors(where);
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("[prompt_cache] {}: not a readable safetensors file ({})", where, e.what()));
  }
  if (meta["format"] != kFormat)
    throw std::invalid_argument(fmt::format("[prompt_cache] {}: not a prompt cache saved by lmlab", where));
  if (meta["version"] != kVersion)
    throw std::invalid_argument(fmt::format("[prompt_cache] {}: format version {} (this lmlab reads {})", where,
                                            meta["version"], kVersion));
  const std::string expect = model_fingerprint(m);
  if (meta["fingerprint"] != expect)
    throw std::invalid_argument(fmt::format(
        "[prompt_cache] {}: made by another model (fingerprint {}, this model {}); load it with the model that saved it",
        where, meta["fingerprint"], expect));
  CachedPrompt c;
  c.ids = parse_ids(meta["ids"], where);
  c.cache = m.make_cache();
  const int layers = c.cache->num_layers();
  for (int l = 0; l < layers; ++l) {
    auto k = arrays.find(fmt::format("layers.{}.keys", l));
    auto v = arrays.find(fmt::format("layers.{}.values", l));
    if (k == arrays.end() || v == arrays.end())
      throw std::invalid_argument(fmt::format("[prompt_cache] {}: layer {} is missing", where, l));
    if (k->second.ndim() != 4 || k->second.shape(2) != static_cast<int>(c.ids.size()) ||
        v->second.shape() != k->second.shape())
      throw std::invalid_argument(fmt::format("[prompt_cache] {}: layer {} does not hold {} positions", where, l,
                                              c.ids.size()));
    c.cache->update(l, mx::astype(k->second, m.dtype()), mx::astype(v->second, m.dtype()));
  }
  mx::eval(c.cache->state());
  if (metadata)
    for (auto& [key, value] : meta)
      if (key != "format" && key != "version" && key != "fingerprint" && key != "ids") (*metadata)[key] = value;
  return c;
}

// ---------------------------------------------------------------- the pool

PromptCache::PromptCache(size_t max_bytes) : max_bytes_(max_bytes) { stats_.max_bytes = max_bytes; }

CachedPrompt PromptCache::take(std::span<const int> prompt) {
  std::lock_guard lock(mu_);
  ++stats_.lookups;
  size_t best = 0, best_len = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    size_t n = common_prefix(entries_[i].prompt.ids, prompt);
    if (n > best_len) best = i, best_len = n;
  }
  const size_t usable = prompt.empty() ? 0 : std::min(best_len, prompt.size() - 1);
  if (usable == 0) return {};
  ++stats_.hits;
  stats_.tokens_reused += static_cast<int64_t>(usable);
  Entry& e = entries_[best];
  if (best_len == e.prompt.ids.size()) {  // the prompt continues all of it: hand it over
    CachedPrompt out = std::move(e.prompt);
    entries_.erase(entries_.begin() + best);
    return out;
  }
  e.used = ++clock_;
  return copy_prefix(e.prompt, usable);
}

void PromptCache::put(CachedPrompt c) {
  if (c.empty()) return;
  std::lock_guard lock(mu_);
  for (const Entry& e : entries_)
    if (common_prefix(e.prompt.ids, c.ids) == c.ids.size()) return;  // an entry already covers it
  std::erase_if(entries_, [&](const Entry& e) { return common_prefix(e.prompt.ids, c.ids) == e.prompt.ids.size(); });
  entries_.push_back(Entry{std::move(c), ++clock_});
  evict();
}

void PromptCache::evict() {
  auto total = [&] {
    size_t b = 0;
    for (const Entry& e : entries_) b += e.prompt.nbytes();
    return b;
  };
  while (!entries_.empty() && total() > max_bytes_) {
    auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                   [](const Entry& a, const Entry& b) { return a.used < b.used; });
    entries_.erase(oldest);
  }
}

void PromptCache::clear() {
  std::lock_guard lock(mu_);
  entries_.clear();
}

PromptCacheStats PromptCache::stats() const {
  std::lock_guard lock(mu_);
  PromptCacheStats s = stats_;
  s.entries = static_cast<int>(entries_.size());
  s.bytes = 0;
  for (const Entry& e : entries_) s.bytes += e.prompt.nbytes();
  return s;
}

}  // namespace lmlab
