// Text generation: prompt building (chat template or raw), sampling, streaming
// with stop rules, and the statistics mlx_lm.generate prints. MLX-free.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/loader.h"
#include "lmlab/progress.h"
#include "lmlab/prompt_cache.h"

namespace lmlab {

// Options and results below have JSON forms (to_json/from_json, found by
// nlohmann's ADL): the keys are the field names, which are also the CLI flags
// with '-' for '_' (temp → --temp, repetition_context_size → --repetition-context-size).

struct SamplerConfig {
  float temp = 0.0f;   // 0: greedy
  float top_p = 1.0f;  // 1: off
  int top_k = 0;       // 0: off
  float min_p = 0.0f;  // 0: off
  float repetition_penalty = 1.0f;  // 1: off
  int repetition_context = 20;      // tokens the penalty looks back over (JSON: repetition_context_size)
  std::optional<uint64_t> seed;     // default: the Context's RNG
};

struct GenerateOptions {
  int max_tokens = 256;           // -1: until EOS, a stop string or the end of the context
  SamplerConfig sampler;
  std::vector<std::string> stop;  // stop strings (not included in the text)
  bool stop_at_eos = true;
  int prefill_step = 512;         // prompt tokens per forward chunk (JSON: prefill_step_size)
  // Log-probabilities of the model's distribution at each step (before the
  // sampling filters and temperature): -1 off, 0 the chosen token's, k > 0
  // also the k most likely tokens'.
  int logprobs = -1;
  int max_kv_size = 0;            // tokens the KV cache may hold (prompt + generated); 0: the context
  ProgressCallback on_prefill;    // called after each prefill chunk (unit "tokens"); not in JSON
};

struct GenerationStats {
  int prompt_tokens = 0;
  double prompt_tps = 0;
  int generation_tokens = 0;
  double generation_tps = 0;
  double time_to_first_token = 0;  // seconds
  // MLX's allocator peak (bytes / 1e9) since the frontend last called
  // Context::reset_peak_memory(): buffers MLX holds, not the process's RSS.
  double peak_memory_gb = 0;
  int cached_tokens = 0;           // prompt tokens whose keys/values came from a reused cache
  std::string finish_reason;       // "stop" (EOS or stop string) or "length"
};

struct GenerationResult {
  std::string text;
  std::vector<int> tokens;
  GenerationStats stats;
};

// Throw std::invalid_argument naming the field and its valid range (NaN and
// infinities included) — the checks every frontend runs before generating.
void validate(const SamplerConfig& c);
void validate(const GenerateOptions& o);

void to_json(nlohmann::json& j, const SamplerConfig& c);
void from_json(const nlohmann::json& j, SamplerConfig& c);  // throws std::invalid_argument
void to_json(nlohmann::json& j, const GenerateOptions& o);
void from_json(const nlohmann::json& j, GenerateOptions& o);
void to_json(nlohmann::json& j, const GenerationStats& s);
void from_json(const nlohmann::json& j, GenerationStats& s);
void to_json(nlohmann::json& j, const GenerationResult& r);  // finish_reason at the top level
void from_json(const nlohmann::json& j, GenerationResult& r);

// Called with each newly completed piece of text (always valid UTF-8); return
// false to stop early.
using TextCallback = std::function<bool(const std::string& piece)>;

// Refuses ids a model cannot take, before they reach its embedding: an empty
// prompt, an id outside [0, vocab_size) (a tokenizer from another model), or
// more tokens than the model's context (when known). Every entry point that
// runs a model on token ids calls it. Throws std::invalid_argument "[where] ...".
void check_tokens(const Model& m, std::span<const int> ids, std::string_view where);

// Prompt → token ids. With a chat template (and use_chat_template) the prompt
// becomes one user message after an optional system message, with the
// generation prompt added; otherwise the raw text is encoded with special tokens.
std::vector<int> build_prompt(const LoadedModel& m, const std::string& prompt,
                              const std::string& system, bool use_chat_template);
// messages: [{"role","content"}, ...]
std::vector<int> build_chat_prompt(const LoadedModel& m, const nlohmann::json& messages,
                                   const nlohmann::json& tools = nullptr,
                                   bool add_generation_prompt = true);

// One step of a Generator: the sampled token and the text it completed (valid
// UTF-8; empty while the detokenizer or a possible stop string holds it back).
// The stream's last step may carry text only (token -1): what was still held
// back when generation ended.
struct GenerationStep {
  int token = -1;
  std::string text;
  // With GenerateOptions::logprobs >= 0: log p(token), and the top tokens
  // (id, log p), most likely first.
  float logprob = 0;
  std::vector<std::pair<int, float>> top_logprobs;
};

// A token stream over one prompt. The constructor prefills the prompt (in
// prefill_step chunks) and schedules the first token; each next() returns one
// token while the following one is already being computed. Ends at EOS (not
// returned), a stop string (its text never appears), max_tokens or stop().
// Throws std::invalid_argument for options out of range (validate) and for a
// prompt check_tokens refuses or that leaves no room in the context (or in
// max_kv_size) for one more token.
class Generator {
 public:
  Generator(const LoadedModel& m, std::span<const int> prompt, const GenerateOptions& opts);
  // Starts from `reuse` (a cache and the ids it holds, e.g. from take_cache()
  // or a PromptCache): it is trimmed to the prefix it shares with the prompt
  // and only the prompt tokens after that are prefilled. The Generator owns it.
  Generator(const LoadedModel& m, std::span<const int> prompt, const GenerateOptions& opts,
            CachedPrompt reuse);
  ~Generator();
  Generator(Generator&&) noexcept;
  Generator& operator=(Generator&&) noexcept;

  // The next step, or nullopt once the stream has ended.
  std::optional<GenerationStep> next();
  // Ends the stream early (finish_reason "stop"); next() then releases held-back text.
  void stop();
  bool finished() const;
  // Continuous batching. A batched generator's next() reads the token computed
  // for it but leaves the following step to step_together(), which computes
  // it for many generators in one forward pass. Turning it off computes an
  // awaited step alone.
  void set_batched(bool on);
  // Batched, not finished, and its next token not yet scheduled.
  bool awaiting_step() const;
  // Text and tokens so far, and the statistics (final once finished()).
  const GenerationResult& result() const;
  // Once finished: the KV cache and the ids it holds (the prompt and the tokens
  // fed back, EOS included when it was), for the next turn or request. Waits
  // for a step still running; the Generator keeps no cache afterwards.
  CachedPrompt take_cache();

 private:
  struct State;
  std::unique_ptr<State> s_;
  friend void step_together(std::span<Generator* const> gens);
};

// Computes the next token of every generator in `gens` that awaits one
// (awaiting_step()) in one forward pass over all of them (Model::decode_rows:
// each weight is read once per round, not once per stream), and schedules it;
// returns without waiting. The others are left alone. All must run one model.
// Greedy streams give the tokens they give alone.
void step_together(std::span<Generator* const> gens);

// Runs a Generator to the end. on_text gets each non-empty piece; returning
// false stops generation. Throws as Generator does.
GenerationResult generate(const LoadedModel& m, std::span<const int> prompt,
                          const GenerateOptions& opts, const TextCallback& on_text = {});

}  // namespace lmlab
