// nn::cuda in a build without CUDA (LMLAB_BACKEND other than cuda): the fused
// GPU step and GEMV never apply, so the composed block and MLX's ops run.
#include <stdexcept>

#include "nn/cuda/decoder_step.h"
#include "nn/cuda/qgemv.h"

namespace lmlab::nn::cuda {

bool decoder_step_is_native(const array&, const DecoderLayerArrays&, const DecoderStepShape&, const array&,
                            const array&, int, mlx::core::StreamOrDevice) {
  return false;
}

DecoderStepResult decoder_step(const array&, const DecoderLayerArrays&, const DecoderStepShape&, const array&, float,
                               const array&, const array&, int, mlx::core::StreamOrDevice) {
  throw std::runtime_error("[lmlab::nn::cuda::decoder_step] not built: rebuild with LMLAB_BACKEND=cuda");
}

bool decoder_stack_is_native(const array&, const std::vector<StackLayer>&, int, mlx::core::StreamOrDevice) {
  return false;
}

DecoderStackResult decoder_stack(const array&, const std::vector<StackLayer>&, int, mlx::core::StreamOrDevice) {
  throw std::runtime_error("[lmlab::nn::cuda::decoder_stack] not built: rebuild with LMLAB_BACKEND=cuda");
}

bool qgemv_is_native(const array&, const array&, const array&, const std::optional<array>&, int, int,
                     const std::string&, mlx::core::StreamOrDevice) {
  return false;
}

array qgemv(const array&, const array&, const array&, const array&, int, int, mlx::core::StreamOrDevice) {
  throw std::runtime_error("[lmlab::nn::cuda::qgemv] not built: rebuild with LMLAB_BACKEND=cuda");
}

}  // namespace lmlab::nn::cuda
