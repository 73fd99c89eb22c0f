// lmlab convert: a GGUF file, HF float or MLX directory → an MLX directory in
// the mlx-community layout (mlx_lm.convert's flags and output), quantized
// uniformly, by one of mlx-lm's mixed recipes, or by an atlas at a target
// number of bits per weight; or de-quantized.

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/eta.h"
#include "lmlab/quant.h"
#include "lmlab/sweep.h"

namespace lmlab::cli {

namespace {

using json = nlohmann::json;

struct ConvertCliOptions {
  std::string model;
  std::string revision;
  std::string device = "auto";
  quant::ConvertOptions convert;
  std::string atlas;
  bool json = false;
};

void run_convert(ConvertCliOptions o) {
  if (!o.atlas.empty()) o.convert.sensitivity = analysis::sensitivity(analysis::read_atlas(o.atlas));
  check_usage([&] { quant::validate(o.convert); });
  ModelOptions mo;
  mo.model = o.model;
  mo.revision = o.revision;
  mo.device = o.device;
  Context ctx = make_context(mo);
  quant::ConvertResult r = quant::convert(ctx, o.model, o.convert, eta_progress());
  if (o.json) {
    print_json(r);
    return;
  }
  std::map<std::string, int> by_format;
  for (const auto& [_, q] : r.modules) ++by_format[fmt::format("{}-bit g{}", q.bits, q.group_size)];
  fmt::print("wrote {} ({}, {})\n", r.output, r.recipe, r.dtype);
  for (const auto& [f, n] : by_format) fmt::print("  {:>4} modules {}\n", n, f);
  if (!r.dense.empty()) fmt::print("  {:>4} modules dense ({})\n", r.dense.size(), r.dtype);
  fmt::print("{:.3f} bits per weight ({} bytes for {} parameters)\n", r.bits_per_weight, r.bytes, r.params);
}

}  // namespace

void setup_convert(CLI::App& app) {
  auto o = std::make_shared<ConvertCliOptions>();
  // Not ModelOptions: the source is only read and re-encoded, never run, and
  // --dtype is the output's (mlx_lm.convert's flag), not a compute dtype.
  app.add_option("-m,--model,--hf-path", o->model,
                 "GGUF file, model directory or Hugging Face id (default: the bundled SmolLM2-135M-Instruct)");
  app.add_option("--revision", o->revision, "Hub branch, tag or commit of --model");
  app.add_option("-o,--output,--mlx-path", o->convert.output, "the new MLX model directory (must not exist)")->required();
  app.add_flag("-q,--quantize", o->convert.quantize, "quantize every Linear and Embedding weight");
  app.add_flag("-d,--dequantize", o->convert.dequantize, "write every weight dense in --dtype");
  app.add_option("--q-bits,--bits", o->convert.bits, "bits per weight: 2, 3, 4, 5, 6, 8 (mixed recipes: the config's default)")
      ->capture_default_str();
  app.add_option("--q-group-size,--group-size", o->convert.group_size, "values sharing one scale and bias: 32, 64, 128")
      ->capture_default_str();
  app.add_option("--recipe,--quant-predicate", o->convert.recipe,
                 "uniform; mlx-lm's mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6; atlas (with --atlas and --target-bpw)")
      ->capture_default_str();
  app.add_option("--atlas", o->atlas, "atlas.json from lmlab sweep --atlas (re-quantization atlas of this model)");
  app.add_option("--target-bpw", o->convert.target_bpw, "atlas recipe: bits per weight to spend (as mlx_lm counts them)");
  app.add_option("--dtype", o->convert.dtype, "float16, bfloat16 or float32 (default: the source's torch_dtype, else float16)")
      ->check(CLI::IsMember({"float16", "bfloat16", "float32"}));
  app.add_option("--tokenizer", o->convert.tokenizer_dir, "folder with tokenizer.json for a GGUF source");
  app.add_option("--device", o->device, "cpu, gpu or auto")->check(CLI::IsMember({"auto", "cpu", "gpu"}))->capture_default_str();
  add_json_flag(app, o->json, "one object: the output, recipe, modules and bits per weight");
  app.callback([o] { run_convert(*o); });
}

}  // namespace lmlab::cli
