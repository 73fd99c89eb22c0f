// lmlab serve: the model behind an OpenAI-compatible HTTP API, with the web
// lab at /. Binds 127.0.0.1 unless told otherwise.
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"

#ifdef LMLAB_SERVER
#include "server/http.h"

namespace lmlab::cli {

namespace {

struct ServeCliOptions {
  ModelOptions model;
  server::ServeOptions serve;
  size_t cache_mib = 512;
  size_t body_kib = 8192;
};

void run_serve(ServeCliOptions o) {
  if (o.serve.api_key.empty())
    if (const char* k = std::getenv("LMLAB_API_KEY"); k && *k) o.serve.api_key = k;
  o.serve.scheduler.prompt_cache_bytes = o.cache_mib << 20;
  o.serve.max_body_bytes = o.body_kib << 10;
  if (o.serve.limits.default_max_tokens > o.serve.limits.max_tokens)
    throw std::invalid_argument(fmt::format("[serve] --max-tokens {} is above --max-tokens-limit {}",
                                            o.serve.limits.default_max_tokens, o.serve.limits.max_tokens));
  if (!o.serve.runs_dir.empty() && !std::filesystem::is_directory(o.serve.runs_dir))
    throw std::invalid_argument(fmt::format("[serve] --runs {}: not a folder (give the folder your lora runs write "
                                            "their --adapter-path folders into)", o.serve.runs_dir));
  Context ctx = make_context(o.model);
  // Every rank would need each request rank 0 receives (docs/distributed.md).
  if (ctx.world_size() > 1)
    throw Unsupported(fmt::format("[serve] serving from {} ranks (lmlab launch) is not supported yet: the other ranks "
                                  "do not receive rank 0's requests; run lmlab serve as one process",
                                  ctx.world_size()));
  LoadedModel m = load(ctx, o.model);
  o.serve.device = ctx.device_name();
  server::serve(m, o.serve, [&](const std::string& url) {
    fmt::print("lmlab serve: {} on {} (web lab at {}/, API at {}/v1){}\n", m.path, url, url, url,
               o.serve.api_key.empty() ? "" : ", API key required");
    std::fflush(stdout);
  });
  fmt::print("lmlab serve: stopped\n");
}

}  // namespace

void setup_serve(CLI::App& app) {
  auto o = std::make_shared<ServeCliOptions>();
  auto& s = o->serve;
  o->model.add(app);
  app.add_option("--host", s.host, "address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface)")
      ->capture_default_str();
  app.add_option("--port", s.port, "port (0: any free one)")->capture_default_str()->check(CLI::Range(0, 65535));
  app.add_option("--api-key", s.api_key, "require Authorization: Bearer KEY (default: $LMLAB_API_KEY, else none)");
  app.add_option("--model-id", s.model_id, "the model's name in the API (default: the file or folder name)");
  app.add_option("--parallel", s.scheduler.slots, "generations running at once, one token each per round")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_flag("!--no-batch", s.scheduler.batch,
               "decode the running generations one after another instead of in one forward pass per round");
  app.add_option("--queue", s.scheduler.max_queue, "requests that may wait for a place; more get 503")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  app.add_option("--prompt-cache-mib", o->cache_mib, "memory bound of the shared prompt cache (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--max-tokens", s.limits.default_max_tokens, "tokens a request generates when it does not say")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-tokens-limit", s.limits.max_tokens, "the most tokens a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--max-prompt-tokens", s.limits.max_prompt_tokens, "longest prompt accepted (0: the model's context)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 24));
  app.add_option("--max-body-kib", o->body_kib, "largest request body")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--drain-seconds", s.drain_seconds, "after SIGINT/SIGTERM, time given to running answers")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  app.add_option("--web-dir", s.web_dir, "serve the web lab from this folder (default: the copy built in)");
  app.add_option("--runs", s.runs_dir, "folder of training runs (lmlab lora --adapter-path DIR/NAME) the lab's "
                 "Training panel charts (default: none)");
  app.add_flag("--quiet", s.quiet, "no request log on stderr");
  app.callback([o] { run_serve(*o); });
}

}  // namespace lmlab::cli
#else
namespace lmlab::cli {

void setup_serve(CLI::App& app) {
  app.allow_extras();
  app.callback([] { throw Unsupported("[serve] this lmlab was built without the server; rebuild with -DLMLAB_BUILD_SERVER=ON"); });
}

}  // namespace lmlab::cli
#endif
