// Quantized GEMV on an NVIDIA GPU: y = x @ dequantize(w)ᵀ for a few rows of x
// with lmlab's precompiled kernel (kernels.cu, qgemv) as one MLX primitive.
// nn::quantized_matmul routes decode-sized products on a GPU stream here, so
// the head and every projection outside the fused step read their weights at
// the fused step's speed instead of MLX's qmv.
//
// Contract: float16 or bfloat16 x on a GPU stream, at most kMaxGemvRows rows
// (x.size() / K) that one launch stages in shared memory (8 rows of up to ~12k
// features, 4 of up to ~24k, 1 beyond), affine 4- or 8-bit weights with group size 32/64/128, scales
// and biases in x's dtype, K staged in shared memory; reads x and the weights,
// writes only its output. Differentiable with respect to x. In a build
// without CUDA, qgemv_is_native() is false.
#pragma once

#include <optional>
#include <string>

#include <mlx/array.h>
#include <mlx/utils.h>

namespace lmlab::nn::cuda {

using mlx::core::array;

inline constexpr int kMaxGemvRows = 8;

bool qgemv_is_native(const array& x, const array& w, const array& scales, const std::optional<array>& biases,
                     int group_size, int bits, const std::string& mode, mlx::core::StreamOrDevice s = {});

// x: (..., K) → (..., N); w: (N, K·bits/32) uint32; scales, biases: (N, K/group_size).
array qgemv(const array& x, const array& w, const array& scales, const array& biases, int group_size, int bits,
            mlx::core::StreamOrDevice s = {});

}  // namespace lmlab::nn::cuda
