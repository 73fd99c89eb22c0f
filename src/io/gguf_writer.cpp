// GGUF writer (version 3): the reader's format in reverse. Everything is
// checked before the first byte is written, then the file goes to a temp name
// in the same folder and is renamed into place, so a failure leaves nothing.
#include <cstring>
#include <fstream>
#include <random>
#include <set>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace fs = std::filesystem;
namespace mx = mlx::core;

namespace lmlab::io {

namespace {

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::U16: case GgufType::I16:
    case GgufType::U32: case GgufType::I32: case GgufType::U64: case GgufType::I64: return true;
    default: return false;
  }
}
bool is_float(GgufType t) { return t == GgufType::F32 || t == GgufType::F64; }

// Whether the variant alternative can be stored as `t` (integers also checked for range when written).
bool fits(const MetaValue& v, GgufKeyType t) {
  if (t.type == GgufType::Array) {
    if (std::holds_alternative<std::vector<std::string>>(v)) return t.element == GgufType::String;
    if (std::holds_alternative<std::vector<int64_t>>(v)) return is_integer(t.element) || t.element == GgufType::Bool;
    if (std::holds_alternative<std::vector<double>>(v)) return is_float(t.element);
    return false;
  }
  if (std::holds_alternative<bool>(v)) return t.type == GgufType::Bool;
  if (std::holds_alternative<int64_t>(v)) return is_integer(t.type) || t.type == GgufType::Bool;
  if (std::holds_alternative<double>(v)) return is_float(t.type);
  if (std::holds_alternative<std::string>(v)) return t.type == GgufType::String;
  return false;
}

bool in_range(int64_t x, GgufType t) {
  switch (t) {
    case GgufType::U8: return x >= 0 && x <= 0xff;
    case GgufType::I8: return x >= -128 && x <= 127;
    case GgufType::U16: return x >= 0 && x <= 0xffff;
    case GgufType::I16: return x >= -32768 && x <= 32767;
    case GgufType::U32: return x >= 0 && x <= 0xffffffffll;
    case GgufType::I32: return x >= INT32_MIN && x <= INT32_MAX;
    case GgufType::Bool: return x == 0 || x == 1;
    case GgufType::U64: return x >= 0;
    default: return true;
  }
}

// Little-endian bytes of the header, built in memory (it is small; the data is streamed).
class Bytes {
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const char*>(&v);
    s_.append(p, sizeof(T));
  }
  void str(const std::string& v) {
    put<uint64_t>(v.size());
    s_ += v;
  }
  void integer(int64_t x, GgufType t) {
    switch (t) {
      case GgufType::U8: case GgufType::Bool: put<uint8_t>(static_cast<uint8_t>(x)); break;
      case GgufType::I8: put<int8_t>(static_cast<int8_t>(x)); break;
      case GgufType::U16: put<uint16_t>(static_cast<uint16_t>(x)); break;
      case GgufType::I16: put<int16_t>(static_cast<int16_t>(x)); break;
      case GgufType::U32: put<uint32_t>(static_cast<uint32_t>(x)); break;
      case GgufType::I32: put<int32_t>(static_cast<int32_t>(x)); break;
      case GgufType::U64: put<uint64_t>(static_cast<uint64_t>(x)); break;
      default: put<int64_t>(x); break;
    }
  }
  void real(double x, GgufType t) {
    if (t == GgufType::F32) put<float>(static_cast<float>(x));
    else put<double>(x);
  }
  void pad_to(uint64_t align) { s_.append((align - s_.size() % align) % align, '\0'); }
  const std::string& data() const { return s_; }

 private:
  std::string s_;
};

void check_key(const std::string& key, const MetaValue& v, const std::map<std::string, GgufKeyType>& types) {
  auto it = types.find(key);
  if (it == types.end())
    throw std::invalid_argument(fmt::format("[gguf] metadata '{}' has no GGUF type; give one in GgufOut::types", key));
  const GgufKeyType t = it->second;
  if (!fits(v, t))
    throw std::invalid_argument(fmt::format("[gguf] metadata '{}' holds a value that GGUF type {}/{} cannot store",
                                            key, static_cast<int>(t.type), static_cast<int>(t.element)));
  const GgufType it_type = t.type == GgufType::Array ? t.element : t.type;
  auto range = [&](int64_t x) {
    if (!in_range(x, it_type))
      throw std::invalid_argument(fmt::format("[gguf] metadata '{}' value {} is out of range for its type", key, x));
  };
  if (auto* x = std::get_if<int64_t>(&v)) range(*x);
  if (auto* xs = std::get_if<std::vector<int64_t>>(&v))
    for (int64_t x : *xs) range(x);
}

void put_value(Bytes& b, const MetaValue& v, GgufKeyType t) {
  b.put<uint32_t>(static_cast<uint32_t>(t.type));
  if (t.type == GgufType::Array) {
    b.put<uint32_t>(static_cast<uint32_t>(t.element));
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<X, std::vector<std::string>>) {
            b.put<uint64_t>(x.size());
            for (const auto& s : x) b.str(s);
          } else if constexpr (std::is_same_v<X, std::vector<int64_t>>) {
            b.put<uint64_t>(x.size());
            for (int64_t i : x) b.integer(i, t.element);
          } else if constexpr (std::is_same_v<X, std::vector<double>>) {
            b.put<uint64_t>(x.size());
            for (double d : x) b.real(d, t.element);
          }
        },
        v);
    return;
  }
  if (auto* s = std::get_if<std::string>(&v)) b.str(*s);
  else if (auto* x = std::get_if<int64_t>(&v)) b.integer(*x, t.type);
  else if (auto* f = std::get_if<double>(&v)) b.real(*f, t.type);
  else b.integer(std::get<bool>(v) ? 1 : 0, GgufType::Bool);
}

uint64_t tensor_bytes(const GgufTensorOut& t) {
  auto block = ggml_block(static_cast<uint32_t>(t.type));
  if (!block) throw std::invalid_argument(fmt::format("[gguf] tensor '{}' has unknown GGML type {}", t.name,
                                                      static_cast<uint32_t>(t.type)));
  if (t.dims.empty() || t.dims.size() > 4)
    throw std::invalid_argument(fmt::format("[gguf] tensor '{}' has {} dims (1 to 4)", t.name, t.dims.size()));
  int64_t count = 1;
  for (int64_t d : t.dims) {
    if (d <= 0) throw std::invalid_argument(fmt::format("[gguf] tensor '{}' has dim {}", t.name, d));
    count *= d;
  }
  if (t.dims[0] % block->elements != 0)
    throw std::invalid_argument(fmt::format("[gguf] tensor '{}' row length {} is not a multiple of the {} block {}",
                                            t.name, t.dims[0], ggml_type_name(static_cast<uint32_t>(t.type)),
                                            block->elements));
  const uint64_t n = static_cast<uint64_t>(count / block->elements * block->bytes);
  if (t.data.nbytes() != n)
    throw std::invalid_argument(fmt::format("[gguf] tensor '{}' has {} bytes of data; {} {} needs {}", t.name,
                                            t.data.nbytes(), fmt::join(t.dims, "x"),
                                            ggml_type_name(static_cast<uint32_t>(t.type)), n));
  return n;
}

// Header, metadata and tensor infos with their offsets, padded to the alignment.
std::string header(const GgufOut& g, uint64_t align) {
  Bytes b;
  b.put<uint32_t>(0x46554747);  // "GGUF"
  b.put<uint32_t>(3);
  b.put<uint64_t>(g.tensors.size());
  b.put<uint64_t>(g.meta.size());
  for (const auto& [key, v] : g.meta) {
    b.str(key);
    put_value(b, v, g.types.at(key));
  }
  uint64_t offset = 0;
  for (const auto& t : g.tensors) {
    b.str(t.name);
    b.put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) b.put<uint64_t>(static_cast<uint64_t>(d));
    b.put<uint32_t>(static_cast<uint32_t>(t.type));
    b.put<uint64_t>(offset);
    offset += (tensor_bytes(t) + align - 1) / align * align;
  }
  b.pad_to(align);
  return b.data();
}

void write_all(const fs::path& tmp, const GgufOut& g, const std::string& head, uint64_t align) {
  std::ofstream f(tmp, std::ios::binary);
  if (!f) throw std::runtime_error(fmt::format("[gguf] cannot create {}", tmp.string()));
  f.write(head.data(), static_cast<std::streamsize>(head.size()));
  const std::string zeros(align, '\0');
  for (const auto& t : g.tensors) {
    mx::array data = mx::contiguous(t.data);  // row-major bytes
    mx::eval(data);
    const uint64_t n = data.nbytes();
    f.write(data.data<char>(), static_cast<std::streamsize>(n));
    f.write(zeros.data(), static_cast<std::streamsize>((align - n % align) % align));
    if (!f) break;
  }
  f.flush();
  if (!f) throw std::runtime_error(fmt::format("[gguf] failed writing {} (disk full?)", tmp.string()));
}

}  // namespace

void write_gguf(const fs::path& path, const GgufOut& g) {
  for (const auto& [key, v] : g.meta) check_key(key, v, g.types);
  const int64_t align = meta_int(g.meta, "general.alignment").value_or(32);
  if (align <= 0 || align > (1 << 20) || (align & (align - 1)))
    throw std::invalid_argument(fmt::format("[gguf] general.alignment {} is not a power of two", align));
  std::set<std::string> names;
  for (const auto& t : g.tensors)
    if (!names.insert(t.name).second) throw std::invalid_argument(fmt::format("[gguf] tensor '{}' given twice", t.name));
  const std::string head = header(g, static_cast<uint64_t>(align));  // checks every tensor's size

  std::random_device rd;
  fs::path tmp = path;
  tmp += fmt::format(".tmp{:x}", rd());
  try {
    write_all(tmp, g, head, static_cast<uint64_t>(align));
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec)
      throw std::runtime_error(fmt::format("[gguf] cannot move {} into place: {}", path.string(), ec.message()));
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace lmlab::io
