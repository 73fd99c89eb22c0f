// Generation options and results as JSON (the CLI's --json, the server, the
// web lab), and the range checks every frontend runs before generating.
#include <cmath>

#include <fmt/format.h>

#include "core/json_fields.h"
#include "core/utf8.h"
#include "lmlab/generate.h"

using json = nlohmann::json;

namespace lmlab {

namespace {

// "nan", "inf" and ordinary numbers as a user typed them.
std::string num(double v) { return fmt::format("{:g}", v); }

[[noreturn]] void out_of_range(std::string_view field, const std::string& value, std::string_view rule) {
  throw std::invalid_argument(fmt::format("[generate] {} {}: {}", field, value, rule));
}

}  // namespace

void validate(const SamplerConfig& c) {
  // Written as !(ok) so that NaN, which fails every comparison, is refused too.
  if (!(c.temp >= 0 && std::isfinite(c.temp)))
    out_of_range("temp", num(c.temp), "must be a finite number >= 0 (0: greedy)");
  if (!(c.top_p > 0 && c.top_p <= 1)) out_of_range("top_p", num(c.top_p), "must be in (0, 1] (1: off)");
  if (!(c.min_p >= 0 && c.min_p <= 1)) out_of_range("min_p", num(c.min_p), "must be in [0, 1] (0: off)");
  if (c.top_k < 0) out_of_range("top_k", std::to_string(c.top_k), "must be >= 0 (0: off)");
  if (!(c.repetition_penalty > 0 && std::isfinite(c.repetition_penalty)))
    out_of_range("repetition_penalty", num(c.repetition_penalty), "must be a finite number > 0 (1: off)");
  if (c.repetition_context < 0)
    out_of_range("repetition_context_size", std::to_string(c.repetition_context), "must be >= 0");
}

void validate(const GenerateOptions& o) {
  validate(o.sampler);
  if (o.max_tokens < -1)
    out_of_range("max_tokens", std::to_string(o.max_tokens),
                 "must be >= 0, or -1 for no limit but the context");
  if (o.prefill_step < 1) out_of_range("prefill_step_size", std::to_string(o.prefill_step), "must be >= 1");
  if (o.max_kv_size < 0) out_of_range("max_kv_size", std::to_string(o.max_kv_size), "must be >= 1 (0: the context)");
  for (const auto& s : o.stop) {
    if (s.empty()) throw std::invalid_argument("[generate] stop: a stop string is empty");
    if (size_t at = utf8::first_invalid(s); at != utf8::npos)
      throw std::invalid_argument(
          fmt::format("[generate] stop: {:?} is not valid UTF-8 (byte {}), so it could never match", s, at));
  }
}

void to_json(json& j, const SamplerConfig& c) {
  j = {{"temp", c.temp},
       {"top_p", c.top_p},
       {"top_k", c.top_k},
       {"min_p", c.min_p},
       {"repetition_penalty", c.repetition_penalty},
       {"repetition_context_size", c.repetition_context},
       {"seed", c.seed ? json(*c.seed) : json(nullptr)}};
}

void from_json(const json& j, SamplerConfig& c) {
  constexpr std::string_view where = "sampler options";
  json_fields::check_keys(j, {"temp", "top_p", "top_k", "min_p", "repetition_penalty", "repetition_context_size", "seed"},
                          where);
  json_fields::read(j, "temp", c.temp, where);
  json_fields::read(j, "top_p", c.top_p, where);
  json_fields::read(j, "top_k", c.top_k, where);
  json_fields::read(j, "min_p", c.min_p, where);
  json_fields::read(j, "repetition_penalty", c.repetition_penalty, where);
  json_fields::read(j, "repetition_context_size", c.repetition_context, where);
  json_fields::read(j, "seed", c.seed, where);
}

void to_json(json& j, const GenerateOptions& o) {
  j = o.sampler;
  j["max_tokens"] = o.max_tokens;
  j["stop"] = o.stop;
  j["stop_at_eos"] = o.stop_at_eos;
  j["prefill_step_size"] = o.prefill_step;
  j["max_kv_size"] = o.max_kv_size;
}

// The sampler's keys sit beside the generation's, as in mlx_lm's and OpenAI's requests.
void from_json(const json& j, GenerateOptions& o) {
  constexpr std::string_view where = "generate options";
  json_fields::check_keys(j, {"max_tokens", "stop", "stop_at_eos", "prefill_step_size", "max_kv_size", "temp",
                              "top_p", "top_k", "min_p", "repetition_penalty", "repetition_context_size", "seed"},
                          where);
  json_fields::read(j, "max_tokens", o.max_tokens, where);
  json_fields::read(j, "stop", o.stop, where);
  json_fields::read(j, "stop_at_eos", o.stop_at_eos, where);
  json_fields::read(j, "prefill_step_size", o.prefill_step, where);
  json_fields::read(j, "max_kv_size", o.max_kv_size, where);
  json sampler = json::object();
  for (const auto& [k, v] : j.items())
    if (k != "max_tokens" && k != "stop" && k != "stop_at_eos" && k != "prefill_step_size" && k != "max_kv_size")
      sampler[k] = v;
  from_json(sampler, o.sampler);
}

void to_json(json& j, const GenerationStats& s) {
  j = {{"prompt_tokens", s.prompt_tokens},
       {"prompt_tps", s.prompt_tps},
       {"generation_tokens", s.generation_tokens},
       {"generation_tps", s.generation_tps},
       {"time_to_first_token", s.time_to_first_token},
       {"peak_memory_gb", s.peak_memory_gb},
       {"finish_reason", s.finish_reason}};
}

void from_json(const json& j, GenerationStats& s) {
  constexpr std::string_view where = "generation stats";
  json_fields::read(j, "prompt_tokens", s.prompt_tokens, where);
  json_fields::read(j, "prompt_tps", s.prompt_tps, where);
  json_fields::read(j, "generation_tokens", s.generation_tokens, where);
  json_fields::read(j, "generation_tps", s.generation_tps, where);
  json_fields::read(j, "time_to_first_token", s.time_to_first_token, where);
  json_fields::read(j, "peak_memory_gb", s.peak_memory_gb, where);
  json_fields::read(j, "finish_reason", s.finish_reason, where);
}

void to_json(json& j, const GenerationResult& r) {
  json stats = r.stats;
  stats.erase("finish_reason");
  j = {{"text", r.text}, {"tokens", r.tokens}, {"finish_reason", r.stats.finish_reason}, {"stats", stats}};
}

void from_json(const json& j, GenerationResult& r) {
  constexpr std::string_view where = "generation result";
  json_fields::read(j, "text", r.text, where);
  json_fields::read(j, "tokens", r.tokens, where);
  if (auto it = j.find("stats"); it != j.end()) from_json(*it, r.stats);
  json_fields::read(j, "finish_reason", r.stats.finish_reason, where);
}

}  // namespace lmlab
