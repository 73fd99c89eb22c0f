// Adding lmlab's quantized GEMV kernel to a step's launches (internal; shared by
// the fused decoder step and nn::cuda::qgemv).
#pragma once

#include <mlx/dtype.h>

#include "nn/cuda/device.h"
#include "nn/cuda/kernel_params.h"

namespace lmlab::nn::cuda {

// Shared memory one launch stages for M rows of K features (kernels.cu,
// stage_inputs): each row's 16-byte pieces, padded to whole warps of chunks,
// and a float sum per chunk; what a launch may take.
long qgemv_smem(int M, int K, int bits);
inline constexpr long kQGemvSmemLimit = 190 * 1024;

// One GEMV over p.M rows of p.x in launches of up to 8 rows (p.K = K); the
// matrices share one format (bits, group size); t is the activations' dtype.
void add_qgemv(Launches& to, const QGemvParams& p, int K, int bits, int group_size, mlx::core::Dtype t);

}  // namespace lmlab::nn::cuda
