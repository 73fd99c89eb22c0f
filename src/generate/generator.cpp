// The generation loop, after mlx-lm's generate_step: chunked prefill, then each
// step builds the graph for token n+1 and schedules it (async_eval) before
// reading token n, so graph construction overlaps with compute.
#include <chrono>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "generate/sampler.h"
#include "generate/stop.h"
#include "lmlab/generate.h"
#include "lmlab/model.h"

namespace mx = mlx::core;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace lmlab {

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::vector<int> eos_set(const LoadedModel& m) {
  std::vector<int> ids = m.tokenizer.eos_ids();
  for (int id : m.model->config().eos_token_ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

}  // namespace

std::vector<int> build_chat_prompt(const LoadedModel& m, const json& messages, const json& tools,
                                   bool add_generation_prompt) {
  if (!m.chat_template)
    throw std::invalid_argument("[chat] this model has no chat template; use --no-chat-template");
  ChatOptions opts{.add_generation_prompt = add_generation_prompt,
                   .tools = tools,
                   .bos_token = m.tokenizer.bos_token(),
                   .eos_token = m.tokenizer.eos_token()};
  std::string text = m.chat_template->apply(messages, opts);
  // The template already wrote BOS where the model wants it.
  return m.tokenizer.encode(text, /*add_special_tokens=*/false);
}

std::vector<int> build_prompt(const LoadedModel& m, const std::string& prompt,
                              const std::string& system, bool use_chat_template) {
  if (use_chat_template && m.chat_template) {
    json messages = json::array();
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
    messages.push_back({{"role", "user"}, {"content", prompt}});
    return build_chat_prompt(m, messages);
  }
  std::string text = system.empty() ? prompt : system + "\n\n" + prompt;
  return m.tokenizer.encode(text, /*add_special_tokens=*/true);
}

GenerationResult generate(const LoadedModel& m, std::span<const int> prompt,
                          const GenerateOptions& opts, const TextCallback& on_text) {
  if (prompt.empty()) throw std::invalid_argument("[generate] the prompt has no tokens");
  const int ctx = context_length(m);
  if (ctx > 0 && static_cast<int>(prompt.size()) >= ctx)
    throw std::invalid_argument(fmt::format(
        "[generate] the prompt has {} tokens but the model's context is {} tokens",
        prompt.size(), ctx));
  const Model& model = *m.model;
  const int max_tokens = ctx > 0 ? std::min(opts.max_tokens, ctx - static_cast<int>(prompt.size()))
                                 : opts.max_tokens;
  generation::Sampler sampler(opts.sampler);
  auto cache = model.make_cache();
  const std::vector<int> eos = eos_set(m);
  GenerationResult res;
  res.stats.prompt_tokens = static_cast<int>(prompt.size());
  mx::reset_peak_memory();

  auto t0 = Clock::now();
  std::vector<int> ids(prompt.begin(), prompt.end());
  // Prefill all but the last prompt token in chunks; the last one starts decoding.
  const int n = static_cast<int>(ids.size());
  for (int i = 0; i < n - 1; i += opts.prefill_step) {
    int end = std::min(n - 1, i + opts.prefill_step);
    mx::array chunk(ids.begin() + i, {1, end - i}, mx::int32);
    model.forward(chunk, cache.get());
    mx::eval(cache->state());
  }
  std::vector<int> recent(ids.end() - std::min<int>(n, opts.sampler.repetition_context), ids.end());
  auto step = [&](const mx::array& input) {
    mx::array logits = model.forward(mx::reshape(input, {1, -1}), cache.get());
    logits = mx::take(logits, logits.shape(1) - 1, 1);
    std::optional<mx::array> hist;
    if (opts.sampler.repetition_penalty != 1.0f && !recent.empty())
      hist = mx::array(recent.begin(), {static_cast<int>(recent.size())}, mx::int32);
    return sampler.sample(logits, hist);
  };

  mx::array y = step(mx::array(ids.back(), mx::int32));
  mx::async_eval(y);
  generation::StopMatcher stops(opts.stop);
  StreamingDetokenizer detok(m.tokenizer, /*skip_special_tokens=*/true);
  Clock::time_point t_decode;
  res.stats.finish_reason = "length";
  for (int produced = 0; produced < max_tokens; ++produced) {
    // Schedule the next step before reading this token (pipelining); its
    // penalty window lags one token, which only matters with a penalty set.
    std::optional<mx::array> next;
    if (produced + 1 < max_tokens && opts.sampler.repetition_penalty == 1.0f) {
      next = step(y);
      mx::async_eval(*next);
    }
    int tok = y.item<int>();
    if (produced == 0) {
      res.stats.time_to_first_token = seconds_since(t0);
      res.stats.prompt_tps = res.stats.prompt_tokens / res.stats.time_to_first_token;
      t_decode = Clock::now();
    }
    if (opts.stop_at_eos && std::find(eos.begin(), eos.end(), tok) != eos.end()) {
      res.stats.finish_reason = "stop";
      break;
    }
    res.tokens.push_back(tok);
    recent.push_back(tok);
    if (static_cast<int>(recent.size()) > opts.sampler.repetition_context) recent.erase(recent.begin());
    auto [piece, stopped] = stops.feed(detok.add(tok));
    res.text += piece;
    bool keep_going = piece.empty() || !on_text || on_text(piece);
    if (stopped) {
      res.stats.finish_reason = "stop";
      break;
    }
    if (!keep_going) {
      res.stats.finish_reason = "stop";
      break;
    }
    if (produced + 1 < max_tokens) {
      if (!next) {
        next = step(y);
        mx::async_eval(*next);
      }
      y = *next;
    }
  }
  if (!stops.stopped()) {
    std::string tail = stops.flush(detok.finish());
    res.text += tail;
    if (!tail.empty() && on_text) on_text(tail);
  }
  res.stats.generation_tokens = static_cast<int>(res.tokens.size());
  double dt = res.tokens.empty() ? 0 : seconds_since(t_decode);
  res.stats.generation_tps = dt > 0 ? res.stats.generation_tokens / dt : 0;
  res.stats.peak_memory_gb = static_cast<double>(mx::get_peak_memory()) / 1e9;
  return res;
}

}  // namespace lmlab
