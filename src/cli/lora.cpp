// lmlab lora: fine-tuning with mlx_lm.lora's flags and YAML keys. Prints the
// run header (iteration arithmetic, trainable parameters, memory plan), then
// mlx-lm's progress lines with a progress bar and ETA on a terminal, and the
// measured peak memory beside the plan.
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cmath>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/train_options.h"
#include "lmlab/io.h"
#include "lmlab/train.h"

namespace lmlab::cli {

namespace {

struct LoraCliOptions {
  std::shared_ptr<TrainFlags> flags = std::make_shared<TrainFlags>();
  std::string device = "auto";
  bool dry_run = false;
};

std::string clock_text(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long t = std::lround(s);
  return t >= 3600 ? fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60) : fmt::format("{:02}:{:02}", t / 60, t % 60);
}

// One progress line on stderr, redrawn in place (terminals only).
class ProgressBar {
 public:
  ProgressBar() : on_(isatty(STDERR_FILENO)) {}
  void draw(int it, int iters, double eta) {
    if (!on_) return;
    const int width = 30, filled = iters ? width * it / iters : width;
    fmt::print(stderr, "\r[{}{}] {}/{} ETA {} ", std::string(filled, '#'), std::string(width - filled, '.'), it,
               iters, clock_text(eta));
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!shown_) return;
    fmt::print(stderr, "\r{}\r", std::string(70, ' '));
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
};

void print_event(const train::TrainEvent& e) {
  using K = train::TrainEvent::Kind;
  switch (e.kind) {
    case K::val:
      fmt::print("Iter {}: Val loss {:.3f}, Val took {:.3f}s\n", e.iteration, e.val_loss, e.seconds);
      break;
    case K::report:
      fmt::print("Iter {}: Train loss {:.3f}, Learning Rate {:.3e}, It/sec {:.3f}, Tokens/sec {:.3f}, Trained Tokens "
                 "{}, Peak mem {:.3f} GB\n",
                 e.iteration, e.train_loss, e.learning_rate, e.it_per_sec, e.tokens_per_sec, e.trained_tokens,
                 e.peak_memory_gb);
      break;
    case K::save:
      fmt::print("Iter {}: Saved adapter weights to {}.\n", e.iteration, e.path);
      break;
    case K::test:
      fmt::print("Test loss {:.3f}, Test ppl {:.3f}.\n", e.test_loss, e.test_ppl);
      break;
    case K::done:
      break;
  }
  std::fflush(stdout);
}

// glibc gives blocks of 128 KB and more back to the kernel when they are
// freed, and a training step frees and allocates again hundreds of megabytes
// (activations, dequantized weights): every page is faulted in and zeroed
// again, each step. Kept in the heap instead: on the default model's 4-bit
// GGUF, 1.19M → 0.34M minor faults in 8 iterations, steps 7% faster (ten
// interleaved pairs), peak RSS 12% higher (docs/benchmarks.md).
void keep_freed_memory() {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

void run_lora(const LoraCliOptions& o) {
  keep_freed_memory();
  train::TrainConfig cfg = resolve_train_config(*o.flags);
  // Under lmlab launch: data parallelism, the whole model on every rank
  // (docs/distributed.md).
  ModelOptions mo;
  mo.model = cfg.model, mo.dtype = cfg.dtype, mo.device = o.device, mo.tensor_parallel = false;
  if (!cfg.train) mo.adapter_path = cfg.adapter_path;  // --test alone: evaluate the saved adapters
  // Inputs that need no model are checked before it loads (one line, nothing printed).
  if (!std::filesystem::exists(cfg.data))
    throw std::invalid_argument(fmt::format("[data] {} does not exist", cfg.data));
  if (!cfg.resume_adapter_file.empty() && !std::filesystem::is_regular_file(cfg.resume_adapter_file))
    throw std::invalid_argument(fmt::format("[lora] resume_adapter_file {} is not a file", cfg.resume_adapter_file));
  if (!mo.adapter_path.empty()) (void)io::read_adapter_dir(mo.adapter_path);
  Context ctx = make_context(mo, cfg.seed);
  fmt::print("Loading pretrained model\n");
  std::fflush(stdout);
  LoadedModel m = load(ctx, mo);
  fmt::print("Loading datasets\n");
  train::Trainer trainer(m, cfg);
  if (auto reducer = train::launch_reducer(ctx)) trainer.set_reducer(reducer);
  const train::TrainPlan& plan = trainer.plan();
  if (cfg.train)
    for (const auto& line : plan.lines()) fmt::print("{}\n", line);
  if (ctx.world_size() > 1)
    fmt::print("Data parallel over {} ranks: {} of each batch's {} examples per rank, one all-sum of the gradients "
               "per update; rank 0 writes the files\n",
               ctx.world_size(), cfg.batch_size / ctx.world_size(), cfg.batch_size);
  const auto& mem = plan.memory;
  if (cfg.memory_limit_gb > 0 && mem.total_gb > cfg.memory_limit_gb) {
    std::string advice;
    for (const auto& a : mem.advice) advice += "; or " + a;
    if (!o.dry_run)
      throw std::invalid_argument(fmt::format("[lora] the plan needs {:.2f} GB, over --memory-limit {:.2f} GB: try{}",
                                              mem.total_gb, cfg.memory_limit_gb, advice.substr(5)));
    fmt::print("Over --memory-limit {:.2f} GB; try:\n", cfg.memory_limit_gb);
    for (const auto& a : mem.advice) fmt::print("  {}\n", a);
  }
  if (o.dry_run) return;
  fmt::print("{}\n", cfg.train ? "Training" : "Testing");
  std::fflush(stdout);
  ProgressBar bar;
  train::TrainCallbacks cb{
      .on_event = [&](const train::TrainEvent& e) {
        bar.clear();
        print_event(e);
      },
      .on_step = [&](int it, int iters, double eta) { bar.draw(it, iters, eta); },
  };
  train::TrainResult r = trainer.run(cb);
  bar.clear();
  if (cfg.train)
    fmt::print("Saved final weights to {}/adapters.safetensors.\nPeak memory {:.3f} GB (planned {:.3f} GB{}).\n",
               cfg.adapter_path, r.peak_memory_gb, r.predicted_peak_gb,
               r.planned_batch_trained ? "" : " for the longest batch, which this run did not train");
}

}  // namespace

void setup_lora(CLI::App& app) {
  auto o = std::make_shared<LoraCliOptions>();
  add_train_flags(app, o->flags);
  app.add_option("--device", o->device, "cpu, gpu or auto")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  app.add_flag("--dry-run", o->dry_run, "print the iteration arithmetic and memory plan, then stop");
  app.callback([o] { run_lora(*o); });
}

}  // namespace lmlab::cli
