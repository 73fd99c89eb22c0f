// lmlab fuse: merges the adapters of --adapter-path into the base and writes a
// model directory (mlx_lm.fuse's flags: --save-path, --adapter-path,
// --dequantize). Adapted projections are re-quantized to the base's scheme
// unless --dequantize, which makes the whole model float. --export-gguf FILE
// writes the fused model as a GGUF that llama.cpp runs (a GGUF base only: its
// tokenizer and architecture metadata go over), instead of the directory
// unless --save-path is also given.
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
  std::string export_gguf;
  bool save_path_given = false;
  bool dequantize = false;
};

void check_export(const FuseCliOptions& o) {
  if (o.export_gguf.empty()) return;
  if (std::filesystem::exists(o.export_gguf))
    throw std::invalid_argument(
        fmt::format("[fuse] {} already exists; give another --export-gguf file or remove it", o.export_gguf));
}

void run_fuse(FuseCliOptions o) {
  if (o.model.adapter_path.empty()) o.model.adapter_path = "adapters";
  check_export(o);
  const bool save_dir = o.export_gguf.empty() || o.save_path_given;
  if (save_dir && std::filesystem::exists(o.save_path))
    throw std::invalid_argument(
        fmt::format("[fuse] {} already exists; give another --save-path or remove it", o.save_path));
  if (!o.model.adapter_path.empty()) (void)io::read_adapter_dir(o.model.adapter_path);  // before the model loads
  Context ctx = make_context(o.model);
  fmt::print("Loading pretrained model\n");
  LoadedModel m = load(ctx, o.model);
  if (!o.export_gguf.empty() && m.format != "gguf")
    throw Unsupported(fmt::format(
        "[fuse] --export-gguf takes the tokenizer and architecture metadata from a GGUF base; {} is a {} model "
        "(writing them from tokenizer.json is not supported yet): fuse a GGUF base, or convert the fused "
        "directory with llama.cpp's convert_hf_to_gguf.py",
        m.path, m.format));
  if (save_dir && m.format != "safetensors" && o.tokenizer.empty())
    throw std::invalid_argument(fmt::format(
        "[fuse] {} is a {} file without tokenizer.json; give --tokenizer DIR (a folder with the model's "
        "tokenizer.json and tokenizer_config.json)",
        m.path, m.format));
  std::vector<std::string> fused = train::fuse_adapters(m.model->weights(), o.dequantize);
  if (o.dequantize) fmt::print("Dequantizing model\n");
  if (save_dir) {
    analysis::save_model(m, o.save_path, o.tokenizer);
    fmt::print("Fused {} adapted layers into {}\n", fused.size(), o.save_path);
  }
  if (!o.export_gguf.empty()) {
    train::GgufExport r = train::export_gguf(*m.model, m.path, o.export_gguf, o.dequantize);
    fmt::print("Exported GGUF {} ({} fused layers; tensors: {} Q4_1, {} Q8_0, {} F16, {} F32{}{})\n", o.export_gguf,
               fused.size(), r.q4_1, r.q8_0, r.f16, r.f32,
               r.requantized == 0 ? "" : fmt::format("; {} Q4_1 layers given float16 scales", r.requantized),
               r.carried.empty() ? "" : fmt::format("; from the base: {}", fmt::join(r.carried, ", ")));
  }
}

}  // namespace

void setup_fuse(CLI::App& app) {
  auto o = std::make_shared<FuseCliOptions>();
  o->model.add(app);
  app.add_option("--save-path", o->save_path, "the fused model's directory (must not exist)")
      ->capture_default_str()
      ->each([o](const std::string&) { o->save_path_given = true; });
  app.add_option("--export-gguf", o->export_gguf,
                 "also write a GGUF file llama.cpp runs (GGUF base; layers Q4_1/Q8_0 hold exactly stay so, the rest F16; "
                 "--dequantize: all F16); without --save-path only the GGUF is written");
  app.add_flag("--dequantize", o->dequantize, "write a float model (every quantized layer dequantized)");
  app.add_option("--tokenizer", o->tokenizer,
                 "folder whose tokenizer files the fused model gets (needed for a GGUF base)");
  app.callback([o] { run_fuse(*o); });
}

}  // namespace lmlab::cli
