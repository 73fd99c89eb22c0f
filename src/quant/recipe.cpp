// Quantization recipes: which bits each module gets. mlx-lm's mixed recipes
// are its predicate, rule for rule; the atlas recipe spends a byte budget
// where an atlas measured the model to be sensitive.
#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "lmlab/quant.h"

namespace lmlab::quant {

namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string part; std::getline(in, part, '.');) out.push_back(part);
  return out;
}

bool digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool has(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

}  // namespace

int64_t quantized_bytes(const ModuleShape& s, const QuantChoice& q, int scale_bytes) {
  const int64_t values = s.rows * s.cols;
  return values * q.bits / 8 + 2 * s.rows * (s.cols / q.group_size) * scale_bytes;
}

std::map<std::string, QuantChoice> mixed_recipe(const std::string& recipe, const std::map<std::string, ModuleShape>& modules,
                                                int num_layers, int group_size) {
  int low = 0, high = 6;
  if (recipe == "mixed_2_6") low = 2;
  else if (recipe == "mixed_3_4") low = 3, high = 4;
  else if (recipe == "mixed_3_6") low = 3;
  else if (recipe == "mixed_4_6") low = 4;
  else
    throw std::invalid_argument(fmt::format("[convert] unknown recipe '{}' (uniform, mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6, atlas)", recipe));
  // Where the layer index sits in a module path: the first all-digit part of a down_proj path.
  size_t location = std::string::npos;
  for (const auto& [name, _] : modules)
    if (has(name, "down_proj")) {
      std::vector<std::string> parts = split(name);
      for (size_t i = 0; i < parts.size(); ++i)
        if (digits(parts[i])) {
          location = i;
          break;
        }
      break;
    }
  if (location == std::string::npos)
    throw std::invalid_argument(fmt::format("[convert] {}: the model has no layers.N...down_proj modules to place the high bits", recipe));
  std::map<std::string, QuantChoice> out;
  const int n = num_layers;
  for (const auto& [name, shape] : modules) {
    if (shape.cols % group_size) continue;  // mlx-lm leaves such layers unquantized
    std::vector<std::string> parts = split(name);
    const int index = parts.size() > location && digits(parts[location]) ? std::stoi(parts[location]) : 0;
    const int k = ((index - n / 8) % 3 + 3) % 3;  // Python's modulo
    const bool more = index < n / 8 || index >= 7 * n / 8 || k == 2;
    int bits = low;
    if ((has(name, "v_proj") || has(name, "v_a_proj") || has(name, "v_b_proj")) && more) bits = high;
    else if (has(name, "down_proj") && more) bits = high;
    else if (has(name, "lm_head")) bits = high;
    out[name] = {bits, group_size};
  }
  return out;
}

std::map<std::string, QuantChoice> atlas_recipe(const std::map<std::string, ModuleShape>& modules,
                                                const std::map<std::string, double>& sensitivity_per_mse,
                                                const std::map<std::string, std::map<int, double>>& mse,
                                                const AtlasBudget& budget, int group_size) {
  std::map<std::string, QuantChoice> choice;
  int64_t bytes = budget.fixed_bytes;
  for (const auto& [name, shape] : modules) {
    if (!mse.count(name) || mse.at(name).empty())
      throw std::invalid_argument(fmt::format("[convert] atlas recipe: no quantization error measured for {}", name));
    choice[name] = {mse.at(name).begin()->first, group_size};
    bytes += quantized_bytes(shape, choice[name], budget.scale_bytes);
  }
  const double limit = budget.target_bpw * static_cast<double>(budget.params) / 8;
  if (bytes > limit)
    throw std::invalid_argument(fmt::format(
        "[convert] --target-bpw {}: the smallest choice already takes {:.3f} bits per weight; ask for more",
        budget.target_bpw, bytes * 8.0 / static_cast<double>(budget.params)));
  // Greedy on the best error reduction per byte: with errors that shrink about
  // fourfold per bit, each step is the cheapest way down the trade-off curve.
  for (;;) {
    const std::string* best = nullptr;
    int best_bits = 0;
    double best_ratio = -1;
    int64_t best_cost = 0;
    for (const auto& [name, shape] : modules) {
      const auto& errors = mse.at(name);
      auto next = errors.upper_bound(choice[name].bits);
      if (next == errors.end()) continue;
      const int64_t cost = quantized_bytes(shape, {next->first, group_size}, budget.scale_bytes) -
                           quantized_bytes(shape, choice[name], budget.scale_bytes);
      if (static_cast<double>(bytes + cost) > limit) continue;
      const double s = std::max(sensitivity_per_mse.at(name), 0.0);
      const double ratio = s * (errors.at(choice[name].bits) - next->second) / static_cast<double>(std::max<int64_t>(cost, 1));
      if (ratio > best_ratio) best = &name, best_bits = next->first, best_ratio = ratio, best_cost = cost;
    }
    if (!best) break;
    choice[*best].bits = best_bits;
    bytes += best_cost;
  }
  return choice;
}

}  // namespace lmlab::quant
