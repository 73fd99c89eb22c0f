// convert: any model lmlab loads → an MLX directory in the mlx-community
// layout, as mlx_lm.convert writes it: float tensors in the output dtype,
// Linear and Embedding weights quantized by mx::quantize (the very function
// behind mx.quantize) from their exact values cast to that dtype, and
// config.json's "quantization" with per-module entries where a recipe mixes
// formats. Quantized sources are de-quantized exactly first.
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "lmlab/model.h"
#include "nn/linear.h"
#include "lmlab/quant.h"
#include "quant/convert.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::quant {

namespace detail {

mx::array module_values(const Weights& w, const std::string& prefix) {
  const mx::array& a = w.at(prefix + ".weight");
  const QuantSpec* q = w.quant(prefix);
  if (!q) return mx::astype(a, mx::float32);
  std::optional<mx::array> biases;
  if (const auto* b = w.find(prefix + ".biases")) biases = *b;
  return nn::dequantize_exact(a, w.at(prefix + ".scales"), biases, q->group_size, q->bits, q->mode, mx::float32);
}

std::array<mx::array, 3> quantize_module(const Weights& w, const std::string& prefix, const QuantChoice& q,
                                         mx::Dtype dtype) {
  auto r = mx::quantize(mx::astype(module_values(w, prefix), dtype), q.group_size, q.bits);
  return {r[0], r[1], r[2]};
}

}  // namespace detail

namespace {

const std::set<int> kBits = {2, 3, 4, 5, 6, 8};
const std::set<int> kGroups = {32, 64, 128};

mx::Dtype dtype_of(const std::string& name) {
  if (name == "float16") return mx::float16;
  if (name == "bfloat16") return mx::bfloat16;
  if (name == "float32") return mx::float32;
  throw std::invalid_argument(fmt::format("[convert] dtype '{}': choose float16, bfloat16 or float32", name));
}

mx::array logical(const Weights& w, const std::string& prefix) { return detail::module_values(w, prefix); }

// Linear and Embedding weights (2-D `.weight` of a module), by prefix, with their logical shape.
std::map<std::string, ModuleShape> quantizable(const Weights& w) {
  std::map<std::string, ModuleShape> out;
  for (const auto& [name, a] : w.items()) {
    if (!name.ends_with(".weight") || a.ndim() != 2) continue;
    const std::string p = name.substr(0, name.size() - 7);
    const QuantSpec* q = w.quant(p);
    out[p] = {a.shape(0), q ? static_cast<int64_t>(a.shape(1)) * 32 / q->bits : a.shape(1)};
  }
  return out;
}

double mse(const mx::array& v, const QuantChoice& q) {
  auto r = mx::quantize(v, q.group_size, q.bits);
  mx::array d = mx::subtract(mx::dequantize(r[0], r[1], r[2], q.group_size, q.bits, "affine", std::nullopt, mx::float32),
                             mx::astype(v, mx::float32));
  return mx::mean(mx::square(d)).item<float>();
}

// Per module: the error of each candidate format, and sensitivity per unit
// of the error the atlas's own perturbation made.
std::map<std::string, QuantChoice> plan_atlas(const Weights& w, const std::map<std::string, ModuleShape>& modules,
                                             const ConvertOptions& o, mx::Dtype dt, int64_t params, int64_t fixed,
                                             const ProgressCallback& progress) {
  const Sensitivity& s = o.sensitivity;
  std::map<std::string, std::map<int, double>> errors;
  std::map<std::string, double> per_mse;
  size_t done = 0;
  for (const auto& [name, shape] : modules) {
    auto it = s.kl.find(name);
    if (it == s.kl.end())
      throw std::invalid_argument(fmt::format(
          "[convert] the atlas has no entry for {}; measure an atlas of every tensor kind of this model", name));
    mx::array v = mx::astype(logical(w, name), dt);
    for (int b : o.candidate_bits) errors[name][b] = mse(v, {b, o.group_size});
    double reference;
    if (s.mode == "requantize") {
      reference = mse(v, {s.bits, s.group_size});
    } else {
      const double rms = std::sqrt(mx::mean(mx::square(mx::astype(v, mx::float32))).item<float>());
      reference = s.level * s.level * rms * rms;
    }
    per_mse[name] = it->second / std::max(reference, 1e-30);
    if (progress) progress({.what = "measuring", .done = double(++done), .total = double(modules.size()), .unit = "modules"});
  }
  AtlasBudget budget{.target_bpw = o.target_bpw, .params = params, .fixed_bytes = fixed,
                     .scale_bytes = static_cast<int>(mx::size_of(dt))};
  return atlas_recipe(modules, per_mse, errors, budget, o.group_size);
}

void check_writable(const std::string& output) {
  if (output.empty()) throw std::invalid_argument("[convert] give an output directory");
  if (fs::exists(output))
    throw std::invalid_argument(fmt::format("[convert] {} already exists; choose a new directory", output));
  fs::path parent = fs::absolute(fs::path(output)).parent_path();
  while (!parent.empty() && !fs::exists(parent) && parent != parent.parent_path()) parent = parent.parent_path();
  if (!fs::is_directory(parent))
    throw std::runtime_error(fmt::format("[convert] cannot create {}: {} is not a folder", output, parent.string()));
  if (::access(parent.c_str(), W_OK) != 0)
    throw std::runtime_error(fmt::format("[convert] cannot write into {}: {}", parent.string(), std::strerror(errno)));
}

std::vector<fs::path> tokenizer_files(const LoadedModel& m, const ConvertOptions& o) {
  fs::path src = !o.tokenizer_dir.empty() ? fs::path(o.tokenizer_dir) : m.format == "safetensors" ? fs::path(m.path) : fs::path();
  if (src.empty())
    throw std::invalid_argument("[convert] a GGUF file carries no tokenizer.json; give --tokenizer DIR (a folder with "
                                "the model's tokenizer.json and tokenizer_config.json) so mlx_lm can load the result");
  if (!fs::exists(src / "tokenizer.json"))
    throw std::invalid_argument(fmt::format("[convert] {} has no tokenizer.json", src.string()));
  std::vector<fs::path> out;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                        "generation_config.json"})
    out.push_back(src / f);
  return out;
}

}  // namespace

void validate(const ConvertOptions& o) {
  auto bad = [](const std::string& s) { throw std::invalid_argument("[convert] " + s); };
  if (o.quantize && o.dequantize) bad("choose --quantize or --dequantize, not both");
  if (!o.dtype.empty()) (void)dtype_of(o.dtype);
  if (!kBits.count(o.bits)) bad(fmt::format("{} bits: choose 2, 3, 4, 5, 6 or 8", o.bits));
  if (!kGroups.count(o.group_size)) bad(fmt::format("group size {}: choose 32, 64 or 128", o.group_size));
  const bool known = o.recipe == "uniform" || o.recipe == "atlas" || o.recipe.starts_with("mixed_");
  if (!known) bad(fmt::format("unknown recipe '{}' (uniform, mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6, atlas)", o.recipe));
  if (o.recipe != "uniform" && !o.quantize) bad(fmt::format("recipe {} quantizes: add --quantize", o.recipe));
  if (o.recipe == "atlas") {
    if (!(o.target_bpw > 0 && o.target_bpw < 32)) bad(fmt::format("the atlas recipe needs --target-bpw in (0, 32), got {}", o.target_bpw));
    if (o.sensitivity.kl.empty()) bad("the atlas recipe needs an atlas (--atlas FILE)");
    if (o.sensitivity.mode != "requantize" && o.sensitivity.mode != "noise") bad("the atlas was measured with an unknown perturbation");
    if (o.candidate_bits.empty()) bad("no candidate bit widths");
    for (int b : o.candidate_bits)
      if (!kBits.count(b)) bad(fmt::format("candidate {} bits: choose among 2, 3, 4, 5, 6, 8", b));
  } else if (o.target_bpw != 0) {
    bad("--target-bpw goes with --recipe atlas");
  }
}

ConvertResult convert(const Context& ctx, const std::string& source, const ConvertOptions& o,
                      const ProgressCallback& progress) {
  validate(o);
  check_writable(o.output);
  LoadOptions lo;
  lo.model = source;
  lo.dtype = "float32";  // dense floats read exactly; quantized modules stay packed
  LoadedModel m = load_model(ctx, lo);
  const Weights& w = m.model->weights();
  const json& raw = m.model->config().raw;
  std::string dname = o.dtype;
  if (dname.empty()) dname = raw.contains("torch_dtype") && raw["torch_dtype"].is_string() ? raw["torch_dtype"].get<std::string>() : "float16";
  if (dname != "float16" && dname != "bfloat16" && dname != "float32") dname = "float16";
  const mx::Dtype dt = dtype_of(dname);
  std::vector<fs::path> extra = tokenizer_files(m, o);

  std::map<std::string, ModuleShape> modules = quantizable(w);
  ConvertResult res{.output = o.output, .recipe = o.quantize ? o.recipe : o.dequantize ? "dequantize" : "keep", .dtype = dname};
  for (const auto& [name, a] : w.items()) {  // mlx-lm's count: a quantized module by its logical size
    const std::string p = name.substr(0, name.rfind('.'));
    if (!w.quant(p)) res.params += static_cast<int64_t>(a.size());
    else if (name == p + ".weight") res.params += modules.at(p).rows * modules.at(p).cols;
  }
  std::map<std::string, QuantChoice> plan;
  if (o.quantize) {
    if (o.recipe == "uniform") {
      for (const auto& [name, s] : modules)
        if (s.cols % o.group_size == 0) plan[name] = {o.bits, o.group_size};
    } else if (o.recipe == "atlas") {
      int64_t fixed = 0;
      std::map<std::string, ModuleShape> chosen;
      for (const auto& [name, s] : modules)
        if (s.cols % o.group_size == 0) chosen[name] = s;
        else fixed += s.rows * s.cols * static_cast<int64_t>(mx::size_of(dt));
      for (const auto& [name, a] : w.items())
        if (!modules.count(name.substr(0, name.rfind('.')))) fixed += static_cast<int64_t>(a.size() * mx::size_of(dt));
      plan = plan_atlas(w, chosen, o, dt, res.params, fixed, progress);
    } else {
      plan = mixed_recipe(o.recipe, modules, m.model->config().num_hidden_layers, o.group_size);
    }
  } else if (!o.dequantize) {
    for (const auto& [prefix, q] : w.quantized_modules()) plan[prefix] = {q.bits, q.group_size};
  }

  Weights out;
  size_t done = 0;
  for (const auto& [name, a] : w.items()) {
    const std::string p = name.substr(0, name.rfind('.'));
    if (modules.count(p) && name != p + ".weight") continue;  // scales and biases come with their module
    if (!modules.count(p)) {
      out.set(name, mx::issubdtype(a.dtype(), mx::floating) ? mx::astype(a, dt) : a);
      continue;
    }
    auto it = plan.find(p);
    if (it == plan.end()) {
      out.set(name, mx::astype(logical(w, p), dt));
      if (w.quant(p) || o.quantize) res.dense.push_back(p);
      continue;
    }
    const QuantChoice& q = it->second;
    const QuantSpec* src = w.quant(p);
    if (!o.quantize && src) {  // kept as stored: the same words, scales and biases in the output dtype
      out.set(p + ".weight", a);
      out.set(p + ".scales", mx::astype(w.at(p + ".scales"), dt));
      out.set(p + ".biases", mx::astype(w.at(p + ".biases"), dt));
    } else {
      auto r = detail::quantize_module(w, p, q, dt);
      out.set(p + ".weight", r[0]);
      out.set(p + ".scales", r[1]);
      out.set(p + ".biases", r[2]);
    }
    QuantSpec spec;
    spec.bits = q.bits;
    spec.group_size = q.group_size;
    out.set_quant(p, spec);
    res.modules[p] = q;
    if (progress) progress({.what = "converting", .done = double(++done), .total = double(plan.size()), .unit = "modules"});
  }
  for (const auto& [name, a] : out.items()) res.bytes += static_cast<int64_t>(a.nbytes());
  res.bits_per_weight = res.params ? res.bytes * 8.0 / static_cast<double>(res.params) : 0.0;

  json cfg = raw;
  if (!res.modules.empty()) {
    // As mlx_lm's quantize_model writes it: the run's format, and with a recipe
    // an entry for every module it quantized.
    json q = {{"group_size", o.quantize ? o.group_size : res.modules.begin()->second.group_size},
              {"bits", o.quantize ? o.bits : res.modules.begin()->second.bits},
              {"mode", "affine"}};
    if (o.quantize && o.recipe != "uniform")
      for (const auto& [p, c] : res.modules) q[p] = {{"group_size", c.group_size}, {"bits", c.bits}, {"mode", "affine"}};
    cfg["quantization"] = q;
    cfg["quantization_config"] = q;
  }
  try {
    io::save_model_dir(o.output, cfg, out, extra);
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("[convert] writing {} failed, nothing was left behind: {}", o.output, e.what()));
  }
  return res;
}

void to_json(json& j, const ConvertResult& r) {
  json modules = json::object();
  for (const auto& [p, c] : r.modules) modules[p] = {{"bits", c.bits}, {"group_size", c.group_size}};
  j = {{"output", r.output}, {"recipe", r.recipe}, {"dtype", r.dtype}, {"params", r.params}, {"bytes", r.bytes},
       {"bits_per_weight", r.bits_per_weight}, {"modules", modules}, {"dense", r.dense}};
}

}  // namespace lmlab::quant
