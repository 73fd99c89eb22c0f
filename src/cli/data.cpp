// lmlab data: the preflight of a fine-tuning data set. Reads train/valid/test
// JSONL (or splits one file), applies the model's chat template and reports
// record and token-length statistics, truncation, the share of tokens in the
// loss, duplicates across splits and every malformed record as file:line.
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/train_options.h"
#include "lmlab/data.h"

namespace lmlab::cli {

namespace {

struct DataCliOptions {
  std::shared_ptr<TrainFlags> flags = std::make_shared<TrainFlags>();
  std::string revision;
  bool json = false;
};

void print_report(const train::DataReport& r, const std::string& path) {
  fmt::print("data: {} · {} records · max sequence length {} · {}\n\n", path,
             r.splits.empty() ? "no" : r.splits.front().format, r.max_seq_length,
             r.mask_prompt ? "prompt masked (only the last message is trained)" : "every token trained");
  fmt::print("{:<6} {:>8} {:>9} {:>36} {:>9} {:>11} {:>6} {:>5}\n", "split", "records", "malformed",
             "tokens min / mean / p50 / p95 / max", "truncated", "loss tokens", "share", "dups");
  for (const auto& s : r.splits) {
    std::string lengths = fmt::format("{} / {:.0f} / {} / {} / {}", s.tokens.min, s.tokens.mean, s.tokens.p50,
                                      s.tokens.p95, s.tokens.max);
    double share = s.total_tokens ? 100.0 * s.loss_tokens / s.total_tokens : 0.0;
    fmt::print("{:<6} {:>8} {:>9} {:>36} {:>9} {:>11} {:>5.1f}% {:>5}\n", s.name, s.records, s.malformed, lengths,
               s.truncated, s.loss_tokens, share, s.duplicates);
  }
  bool header = false;
  for (const auto& s : r.splits)
    for (const auto& i : s.issues) {
      if (!header) fmt::print("\nmalformed records (skipped here; `lmlab lora` stops at the first):\n");
      header = true;
      fmt::print("  {}: {}\n", i.where(), i.reason);
    }
  if (!r.warnings.empty()) fmt::print("\nwarnings:\n");
  for (const auto& w : r.warnings) fmt::print("  {}\n", w);
}

void run_data(const DataCliOptions& o) {
  train::TrainConfig cfg = resolve_train_config(*o.flags);
  if (cfg.data.empty()) throw std::invalid_argument("[data] give --data DIR_OR_FILE (or 'data' in the config)");
  train::DataOptions data = cfg.data_options();
  Tokenizer tok = load_tokenizer(cfg.model, o.revision);
  std::optional<ChatTemplate> tmpl;
  if (!tok.chat_template().empty()) tmpl.emplace(tok.chat_template());
  train::Dataset d = train::load_dataset(data, tok, tmpl ? &*tmpl : nullptr, /*strict=*/false);
  train::DataReport r = train::data_report(d, data, cfg.batch_size);
  if (o.json) {
    std::cout << r.to_json().dump(2) << "\n";
    return;
  }
  print_report(r, data.path);
}

}  // namespace

void setup_data(CLI::App& app) {
  auto o = std::make_shared<DataCliOptions>();
  add_train_flags(app, o->flags,
                  {"model", "data", "mask_prompt", "max_seq_length", "batch_size", "seed", "valid_split", "test_split"});
  app.add_option("--revision", o->revision, "Hub branch, tag or commit of --model");
  app.add_flag("--json", o->json, "print the report as JSON");
  app.callback([o] { run_data(*o); });
}

}  // namespace lmlab::cli
