// Run state files: safetensors arrays plus string metadata (floats written as
// their exact hex form, so a resumed run reports the same numbers).
#include "train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <regex>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace fs = std::filesystem;
namespace mx = mlx::core;

namespace lmlab::train {

namespace {

std::string hex(double v) { return fmt::format("{:a}", v); }
double unhex(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

const std::string& meta(const std::unordered_map<std::string, std::string>& m, const std::string& key,
                        const fs::path& file) {
  auto it = m.find(key);
  if (it == m.end())
    throw std::runtime_error(fmt::format("[resume] {}: no '{}' (not a state file of this lmlab)", file.string(), key));
  return it->second;
}

}  // namespace

fs::path checkpoint_adapters(const fs::path& dir, int it) { return dir / fmt::format("{:07d}_adapters.safetensors", it); }
fs::path checkpoint_state(const fs::path& dir, int it) { return dir / fmt::format("{:07d}_state.safetensors", it); }

void save_state(const fs::path& file, const RunState& s) {
  std::string order;
  for (size_t i = 0; i < s.epoch_order.size(); ++i) order += (i ? "," : "") + std::to_string(s.epoch_order[i]);
  std::unordered_map<std::string, std::string> m = {
      {"format", "lmlab-train-state"},
      {"version", "1"},
      {"iteration", std::to_string(s.iteration)},
      {"optimizer_step", std::to_string(s.optimizer_step)},
      {"learning_rate", hex(s.learning_rate)},
      {"rng", s.rng},
      {"epoch_order", order},
      {"epoch_pos", std::to_string(s.epoch_pos)},
      {"losses", hex(s.losses)},
      {"n_tokens", std::to_string(s.n_tokens)},
      {"steps", std::to_string(s.steps)},
      {"train_time", hex(s.train_time)},
      {"trained_tokens", std::to_string(s.trained_tokens)},
      {"train_seconds", hex(s.train_seconds)},
      {"data_fingerprint", std::to_string(s.data_fingerprint)},
      {"config", s.config.dump()},
  };
  auto arrays = s.arrays;
  if (arrays.empty()) arrays.emplace("_", mx::zeros({1}));  // safetensors needs a tensor
  io::save_safetensors_atomic(file, arrays, m);
}

RunState load_state(const fs::path& file) {
  auto [arrays, m] = mx::load_safetensors(file.string());
  if (meta(m, "format", file) != "lmlab-train-state")
    throw std::runtime_error(fmt::format("[resume] {}: not an lmlab state file", file.string()));
  RunState s;
  s.iteration = std::stoi(meta(m, "iteration", file));
  s.optimizer_step = std::stol(meta(m, "optimizer_step", file));
  s.learning_rate = unhex(meta(m, "learning_rate", file));
  s.rng = meta(m, "rng", file);
  for (const auto& part : [&] {
         std::vector<std::string> parts;
         std::string order = meta(m, "epoch_order", file);
         size_t start = 0;
         while (start < order.size()) {
           size_t comma = order.find(',', start);
           if (comma == std::string::npos) comma = order.size();
           parts.push_back(order.substr(start, comma - start));
           start = comma + 1;
         }
         return parts;
       }())
    s.epoch_order.push_back(std::stoi(part));
  s.epoch_pos = std::stoi(meta(m, "epoch_pos", file));
  s.losses = static_cast<float>(unhex(meta(m, "losses", file)));
  s.n_tokens = std::stoll(meta(m, "n_tokens", file));
  s.steps = std::stoi(meta(m, "steps", file));
  s.train_time = unhex(meta(m, "train_time", file));
  s.trained_tokens = std::stoll(meta(m, "trained_tokens", file));
  s.train_seconds = unhex(meta(m, "train_seconds", file));
  s.data_fingerprint = std::stoull(meta(m, "data_fingerprint", file));
  s.config = nlohmann::json::parse(meta(m, "config", file));
  arrays.erase("_");
  s.arrays = std::move(arrays);
  return s;
}

std::optional<int> latest_checkpoint(const fs::path& dir) {
  if (!fs::is_directory(dir)) return std::nullopt;
  static const std::regex re("([0-9]{7})_state\\.safetensors");
  std::vector<int> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, re)) found.push_back(std::stoi(m[1]));
  }
  std::sort(found.rbegin(), found.rend());
  for (int it : found) {
    if (!fs::exists(checkpoint_adapters(dir, it))) continue;
    try {
      (void)mx::load_safetensors(checkpoint_state(dir, it).string());
      (void)mx::load_safetensors(checkpoint_adapters(dir, it).string());
      return it;
    } catch (const std::exception&) {
      // unreadable: fall back to the one before
    }
  }
  return std::nullopt;
}

void remove_stale_temps(const fs::path& dir) {
  if (!fs::is_directory(dir)) return;
  static const std::regex re(".*\\.tmp[0-9a-f]+(\\.safetensors)?");
  for (const auto& e : fs::directory_iterator(dir))
    if (std::regex_match(e.path().filename().string(), re)) {
      std::error_code ec;
      fs::remove(e.path(), ec);
    }
}

}  // namespace lmlab::train
