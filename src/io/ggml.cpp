// GGML block formats: sizes, names and the exact scalar dequantizers (the
// reference for lmlab's kernels and its repacking; tested against the gguf
// package). Each decoder follows ggml-quants.c's dequantize_row_* statement by
// statement: products such as d·sc are formed first in float32 (exact, their
// operands are short), then multiplied by the quant, as ggml does.
#include "lmlab/ggml.h"

#include <cstring>
#include <map>

#include <fmt/format.h>

#include "io/ggml_blocks.h"
#include "lmlab/core.h"

namespace lmlab::io {

const int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

namespace {

using detail::fp16;
using detail::k4_scale_min;
using detail::q3_k_scales;

constexpr int kQK = 256;  // elements of a K-quant super-block

float bf16(const uint8_t* p) {
  uint32_t bits = static_cast<uint32_t>(p[0] | (p[1] << 8)) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void q4_0(const uint8_t* b, float* y) {
  const float d = fp16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>((b[2 + j] & 0x0F) - 8) * d;
    y[j + 16] = static_cast<float>((b[2 + j] >> 4) - 8) * d;
  }
}

void q4_1(const uint8_t* b, float* y) {
  const float d = fp16(b), m = fp16(b + 2);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
    y[j + 16] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

// Q5_0 / Q5_1: low nibbles as Q4, the fifth bits in a little-endian uint32.
void q5(const uint8_t* b, float* y, bool has_min) {
  const float d = fp16(b), m = has_min ? fp16(b + 2) : 0.0f;
  const uint8_t* p = b + (has_min ? 4 : 2);
  uint32_t qh;
  std::memcpy(&qh, p, 4);
  const uint8_t* qs = p + 4;
  for (int j = 0; j < 16; ++j) {
    const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
    const int x0 = (qs[j] & 0x0F) | h0, x1 = (qs[j] >> 4) | h1;
    if (has_min) {
      y[j] = static_cast<float>(x0) * d + m;
      y[j + 16] = static_cast<float>(x1) * d + m;
    } else {
      y[j] = static_cast<float>(x0 - 16) * d;
      y[j + 16] = static_cast<float>(x1 - 16) * d;
    }
  }
}

void q8_0(const uint8_t* b, float* y) {
  const float d = fp16(b);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

void q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  const float d = fp16(b + 80), dmin = fp16(b + 82);
  int is = 0;
  for (int n = 0; n < kQK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const uint8_t sc = scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l)
          *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

void q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  int8_t scales[16];
  q3_k_scales(b + 96, scales);
  const float d_all = fp16(b + 108);
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < kQK; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        const float dl = d_all * static_cast<float>(scales[is++] - 32);
        for (int l = 16 * half; l < 16 * half + 16; ++l) {
          const int v = ((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
      m <<= 1;
    }
    q += 32;
  }
}

// Q4_K and Q5_K (five): eight 32-element sub-blocks, d·sc·q − dmin·m.
void q45_k(const uint8_t* b, float* y, bool five) {
  const float d = fp16(b), dmin = fp16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + (five ? 48 : 16);
  uint8_t u1 = 1, u2 = 2;
  for (int is = 0; is < 8; is += 2) {
    uint8_t sc, m;
    k4_scale_min(is, scales, sc, m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    k4_scale_min(is + 1, scales, sc, m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      const int h = five && (qh[l] & u1) ? 16 : 0;
      *y++ = d1 * static_cast<float>((ql[l] & 0xF) + h) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      const int h = five && (qh[l] & u2) ? 16 : 0;
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + h) - m2;
    }
    ql += 32;
    u1 <<= 2;
    u2 <<= 2;
  }
}

void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = fp16(b + 208);
  for (int n = 0; n < kQK; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

void iq4_nl(const uint8_t* b, float* y) {
  const float d = fp16(b);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(kIq4Values[b[2 + j] & 0xF]);
    y[j + 16] = d * static_cast<float>(kIq4Values[b[2 + j] >> 4]);
  }
}

void iq4_xs(const uint8_t* b, float* y) {
  const float d = fp16(b);
  const uint16_t scales_h = static_cast<uint16_t>(b[2] | (b[3] << 8));
  const uint8_t* scales_l = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((scales_l[ib / 2] >> 4 * (ib % 2)) & 0xF) | (((scales_h >> 2 * ib) & 3) << 4);
    const float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * static_cast<float>(kIq4Values[qs[j] & 0xF]);
      y[j + 16] = dl * static_cast<float>(kIq4Values[qs[j] >> 4]);
    }
    y += 32;
    qs += 16;
  }
}

// MXFP4: an E8M0 exponent and 32 E2M1 codes, stored by ggml as doubled integers
// times half the scale (GGML_E8M0_TO_FP32_HALF).
void mxfp4(const uint8_t* b, float* y) {
  static const int8_t kValues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  const uint32_t e = b[0];
  const uint32_t bits = e < 2 ? (0x00200000u << e) : ((e - 1) << 23);
  float d;
  std::memcpy(&d, &bits, 4);
  for (int j = 0; j < 16; ++j) {
    y[j] = static_cast<float>(kValues[b[1 + j] & 0xF]) * d;
    y[j + 16] = static_cast<float>(kValues[b[1 + j] >> 4]) * d;
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder decoder(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_0: return q4_0;
    case GgmlType::Q4_1: return q4_1;
    case GgmlType::Q5_0: return [](const uint8_t* b, float* y) { q5(b, y, false); };
    case GgmlType::Q5_1: return [](const uint8_t* b, float* y) { q5(b, y, true); };
    case GgmlType::Q8_0: return q8_0;
    case GgmlType::Q2_K: return q2_k;
    case GgmlType::Q3_K: return q3_k;
    case GgmlType::Q4_K: return [](const uint8_t* b, float* y) { q45_k(b, y, false); };
    case GgmlType::Q5_K: return [](const uint8_t* b, float* y) { q45_k(b, y, true); };
    case GgmlType::Q6_K: return q6_k;
    case GgmlType::IQ4_NL: return iq4_nl;
    case GgmlType::IQ4_XS: return iq4_xs;
    case GgmlType::MXFP4: return mxfp4;
    case GgmlType::F32: return [](const uint8_t* b, float* y) { std::memcpy(y, b, 4); };
    case GgmlType::F16: return [](const uint8_t* b, float* y) { *y = fp16(b); };
    case GgmlType::BF16: return [](const uint8_t* b, float* y) { *y = bf16(b); };
    default: return nullptr;
  }
}

const std::map<uint32_t, std::pair<const char*, GgmlBlock>>& type_table() {
  static const std::map<uint32_t, std::pair<const char*, GgmlBlock>> table = {
      {0, {"F32", {1, 4}}},        {1, {"F16", {1, 2}}},         {2, {"Q4_0", {32, 18}}},
      {3, {"Q4_1", {32, 20}}},     {6, {"Q5_0", {32, 22}}},      {7, {"Q5_1", {32, 24}}},
      {8, {"Q8_0", {32, 34}}},     {9, {"Q8_1", {32, 36}}},      {10, {"Q2_K", {256, 84}}},
      {11, {"Q3_K", {256, 110}}},  {12, {"Q4_K", {256, 144}}},   {13, {"Q5_K", {256, 176}}},
      {14, {"Q6_K", {256, 210}}},  {15, {"Q8_K", {256, 292}}},   {16, {"IQ2_XXS", {256, 66}}},
      {17, {"IQ2_XS", {256, 74}}}, {18, {"IQ3_XXS", {256, 98}}}, {19, {"IQ1_S", {256, 50}}},
      {20, {"IQ4_NL", {32, 18}}},  {21, {"IQ3_S", {256, 110}}},  {22, {"IQ2_S", {256, 82}}},
      {23, {"IQ4_XS", {256, 136}}}, {24, {"I8", {1, 1}}},        {25, {"I16", {1, 2}}},
      {26, {"I32", {1, 4}}},       {27, {"I64", {1, 8}}},        {28, {"F64", {1, 8}}},
      {29, {"IQ1_M", {256, 56}}},  {30, {"BF16", {1, 2}}},       {34, {"TQ1_0", {256, 54}}},
      {35, {"TQ2_0", {256, 66}}},  {39, {"MXFP4", {32, 17}}}};
  return table;
}

const GgmlType kBlockModes[] = {GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q6_K, GgmlType::IQ4_NL,
                                GgmlType::IQ4_XS};

}  // namespace

std::string ggml_type_name(uint32_t type) {
  auto it = type_table().find(type);
  return it == type_table().end() ? fmt::format("type{}", type) : it->second.first;
}

std::optional<GgmlBlock> ggml_block(uint32_t type) {
  auto it = type_table().find(type);
  if (it == type_table().end()) return std::nullopt;
  return it->second.second;
}

std::string ggml_mode_name(GgmlType type) {
  std::string s = ggml_type_name(static_cast<uint32_t>(type));
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_ggml_mode(const std::string& mode) {
  for (GgmlType t : kBlockModes)
    if (ggml_mode_name(t) == mode) return true;
  return false;
}

GgmlType ggml_mode_type(const std::string& mode) {
  for (GgmlType t : kBlockModes)
    if (ggml_mode_name(t) == mode) return t;
  throw std::invalid_argument(fmt::format(
      "[ggml] '{}' is not a ggml block mode (q2_k, q3_k, q6_k, iq4_nl, iq4_xs)", mode));
}

void ggml_dequantize_row(GgmlType type, const uint8_t* blocks, float* out, int64_t n) {
  const BlockDecoder decode = decoder(type);
  const auto block = ggml_block(static_cast<uint32_t>(type));
  if (!decode || !block)
    throw Unsupported(fmt::format("[ggml] cannot dequantize type {}",
                                  ggml_type_name(static_cast<uint32_t>(type))));
  if (n % block->elements != 0)
    throw std::invalid_argument(fmt::format("[ggml] {} values are not whole {} blocks of {}", n,
                                            ggml_type_name(static_cast<uint32_t>(type)),
                                            block->elements));
  for (int64_t i = 0; i < n / block->elements; ++i)
    decode(blocks + i * block->bytes, out + i * block->elements);
}

}  // namespace lmlab::io
