// One table of the training flags; each writes the value it is given under its
// config key, so the YAML file and the flags merge by key (flags win).
#include "cli/train_options.h"

#include <fmt/format.h>

namespace lmlab::cli {

namespace {

using json = nlohmann::json;

enum class Kind { Int, Double, Bool, String, List };

struct FlagSpec {
  const char* key;  // dotted for nested keys: lora_parameters.rank
  const char* flag;
  Kind kind;
  const char* help;
};

// mlx_lm.lora's flags first (same names), then lmlab's.
const FlagSpec kFlags[] = {
    {"model", "-m,--model", Kind::String, "model to fine-tune: GGUF file, model directory or Hub id (default: the bundled one)"},
    {"train", "--train", Kind::Bool, "train (the default unless only --test is given)"},
    {"data", "--data", Kind::String, "folder with train/valid/test.jsonl, or one .jsonl file to split"},
    {"fine_tune_type", "--fine-tune-type", Kind::String, "lora, dora or full (the last --num-layers blocks)"},
    {"optimizer", "--optimizer", Kind::String, "adam, adamw or sgd (settings: optimizer_config in the YAML)"},
    {"mask_prompt", "--mask-prompt", Kind::Bool, "count only the last message (the completion) in the loss"},
    {"num_layers", "--num-layers", Kind::Int, "blocks to fine-tune, from the last (-1: all; default 16)"},
    {"batch_size", "--batch-size", Kind::Int, "sequences per batch (default 4)"},
    {"iters", "--iters", Kind::Int, "training iterations (default 1000)"},
    {"val_batches", "--val-batches", Kind::Int, "validation batches per evaluation (-1: all; default 25)"},
    {"learning_rate", "--learning-rate", Kind::Double, "learning rate (default 1e-5)"},
    {"steps_per_report", "--steps-per-report", Kind::Int, "iterations between loss reports (default 10)"},
    {"steps_per_eval", "--steps-per-eval", Kind::Int, "iterations between validations (default 200)"},
    {"grad_accumulation_steps", "--grad-accumulation-steps", Kind::Int, "batches per optimizer update (default 1)"},
    {"resume_adapter_file", "--resume-adapter-file", Kind::String, "start from these adapter weights (mlx-lm's resume: fresh optimizer and schedule)"},
    {"adapter_path", "--adapter-path", Kind::String, "where adapters and checkpoints go (default adapters)"},
    {"save_every", "--save-every", Kind::Int, "iterations between checkpoints (default 100)"},
    {"test", "--test", Kind::Bool, "evaluate test loss and perplexity (after training, or of --adapter-path alone)"},
    {"test_batches", "--test-batches", Kind::Int, "test batches (-1: all; default 500)"},
    {"max_seq_length", "--max-seq-length", Kind::Int, "longer sequences are truncated, with a warning (default 2048)"},
    {"grad_checkpoint", "--grad-checkpoint", Kind::Bool, "recompute each block in the backward pass: less memory, more time"},
    {"seed", "--seed", Kind::Int, "seed of adapter initialisation, batch order and dropout (default 0)"},
    {"lora_parameters.rank", "--rank", Kind::Int, "LoRA rank (default 8)"},
    {"lora_parameters.scale", "--lora-scale", Kind::Double, "LoRA scale, a plain multiplier (default 20)"},
    {"lora_parameters.dropout", "--lora-dropout", Kind::Double, "dropout on the adapter's input (default 0)"},
    {"lora_parameters.keys", "--lora-keys", Kind::List, "modules to adapt, e.g. self_attn.q_proj,self_attn.v_proj (default: every projection)"},
    {"lr_schedule.name", "--lr-schedule", Kind::String, "cosine_decay or linear_schedule from --learning-rate to 0 (YAML: any mlx schedule)"},
    {"lr_schedule.warmup", "--warmup", Kind::Int, "warm-up updates before the schedule"},
    {"lr_schedule.warmup_init", "--warmup-init", Kind::Double, "learning rate the warm-up starts from (default 0)"},
    {"epochs", "--epochs", Kind::Double, "train this many passes over the training batches (sets --iters)"},
    {"resume", "--resume", Kind::Bool, "continue the run saved in --adapter-path exactly (schedule, optimizer, data order)"},
    {"mlx_lm_compat", "--mlx-lm-compat", Kind::Bool, "mlx_lm.lora's batches (file order) and loss mask (one pad target)"},
    {"valid_split", "--valid-split", Kind::Double, "one-file data: share held out for validation (default 0.1)"},
    {"test_split", "--test-split", Kind::Double, "one-file data: share held out for test (default 0)"},
    {"memory_limit_gb", "--memory-limit", Kind::Double, "GB: refuse a plan that will not fit and say what to change"},
    {"dtype", "--dtype", Kind::String, "compute dtype: float32, float16, bfloat16"},
};

void set_key(json& j, const std::string& dotted, json value) {
  json* at = &j;
  size_t start = 0;
  for (size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1)
    at = &(*at)[dotted.substr(start, dot - start)];
  (*at)[dotted.substr(start)] = std::move(value);
}

void add_flag(CLI::App& app, const FlagSpec& f, const std::shared_ptr<TrainFlags>& flags) {
  const std::string key = f.key;
  switch (f.kind) {
    case Kind::Bool:
      app.add_flag_function(f.flag, [flags, key](int64_t) { set_key(flags->given, key, true); }, f.help);
      break;
    case Kind::Int:
      app.add_option_function<int64_t>(f.flag, [flags, key](const int64_t& v) { set_key(flags->given, key, v); },
                                       f.help);
      break;
    case Kind::Double:
      app.add_option_function<double>(f.flag, [flags, key](const double& v) { set_key(flags->given, key, v); },
                                      f.help);
      break;
    case Kind::String:
      app.add_option_function<std::string>(
          f.flag, [flags, key](const std::string& v) { set_key(flags->given, key, v); }, f.help);
      break;
    case Kind::List:
      app.add_option_function<std::vector<std::string>>(
             f.flag, [flags, key](const std::vector<std::string>& v) { set_key(flags->given, key, v); }, f.help)
          ->delimiter(',');
      break;
  }
}

}  // namespace

void add_train_flags(CLI::App& app, const std::shared_ptr<TrainFlags>& flags, const std::vector<std::string>& keys) {
  app.add_option("-c,--config", flags->config, "YAML config with mlx_lm.lora's keys (flags override it)");
  for (const FlagSpec& f : kFlags)
    if (keys.empty() || std::find(keys.begin(), keys.end(), f.key) != keys.end()) add_flag(app, f, flags);
}

train::TrainConfig resolve_train_config(const TrainFlags& flags) {
  json merged = flags.config.empty() ? json::object() : train::read_config_file(flags.config);
  merged.merge_patch(flags.given);
  // As mlx_lm.lora: --test without --train evaluates the adapters in --adapter-path.
  if (merged.value("test", false) && !merged.contains("train")) merged["train"] = false;
  return train::TrainConfig::from_json(merged);
}

}  // namespace lmlab::cli
