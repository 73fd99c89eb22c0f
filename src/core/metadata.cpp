#include <stdexcept>

#include <fmt/format.h>

#include "lmlab/core.h"

namespace lmlab {

namespace {

const char* type_name(const MetaValue& v) {
  static const char* names[] = {"bool", "int", "float", "string",
                                "int array", "float array", "string array"};
  return names[v.index()];
}

[[noreturn]] void mismatch(const std::string& key, const MetaValue& v, const char* want) {
  throw std::invalid_argument(
      fmt::format("[metadata] key '{}' is a {}, expected {}", key, type_name(v), want));
}

}  // namespace

std::optional<int64_t> meta_int(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto* i = std::get_if<int64_t>(&it->second)) return *i;
  if (auto* b = std::get_if<bool>(&it->second)) return *b ? 1 : 0;
  mismatch(key, it->second, "an integer");
}

std::optional<double> meta_float(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto* d = std::get_if<double>(&it->second)) return *d;
  if (auto* i = std::get_if<int64_t>(&it->second)) return static_cast<double>(*i);
  mismatch(key, it->second, "a number");
}

std::optional<bool> meta_bool(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto* b = std::get_if<bool>(&it->second)) return *b;
  if (auto* i = std::get_if<int64_t>(&it->second)) return *i != 0;
  mismatch(key, it->second, "a bool");
}

std::optional<std::string> meta_string(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return std::nullopt;
  if (auto* s = std::get_if<std::string>(&it->second)) return *s;
  mismatch(key, it->second, "a string");
}

const std::vector<std::string>* meta_strings(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  if (auto* s = std::get_if<std::vector<std::string>>(&it->second)) return s;
  mismatch(key, it->second, "a string array");
}

const std::vector<int64_t>* meta_ints(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  if (auto* s = std::get_if<std::vector<int64_t>>(&it->second)) return s;
  mismatch(key, it->second, "an integer array");
}

const std::vector<double>* meta_floats(const Metadata& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) return nullptr;
  if (auto* s = std::get_if<std::vector<double>>(&it->second)) return s;
  mismatch(key, it->second, "a float array");
}

}  // namespace lmlab
