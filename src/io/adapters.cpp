// mlx-lm adapter folders (tuner/utils.py load_adapters, lora.py train_model):
// adapter_config.json with the run's settings, adapters.safetensors with the
// trained tensors under the model's own names (`P.lora_a`, `P.lora_b`, DoRA's
// `P.m`; full fine-tuning: the layers' weights), no metadata.
#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace fs = std::filesystem;
namespace mx = mlx::core;

namespace lmlab::io {

namespace {

std::string shape_str(const mx::Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// (out, in) of linear module `p` (of each expert, when stacked), unpacking quantized weights.
std::pair<int, int> linear_dims(const Weights& w, const std::string& p) {
  const mx::array& weight = w.at(p + ".weight");
  int in = weight.shape(-1);
  if (const QuantSpec* q = w.quant(p)) in = in * 32 / q->bits;
  return {weight.shape(-2), in};
}

void attach(Weights& w, const AdapterFile& a, const std::string& module, const std::string& kind,
            const AdapterSpec& spec) {
  auto need = [&](const std::string& leaf) -> const mx::array& {
    auto it = a.tensors.find(module + "." + leaf);
    if (it == a.tensors.end())
      throw std::invalid_argument(
          fmt::format("[adapters] {}: '{}.{}' is missing", a.weights_file.string(), module, leaf));
    return it->second;
  };
  const int ndim = w.contains(module + ".weight") ? w.at(module + ".weight").ndim() : 0;
  if (ndim != 2 && ndim != 3)
    throw std::invalid_argument(fmt::format("[adapters] {}: '{}' is not a linear layer of this model",
                                            a.weights_file.string(), module));
  auto [out, in] = linear_dims(w, module);
  const mx::array& la = need("lora_a");
  const mx::array& lb = need("lora_b");
  auto check = [&](const std::string& leaf, const mx::array& t, const mx::Shape& want) {
    if (t.shape() != want)
      throw std::invalid_argument(fmt::format("[adapters] {}: '{}.{}' has shape {}, this model needs {}",
                                              a.weights_file.string(), module, leaf, shape_str(t.shape()),
                                              shape_str(want)));
  };
  if (ndim == 3) {  // stacked experts (E, out, in): mlx-lm's LoRASwitchLinear, LoRA only
    if (kind != "lora")
      throw std::invalid_argument(fmt::format("[adapters] {}: '{}' holds stacked experts, which take LoRA "
                                              "adapters only, not {}",
                                              a.weights_file.string(), module, kind));
    const int E = w.at(module + ".weight").shape(0), r = la.ndim() == 3 ? la.shape(1) : -1;
    check("lora_a", la, {E, r, in});
    check("lora_b", lb, {E, out, r});
  } else {
    const int r = la.ndim() == 2 ? la.shape(1) : -1;
    check("lora_a", la, {in, r});
    check("lora_b", lb, {r, out});
  }
  w.set(module + ".lora_a", la);
  w.set(module + ".lora_b", lb);
  if (kind == "dora") {
    const mx::array& m = need("m");
    check("m", m, {out});
    w.set(module + ".m", m);
  }
  w.set_adapter(module, spec);
}

}  // namespace

AdapterFile read_adapter_dir(const fs::path& dir, const fs::path& weights_file) {
  AdapterFile a;
  a.dir = dir;
  if (!fs::is_directory(dir))
    throw std::invalid_argument(fmt::format("[adapters] {} is not a folder (expected adapter_config.json and "
                                            "adapters.safetensors)", dir.string()));
  const fs::path cfg = dir / "adapter_config.json";
  std::ifstream f(cfg);
  if (!f) throw std::invalid_argument(fmt::format("[adapters] {} is missing", cfg.string()));
  try {
    a.config = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(fmt::format("[adapters] {}: not valid JSON ({})", cfg.string(), e.what()));
  }
  a.weights_file = weights_file.empty() ? dir / "adapters.safetensors" : weights_file;
  if (!fs::exists(a.weights_file))
    throw std::invalid_argument(fmt::format("[adapters] {} is missing", a.weights_file.string()));
  try {
    a.tensors = mx::load_safetensors(a.weights_file.string()).first;
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("[adapters] {}: {}", a.weights_file.string(), e.what()));
  }
  return a;
}

std::string adapter_kind(const AdapterFile& a) {
  std::string kind = a.config.value("fine_tune_type", "lora");
  if (kind != "lora" && kind != "dora" && kind != "full")
    throw std::invalid_argument(fmt::format("[adapters] {}: unknown fine_tune_type '{}' (lora, dora, full)",
                                            (a.dir / "adapter_config.json").string(), kind));
  return kind;
}

void apply_adapters(Weights& w, const AdapterFile& a) {
  const std::string kind = adapter_kind(a);
  if (kind == "full") {
    // Trained layers replace the base's tensors (a quantized layer becomes dense).
    for (const auto& [name, t] : a.tensors) {
      const mx::array* old = w.find(name);
      const std::string module = name.substr(0, name.rfind('.'));
      mx::Shape want = old ? old->shape() : mx::Shape{};
      if (old && w.quant(module) && name == module + ".weight") {
        auto [out, in] = linear_dims(w, module);
        want = {out, in};
      }
      if (!old || t.shape() != want)
        throw std::invalid_argument(fmt::format("[adapters] {}: '{}' {}", a.weights_file.string(), name,
                                                old ? "has shape " + shape_str(t.shape()) + ", this model needs " +
                                                          shape_str(want)
                                                    : "is not a tensor of this model"));
    }
    for (const auto& [name, t] : a.tensors) {
      const std::string module = name.substr(0, name.rfind('.'));
      if (w.quant(module) && name == module + ".weight") {
        w.erase(module + ".scales");
        w.erase(module + ".biases");
        w.clear_quant(module);
      }
      w.set(name, t);
    }
    return;
  }
  const nlohmann::json lp = a.config.value("lora_parameters", nlohmann::json::object());
  AdapterSpec spec{.kind = kind,
                   .scale = lp.value("scale", 20.0f),
                   .dropout = lp.value("dropout", 0.0f)};
  std::vector<std::string> modules;
  for (const auto& [name, t] : a.tensors) {
    const auto dot = name.rfind('.');
    const std::string leaf = dot == std::string::npos ? name : name.substr(dot + 1);
    if (leaf != "lora_a" && leaf != "lora_b" && leaf != "m")
      throw std::invalid_argument(fmt::format("[adapters] {}: '{}' is not an adapter tensor (lora_a, lora_b, m)",
                                              a.weights_file.string(), name));
    if (leaf == "lora_a") modules.push_back(name.substr(0, dot));
  }
  Weights staged = w;  // array handles: cheap, and w stays untouched if a check fails
  for (const auto& m : modules) attach(staged, a, m, kind, spec);
  w = std::move(staged);
}

void save_safetensors_atomic(const fs::path& path, const std::unordered_map<std::string, mx::array>& tensors,
                             const std::unordered_map<std::string, std::string>& metadata) {
  std::random_device rd;
  fs::path tmp = path;
  tmp += fmt::format(".tmp{:x}.safetensors", rd());
  try {
    mx::save_safetensors(tmp.string(), tensors, metadata);
  } catch (const std::exception& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("[save] {}: {}", path.string(), e.what()));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(fmt::format("[save] cannot move {} into place: {}", path.string(), ec.message()));
  }
}

}  // namespace lmlab::io
