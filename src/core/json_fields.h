// Reading option structs from JSON objects (from_json of the library's
// options): unknown keys are refused with a suggestion, and a value of the
// wrong type names its key — one line, std::invalid_argument, never nlohmann's
// own exception text.
#pragma once

#include <initializer_list>
#include <limits>
#include <type_traits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/core.h"

namespace lmlab::json_fields {

// Throws when `j` is not an object or has a key outside `known`.
void check_keys(const nlohmann::json& j, std::initializer_list<std::string_view> known,
                std::string_view where);

// A value as JSON text, cut to a few dozen characters for an error line.
std::string brief(const nlohmann::json& v);

namespace detail {

template <typename T>
constexpr std::string_view expected() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) return "an integer";
  else if constexpr (std::is_integral_v<T>) return "a non-negative integer";
  else if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_same_v<T, std::string>) return "a string";
  else if constexpr (std::is_same_v<T, std::vector<std::string>>) return "a string or a list of strings";
  else return "a list of numbers";
}

// false when v does not hold a T (wrong type, a fraction for an integer, out of range).
template <typename T>
bool convert(const nlohmann::json& v, T& out) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) return false;
    out = v.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_number_integer()) return false;
    if (v.is_number_unsigned()) {
      auto u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(u);
    } else {
      auto i = v.get<int64_t>();
      if (i < static_cast<int64_t>(std::numeric_limits<T>::min())) return false;
      if (i > 0 && static_cast<uint64_t>(i) > static_cast<uint64_t>(std::numeric_limits<T>::max())) return false;
      out = static_cast<T>(i);
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) return false;
    out = v.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) return false;
    out = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
    if (v.is_string()) {  // one string or a list (OpenAI's "stop" takes both)
      out = {v.get<std::string>()};
      return true;
    }
    if (!v.is_array()) return false;
    T values;
    for (const auto& e : v) {
      if (!e.is_string()) return false;
      values.push_back(e.get<std::string>());
    }
    out = std::move(values);
  } else {
    if (!v.is_array()) return false;
    T values;
    for (const auto& e : v) {
      typename T::value_type x{};
      if (!convert(e, x)) return false;
      values.push_back(x);
    }
    out = std::move(values);
  }
  return true;
}

}  // namespace detail

// Sets `out` from j[key] when present; throws naming the key when its value
// does not convert (a string for a number, 1.5 for an integer, -1 for an
// unsigned, an integer past the target's range).
template <typename T>
void read(const nlohmann::json& j, std::string_view key, T& out, std::string_view where) {
  auto it = j.find(std::string(key));
  if (it == j.end()) return;
  if (!detail::convert(*it, out))
    throw std::invalid_argument(fmt::format("[{}] {}: expected {}, got {}", where, key,
                                            detail::expected<T>(), brief(*it)));
}

template <typename T>
void read(const nlohmann::json& j, std::string_view key, std::optional<T>& out, std::string_view where) {
  auto it = j.find(std::string(key));
  if (it == j.end() || it->is_null()) return;
  T v{};
  read(j, key, v, where);
  out = v;
}

}  // namespace lmlab::json_fields
