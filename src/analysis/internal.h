// Helpers shared by the analysis sources: MLX arrays to plain vectors, dtype
// names, token-id arrays.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <mlx/mlx.h>

#include "lmlab/analysis.h"
#include "lmlab/nn.h"
#include "lmlab/weights.h"

namespace lmlab {
class Model;
}

namespace lmlab::analysis {

std::string dtype_name(mlx::core::Dtype d);
// Evaluates `a` and copies it out as float32, row-major.
std::vector<float> to_floats(const mlx::core::array& a);
// (1, L) int32 from ids that check_tokens accepts for `m` (not empty, inside
// the vocabulary and the context); throws std::invalid_argument "[where] ...".
mlx::core::array ids_array(const Model& m, const std::vector<int>& ids, std::string_view where);
// The logits (1, 1, V) after the last of `ids`: all but the last token are
// prefilled through a KV cache in chunks, the last runs alone with `hooks`
// (which then see that position only). Memory stays that of one chunk
// whatever the prompt length; the full-sequence forward would hold (L, V)
// logits and every hooked (L, D) activation.
mlx::core::array forward_last(const Model& m, const std::vector<int>& ids, nn::Hooks* hooks,
                              std::string_view where);
ParamInfo param_info(const Weights& w, const std::string& name);
// "P" for "P.weight" when P is a quantized module, else "".
std::string quant_prefix(const Weights& w, const std::string& name);
// The dequantized (or dense) float32 value of tensor `name`.
mlx::core::array logical_tensor(const Weights& w, const std::string& name);

}  // namespace lmlab::analysis
