// nn::ggml_matmul: the composed path (ggml_matmul.h).
#include "nn/cpu/ggml_matmul.h"

#include <mlx/mlx.h>

#include "lmlab/io.h"

namespace mx = mlx::core;

namespace lmlab::nn {

mx::array ggml_matmul(const mx::array& x, const mx::array& blocks, io::GgmlType type) {
  return mx::matmul(x, mx::transpose(io::ggml_dequantize(blocks, type, x.dtype())));
}

}  // namespace lmlab::nn
