// GGUF reader: a bounds-checked parser of the header, metadata and tensor
// table, and a converter of tensor data into MLX arrays. Written here rather
// than using mlx::core::load_gguf so that truncated files, unknown types and
// BF16 are reported or handled exactly (see mlx-reference.md §2.5).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "io/mapped_file.h"
#include "lmlab/io.h"

namespace fs = std::filesystem;

namespace lmlab::io {

namespace {

enum MetaType : uint32_t {
  kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64
};

// A cursor over the header bytes that throws on any read past the end.
class Reader {
 public:
  Reader(const uint8_t* data, uint64_t size, const fs::path& path) : data_(data), size_(size), path_(path) {}

  template <typename T>
  T get() {
    T v;
    need(sizeof(T));
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    uint64_t n = get<uint64_t>();
    if (n > (1ull << 30)) fail(fmt::format("string length {} is implausible", n));
    need(n);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }
  template <typename T>
  T peek() {
    T v = get<T>();
    pos_ -= sizeof(T);
    return v;
  }
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return size_ - pos_; }
  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error(fmt::format("[gguf] {}: {} (at byte {}); the file may be "
                                         "truncated or corrupt",
                                         path_.string(), what, pos_));
  }

 private:
  void need(uint64_t n) {
    if (n > size_ || pos_ > size_ - n) fail(fmt::format("unexpected end of file reading {} bytes", n));
  }
  const uint8_t* data_;
  uint64_t size_;
  const fs::path& path_;
  uint64_t pos_ = 0;
};

double read_scalar_float(Reader& r, uint32_t t) {
  return t == kF32 ? r.get<float>() : r.get<double>();
}

int64_t read_scalar_int(Reader& r, uint32_t t) {
  switch (t) {
    case kU8: return r.get<uint8_t>();
    case kI8: return r.get<int8_t>();
    case kU16: return r.get<uint16_t>();
    case kI16: return r.get<int16_t>();
    case kU32: return r.get<uint32_t>();
    case kI32: return r.get<int32_t>();
    case kU64: return static_cast<int64_t>(r.get<uint64_t>());
    case kI64: return r.get<int64_t>();
    case kBool: return r.get<uint8_t>() != 0;
  }
  r.fail(fmt::format("bad integer type {}", t));
}

bool is_int_type(uint32_t t) {
  return t == kU8 || t == kI8 || t == kU16 || t == kI16 || t == kU32 || t == kI32 ||
         t == kU64 || t == kI64 || t == kBool;
}

MetaValue read_value(Reader& r, uint32_t t, const std::string& key) {
  if (t == kBool) return r.get<uint8_t>() != 0;
  if (is_int_type(t)) return read_scalar_int(r, t);
  if (t == kF32 || t == kF64) return read_scalar_float(r, t);
  if (t == kString) return r.str();
  if (t != kArray) r.fail(fmt::format("metadata '{}' has unknown type {}", key, t));
  uint32_t et = r.get<uint32_t>();
  uint64_t n = r.get<uint64_t>();
  // Every element takes at least a byte (a string at least its 8-byte length),
  // so a length the rest of the file cannot hold is refused before allocating.
  const uint64_t min_bytes = et == kString ? 8 : et == kU8 || et == kI8 || et == kBool ? 1
                             : et == kU16 || et == kI16                         ? 2
                             : et == kU64 || et == kI64 || et == kF64           ? 8
                                                                                : 4;
  if (n > r.left() / min_bytes)
    r.fail(fmt::format("metadata '{}' array of {} elements does not fit in the file", key, n));
  if (et == kString) {
    std::vector<std::string> v;
    v.reserve(n);
    for (uint64_t i = 0; i < n; ++i) v.push_back(r.str());
    return v;
  }
  if (is_int_type(et)) {
    std::vector<int64_t> v(n);
    for (auto& x : v) x = read_scalar_int(r, et);
    return v;
  }
  if (et == kF32 || et == kF64) {
    std::vector<double> v(n);
    for (auto& x : v) x = read_scalar_float(r, et);
    return v;
  }
  r.fail(fmt::format("metadata '{}' has arrays of unsupported type {}", key, et));
}

}  // namespace

GgufFile parse_gguf(const uint8_t* data, uint64_t size, const fs::path& path) {
  Reader r(data, size, path);
  GgufFile g;
  g.path = path;
  g.file_size = size;
  if (size < 4 || std::memcmp(data, "GGUF", 4) != 0) r.fail("not a GGUF file (bad magic)");
  r.get<uint32_t>();
  g.version = r.get<uint32_t>();
  if (g.version < 2 || g.version > 3) r.fail(fmt::format("unsupported GGUF version {}", g.version));
  uint64_t n_tensors = r.get<uint64_t>();
  uint64_t n_kv = r.get<uint64_t>();
  if (n_tensors > (1u << 24) || n_kv > (1u << 24)) r.fail("implausible tensor or key count");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.str();
    uint32_t t = r.get<uint32_t>();
    GgufKeyType kt{static_cast<GgufType>(t)};
    if (t == kArray) kt.element = static_cast<GgufType>(r.peek<uint32_t>());
    g.meta[key] = read_value(r, t, key);
    g.meta_types[key] = kt;
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.str();
    uint32_t nd = r.get<uint32_t>();
    if (nd == 0 || nd > 4) r.fail(fmt::format("tensor '{}' has {} dims", t.name, nd));
    int64_t count = 1;
    for (uint32_t d = 0; d < nd; ++d) {
      auto dim = static_cast<int64_t>(r.get<uint64_t>());
      if (dim <= 0 || dim > (1ll << 31)) r.fail(fmt::format("tensor '{}' has bad dim {}", t.name, dim));
      t.dims.push_back(dim);
      count *= dim;
      if (count > (1ll << 40)) r.fail(fmt::format("tensor '{}' is implausibly large", t.name));
    }
    t.type = r.get<uint32_t>();
    t.offset = r.get<uint64_t>();
    if (auto bi = ggml_block(t.type)) {
      if (t.dims[0] % bi->elements != 0)
        r.fail(fmt::format("tensor '{}' row length {} is not a multiple of the {} block {}",
                           t.name, t.dims[0], ggml_type_name(t.type), bi->elements));
      t.nbytes = static_cast<uint64_t>(count / bi->elements * bi->bytes);
    }
    g.tensors.push_back(std::move(t));
  }
  const int64_t align = meta_int(g.meta, "general.alignment").value_or(32);
  if (align <= 0 || align > (1 << 20) || (align & (align - 1))) r.fail(fmt::format("bad alignment {}", align));
  g.data_offset = (r.pos() + align - 1) / align * align;
  for (auto& t : g.tensors) {
    if (t.nbytes == 0) continue;  // unknown type: reported when read
    // Offsets come from the file: compared without sums that could wrap around.
    const uint64_t room = g.data_offset <= size ? size - g.data_offset : 0;
    if (t.offset > room || t.nbytes > room - t.offset)
      throw std::runtime_error(fmt::format(
          "[gguf] {}: tensor '{}' ends past the end of the file ({} + {} bytes of data, the file has {} after "
          "the header); the file is truncated (incomplete download?) or corrupt",
          path.string(), t.name, t.offset, t.nbytes, room));
  }
  return g;
}

GgufFile read_gguf(const fs::path& path) {
  MappedFile mapped(path);
  return parse_gguf(mapped.data(), mapped.size(), path);
}

}  // namespace lmlab::io
