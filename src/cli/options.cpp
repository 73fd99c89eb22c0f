// The shared option groups (see options.h), model loading with progress, and
// prompts read from standard input.
#include "cli/options.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "cli/terminal.h"
#include "core/utf8.h"
#include "lmlab/hub.h"

namespace lmlab::cli {

namespace {

constexpr size_t kMaxPromptBytes = size_t(16) << 20;  // far beyond any model's context
constexpr int kStdinWaitSeconds = 5;


}  // namespace

const CLI::Validator& non_negative() {
  // CLI11 reads "-5" into an unsigned by wrapping it around; refuse it instead.
  static const CLI::Validator v(
      [](std::string& s) { return !s.empty() && s[0] == '-' ? std::string("must not be negative") : std::string(); },
      "", "non-negative");
  return v;
}

void ModelOptions::add(CLI::App& app) {
  app.add_option("-m,--model", model,
                 "GGUF file, model directory, or Hugging Face id org/name (or org/name/file.gguf), "
                 "downloaded into the Hugging Face cache when missing (default: the bundled SmolLM2-135M-Instruct)");
  app.add_option("--revision", revision, "Hub branch, tag or commit of --model (default: main)");
  app.add_option("--adapter-path", adapter_path,
                 "fine-tuned adapters to apply: a folder with adapter_config.json and adapters.safetensors "
                 "(lmlab lora or mlx_lm.lora)");
  add_compute(app);
}

void ModelOptions::add_compute(CLI::App& app) {
  app.add_option("--dtype", dtype, "compute dtype: float32, float16, bfloat16 (default: float32 on CPU)")
      ->check(CLI::IsMember({"", "float32", "float16", "bfloat16"}));
  app.add_option("--activations", activations,
                 "quantized matmuls on CPU: float (exact dequantized weights) or q8 (activations "
                 "rounded to int8 blocks, as llama.cpp computes GGUF Q4_0/Q4_1/Q5_0/Q8_0; faster)")
      ->check(CLI::IsMember({"float", "q8"}))
      ->capture_default_str();
  app.add_option("--device", device, "cpu, gpu or auto")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  app.add_flag("--no-fused", no_fused, "always run the composed MLX ops, not the fused decoder steps");
  app.add_flag("--verbose", verbose, "print load details");
}

void PromptOptions::add(CLI::App& app, bool many, const std::string& help) {
  std::string h = !help.empty() ? help
                  : many        ? "prompt (repeatable; absent: read stdin; '-': wait for stdin)"
                                : "prompt text (absent: read stdin; '-': wait for stdin)";
  flag_ = many ? app.add_option("-p,--prompt", prompts, h)
               : app.add_option("-p,--prompt", prompts, h)->expected(1)->take_last();
  app.add_option("-s,--system,--system-prompt", system, "system prompt (before the prompt, in the chat template)");
  app.add_flag("--no-chat-template,--ignore-chat-template", no_chat_template,
               "encode the prompt as raw text, without the model's chat template");
}

std::string PromptOptions::one() const { return all().front(); }

std::vector<std::string> PromptOptions::all(const std::optional<std::string>& fallback) const {
  check_utf8(system, "--system");
  std::vector<std::string> out;
  for (const auto& p : prompts) {
    if (p == "-") {
      out.push_back(read_stdin_prompt(/*wait=*/true));
      continue;
    }
    if (p.empty())
      throw UsageError("[prompt] --prompt is empty; give the text, or '-' to read it from standard input");
    check_utf8(p, "--prompt");
    out.push_back(p);
  }
  if (out.empty()) out.push_back(fallback ? *fallback : read_stdin_prompt(/*wait=*/false));
  return out;
}

void add_sampling_options(CLI::App& app, SamplerConfig& s) {
  app.add_option("--temp", s.temp, "sampling temperature (0: greedy)")->capture_default_str();
  app.add_option("--top-p", s.top_p, "nucleus sampling mass, in (0, 1] (1: off)")->capture_default_str();
  app.add_option("--top-k", s.top_k, "sample from the k most likely tokens (0: off)")->capture_default_str();
  app.add_option("--min-p", s.min_p, "drop tokens below min_p × the top probability (0: off)")
      ->capture_default_str();
  app.add_option("--repetition-penalty", s.repetition_penalty, "penalty for recent tokens (1: off)")
      ->capture_default_str();
  app.add_option("--repetition-context-size", s.repetition_context,
                 "tokens the repetition penalty looks back over")
      ->capture_default_str();
  app.add_option("--seed", s.seed, "random seed (a non-negative integer)")->check(non_negative());
}

void add_generation_options(CLI::App& app, GenerateOptions& g) {
  app.add_option("-n,--max-tokens", g.max_tokens, "maximum tokens to generate (-1: until EOS or the context is full)")
      ->capture_default_str();
  add_sampling_options(app, g.sampler);
  app.add_option("--stop", g.stop, "stop string (repeatable)");
  app.add_option("--prefill-step-size", g.prefill_step, "prompt tokens per forward chunk")->capture_default_str();
  app.add_flag("--ignore-eos", [&g](int64_t) { g.stop_at_eos = false; }, "do not stop at EOS");
  app.add_option("--max-kv-size", g.max_kv_size,
                 "tokens the KV cache may hold, prompt included; generation stops when it is full "
                 "(mlx_lm rotates the cache instead; 0: the model's context)")
      ->capture_default_str();
}

void add_json_flag(CLI::App& app, bool& json, const std::string& what) {
  app.add_flag("--json", json, "print JSON: " + what + " (errors too, as {\"error\": {...}} on stderr)");
}

Context make_context(const ModelOptions& o, std::optional<uint64_t> seed) {
  ContextOptions c;
  c.device = o.device == "cpu" ? DeviceKind::Cpu : o.device == "gpu" ? DeviceKind::Gpu : DeviceKind::Auto;
  c.seed = seed;
  return Context(c);
}

std::string resolve(const std::string& model, const std::string& revision) {
  // Only a Hub id that is not a local path downloads; everything else the
  // library resolves itself (with its own messages).
  if (model.empty() || std::filesystem::exists(model) || !hub::is_model_id(model)) return model;
  hub::Options o;
  if (!revision.empty()) o.revision = revision;
  o.progress = terminal_progress();
  try {
    return hub::snapshot(model, o).string();
  } catch (const Unsupported&) {
    throw;
  } catch (const std::runtime_error& e) {
    // As load_model words it (it would download silently; here it shows progress).
    throw std::runtime_error(fmt::format("[load] {} is no local file or folder; as a Hub model: {}", model, e.what()));
  }
}

LoadedModel load(const Context& ctx, const ModelOptions& o) {
  if (!ctx.on_gpu() && (o.dtype == "float16" || o.dtype == "bfloat16"))
    note(fmt::format("--dtype {} on the CPU is emulated by MLX: expect it 60-80x slower than float32, "
                     "which is what lmlab uses on the CPU without --dtype",
                     o.dtype));
  std::string path = resolve(o.model, o.revision);
  LoadedModel m;
  {
    Activity busy("loading the model");
    m = load_model(ctx, LoadOptions{.model = path, .revision = o.revision, .dtype = o.dtype,
                                    .activations = o.activations, .fused = !o.no_fused,
                                    .adapter_path = o.adapter_path, .tensor_parallel = o.tensor_parallel});
  }
  if (o.verbose)
    fmt::print(stderr, "Loaded {} ({}) in {:.3f} s on {}{}: {:.1f} MB of weights\n", m.path, m.format,
               m.load_seconds, ctx.device_name(),
               ctx.world_size() > 1 ? fmt::format(", rank {} of {}", ctx.rank(), ctx.world_size()) : "",
               m.weight_bytes / 1e6);
  return m;
}

std::string read_stdin_prompt(bool wait) {
  if (::isatty(STDIN_FILENO))
    throw UsageError("[prompt] give --prompt TEXT (or pipe the prompt on standard input)");
  if (!wait) {
    // Nothing given and nothing written: a pipe left open by a caller that
    // meant no prompt should not hang the command.
    pollfd p{.fd = STDIN_FILENO, .events = POLLIN, .revents = 0};
    const int ready = ::poll(&p, 1, kStdinWaitSeconds * 1000);
    if (ready == 0)
      throw UsageError(fmt::format(
          "[prompt] no --prompt given and nothing arrived on standard input in {} s; give --prompt TEXT, "
          "or --prompt - to wait for standard input",
          kStdinWaitSeconds));
  }
  std::string s;
  char buf[1 << 16];
  for (ssize_t n; (n = ::read(STDIN_FILENO, buf, sizeof buf)) != 0;) {
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(fmt::format("[prompt] cannot read standard input: {}", std::strerror(errno)));
    }
    s.append(buf, static_cast<size_t>(n));
    if (s.size() > kMaxPromptBytes)
      throw std::invalid_argument(fmt::format(
          "[prompt] standard input holds more than {} MiB; no model's context takes that much text",
          kMaxPromptBytes >> 20));
  }
  if (s.empty()) throw UsageError("[prompt] the prompt read from standard input is empty");
  check_utf8(s, "the prompt read from standard input");
  return s;
}

void check_utf8(const std::string& text, const std::string& what) {
  if (size_t at = utf8::first_invalid(text); at != utf8::npos)
    throw std::invalid_argument(fmt::format("[prompt] {} is not valid UTF-8 (byte {}: 0x{:02X}); convert it first "
                                            "(e.g. iconv -t UTF-8)",
                                            what, at, static_cast<unsigned char>(text[at])));
}

}  // namespace lmlab::cli
