// The generation loop (Generator), after mlx-lm's generate_step: chunked
// prefill, then each step builds the graph for token n+1 and schedules it
// (async_eval) before reading token n, so graph construction overlaps with compute.
#include <algorithm>
#include <chrono>
#include <limits>

#include <fmt/format.h>
#include <mlx/distributed/ops.h>
#include <mlx/mlx.h>

#include "generate/sampler.h"
#include "generate/stop.h"
#include "lmlab/generate.h"
#include "lmlab/messages.h"
#include "lmlab/model.h"

namespace mx = mlx::core;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace lmlab {

namespace {

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Under tensor parallelism every rank runs the generation loop on identical
// logits; all of them take rank 0's draw (one 4-byte all-sum per token), so no
// difference in a reduction's last bit or in a sampler's state can ever make
// their token streams, and so their collective forward passes, diverge.
// The other ranks contribute token · 0, not a constant zero: their draw must
// depend on their forward pass, or MLX would run this all-sum without it and
// the ranks' collectives would fall out of step.
mx::array follow_rank_zero(const mx::array& token, const mx::distributed::Group& group) {
  const mx::array keep(group.rank() == 0 ? 1 : 0, token.dtype());
  return mx::distributed::all_sum(mx::multiply(token, keep), group);
}

std::vector<int> eos_set(const LoadedModel& m) {
  std::vector<int> ids = m.tokenizer.eos_ids();
  for (int id : m.model->config().eos_token_ids)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  return ids;
}

}  // namespace

void check_tokens(const Model& m, std::span<const int> ids, std::string_view where) {
  if (ids.empty()) throw std::invalid_argument(fmt::format("[{}] the prompt has no tokens", where));
  const int vocab = m.config().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw std::invalid_argument(fmt::format(
          "[{}] token id {} (position {}) is outside the model's vocabulary of {} ids: the tokenizer "
          "does not belong to this model (use the model's own tokenizer)",
          where, ids[i], i, vocab));
  const int ctx = m.config().max_position_embeddings;
  if (ctx > 0 && ids.size() > static_cast<size_t>(ctx))
    throw std::invalid_argument(fmt::format(
        "[{}] the prompt has {} tokens but the model's context is {} tokens; shorten the prompt", where,
        ids.size(), ctx));
}

std::vector<int> build_chat_prompt(const LoadedModel& m, const json& messages, const json& tools,
                                   bool add_generation_prompt) {
  if (!m.chat_template)
    throw std::invalid_argument("[chat] this model has no chat template; use --no-chat-template");
  auto ordered = [](const json& j) { return nlohmann::ordered_json::parse(j.dump()); };
  Conversation c = make_conversation(ordered(messages), tools.is_null() ? nullptr : ordered(tools));
  return render_conversation(m.tokenizer, *m.chat_template, c, add_generation_prompt).ids;
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

// One scheduled step: the sampled token and, when asked for, its
// log-probability and the top tokens' (all lazy until read).
struct Pending {
  mx::array token;
  std::optional<mx::array> logprob, top_ids, top_logprobs;

  // The arrays a step computes, appended to `out`.
  void arrays(std::vector<mx::array>& out) const {
    out.push_back(token);
    for (const auto* a : {&logprob, &top_ids, &top_logprobs})
      if (*a) out.push_back(**a);
  }

  void schedule() const {
    std::vector<mx::array> all;
    arrays(all);
    mx::async_eval(all);
  }
};

// Everything one generation carries between steps.
struct Generator::State {
  const LoadedModel& m;
  GenerateOptions opts;
  int max_tokens = 0;
  generation::Sampler sampler;
  std::shared_ptr<nn::KVCache> cache;
  std::vector<int> fed;     // ids in the order they enter the cache: prompt, then each token read
  std::vector<int> eos;
  std::vector<int> recent;  // the repetition penalty's window
  generation::StopMatcher stops;
  StreamingDetokenizer detok;
  std::optional<Pending> y;  // the token being computed
  // Batched (step_together): next() leaves the following step undone and
  // keeps its input here until step_together() computes it.
  bool batched = false;
  std::optional<mx::array> awaiting;
  int produced = 0;
  bool finished = false;       // no more tokens; the held-back text may still be pending
  bool flushed = false;
  Clock::time_point t0, t_decode;
  GenerationResult res;

  State(const LoadedModel& model, const GenerateOptions& o)
      : m(model), opts(o), sampler(o.sampler), stops(o.stop), detok(model.tokenizer, /*skip_special_tokens=*/true) {}

  Pending step(const mx::array& input) {
    mx::array logits = m.model->forward(mx::reshape(input, {1, -1}), cache.get());
    return sample(mx::take(logits, logits.shape(1) - 1, 1));
  }

  // The next token from logits (1, V), with its log-probabilities when asked for.
  Pending sample(const mx::array& logits) {
    std::optional<mx::array> hist;
    if (opts.sampler.repetition_penalty != 1.0f && !recent.empty())
      hist = mx::array(recent.begin(), {static_cast<int>(recent.size())}, mx::int32);
    Pending p{.token = sampler.sample(logits, hist), .logprob = {}, .top_ids = {}, .top_logprobs = {}};
    if (const auto* group = m.model->tensor_group()) p.token = follow_rank_zero(p.token, *group);
    if (opts.logprobs >= 0) {
      mx::array flat = mx::astype(mx::reshape(logits, {-1}), mx::float32);
      mx::array lp = mx::subtract(flat, mx::logsumexp(flat, -1, /*keepdims=*/true));
      p.logprob = mx::take(lp, p.token);
      const int k = std::min(opts.logprobs, lp.shape(0));
      if (k > 0) {
        p.top_ids = mx::slice(mx::argpartition(mx::negative(lp), k - 1), {0}, {k});
        p.top_logprobs = mx::take(lp, *p.top_ids);
      }
    }
    return p;
  }

  // The step's log-probabilities, read on the host (the step is evaluated).
  void read_logprobs(const Pending& p, GenerationStep& out) const {
    if (!p.logprob) return;
    out.logprob = p.logprob->item<float>();
    if (!p.top_ids) return;
    mx::array ids = mx::astype(*p.top_ids, mx::int32), lps = *p.top_logprobs;
    mx::eval(ids, lps);
    const int* id = ids.data<int>();
    const float* lp = lps.data<float>();
    for (size_t i = 0; i < ids.size(); ++i) out.top_logprobs.emplace_back(id[i], lp[i]);
    std::sort(out.top_logprobs.begin(), out.top_logprobs.end(),
              [](const auto& a, const auto& b) { return a.second > b.second; });
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
    // MLX keeps one peak for the process; the frontend resets it (through
    // Context::reset_peak_memory) where a measurement should start, so the
    // library never clears a figure another caller may be reading.
    res.stats.peak_memory_gb = static_cast<double>(mx::get_peak_memory()) / 1e9;
    mx::synchronize();
  }

  // Keeps the part of `reuse` the prompt shares (at most all but its last
  // token, which must run to give the first logits); returns how many tokens.
  int adopt(CachedPrompt reuse, std::span<const int> prompt) {
    if (reuse.empty()) {
      cache = m.model->make_cache();
      return 0;
    }
    if (reuse.cache->num_layers() != m.model->config().num_hidden_layers ||
        reuse.cache->offset() != static_cast<int>(reuse.ids.size()))
      throw std::invalid_argument(fmt::format(
          "[generate] the reused cache holds {} layers and {} positions for {} ids; it belongs to another model or "
          "generation", reuse.cache->num_layers(), reuse.cache->offset(), reuse.ids.size()));
    const size_t keep = std::min(common_prefix(reuse.ids, prompt), prompt.size() - 1);
    reuse.cache->trim(reuse.cache->offset() - static_cast<int>(keep));
    cache = std::move(reuse.cache);
    return static_cast<int>(keep);
  }
};

Generator::Generator(const LoadedModel& m, std::span<const int> prompt, const GenerateOptions& opts)
    : Generator(m, prompt, opts, CachedPrompt{}) {}

Generator::Generator(const LoadedModel& m, std::span<const int> prompt, const GenerateOptions& opts,
                     CachedPrompt reuse) {
  validate(opts);
  // The KV cache holds prompt and generated tokens: --max-kv-size bounds both,
  // within the context the model was trained for.
  check_tokens(*m.model, prompt, "generate");
  const int ctx = context_length(m);
  const bool kv_bound = opts.max_kv_size > 0 && (ctx == 0 || opts.max_kv_size < ctx);
  const int room = kv_bound ? opts.max_kv_size : ctx;
  if (room > 0 && prompt.size() >= static_cast<size_t>(room))
    throw std::invalid_argument(fmt::format(
        "[generate] the prompt has {} tokens but the {} is {} tokens, leaving no room to generate; "
        "shorten the prompt{}",
        prompt.size(), kv_bound ? "KV cache (max_kv_size)" : "model's context", room,
        kv_bound ? " or raise max_kv_size" : ""));
  s_ = std::make_unique<State>(m, opts);
  State& s = *s_;
  const int left = room > 0 ? room - static_cast<int>(prompt.size()) : std::numeric_limits<int>::max();
  s.max_tokens = opts.max_tokens < 0 ? left : std::min(opts.max_tokens, left);
  const int cached = s.adopt(std::move(reuse), prompt);
  s.eos = eos_set(m);
  s.res.stats.prompt_tokens = static_cast<int>(prompt.size());
  s.res.stats.cached_tokens = cached;
  s.res.stats.finish_reason = "length";

  s.t0 = Clock::now();
  std::vector<int> ids(prompt.begin(), prompt.end());
  // Prefill the uncached prompt tokens but the last in chunks; the last one starts decoding.
  const int n = static_cast<int>(ids.size());
  for (int i = cached; i < n - 1; i += opts.prefill_step) {
    int end = std::min(n - 1, i + opts.prefill_step);
    mx::array chunk(ids.begin() + i, {1, end - i}, mx::int32);
    m.model->forward(chunk, s.cache.get());
    mx::eval(s.cache->state());
    if (opts.on_prefill)
      opts.on_prefill({.what = "prefill", .done = double(end), .total = double(n - 1), .unit = "tokens",
                       .finished = end == n - 1});
  }
  s.fed = ids;
  s.recent.assign(ids.end() - std::min<int>(n, opts.sampler.repetition_context), ids.end());
  if (s.max_tokens <= 0) {
    s.finish("length");
    return;
  }
  s.y = s.step(mx::array(ids.back(), mx::int32));
  s.y->schedule();
}

Generator::~Generator() = default;
Generator::Generator(Generator&&) noexcept = default;
Generator& Generator::operator=(Generator&&) noexcept = default;

std::optional<GenerationStep> Generator::next() {
  State& s = *s_;
  while (!s.finished) {
    if (!s.y) throw std::logic_error("[generate] next() on a batched generator whose step step_together() has not computed");
    // Schedule the next step before reading this token (pipelining); its
    // penalty window lags one token, which only matters with a penalty set.
    std::optional<Pending> next;
    const bool more = s.produced + 1 < s.max_tokens;
    if (more && !s.batched && s.opts.sampler.repetition_penalty == 1.0f) {
      next = s.step(s.y->token);
      next->schedule();
    }
    const int tok = s.y->token.item<int>();
    if (s.produced == 0) {
      s.res.stats.time_to_first_token = seconds_since(s.t0);
      s.res.stats.prompt_tps = (s.res.stats.prompt_tokens - s.res.stats.cached_tokens) / s.res.stats.time_to_first_token;
      s.t_decode = Clock::now();
    }
    ++s.produced;
    s.fed.push_back(tok);
    if (s.opts.stop_at_eos && std::find(s.eos.begin(), s.eos.end(), tok) != s.eos.end()) {
      s.finish("stop");
      break;
    }
    GenerationStep out{.token = tok, .text = "", .logprob = 0, .top_logprobs = {}};
    s.read_logprobs(*s.y, out);
    s.res.tokens.push_back(tok);
    s.recent.push_back(tok);
    if (static_cast<int>(s.recent.size()) > s.opts.sampler.repetition_context) s.recent.erase(s.recent.begin());
    auto [piece, stopped] = s.stops.feed(s.detok.add(tok));
    s.res.text += piece;
    out.text = std::move(piece);
    if (stopped) s.finish("stop");
    else if (!more) s.finish("length");
    else if (s.batched) {
      s.awaiting = s.y->token;
      s.y.reset();
    } else {
      if (!next) {
        next = s.step(s.y->token);
        next->schedule();
      }
      s.y = std::move(next);
    }
    return out;
  }
  // Finished: release what the detokenizer or a partial stop string held back, once.
  if (s.flushed) return std::nullopt;
  s.flushed = true;
  if (s.stops.stopped()) return std::nullopt;
  std::string tail = s.stops.flush(s.detok.finish());
  if (tail.empty()) return std::nullopt;
  s.res.text += tail;
  return GenerationStep{.token = -1, .text = std::move(tail), .logprob = 0, .top_logprobs = {}};
}

void Generator::stop() { s_->finish("stop"); }

void Generator::set_batched(bool on) {
  State& s = *s_;
  if (s.batched == on) return;
  if (!on && s.awaiting) {  // compute the awaited step alone
    s.y = s.step(*s.awaiting);
    s.y->schedule();
    s.awaiting.reset();
  }
  s.batched = on;
}

bool Generator::awaiting_step() const { return !s_->finished && s_->awaiting.has_value(); }

void step_together(std::span<Generator* const> gens) {
  std::vector<Generator::State*> rows;
  for (Generator* g : gens)
    if (g && g->awaiting_step()) rows.push_back(g->s_.get());
  if (rows.empty()) return;
  const Model& model = *rows.front()->m.model;
  for (const Generator::State* s : rows)
    if (s->m.model.get() != &model)
      throw std::invalid_argument("[generate] step_together() takes generators of one model");
  std::vector<mx::array> inputs;
  std::vector<nn::KVCache*> caches;
  for (Generator::State* s : rows) {
    inputs.push_back(mx::reshape(mx::astype(*s->awaiting, mx::int32), {1, 1}));
    caches.push_back(s->cache.get());
  }
  mx::array logits = model.decode_rows(mx::concatenate(inputs, 0), caches);  // (B, 1, V)
  const int V = logits.shape(2);
  std::vector<mx::array> scheduled;
  for (size_t b = 0; b < rows.size(); ++b) {
    Generator::State& s = *rows[b];
    const int i = static_cast<int>(b);
    s.y = s.sample(mx::reshape(mx::slice(logits, {i, 0, 0}, {i + 1, 1, V}), {1, V}));
    s.awaiting.reset();
    s.y->arrays(scheduled);
  }
  mx::async_eval(scheduled);
}

bool Generator::finished() const { return s_->finished; }

const GenerationResult& Generator::result() const { return s_->res; }

CachedPrompt Generator::take_cache() {
  State& s = *s_;
  if (!s.finished) throw std::logic_error("[generate] take_cache() before the generation finished");
  mx::synchronize();
  CachedPrompt c;
  if (!s.cache) return c;
  const int n = std::min<int>(s.cache->offset(), static_cast<int>(s.fed.size()));
  c.ids.assign(s.fed.begin(), s.fed.begin() + n);
  s.cache->trim(s.cache->offset() - n);
  c.cache = std::move(s.cache);
  return c;
}

GenerationResult generate(const LoadedModel& m, std::span<const int> prompt,
                          const GenerateOptions& opts, const TextCallback& on_text) {
  Generator g(m, prompt, opts);
  while (auto step = g.next())
    if (!step->text.empty() && on_text && !on_text(step->text) && !g.finished()) g.stop();
  return g.result();
}

}  // namespace lmlab
