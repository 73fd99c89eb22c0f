// lmlab fuse: merges the adapters of --adapter-path into the base and writes a
// model directory (mlx_lm.fuse's flags: --save-path, --adapter-path,
// --dequantize). Adapted projections are re-quantized to the base's scheme
// unless --dequantize, which makes the whole model float.
#include <filesystem>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "lmlab/analysis.h"
#include "lmlab/io.h"
#include "lmlab/model.h"
#include "lmlab/train.h"

namespace lmlab::cli {

namespace {

struct FuseCliOptions {
  ModelOptions model;
  std::string save_path = "fused_model";
  std::string tokenizer;
  bool dequantize = false;
};

void run_fuse(FuseCliOptions o) {
  if (o.model.adapter_path.empty()) o.model.adapter_path = "adapters";
  if (std::filesystem::exists(o.save_path))
    throw std::invalid_argument(
        fmt::format("[fuse] {} already exists; give another --save-path or remove it", o.save_path));
  if (!o.model.adapter_path.empty()) (void)io::read_adapter_dir(o.model.adapter_path);  // before the model loads
  Context ctx = make_context(o.model);
  fmt::print("Loading pretrained model\n");
  LoadedModel m = load(ctx, o.model);
  if (m.format != "safetensors" && o.tokenizer.empty())
    throw std::invalid_argument(fmt::format(
        "[fuse] {} is a {} file without tokenizer.json; give --tokenizer DIR (a folder with the model's "
        "tokenizer.json and tokenizer_config.json)",
        m.path, m.format));
  std::vector<std::string> fused = train::fuse_adapters(m.model->weights(), o.dequantize);
  if (o.dequantize) fmt::print("Dequantizing model\n");
  analysis::save_model(m, o.save_path, o.tokenizer);
  fmt::print("Fused {} adapted layers into {}\n", fused.size(), o.save_path);
}

}  // namespace

void setup_fuse(CLI::App& app) {
  auto o = std::make_shared<FuseCliOptions>();
  o->model.add(app);
  app.add_option("--save-path", o->save_path, "the fused model's directory (must not exist)")->capture_default_str();
  app.add_flag("--dequantize", o->dequantize, "write a float model (every quantized layer dequantized)");
  app.add_option("--tokenizer", o->tokenizer,
                 "folder whose tokenizer files the fused model gets (needed for a GGUF base)");
  app.callback([o] { run_fuse(*o); });
}

}  // namespace lmlab::cli
