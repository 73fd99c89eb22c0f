// nn::cuda in a build without CUDA (LMLAB_BACKEND other than cuda): the fused
// GPU step never applies, so the composed block runs.
#include <stdexcept>

#include "nn/cuda/decoder_step.h"

namespace lmlab::nn::cuda {

bool decoder_step_is_native(const array&, const DecoderLayerArrays&, const DecoderStepShape&, const array&,
                            const array&, int, mlx::core::StreamOrDevice) {
  return false;
}

DecoderStepResult decoder_step(const array&, const DecoderLayerArrays&, const DecoderStepShape&, const array&, float,
                               const array&, const array&, int, mlx::core::StreamOrDevice) {
  throw std::runtime_error("[lmlab::nn::cuda::decoder_step] not built: rebuild with LMLAB_BACKEND=cuda");
}

}  // namespace lmlab::nn::cuda
