// load_model: path resolution, format detection, tokenizer and chat template.
#include <chrono>
#include <fstream>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/hub.h"
#include "lmlab/io.h"
#include "lmlab/loader.h"
#include "lmlab/model.h"
#include "models/gguf.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab {

namespace {

mx::Dtype compute_dtype(const Context& ctx, const LoadOptions& opts, const json& config) {
  if (opts.dtype == "float32") return mx::float32;
  if (opts.dtype == "float16") return mx::float16;
  if (opts.dtype == "bfloat16") return mx::bfloat16;
  if (!opts.dtype.empty())
    throw std::invalid_argument(fmt::format(
        "[load] unknown dtype '{}' (float32, float16, bfloat16)", opts.dtype));
  // MLX's CPU backend emulates half types (slow, low-precision accumulation).
  if (!ctx.on_gpu()) return mx::float32;
  return config.value("torch_dtype", std::string()) == "bfloat16" ? mx::bfloat16 : mx::float16;
}

// Sets each quantized module's QuantSpec::activations from LoadOptions::activations.
void choose_activations(const Context& ctx, const LoadOptions& opts, Weights& w) {
  const std::string& a = opts.activations;
  if (!a.empty() && a != "float" && a != "q8")
    throw std::invalid_argument(fmt::format("[load] unknown activations '{}' (float, q8)", a));
  for (auto [prefix, spec] : w.quantized_modules()) {
    if (ctx.on_gpu() || a != "q8") spec.activations.clear();  // GGUF tensors carry llama.cpp's choice
    else if (spec.activations.empty() && spec.mode == "affine" && (spec.bits == 4 || spec.bits == 8))
      spec.activations = "q8_0";
    w.set_quant(prefix, spec);
  }
}

const mx::distributed::Group* shard_group(const Context& ctx, const LoadOptions& opts) {
  return opts.tensor_parallel ? ctx.group() : nullptr;
}

std::optional<ChatTemplate> template_from(const std::string& source, const std::string& where) {
  if (source.empty()) return std::nullopt;
  try {
    return ChatTemplate(source);
  } catch (const std::exception& e) {
    throw std::invalid_argument(fmt::format("[load] {}: chat template: {}", where, e.what()));
  }
}

void load_gguf(const Context& ctx, const LoadOptions& opts, const fs::path& path, LoadedModel& out) {
  io::GgufFile g = io::read_gguf(path);
  json config = models::gguf_config(g);
  Weights weights = models::gguf_weights(io::read_gguf_tensors(g), config);
  choose_activations(ctx, opts, weights);
  out.model = make_model(config, std::move(weights), compute_dtype(ctx, opts, config), shard_group(ctx, opts));
  out.tokenizer = Tokenizer::from_gguf(g.meta);
  out.chat_template = template_from(out.tokenizer.chat_template(), path.string());
  out.format = "gguf";
  out.gguf_metadata = std::move(g.meta);
}

void load_dir(const Context& ctx, const LoadOptions& opts, const fs::path& dir, LoadedModel& out) {
  io::ModelDir m = io::read_model_dir(dir);
  auto dtype = compute_dtype(ctx, opts, m.config);
  choose_activations(ctx, opts, m.weights);
  out.model = make_model(m.config, std::move(m.weights), dtype, shard_group(ctx, opts));
  out.tokenizer = Tokenizer::from_file(dir);
  out.chat_template = template_from(out.tokenizer.chat_template(), dir.string());
  out.format = "safetensors";
}

}  // namespace

fs::path resolve_model(const std::string& model, const std::string& revision) {
  if (model.empty()) return default_model_path();
  fs::path path(model);
  if (fs::exists(path)) return path;
  if (find_known_model(model)) return known_model_path(model);
  if (hub::is_model_id(model)) {
    hub::Options o;
    if (!revision.empty()) o.revision = revision;
    try {
      return hub::snapshot(model, o);
    } catch (const Unsupported&) {
      throw;
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("[load] {} is no local file or folder; as a Hub model: {}", model, e.what()));
    }
  }
  throw std::runtime_error(fmt::format("[load] model not found: {} (not a file, a folder or a Hub id org/name)", model));
}

LoadedModel load_model(const Context& ctx, const LoadOptions& opts) {
  auto t0 = std::chrono::steady_clock::now();
  fs::path path = resolve_model(opts.model, opts.revision);
  LoadedModel out;
  out.path = path.string();
  if (fs::is_directory(path)) load_dir(ctx, opts, path, out);
  else load_gguf(ctx, opts, path, out);
  out.model->set_fused(opts.fused);
  if (!opts.adapter_path.empty() && out.model->tensor_group())
    throw Unsupported(fmt::format("[load] {}: adapters on a model split over {} ranks are not supported yet (each "
                                  "rank holds a slice of every projection); run without lmlab launch",
                                  opts.adapter_path, out.model->tensor_group()->size()));
  if (!opts.adapter_path.empty()) io::apply_adapters(out.model->weights(), io::read_adapter_dir(opts.adapter_path));
  mx::eval(out.model->weights().arrays());
  out.weight_bytes = out.model->weights().nbytes();
  out.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

Tokenizer load_tokenizer(const std::string& path_str, const std::string& revision) {
  fs::path path = resolve_model(path_str, revision);
  if (fs::is_directory(path) || path.extension() == ".json") return Tokenizer::from_file(path);
  return Tokenizer::from_gguf(io::read_gguf(path).meta);
}

int context_length(const LoadedModel& m) { return m.model->config().max_position_embeddings; }

}  // namespace lmlab
