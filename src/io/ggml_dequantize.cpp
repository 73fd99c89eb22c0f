// Raw GGML blocks dequantized with MLX ops, so they run on any device (the GPU
// path of the raw-block modes, and the composed reference of lmlab's CPU
// kernels). Each type follows io/ggml.cpp's scalar decoder: the products ggml
// forms first (d·sc) are formed first here too, so results are bit-identical.
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace mx = mlx::core;

namespace lmlab::io {

namespace {

using mx::array;

// Bytes [from, to) of every block: (..., nb, to - from) uint8.
array bytes(const array& b, int from, int to) {
  mx::Shape start(b.ndim(), 0), stop = b.shape();
  start.back() = from;
  stop.back() = to;
  return mx::slice(b, start, stop);
}

// A little-endian float16 field at `at` of every block as float32: (..., nb, 1).
array half_at(const array& b, int at) {
  return mx::astype(mx::view(mx::contiguous(bytes(b, at, at + 2)), mx::float16), mx::float32);
}

array u8(std::initializer_list<int> v, mx::Shape shape) {
  std::vector<uint8_t> d(v.begin(), v.end());
  return array(d.begin(), std::move(shape), mx::uint8);
}

// x (..., n) → (..., n/k, k) for broadcasting a per-sub-block factor.
array split_last(const array& x, int k) {
  mx::Shape s = x.shape();
  s.back() /= k;
  s.push_back(k);
  return mx::reshape(x, s);
}

// x reshaped to (..., nb, tail...) where (..., nb) are the leading dims of the blocks `b`.
array per_block(const array& x, const array& b, std::initializer_list<int> tail) {
  mx::Shape s(b.shape().begin(), b.shape().end() - 1);
  for (int d : tail) s.push_back(d);
  return mx::reshape(x, s);
}

array as_f32(const array& x) { return mx::astype(x, mx::float32); }

// The 2-bit fields of Q2_K and Q3_K's low bits: element 128h + 32s + l is bits 2s
// of byte 32h + l, so (..., nb, 2, 4, 32) is already element order.
array two_bit_fields(const array& qs, const array& b) {
  array q = per_block(qs, b, {2, 1, 32});
  return mx::bitwise_and(mx::right_shift(q, u8({0, 2, 4, 6}, {4, 1})), array(uint8_t{3}));
}

// The K-quants with a linear decoder: each 16-element sub-block's values are
// scale · level + bias with an unsigned level (Q2_K 2 bits, Q3_K 3, Q6_K 6).
// ggml decodes Q3_K and Q6_K as scale · (level − zero), bias = −zero · scale:
// the same values, but a zero level then keeps the scale's sign (−0.0), which
// the decoder below reproduces bit for bit.
struct Affine {
  array levels;       // (..., nb, 16, 16) float32, the unsigned levels
  array scale, bias;  // (..., nb, 16) float32
  float zero = 0;     // Q3_K 4, Q6_K 32; Q2_K 0 (its bias is −dmin·m)
};

Affine q2_k(const array& b) {
  array sc = bytes(b, 0, 16);
  array d = half_at(b, 80), dmin = half_at(b, 82);
  array dl = mx::multiply(d, as_f32(mx::bitwise_and(sc, array(uint8_t{0xF}))));
  array ml = mx::multiply(dmin, as_f32(mx::right_shift(sc, array(uint8_t{4}))));
  array q = per_block(as_f32(two_bit_fields(bytes(b, 16, 80), b)), b, {16, 16});
  return {q, dl, mx::negative(ml), 0.0f};
}

Affine q3_k(const array& b) {
  array s = bytes(b, 96, 108);
  // Scale j: low nibble from byte j (j < 8) or the high nibble of byte j − 8;
  // two high bits from byte 8 + j%4 at bit 2·(j/4). Stored offset by 32.
  array lo = mx::concatenate({mx::bitwise_and(bytes(s, 0, 8), array(uint8_t{0xF})),
                              mx::right_shift(bytes(s, 0, 8), array(uint8_t{4}))},
                             -1);
  array hi = mx::right_shift(mx::expand_dims(bytes(s, 8, 12), -2), u8({0, 2, 4, 6}, {4, 1}));
  hi = per_block(mx::bitwise_and(hi, array(uint8_t{3})), b, {16});
  array sc = mx::subtract(as_f32(mx::bitwise_or(lo, mx::left_shift(hi, array(uint8_t{4})))), array(32.0f));
  array dl = mx::multiply(half_at(b, 108), sc);
  array low = as_f32(two_bit_fields(bytes(b, 32, 96), b));
  // The high bit of element 128h + 32s + l is bit 4h + s of hmask[l]; clear means −4.
  array hm = per_block(bytes(b, 0, 32), b, {1, 1, 32});
  std::vector<uint8_t> shifts(8);
  for (int i = 0; i < 8; ++i) shifts[i] = static_cast<uint8_t>(i);
  array hbit = mx::bitwise_and(mx::right_shift(hm, array(shifts.begin(), {2, 4, 1}, mx::uint8)), array(uint8_t{1}));
  array q = mx::add(low, mx::multiply(array(4.0f), as_f32(hbit)));  // level; the value is level − 4
  return {per_block(q, b, {16, 16}), dl, mx::multiply(array(-4.0f), dl), 4.0f};
}

Affine q6_k(const array& b) {
  // Element 128h + 32k + l: nibble k/2 of ql[64h + 32(k%2) + l], two bits 2k of qh[32h + l].
  array ql = per_block(bytes(b, 0, 128), b, {2, 1, 2, 32});
  array lo = mx::bitwise_and(mx::right_shift(ql, u8({0, 4}, {2, 1, 1})), array(uint8_t{0xF}));
  array qh = per_block(bytes(b, 128, 192), b, {2, 1, 32});
  array hi = mx::bitwise_and(mx::right_shift(qh, u8({0, 2, 4, 6}, {4, 1})), array(uint8_t{3}));
  array q = mx::bitwise_or(per_block(lo, b, {2, 4, 32}), mx::left_shift(hi, array(uint8_t{4})));
  array sc = as_f32(mx::view(mx::contiguous(bytes(b, 192, 208)), mx::int8));
  array dsc = mx::multiply(half_at(b, 208), sc);
  return {per_block(as_f32(q), b, {16, 16}), dsc, mx::multiply(array(-32.0f), dsc), 32.0f};
}

array codebook() {
  std::vector<float> v(kIq4Values, kIq4Values + 16);
  return array(v.begin(), {16}, mx::float32);
}

// Sixteen bytes of nibbles → 32 codebook indices (low nibbles first).
array nibble_indices(const array& qs) {
  return mx::concatenate({mx::bitwise_and(qs, array(uint8_t{0xF})), mx::right_shift(qs, array(uint8_t{4}))}, -1);
}

array iq4_nl(const array& b) {
  array v = mx::take(codebook(), mx::astype(nibble_indices(bytes(b, 2, 18)), mx::int32));
  return mx::multiply(half_at(b, 0), v);
}

array iq4_xs(const array& b) {
  array sl = bytes(b, 4, 8);
  array lo = mx::bitwise_and(mx::right_shift(mx::expand_dims(sl, -1), u8({0, 4}, {2})), array(uint8_t{0xF}));
  lo = per_block(lo, b, {8});
  array sh = mx::astype(mx::view(mx::contiguous(bytes(b, 2, 4)), mx::uint16), mx::uint32);  // (..., nb, 1)
  std::vector<uint32_t> shifts = {0, 2, 4, 6, 8, 10, 12, 14};
  array hi = mx::bitwise_and(mx::right_shift(sh, array(shifts.begin(), {8}, mx::uint32)), array(3u));
  array ls = mx::bitwise_or(mx::astype(lo, mx::uint32), mx::left_shift(hi, array(4u)));
  array dl = mx::multiply(half_at(b, 0), mx::subtract(as_f32(ls), array(32.0f)));
  array qs = per_block(bytes(b, 8, 136), b, {8, 16});
  array v = mx::take(codebook(), mx::astype(nibble_indices(qs), mx::int32));  // (..., nb, 8, 32)
  return mx::multiply(mx::expand_dims(dl, -1), v);
}

}  // namespace

array ggml_dequantize(const array& blocks, GgmlType type, mx::Dtype dtype) {
  const auto info = ggml_block(static_cast<uint32_t>(type));
  if (!info || !is_ggml_mode(ggml_mode_name(type)))
    throw std::invalid_argument(fmt::format("[ggml_dequantize] {} is not a raw-block type",
                                            ggml_type_name(static_cast<uint32_t>(type))));
  if (blocks.dtype() != mx::uint8 || blocks.ndim() < 1 || blocks.shape(-1) % info->bytes != 0)
    throw std::invalid_argument(fmt::format(
        "[ggml_dequantize] {} blocks must be uint8 (..., n·{}), got {} with last dim {}",
        ggml_type_name(static_cast<uint32_t>(type)), info->bytes, blocks.dtype() == mx::uint8 ? "uint8" : "other",
        blocks.ndim() ? blocks.shape(-1) : 0));
  mx::Shape out_shape = blocks.shape();
  out_shape.back() = blocks.shape(-1) / info->bytes * info->elements;
  array b = split_last(blocks, info->bytes);
  auto linear = [&](const Affine& a) {
    const array scale = mx::expand_dims(a.scale, -1);
    if (a.zero != 0) return mx::multiply(scale, mx::subtract(a.levels, array(a.zero)));
    return mx::add(mx::multiply(scale, a.levels), mx::expand_dims(a.bias, -1));
  };
  array v = [&] {
    switch (type) {
      case GgmlType::Q2_K: return linear(q2_k(b));
      case GgmlType::Q3_K: return linear(q3_k(b));
      case GgmlType::Q6_K: return linear(q6_k(b));
      case GgmlType::IQ4_NL: return iq4_nl(b);
      default: return iq4_xs(b);
    }
  }();
  return mx::astype(mx::reshape(v, out_shape), dtype);
}

GgmlAffine ggml_affine_form(const array& blocks, GgmlType type) {
  if (type != GgmlType::Q2_K && type != GgmlType::Q3_K && type != GgmlType::Q6_K)
    throw std::invalid_argument(fmt::format("[ggml_affine_form] {} has no linear decoder (Q2_K, Q3_K and Q6_K do)",
                                            ggml_type_name(static_cast<uint32_t>(type))));
  const auto info = ggml_block(static_cast<uint32_t>(type));
  if (blocks.dtype() != mx::uint8 || blocks.ndim() < 1 || blocks.shape(-1) % info->bytes != 0)
    throw std::invalid_argument(fmt::format("[ggml_affine_form] {} blocks must be uint8 (..., n·{})",
                                            ggml_type_name(static_cast<uint32_t>(type)), info->bytes));
  array b = split_last(blocks, info->bytes);
  const Affine a = type == GgmlType::Q2_K ? q2_k(b) : type == GgmlType::Q3_K ? q3_k(b) : q6_k(b);
  mx::Shape shape = blocks.shape(), groups = blocks.shape();
  shape.back() = blocks.shape(-1) / info->bytes * info->elements;
  groups.back() = shape.back() / 16;
  return {mx::astype(mx::reshape(a.levels, shape), mx::uint8), mx::reshape(a.scale, groups),
          mx::reshape(a.bias, groups)};
}

}  // namespace lmlab::io
