// The fields of one raw GGML block, unpacked for `lmlab weights` and written
// back for `lmlab surgery` (lmlab/ggml.h). Byte layouts from ggml-common.h:
//   q2_k   scales[16] (min << 4 | scale), qs[64], d, dmin            84 bytes
//   q3_k   hmask[32], qs[64], scales[12] (6-bit), d                 110 bytes
//   q6_k   ql[128], qh[64], scales[16] (int8), d                    210 bytes
//   iq4_nl d, qs[16]                                                 18 bytes
//   iq4_xs d, scales_h (uint16), scales_l[4], qs[128]               136 bytes
// Element e = 128h + 32s + l of a 256-element block reads byte 32h + l of the
// 2-bit planes at bit 2s (q2_k, q3_k), and bit 4h + s of q3_k's hmask[l].
#include <cstring>

#include <fmt/format.h>
#include <mlx/types/half_types.h>

#include "io/ggml_blocks.h"
#include "lmlab/ggml.h"

namespace lmlab::io {

namespace {

void put_half(uint8_t* p, float f) {
  mlx::core::float16_t h(f);
  std::memcpy(p, &h, 2);
}

void check(const std::vector<int>& v, size_t n, int lo, int hi, const char* what, GgmlType t) {
  if (v.size() != n)
    throw std::invalid_argument(fmt::format("[ggml] {} block: {} {} given, {} expected",
                                            ggml_type_name(static_cast<uint32_t>(t)), v.size(), what, n));
  for (int x : v)
    if (x < lo || x > hi)
      throw std::invalid_argument(fmt::format("[ggml] {} block: {} value {} outside [{}, {}]",
                                              ggml_type_name(static_cast<uint32_t>(t)), what, x, lo, hi));
}

// Q3_K and IQ4_XS keep their 6-bit scales as a low nibble and two high bits.
int q3_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

void set_q3_scale(uint8_t* s, int j, int v) {
  if (j < 8) s[j] |= static_cast<uint8_t>(v & 0xF);
  else s[j - 8] |= static_cast<uint8_t>((v & 0xF) << 4);
  s[8 + j % 4] |= static_cast<uint8_t>(((v >> 4) & 3) << (2 * (j / 4)));
}

GgmlBlockFields unpack(GgmlType t, const uint8_t* b) {
  GgmlBlockFields f;
  switch (t) {
    case GgmlType::Q2_K:
      f.d = detail::fp16(b + 80), f.dmin = detail::fp16(b + 82), f.sub_block = 16;
      for (int j = 0; j < 16; ++j) f.scales.push_back(b[j] & 0xF), f.mins.push_back(b[j] >> 4);
      for (int e = 0; e < 256; ++e) f.q.push_back((b[16 + 32 * (e / 128) + e % 32] >> (2 * (e / 32 % 4))) & 3);
      break;
    case GgmlType::Q3_K:
      f.d = detail::fp16(b + 108), f.sub_block = 16;
      for (int j = 0; j < 16; ++j) f.scales.push_back(q3_scale(b + 96, j));
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = e / 32 % 4, l = e % 32;
        f.q.push_back(((b[32 + 32 * h + l] >> (2 * s)) & 3) | (((b[l] >> (4 * h + s)) & 1) << 2));
      }
      break;
    case GgmlType::Q6_K:
      f.d = detail::fp16(b + 208), f.sub_block = 16;
      for (int j = 0; j < 16; ++j) f.scales.push_back(static_cast<int8_t>(b[192 + j]));
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = e / 32 % 4, l = e % 32;
        const int lo = (b[64 * h + 32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
        f.q.push_back(lo | (((b[128 + 32 * h + l] >> (2 * k)) & 3) << 4));
      }
      break;
    case GgmlType::IQ4_NL:
      f.d = detail::fp16(b), f.sub_block = 32;
      for (int e = 0; e < 32; ++e) f.q.push_back(e < 16 ? b[2 + e] & 0xF : b[2 + e - 16] >> 4);
      break;
    case GgmlType::IQ4_XS: {
      f.d = detail::fp16(b), f.sub_block = 32;
      const int sh = b[2] | (b[3] << 8);
      for (int ib = 0; ib < 8; ++ib)
        f.scales.push_back(((b[4 + ib / 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4));
      for (int e = 0; e < 256; ++e) {
        const int ib = e / 32, j = e % 32;
        f.q.push_back(j < 16 ? b[8 + 16 * ib + j] & 0xF : b[8 + 16 * ib + j - 16] >> 4);
      }
      break;
    }
    default:
      throw std::invalid_argument(fmt::format("[ggml] {} is not a raw-block type",
                                              ggml_type_name(static_cast<uint32_t>(t))));
  }
  return f;
}

}  // namespace

int ggml_field_bits(GgmlType t) {
  switch (t) {
    case GgmlType::Q2_K: return 2;
    case GgmlType::Q3_K: return 3;
    case GgmlType::Q6_K: return 6;
    case GgmlType::IQ4_NL:
    case GgmlType::IQ4_XS: return 4;
    default:
      throw std::invalid_argument(fmt::format("[ggml] {} is not a raw-block type",
                                              ggml_type_name(static_cast<uint32_t>(t))));
  }
}

GgmlBlockFields ggml_unpack_block(GgmlType type, const uint8_t* block) { return unpack(type, block); }

void ggml_pack_block(GgmlType t, const GgmlBlockFields& f, uint8_t* b) {
  const int n = ggml_block(static_cast<uint32_t>(t))->elements;
  check(f.q, n, 0, (1 << ggml_field_bits(t)) - 1, "fields", t);
  std::memset(b, 0, ggml_block(static_cast<uint32_t>(t))->bytes);
  switch (t) {
    case GgmlType::Q2_K:
      check(f.scales, 16, 0, 15, "scales", t), check(f.mins, 16, 0, 15, "mins", t);
      for (int j = 0; j < 16; ++j) b[j] = static_cast<uint8_t>(f.scales[j] | (f.mins[j] << 4));
      for (int e = 0; e < 256; ++e) b[16 + 32 * (e / 128) + e % 32] |= static_cast<uint8_t>(f.q[e] << (2 * (e / 32 % 4)));
      put_half(b + 80, f.d), put_half(b + 82, f.dmin);
      break;
    case GgmlType::Q3_K:
      check(f.scales, 16, 0, 63, "scales", t);
      for (int j = 0; j < 16; ++j) set_q3_scale(b + 96, j, f.scales[j]);
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, s = e / 32 % 4, l = e % 32;
        b[32 + 32 * h + l] |= static_cast<uint8_t>((f.q[e] & 3) << (2 * s));
        b[l] |= static_cast<uint8_t>((f.q[e] >> 2) << (4 * h + s));
      }
      put_half(b + 108, f.d);
      break;
    case GgmlType::Q6_K:
      check(f.scales, 16, -128, 127, "scales", t);
      for (int j = 0; j < 16; ++j) b[192 + j] = static_cast<uint8_t>(static_cast<int8_t>(f.scales[j]));
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = e / 32 % 4, l = e % 32;
        b[64 * h + 32 * (k % 2) + l] |= static_cast<uint8_t>((f.q[e] & 0xF) << (4 * (k / 2)));
        b[128 + 32 * h + l] |= static_cast<uint8_t>((f.q[e] >> 4) << (2 * k));
      }
      put_half(b + 208, f.d);
      break;
    case GgmlType::IQ4_NL:
      for (int e = 0; e < 32; ++e) b[2 + e % 16] |= static_cast<uint8_t>(f.q[e] << (e < 16 ? 0 : 4));
      put_half(b, f.d);
      break;
    case GgmlType::IQ4_XS: {
      check(f.scales, 8, 0, 63, "scales", t);
      int sh = 0;
      for (int ib = 0; ib < 8; ++ib) {
        b[4 + ib / 2] |= static_cast<uint8_t>((f.scales[ib] & 0xF) << (4 * (ib % 2)));
        sh |= (f.scales[ib] >> 4) << (2 * ib);
      }
      b[2] = static_cast<uint8_t>(sh & 0xFF), b[3] = static_cast<uint8_t>(sh >> 8);
      for (int e = 0; e < 256; ++e) {
        const int ib = e / 32, j = e % 32;
        b[8 + 16 * ib + j % 16] |= static_cast<uint8_t>(f.q[e] << (j < 16 ? 0 : 4));
      }
      put_half(b, f.d);
      break;
    }
    default: unpack(t, b);  // throws the standard message
  }
}

}  // namespace lmlab::io
