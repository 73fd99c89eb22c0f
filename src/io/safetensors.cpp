// The safetensors header, checked before MLX reads the file: the 8-byte
// length, the JSON table, every tensor's dtype, shape and byte range against
// the file's size. A truncated download or a corrupt header then fails here
// with one line naming the file and the tensor, before any data is read.
// Format: https://github.com/huggingface/safetensors (little-endian u64 N,
// N bytes of JSON, then the data the offsets point into).
#include <algorithm>
#include <cstring>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/mapped_file.h"
#include "lmlab/io.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace lmlab::io {

namespace {

// Bytes per element of the dtypes MLX loads from safetensors.
const std::map<std::string, int>& dtype_sizes() {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2}, {"I16", 2}, {"F16", 2},  {"BF16", 2},
      {"U32", 4},  {"I32", 4}, {"F32", 4}, {"U64", 8}, {"I64", 8}, {"F64", 8}, {"C64", 8}};
  return sizes;
}

constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // the reference implementation's bound

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(fmt::format("[safetensors] {}: {}; the file may be truncated or corrupt", path.string(),
                                       what));
}

SafetensorsTensor read_entry(const std::string& name, const json& e, uint64_t data_size, const fs::path& path) {
  if (!e.is_object()) fail(path, fmt::format("tensor '{}' is not an object", name));
  SafetensorsTensor t{.name = name};
  auto dtype = e.find("dtype");
  if (dtype == e.end() || !dtype->is_string()) fail(path, fmt::format("tensor '{}' has no dtype", name));
  t.dtype = dtype->get<std::string>();
  auto size = dtype_sizes().find(t.dtype);
  if (size == dtype_sizes().end())
    throw Unsupported(fmt::format("[safetensors] {}: tensor '{}' has dtype {}, which MLX does not load",
                                  path.string(), name, t.dtype));
  auto shape = e.find("shape");
  if (shape == e.end() || !shape->is_array() || shape->size() > 8)
    fail(path, fmt::format("tensor '{}' has no shape (a list of at most 8 sizes)", name));
  uint64_t count = 1;
  for (const json& d : *shape) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 40))
      fail(path, fmt::format("tensor '{}' has a bad size {} in its shape", name, d.dump()));
    t.shape.push_back(static_cast<int64_t>(d.get<uint64_t>()));
    if (t.shape.back() != 0 && count > (uint64_t(1) << 50) / static_cast<uint64_t>(t.shape.back()))
      fail(path, fmt::format("tensor '{}' is implausibly large", name));
    count *= static_cast<uint64_t>(t.shape.back());
  }
  auto offsets = e.find("data_offsets");
  if (offsets == e.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned())
    fail(path, fmt::format("tensor '{}' has no data_offsets [begin, end]", name));
  t.begin = (*offsets)[0].get<uint64_t>();
  t.end = (*offsets)[1].get<uint64_t>();
  if (t.begin > t.end || t.end - t.begin != count * static_cast<uint64_t>(size->second))
    fail(path, fmt::format("tensor '{}' holds bytes {}..{} but its {} shape needs {}", name, t.begin, t.end,
                           t.dtype, count * size->second));
  if (t.end > data_size)
    throw std::runtime_error(fmt::format(
        "[safetensors] {}: tensor '{}' ends at byte {} of the data but the file holds {}; the file is truncated "
        "(incomplete download?)",
        path.string(), name, t.end, data_size));
  return t;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const uint8_t* data, uint64_t size, const fs::path& path) {
  if (size < 8) fail(path, fmt::format("{} bytes is too short for a header", size));
  uint64_t n = 0;
  std::memcpy(&n, data, 8);  // little-endian, as every platform MLX runs on
  if (n > kMaxHeaderBytes || n > size - 8)
    fail(path, fmt::format("the header claims {} bytes but the file has {}", n, size));
  SafetensorsHeader h{.header_bytes = n};
  json j;
  try {
    j = json::parse(reinterpret_cast<const char*>(data) + 8, reinterpret_cast<const char*>(data) + 8 + n);
  } catch (const json::exception& e) {
    fail(path, fmt::format("the header is not JSON ({})", e.what()));
  }
  if (!j.is_object()) fail(path, "the header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  for (const auto& [name, e] : j.items()) {
    if (name == "__metadata__") {
      if (e.is_null()) continue;  // MLX writes null when there is none
      if (!e.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [k, v] : e.items()) {
        if (!v.is_string()) fail(path, fmt::format("__metadata__ value of '{}' is not a string", k));
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    h.tensors.push_back(read_entry(name, e, data_size, path));
  }
  // Byte ranges may not overlap: a tensor's values would be another's.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : h.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(path, fmt::format("tensors '{}' and '{}' overlap", by_offset[i - 1]->name, by_offset[i]->name));
  return h;
}

SafetensorsHeader read_safetensors_header(const fs::path& path) {
  MappedFile mapped(path);
  return parse_safetensors_header(mapped.data(), mapped.size(), path);
}

}  // namespace lmlab::io
