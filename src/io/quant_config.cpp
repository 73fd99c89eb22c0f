// config.json's quantization block (see io.h): MLX-free, so the config
// fuzzer compiles it alone.
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/io.h"

using json = nlohmann::json;

namespace lmlab::io {

namespace {

int integer(const json& q, const char* key, int fallback, const std::string& where) {
  auto it = q.find(key);
  if (it == q.end()) return fallback;
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 4096)
    throw std::invalid_argument(fmt::format("[model] {}: quantization '{}' = {} is not a small integer", where, key,
                                            it->dump()));
  return static_cast<int>(it->get<int64_t>());
}

QuantSpec spec_from(const json& q, const QuantSpec& base, const std::string& where) {
  QuantSpec s = base;
  s.group_size = integer(q, "group_size", base.group_size, where);
  s.bits = integer(q, "bits", base.bits, where);
  if (auto it = q.find("mode"); it != q.end()) {
    if (!it->is_string())
      throw std::invalid_argument(fmt::format("[model] {}: quantization 'mode' = {} is not a string", where,
                                              it->dump()));
    s.mode = it->get<std::string>();
  }
  static const std::set<int> bits = {2, 3, 4, 5, 6, 8};
  static const std::set<int> groups = {16, 32, 64, 128};
  if (!bits.count(s.bits) || !groups.count(s.group_size))
    throw std::invalid_argument(fmt::format("[model] {}: unsupported quantization bits={} group_size={}", where,
                                            s.bits, s.group_size));
  return s;
}

}  // namespace

std::map<std::string, QuantSpec> quantization_from_config(const json& config, const std::vector<std::string>& prefixes,
                                                          const std::string& where) {
  std::map<std::string, QuantSpec> out;
  if (prefixes.empty()) return out;
  const json* q = nullptr;
  if (config.is_object() && config.contains("quantization")) q = &config["quantization"];
  else if (config.is_object() && config.contains("quantization_config")) q = &config["quantization_config"];
  if (!q || !q->is_object())
    throw std::invalid_argument(
        fmt::format("[model] {}: quantized tensors present but there is no \"quantization\" object", where));
  const QuantSpec global = spec_from(*q, QuantSpec{}, where);
  for (const auto& p : prefixes) {
    QuantSpec s = global;
    if (auto it = q->find(p); it != q->end()) {
      if (it->is_boolean() && !it->get<bool>()) continue;
      if (it->is_object()) s = spec_from(*it, global, fmt::format("{} quantization.{}", where, p));
      else if (!it->is_boolean())
        throw std::invalid_argument(fmt::format("[model] {}: quantization.{} must be an object or false", where, p));
    }
    out.emplace(p, s);
  }
  return out;
}

}  // namespace lmlab::io
