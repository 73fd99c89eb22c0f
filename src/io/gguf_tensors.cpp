// GGUF tensor data → MLX arrays. Q4_0, Q4_1 and Q8_0 blocks map exactly onto
// MLX affine quantization with group size 32 (value = q·scale + bias), so the
// model runs on MLX's quantized kernels without any requantization error:
//   Q4_0: scale d, bias -8d      Q4_1: scale d, bias m      Q8_0: q+128, scale d, bias -128d
// GGML packs a 4-bit block as byte j = (element j | element j+16 << 4); MLX
// packs element e at bits 4·(e%8) of uint32 word e/8 — hence the repacking.
#include <cstring>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "io/mapped_file.h"
#include "lmlab/io.h"

namespace mx = mlx::core;

namespace lmlab::io {

namespace {

mx::array array_from_bytes(const void* src, size_t nbytes, mx::Shape shape, mx::Dtype dt) {
  auto data = mx::allocator::malloc(nbytes);
  std::memcpy(data.buffer().raw_ptr(), src, nbytes);
  return mx::array(std::move(data), std::move(shape), dt);
}

// An uninitialised array whose bytes the caller fills.
struct Filled {
  mx::array array;
  void* ptr;
};
Filled new_array(mx::Shape shape, mx::Dtype dt) {
  size_t n = dt.size();
  for (auto d : shape) n *= static_cast<size_t>(d);
  auto data = mx::allocator::malloc(n);
  void* p = data.buffer().raw_ptr();
  return {mx::array(std::move(data), std::move(shape), dt), p};
}

struct Quantized {
  mx::array w, scales, biases;
};

// Output buffers of one repacked tensor: rows × cols at `bits`, group 32.
struct QuantBuffers {
  Filled w, s, b;
  uint32_t* words() const { return static_cast<uint32_t*>(w.ptr); }
  mx::float16_t* scales() const { return static_cast<mx::float16_t*>(s.ptr); }
  mx::float16_t* biases() const { return static_cast<mx::float16_t*>(b.ptr); }
};
QuantBuffers new_quantized(int64_t rows, int64_t cols, int bits) {
  const int r = static_cast<int>(rows);
  return {new_array({r, static_cast<int>(cols * bits / 32)}, mx::uint32),
          new_array({r, static_cast<int>(cols / 32)}, mx::float16),
          new_array({r, static_cast<int>(cols / 32)}, mx::float16)};
}

Quantized repack_q4(const uint8_t* src, int64_t rows, int64_t cols, bool has_min) {
  const int64_t blocks = cols / 32;
  const int64_t block_bytes = has_min ? 20 : 18;
  QuantBuffers out = new_quantized(rows, cols, 4);
  uint32_t* wp = out.words();
  mx::float16_t *sp = out.scales(), *bp = out.biases();
  for (int64_t blk = 0; blk < rows * blocks; ++blk) {
    const uint8_t* p = src + blk * block_bytes;
    mx::float16_t d, m;
    std::memcpy(&d, p, 2);
    if (has_min) std::memcpy(&m, p + 2, 2);
    const uint8_t* qs = p + (has_min ? 4 : 2);
    sp[blk] = d;
    bp[blk] = has_min ? m : mx::float16_t(-8.0f * static_cast<float>(d));
    uint8_t q[32];
    for (int j = 0; j < 16; ++j) {
      q[j] = qs[j] & 0x0F;
      q[j + 16] = qs[j] >> 4;
    }
    for (int word = 0; word < 4; ++word) {
      uint32_t v = 0;
      for (int e = 0; e < 8; ++e) v |= static_cast<uint32_t>(q[word * 8 + e]) << (4 * e);
      wp[blk * 4 + word] = v;
    }
  }
  return {out.w.array, out.s.array, out.b.array};
}

Quantized repack_q8(const uint8_t* src, int64_t rows, int64_t cols) {
  const int64_t blocks = cols / 32;
  QuantBuffers out = new_quantized(rows, cols, 8);
  uint32_t* wp = out.words();
  mx::float16_t *sp = out.scales(), *bp = out.biases();
  for (int64_t blk = 0; blk < rows * blocks; ++blk) {
    const uint8_t* p = src + blk * 34;
    mx::float16_t d;
    std::memcpy(&d, p, 2);
    sp[blk] = d;
    bp[blk] = mx::float16_t(-128.0f * static_cast<float>(d));
    for (int word = 0; word < 8; ++word) {
      uint32_t v = 0;
      for (int e = 0; e < 4; ++e)
        v |= static_cast<uint32_t>(static_cast<uint8_t>(p[2 + word * 4 + e] ^ 0x80)) << (8 * e);
      wp[blk * 8 + word] = v;
    }
  }
  return {out.w.array, out.s.array, out.b.array};
}

std::string module_prefix(const std::string& name) {
  const std::string suffix = ".weight";
  if (name.size() > suffix.size() && name.ends_with(suffix))
    return name.substr(0, name.size() - suffix.size());
  return name;
}

}  // namespace

Weights read_gguf_tensors(const GgufFile& g) {
  MappedFile f(g.path);
  if (f.size() != g.file_size)
    throw std::runtime_error(fmt::format("[gguf] {}: file changed while loading", g.path.string()));
  Weights out;
  for (const auto& t : g.tensors) {
    const uint8_t* src = f.data() + g.data_offset + t.offset;
    mx::Shape shape(t.dims.rbegin(), t.dims.rend());
    const int64_t cols = t.dims[0];
    const int64_t rows = t.nbytes ? static_cast<int64_t>(
        [&] { int64_t n = 1; for (size_t i = 1; i < t.dims.size(); ++i) n *= t.dims[i]; return n; }())
        : 0;
    auto type = static_cast<GgmlType>(t.type);
    switch (type) {
      case GgmlType::F32: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::float32)); break;
      case GgmlType::F16: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::float16)); break;
      case GgmlType::BF16: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::bfloat16)); break;
      case GgmlType::I32: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::int32)); break;
      case GgmlType::Q4_0:
      case GgmlType::Q4_1:
      case GgmlType::Q8_0: {
        if (t.dims.size() > 2)
          throw Unsupported(fmt::format("[gguf] {}: quantized tensor '{}' has {} dims; only 2-D is supported",
                                        g.path.string(), t.name, t.dims.size()));
        Quantized q = type == GgmlType::Q8_0 ? repack_q8(src, rows, cols)
                                             : repack_q4(src, rows, cols, type == GgmlType::Q4_1);
        auto prefix = module_prefix(t.name);
        out.set(prefix + ".weight", q.w);
        out.set(prefix + ".scales", q.scales);
        out.set(prefix + ".biases", q.biases);
        // The activation rounding llama.cpp uses with these types (see
        // QuantSpec::activations); load_model keeps it only for --activations q8.
        out.set_quant(prefix, QuantSpec{.bits = type == GgmlType::Q8_0 ? 8 : 4,
                                        .group_size = 32,
                                        .activations = type == GgmlType::Q4_1 ? "q8_1" : "q8_0"});
        break;
      }
      default:
        throw Unsupported(fmt::format(
            "[gguf] {}: tensor '{}' has type {}, which lmlab cannot load yet (supported: F32, F16, "
            "BF16, Q4_0, Q4_1, Q8_0)",
            g.path.string(), t.name, ggml_type_name(t.type)));
    }
  }
  return out;
}

}  // namespace lmlab::io
