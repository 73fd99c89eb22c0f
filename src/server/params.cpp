#include "server/params.h"

#include <cmath>

#include <fmt/format.h>

#include "server/errors.h"

namespace lmlab::server::params {

void bad(const std::string& field, const std::string& what) {
  throw ApiError(400, "invalid_request_error", "invalid_value", fmt::format("{}: {}", field, what), field);
}

const ojson* field(const ojson& body, const char* name) {
  if (!body.is_object()) return nullptr;
  auto it = body.find(name);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<double> number(const ojson& body, const char* name, double lo, double hi) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(name, fmt::format("expected a number, got {}", v->type_name()));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) bad(name, fmt::format("{} is outside [{}, {}]", v->dump(), lo, hi));
  return x;
}

std::optional<int64_t> integer(const ojson& body, const char* name, int64_t lo, int64_t hi) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  const bool whole = v->is_number_integer() ||
                     (v->is_number_float() && std::isfinite(v->get<double>()) && std::floor(v->get<double>()) == v->get<double>());
  if (!whole) bad(name, fmt::format("expected an integer, got {}", v->dump().substr(0, 40)));
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    bad(name, fmt::format("{} is outside [{}, {}]", v->dump(), lo, hi));
  const double d = v->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    bad(name, fmt::format("{} is outside [{}, {}]", v->dump(), lo, hi));
  return v->is_number_float() ? static_cast<int64_t>(d) : v->get<int64_t>();
}

std::optional<bool> boolean(const ojson& body, const char* name) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(name, fmt::format("expected true or false, got {}", v->type_name()));
  return v->get<bool>();
}

std::optional<std::string> string(const ojson& body, const char* name) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_string()) bad(name, fmt::format("expected a string, got {}", v->type_name()));
  return v->get<std::string>();
}

std::optional<std::vector<int>> integers(const ojson& body, const char* name, int lo, int hi, size_t max_items) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_array()) bad(name, fmt::format("expected an array of integers, got {}", v->type_name()));
  if (v->size() > max_items) bad(name, fmt::format("{} items (at most {})", v->size(), max_items));
  std::vector<int> out;
  for (const auto& x : *v) {
    if (!x.is_number_integer() || x.get<int64_t>() < lo || x.get<int64_t>() > hi)
      bad(name, fmt::format("every item must be an integer in [{}, {}]", lo, hi));
    out.push_back(x.get<int>());
  }
  return out;
}

std::optional<std::vector<std::string>> strings(const ojson& body, const char* name, size_t max_items) {
  const ojson* v = field(body, name);
  if (!v) return std::nullopt;
  if (!v->is_array()) bad(name, fmt::format("expected an array of strings, got {}", v->type_name()));
  if (v->size() > max_items) bad(name, fmt::format("{} items (at most {})", v->size(), max_items));
  std::vector<std::string> out;
  for (const auto& x : *v) {
    if (!x.is_string()) bad(name, "every item must be a string");
    out.push_back(x.get<std::string>());
  }
  return out;
}

}  // namespace lmlab::server::params
