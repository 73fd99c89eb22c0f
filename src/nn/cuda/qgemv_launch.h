// Adding lmlab's quantized GEMV kernel to MLX's CUDA graph (internal; shared by
// the fused decoder step and nn::cuda::qgemv).
#pragma once

#include <functional>

#include <mlx/backend/cuda/device.h>
#include <mlx/dtype.h>

#include "nn/cuda/kernel_params.h"

namespace lmlab::nn::cuda {

// Shared memory one launch stages for M rows of K features (kernels.cu,
// stage_inputs): each row's 16-byte pieces, padded to whole warps of chunks,
// and a float sum per chunk; what a launch may take.
long qgemv_smem(int M, int K, int bits);
inline constexpr long kQGemvSmemLimit = 190 * 1024;

// One GEMV over p.M rows of p.x in launches of up to 8 rows (p.K = K); the
// matrices share one format (bits, group size); t is the activations' dtype.
// `between` runs before every launch after the first (the caller registers
// the arrays the next launch orders after).
void add_qgemv(mlx::core::cu::CommandEncoder& enc, const QGemvParams& p, int K, int bits, int group_size,
               mlx::core::Dtype t, const std::function<void()>& between = {});

}  // namespace lmlab::nn::cuda
