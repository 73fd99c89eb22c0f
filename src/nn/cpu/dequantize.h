// lmlab's CPU dequantization of MLX affine 4- and 8-bit weights into float32,
// split over rows on the compute pool (MLX's CPU dequantize is one thread of
// scalar shifts and copies), and the product x @ dequantize(w)ᵀ through MLX's
// float GEMM (OpenBLAS) for many rows: prompts and training batches.
//
// Contract: reads w, scales and biases in place; writes only its output; runs on
// MLX's CPU stream thread plus lmlab's compute pool.
#pragma once

#include <optional>

#include <mlx/array.h>
#include <mlx/utils.h>

#include "lmlab/weights.h"

namespace lmlab::nn::cpu {

using mlx::core::array;

// dequantize(w, scales, biases) as float32 (N, K): s·q + b in float32, with
// half-precision scales and biases widened first (as lmlab's quantized GEMM
// reads them; mx::dequantize computes in the scales' dtype). Affine 4 or 8
// bits, group 32/64/128, float32/float16/bfloat16 scales and biases.
array dequantize_affine(const array& w, const array& scales, const array& biases, int group_size, int bits,
                        mlx::core::StreamOrDevice s = {});

// Whether dequantize_affine takes these weights (checked by the caller's
// cpu::native_weights too).
bool dequantize_is_native(int bits);

// x @ dequantize(w)ᵀ for float32 x of `rows` ≥ kDenseRows rows, by the dense
// float product; its gradient with respect to x dequantizes again (no float
// copy of the weights is kept between the forward and backward passes).
array dense_quantized_matmul(const array& x, const array& w, const array& scales, const array& biases,
                             int group_size, int bits, mlx::core::StreamOrDevice s = {});

// From this many rows on, nn::Linear on the CPU multiplies by the dequantized
// weights with BLAS instead of lmlab's quantized GEMM: about three times its
// speed there (docs/benchmarks.md).
inline constexpr int kDenseRows = 32;
// Up to this many weights a matrix (a 128 MB float32 copy, alive for one
// product): the default model's tied head (28M) is in, an 8B model's (525M)
// stays on the quantized GEMM rather than costing 2 GB.
inline constexpr long kDenseMaxWeights = 1L << 25;

// Whether nn::Linear takes dense_quantized_matmul for x against these weights:
// kDenseRows or more rows of float32 x on a CPU stream, affine 4- or 8-bit
// weights lmlab's kernel takes, at most kDenseMaxWeights of them, activations
// left in float.
bool dense_rows(const array& x, const array& w, const array& scales, const std::optional<array>& biases,
                const QuantSpec& q, mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn::cpu
