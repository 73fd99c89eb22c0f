// GGUF tensor data → MLX arrays. Types whose values are q·scale + bias per run
// of 32 elements map exactly onto MLX affine quantization with group size 32,
// so the model runs on affine kernels without any requantization error:
//   Q4_0: scale d, bias −8d     Q4_1: d, m       Q5_0: d, −16d    Q5_1: d, m
//   Q8_0: q+128, d, −128d       Q4_K/Q5_K: d·sc, −dmin·m per 32-element sub-block
// Scales and biases are float16 when every one of a tensor's is exact in float16
// (the legacy types), else float32 (K-quant products d·sc carry up to 17 bits).
// GGML packs a block's first 16 elements in the low nibbles and the next 16 in
// the high ones; MLX packs element e at bit e·bits of the group's words — hence
// the repacking. Types that are not affine per 32 elements keep their blocks
// (lmlab/ggml.h).
#include <cstring>

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "io/ggml_blocks.h"
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

// One 32-element group of a repacked tensor: MLX field values and their affine map.
struct Group {
  uint8_t q[32];
  float scale, bias;
};

// Decodes the groups of one GGML block (1 for 32-element types, 8 for K-quants).
using GroupDecoder = void (*)(const uint8_t* block, Group* groups);

void nibbles(const uint8_t* qs, uint8_t* q) {
  for (int j = 0; j < 16; ++j) {
    q[j] = qs[j] & 0x0F;
    q[j + 16] = qs[j] >> 4;
  }
}

void fifth_bits(const uint8_t* qh4, uint8_t* q) {
  uint32_t qh;
  std::memcpy(&qh, qh4, 4);
  for (int j = 0; j < 32; ++j) q[j] |= static_cast<uint8_t>(((qh >> j) & 1) << 4);
}

void group_q4_0(const uint8_t* b, Group* g) {
  nibbles(b + 2, g->q);
  g->scale = detail::fp16(b);
  g->bias = -8.0f * g->scale;
}

void group_q4_1(const uint8_t* b, Group* g) {
  nibbles(b + 4, g->q);
  g->scale = detail::fp16(b);
  g->bias = detail::fp16(b + 2);
}

void group_q5_0(const uint8_t* b, Group* g) {
  nibbles(b + 6, g->q);
  fifth_bits(b + 2, g->q);
  g->scale = detail::fp16(b);
  g->bias = -16.0f * g->scale;
}

void group_q5_1(const uint8_t* b, Group* g) {
  nibbles(b + 8, g->q);
  fifth_bits(b + 4, g->q);
  g->scale = detail::fp16(b);
  g->bias = detail::fp16(b + 2);
}

void group_q8_0(const uint8_t* b, Group* g) {
  for (int j = 0; j < 32; ++j) g->q[j] = b[2 + j] ^ 0x80;  // int8 q → q + 128
  g->scale = detail::fp16(b);
  g->bias = -128.0f * g->scale;
}

// Q4_K / Q5_K: sub-block j has scale d·sc_j and bias −dmin·m_j (both exact in float32).
template <bool kFive>
void groups_k(const uint8_t* b, Group* g) {
  const float d = detail::fp16(b), dmin = detail::fp16(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + (kFive ? 48 : 16);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    detail::k4_scale_min(j, b + 4, sc, m);
    g[j].scale = d * static_cast<float>(sc);
    g[j].bias = -(dmin * static_cast<float>(m));
    const uint8_t* qs = ql + 32 * (j / 2);
    const int shift = 4 * (j % 2);
    for (int l = 0; l < 32; ++l) {
      g[j].q[l] = (qs[l] >> shift) & 0x0F;
      if (kFive) g[j].q[l] |= static_cast<uint8_t>(((qh[l] >> j) & 1) << 4);
    }
  }
}

struct AffineType {
  int bits;
  GroupDecoder decode;
  const char* activations;  // llama.cpp's activation rounding for the type (QuantSpec)
};

std::optional<AffineType> affine_type(GgmlType t) {
  switch (t) {
    case GgmlType::Q4_0: return AffineType{4, group_q4_0, "q8_0"};
    case GgmlType::Q4_1: return AffineType{4, group_q4_1, "q8_1"};
    case GgmlType::Q5_0: return AffineType{5, group_q5_0, "q8_0"};
    case GgmlType::Q5_1: return AffineType{5, group_q5_1, "q8_1"};
    case GgmlType::Q8_0: return AffineType{8, group_q8_0, "q8_0"};
    case GgmlType::Q4_K: return AffineType{4, groups_k<false>, ""};
    case GgmlType::Q5_K: return AffineType{5, groups_k<true>, ""};
    default: return std::nullopt;
  }
}

// Whether float16 holds f exactly (or f is inf or NaN), from f's bits: no
// conversion, which took a tenth of a GGUF's load time.
bool exact_in_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t mag = u & 0x7FFFFFFFu;
  if (mag == 0 || mag >= 0x7F800000u) return true;
  const int e = static_cast<int>(mag >> 23) - 127;
  if (e > 15 || e < -24) return false;
  // Normal halves keep 10 of the 23 mantissa bits; subnormal ones (multiples
  // of 2^-24) fewer, one less for each step of the exponent below -14.
  const int dropped = e >= -14 ? 13 : -1 - e;
  return (mag & ((1u << dropped) - 1)) == 0;
}

struct Repacked {
  mx::array w, scales, biases;
};

// rows × cols GGML blocks → MLX affine (bits, group 32): each group's 32 fields
// fill exactly `bits` uint32 words, element e at bit e·bits.
Repacked repack_affine(const uint8_t* src, mx::Shape shape, GgmlType type, const AffineType& a) {
  const GgmlBlock blk = *ggml_block(static_cast<uint32_t>(type));
  const int64_t cols = shape.back();
  int64_t groups = cols / 32;
  for (size_t i = 0; i + 1 < shape.size(); ++i) groups *= shape[i];
  const int64_t per_block = blk.elements / 32;
  mx::Shape params = shape;
  params.back() = static_cast<int>(cols / 32);
  shape.back() = static_cast<int>(cols * a.bits / 32);
  Filled w = new_array(shape, mx::uint32);
  std::vector<float> scales(groups), biases(groups);
  uint32_t* wp = static_cast<uint32_t*>(w.ptr);
  bool f16 = true;
  Group g[8];
  for (int64_t b = 0; b < groups / per_block; ++b) {
    a.decode(src + b * blk.bytes, g);
    for (int j = 0; j < per_block; ++j) {
      const int64_t gi = b * per_block + j;
      scales[gi] = g[j].scale;
      biases[gi] = g[j].bias;
      f16 = f16 && exact_in_f16(g[j].scale) && exact_in_f16(g[j].bias);
      uint32_t* out = wp + gi * a.bits;
      uint64_t acc = 0;
      int filled = 0;
      for (int e = 0; e < 32; ++e) {
        acc |= static_cast<uint64_t>(g[j].q[e]) << filled;
        filled += a.bits;
        if (filled >= 32) {
          *out++ = static_cast<uint32_t>(acc);
          acc >>= 32;
          filled -= 32;
        }
      }
    }
  }
  mx::array s(scales.begin(), params, mx::float32), bi(biases.begin(), params, mx::float32);
  if (f16) s = mx::astype(s, mx::float16), bi = mx::astype(bi, mx::float16);
  mx::eval(s, bi);
  return {w.array, s, bi};
}

// Modes kept as raw blocks, with the nominal bits of their fields.
std::optional<int> block_mode_bits(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return 2;
    case GgmlType::Q3_K: return 3;
    case GgmlType::Q6_K: return 6;
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS: return 4;
    default: return std::nullopt;
  }
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
    auto type = static_cast<GgmlType>(t.type);
    switch (type) {
      case GgmlType::F32: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::float32)); break;
      case GgmlType::F16: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::float16)); break;
      case GgmlType::BF16: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::bfloat16)); break;
      case GgmlType::I32: out.set(t.name, array_from_bytes(src, t.nbytes, shape, mx::int32)); break;
      default: {
        std::string prefix = module_prefix(t.name);
        if (auto a = affine_type(type)) {
          Repacked q = repack_affine(src, shape, type, *a);
          out.set(prefix + ".weight", q.w);
          out.set(prefix + ".scales", q.scales);
          out.set(prefix + ".biases", q.biases);
          // The activation rounding llama.cpp uses with this type (see
          // QuantSpec::activations); load_model keeps it only for --activations q8.
          out.set_quant(prefix, QuantSpec{.bits = a->bits, .group_size = 32, .activations = a->activations});
        } else if (auto bits = block_mode_bits(type)) {
          // (..., rows, K) values as (..., rows, K / block · block bytes) bytes.
          mx::Shape bytes = shape;
          bytes.back() = static_cast<int>(shape.back() / ggml_block(t.type)->elements *
                                          ggml_block(t.type)->bytes);
          out.set(prefix + ".weight", array_from_bytes(src, t.nbytes, bytes, mx::uint8));
          out.set_quant(prefix, QuantSpec{.bits = *bits,
                                          .group_size = ggml_block(t.type)->elements,
                                          .mode = ggml_mode_name(type),
                                          .activations = ""});
        } else {
          throw Unsupported(fmt::format(
              "[gguf] {}: tensor '{}' has type {}, which lmlab cannot load yet (supported: F32, F16, "
              "BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)",
              g.path.string(), t.name, ggml_type_name(t.type)));
        }
      }
    }
  }
  return out;
}

}  // namespace lmlab::io
