// lmlab models: the models in the lmlab cache and the Hugging Face cache, with
// size, format, quantization and architecture; `models rm NAME` deletes one.
#include <iostream>

#include <fmt/format.h>

#include "cli/commands.h"
#include "lmlab/analysis.h"
#include "lmlab/hub.h"
#include "lmlab/model_cache.h"

namespace lmlab::cli {

namespace {

struct ModelsOptions {
  std::string remove;
  bool json = false;
};

void print_table(const std::vector<CachedModel>& models) {
  if (models.empty()) {
    fmt::print("no models in {} or {}\n", (cache_dir() / "models").string(), hub::cache_root().string());
    return;
  }
  fmt::print("{:<44} {:<6} {:<12} {:<18} {:<14} {:>10}\n", "name", "cache", "format", "quantization",
             "architecture", "size");
  int64_t total = 0;
  for (const auto& m : models) {
    fmt::print("{:<44} {:<6} {:<12} {:<18} {:<14} {:>10}\n", m.name, m.cache, m.format,
               m.quantization.empty() ? "-" : m.quantization, m.architecture.empty() ? "-" : m.architecture,
               analysis::bytes_label(m.bytes));
    if (!m.error.empty()) fmt::print("  (unreadable: {})\n", m.error);
    total += m.bytes;
  }
  fmt::print("{} models, {} (lmlab cache {}, Hugging Face cache {})\n", models.size(), analysis::bytes_label(total),
             (cache_dir() / "models").string(), hub::cache_root().string());
}

void run_models(const ModelsOptions& o) {
  if (!o.remove.empty()) {
    CachedModel m = remove_cached_model(cache_dir(), hub::cache_root(), o.remove);
    if (o.json) std::cout << to_json(m).dump(2) << "\n";
    else fmt::print("removed {} ({}, {})\n", m.name, m.path.string(), analysis::bytes_label(m.bytes));
    return;
  }
  std::vector<CachedModel> models = list_cached_models(cache_dir(), hub::cache_root());
  if (!o.json) return print_table(models);
  nlohmann::json all = nlohmann::json::array();
  for (const auto& m : models) all.push_back(to_json(m));
  std::cout << all.dump(2) << "\n";
}

}  // namespace

void setup_models(CLI::App& app) {
  auto o = std::make_shared<ModelsOptions>();
  app.add_flag("--json", o->json, "print JSON");
  CLI::App* rm = app.add_subcommand("rm", "delete a cached model by its listed name");
  rm->add_option("name", o->remove, "the model's name as `lmlab models` lists it")->required();
  rm->add_flag("--json", o->json, "print JSON");
  app.callback([o] { run_models(*o); });
}

}  // namespace lmlab::cli
