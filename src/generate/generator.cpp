// The generation loop (Generator), after mlx-lm's generate_step: chunked
// prefill, then each step builds the graph for token n+1 and schedules it
// (async_eval) before reading token n, so graph construction overlaps with compute.
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

// Everything one generation carries between steps.
struct Generator::State {
  const LoadedModel& m;
  GenerateOptions opts;
  int max_tokens = 0;
  generation::Sampler sampler;
  std::unique_ptr<nn::KVCache> cache;
  std::vector<int> eos;
  std::vector<int> recent;  // the repetition penalty's window
  generation::StopMatcher stops;
  StreamingDetokenizer detok;
  std::optional<mx::array> y;  // the token being computed
  int produced = 0;
  bool finished = false;       // no more tokens; the held-back text may still be pending
  bool flushed = false;
  Clock::time_point t0, t_decode;
  GenerationResult res;

  State(const LoadedModel& model, const GenerateOptions& o)
      : m(model), opts(o), sampler(o.sampler), stops(o.stop), detok(model.tokenizer, /*skip_special_tokens=*/true) {}

  mx::array step(const mx::array& input) {
    mx::array logits = m.model->forward(mx::reshape(input, {1, -1}), cache.get());
    logits = mx::take(logits, logits.shape(1) - 1, 1);
    std::optional<mx::array> hist;
    if (opts.sampler.repetition_penalty != 1.0f && !recent.empty())
      hist = mx::array(recent.begin(), {static_cast<int>(recent.size())}, mx::int32);
    return sampler.sample(logits, hist);
  }

  // A step scheduled ahead (async_eval) still runs on MLX's stream; its arrays
  // must not be dropped, nor the process leave, before it is done.
  ~State() {
    try {
      mx::synchronize();
    } catch (...) {
    }
  }

  void finish(const char* reason) {
    if (finished) return;
    finished = true;
    res.stats.finish_reason = reason;
    res.stats.generation_tokens = static_cast<int>(res.tokens.size());
    const double dt = res.tokens.empty() ? 0 : seconds_since(t_decode);
    res.stats.generation_tps = dt > 0 ? res.stats.generation_tokens / dt : 0;
    res.stats.peak_memory_gb = static_cast<double>(mx::get_peak_memory()) / 1e9;
    mx::synchronize();
  }
};

Generator::Generator(const LoadedModel& m, std::span<const int> prompt, const GenerateOptions& opts) {
  if (prompt.empty()) throw std::invalid_argument("[generate] the prompt has no tokens");
  const int ctx = context_length(m);
  if (ctx > 0 && static_cast<int>(prompt.size()) >= ctx)
    throw std::invalid_argument(fmt::format(
        "[generate] the prompt has {} tokens but the model's context is {} tokens",
        prompt.size(), ctx));
  s_ = std::make_unique<State>(m, opts);
  State& s = *s_;
  s.max_tokens = ctx > 0 ? std::min(opts.max_tokens, ctx - static_cast<int>(prompt.size())) : opts.max_tokens;
  s.cache = m.model->make_cache();
  s.eos = eos_set(m);
  s.res.stats.prompt_tokens = static_cast<int>(prompt.size());
  s.res.stats.finish_reason = "length";
  mx::reset_peak_memory();

  s.t0 = Clock::now();
  std::vector<int> ids(prompt.begin(), prompt.end());
  // Prefill all but the last prompt token in chunks; the last one starts decoding.
  const int n = static_cast<int>(ids.size());
  for (int i = 0; i < n - 1; i += opts.prefill_step) {
    int end = std::min(n - 1, i + opts.prefill_step);
    mx::array chunk(ids.begin() + i, {1, end - i}, mx::int32);
    m.model->forward(chunk, s.cache.get());
    mx::eval(s.cache->state());
  }
  s.recent.assign(ids.end() - std::min<int>(n, opts.sampler.repetition_context), ids.end());
  if (s.max_tokens <= 0) {
    s.finish("length");
    return;
  }
  s.y = s.step(mx::array(ids.back(), mx::int32));
  mx::async_eval(*s.y);
}

Generator::~Generator() = default;
Generator::Generator(Generator&&) noexcept = default;
Generator& Generator::operator=(Generator&&) noexcept = default;

std::optional<GenerationStep> Generator::next() {
  State& s = *s_;
  while (!s.finished) {
    // Schedule the next step before reading this token (pipelining); its
    // penalty window lags one token, which only matters with a penalty set.
    std::optional<mx::array> next;
    const bool more = s.produced + 1 < s.max_tokens;
    if (more && s.opts.sampler.repetition_penalty == 1.0f) {
      next = s.step(*s.y);
      mx::async_eval(*next);
    }
    const int tok = s.y->item<int>();
    if (s.produced == 0) {
      s.res.stats.time_to_first_token = seconds_since(s.t0);
      s.res.stats.prompt_tps = s.res.stats.prompt_tokens / s.res.stats.time_to_first_token;
      s.t_decode = Clock::now();
    }
    ++s.produced;
    if (s.opts.stop_at_eos && std::find(s.eos.begin(), s.eos.end(), tok) != s.eos.end()) {
      s.finish("stop");
      break;
    }
    s.res.tokens.push_back(tok);
    s.recent.push_back(tok);
    if (static_cast<int>(s.recent.size()) > s.opts.sampler.repetition_context) s.recent.erase(s.recent.begin());
    auto [piece, stopped] = s.stops.feed(s.detok.add(tok));
    s.res.text += piece;
    if (stopped) s.finish("stop");
    else if (!more) s.finish("length");
    else {
      if (!next) {
        next = s.step(*s.y);
        mx::async_eval(*next);
      }
      s.y = *next;
    }
    return GenerationStep{tok, std::move(piece)};
  }
  // Finished: release what the detokenizer or a partial stop string held back, once.
  if (s.flushed) return std::nullopt;
  s.flushed = true;
  if (s.stops.stopped()) return std::nullopt;
  std::string tail = s.stops.flush(s.detok.finish());
  if (tail.empty()) return std::nullopt;
  s.res.text += tail;
  return GenerationStep{-1, std::move(tail)};
}

void Generator::stop() { s_->finish("stop"); }

bool Generator::finished() const { return s_->finished; }

const GenerationResult& Generator::result() const { return s_->res; }

GenerationResult generate(const LoadedModel& m, std::span<const int> prompt,
                          const GenerateOptions& opts, const TextCallback& on_text) {
  Generator g(m, prompt, opts);
  while (auto step = g.next())
    if (!step->text.empty() && on_text && !on_text(step->text) && !g.finished()) g.stop();
  return g.result();
}

}  // namespace lmlab
