// Reading request fields with their types and ranges checked: a wrong one is
// an ApiError 400 that names the field. Absent and null fields read as nullopt.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lmlab::server::params {

using ojson = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& field, const std::string& what);

const ojson* field(const ojson& body, const char* name);
std::optional<double> number(const ojson& body, const char* name, double lo, double hi);
std::optional<int64_t> integer(const ojson& body, const char* name, int64_t lo, int64_t hi);
std::optional<bool> boolean(const ojson& body, const char* name);
std::optional<std::string> string(const ojson& body, const char* name);
// A list of integers, each in [lo, hi], at most max_items long.
std::optional<std::vector<int>> integers(const ojson& body, const char* name, int lo, int hi, size_t max_items);
// A list of strings, at most max_items long.
std::optional<std::vector<std::string>> strings(const ojson& body, const char* name, size_t max_items);

}  // namespace lmlab::server::params
