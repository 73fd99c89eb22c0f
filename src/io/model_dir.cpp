// MLX / Hugging Face model directories: config.json plus one or more
// model*.safetensors files (all shards are globbed and merged, as mlx-lm does;
// the index is not needed to read them). Quantized modules are recognised by
// their `.scales` tensor and take bits/group size from config["quantization"],
// where a per-module entry overrides the global one.
#include <fstream>
#include <random>
#include <set>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace mx = mlx::core;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::io {

namespace {

json read_json_file(const fs::path& p) {
  std::ifstream f(p);
  if (!f) throw std::runtime_error(fmt::format("[model] cannot read {}", p.string()));
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw std::invalid_argument(fmt::format("[model] {}: invalid JSON: {}", p.string(), e.what()));
  }
}

void register_quantized(Weights& w, const json& config, const fs::path& dir) {
  std::vector<std::string> prefixes;
  for (auto& [name, _] : w.items())
    if (name.ends_with(".scales")) prefixes.push_back(name.substr(0, name.size() - 7));
  if (prefixes.empty()) return;
  for (auto& [p, s] : quantization_from_config(config, prefixes, (dir / "config.json").string())) {
    if (!w.contains(p + ".weight"))
      throw std::invalid_argument(
          fmt::format("[model] {}: '{}.scales' has no matching '{}.weight'", dir.string(), p, p));
    if (s.mode == "affine" && !w.contains(p + ".biases"))
      throw std::invalid_argument(
          fmt::format("[model] {}: affine-quantized '{}' has no '.biases'", dir.string(), p));
    w.set_quant(p, s);
  }
}

// config.json's "quantization": the caller's when it describes every quantized
// module exactly (mlx_lm writes one entry per module for a mixed recipe, and
// convert writes what mlx_lm would), else the first module's format with an
// entry for each module that differs.
json quantization_entry(const json& given, const Weights& w) {
  auto describes = [&] {
    if (!given.is_object()) return false;
    for (auto& [key, v] : given.items())
      if ((v.is_object() || v.is_boolean()) && !w.quant(key) && !(v.is_boolean() && !v.get<bool>())) return false;
    std::vector<std::string> prefixes;
    for (auto& [p, _] : w.quantized_modules()) prefixes.push_back(p);
    std::map<std::string, QuantSpec> read;
    try {
      read = quantization_from_config({{"quantization", given}}, prefixes, "quantization");
    } catch (const std::invalid_argument&) {
      return false;
    }
    for (auto& [p, s] : w.quantized_modules())
      if (!read.count(p) || !read.at(p).same_format(s)) return false;
    return true;
  };
  if (describes()) return given;
  json q = json::object();
  const QuantSpec& first = w.quantized_modules().begin()->second;
  q["group_size"] = first.group_size;
  q["bits"] = first.bits;
  q["mode"] = first.mode;
  for (auto& [p, s] : w.quantized_modules())
    if (!s.same_format(first)) q[p] = {{"group_size", s.group_size}, {"bits", s.bits}, {"mode", s.mode}};
  return q;
}

}  // namespace

ModelDir read_model_dir(const fs::path& dir) {
  auto cfg_path = dir / "config.json";
  if (!fs::exists(cfg_path))
    throw std::runtime_error(fmt::format("[model] {}: no config.json", dir.string()));
  ModelDir m;
  m.config = read_json_file(cfg_path);
  if (!m.config.is_object())
    throw std::invalid_argument(fmt::format("[model] {}: not a JSON object", cfg_path.string()));
  if (auto gen = dir / "generation_config.json"; fs::exists(gen)) {
    auto g = read_json_file(gen);
    if (g.contains("eos_token_id")) m.config["eos_token_id"] = g["eos_token_id"];
  }
  std::vector<fs::path> files;
  for (auto& e : fs::directory_iterator(dir)) {
    auto n = e.path().filename().string();
    if (n.starts_with("model") && n.ends_with(".safetensors")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw std::runtime_error(
        fmt::format("[model] {}: no model*.safetensors files", dir.string()));
  for (auto& f : files) {
    read_safetensors_header(f);  // a truncated or corrupt file fails here, with its name
    try {
      auto [arrays, meta] = mx::load_safetensors(f.string());
      std::vector<std::string> names;
      for (auto& [n, _] : arrays) names.push_back(n);
      std::sort(names.begin(), names.end());
      for (auto& n : names) m.weights.set(n, arrays.at(n));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error(fmt::format("[model] {}: {}", f.string(), e.what()));
    } catch (const std::runtime_error& e) {
      throw std::runtime_error(fmt::format("[model] {}: {}", f.string(), e.what()));
    }
  }
  register_quantized(m.weights, m.config, dir);
  return m;
}

namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  f.close();
  if (!f) throw std::runtime_error(fmt::format("[save] cannot write {} (disk full?)", path.string()));
}

}  // namespace

void save_model_dir(const fs::path& dir,
                    const json& config,
                    const Weights& weights,
                    const std::vector<fs::path>& extra_files,
                    const std::map<std::string, std::string>& written_files) {
  if (fs::exists(dir))
    throw std::invalid_argument(
        fmt::format("[save] {} already exists; choose a new directory", dir.string()));
  std::random_device rd;
  fs::path tmp = dir;
  tmp += fmt::format(".tmp{:x}", rd());
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec) throw std::runtime_error(fmt::format("[save] cannot create {}: {}", tmp.string(), ec.message()));
  try {
    json cfg = config;
    if (!weights.quantized_modules().empty()) {
      json q = quantization_entry(cfg.contains("quantization") ? cfg["quantization"] : json(), weights);
      cfg["quantization"] = q;
      cfg["quantization_config"] = q;
    } else {
      cfg.erase("quantization");
      cfg.erase("quantization_config");
    }
    for (auto k : {"lmlab_rope_dims"}) cfg.erase(k);
    std::unordered_map<std::string, mx::array> arrays;
    json weight_map = json::object();
    size_t total = 0, params = 0;  // params as mlx_lm counts them: a quantized weight by its logical size
    for (auto& [n, a] : weights.items()) {
      arrays.emplace(n, a);
      weight_map[n] = "model.safetensors";
      total += a.nbytes();
      const std::string p = n.substr(0, n.rfind('.'));
      if (const QuantSpec* q = weights.quant(p)) params += n == p + ".weight" ? a.size() * 32 / q->bits : 0;
      else params += a.size();
    }
    mx::save_safetensors((tmp / "model.safetensors").string(), arrays, {{"format", "mlx"}});
    json index = {{"metadata", {{"total_size", total}, {"total_parameters", params}}}, {"weight_map", weight_map}};
    write_text(tmp / "model.safetensors.index.json", index.dump(4));
    write_text(tmp / "config.json", cfg.dump(4));
    for (auto& f : extra_files)
      if (fs::exists(f)) fs::copy_file(f, tmp / f.filename());
    for (auto& [name, text] : written_files) write_text(tmp / name, text);
    fs::rename(tmp, dir);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace lmlab::io
