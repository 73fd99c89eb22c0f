// Fusing adapters into the base after mlx_lm/fuse.py and the fuse() methods of
// tuner/lora.py (LoRALinear, LoRASwitchLinear) and tuner/dora.py (DoRALinear).
#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/train.h"
#include "nn/linear.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::train {

namespace {

// W + scale·Bᵀ Aᵀ in float32; DoRA rescales each row to m / ‖row‖. Stacked
// experts (LoRASwitchLinear.fuse): W_e + scale·B_e A_e for each expert e.
array merged_weight(const nn::Linear& l) {
  const nn::Adapter& ad = *l.adapter;
  if (l.stacked_experts())
    return mx::add(l.dense_weight(mx::float32),
                   mx::matmul(mx::multiply(mx::astype(ad.b, mx::float32), array(ad.spec.scale)),
                              mx::astype(ad.a, mx::float32)));
  array w = mx::add(l.dense_weight(mx::float32),
                    mx::matmul(mx::multiply(mx::transpose(mx::astype(ad.b, mx::float32)), array(ad.spec.scale)),
                               mx::transpose(mx::astype(ad.a, mx::float32))));
  if (ad.spec.kind == "dora") {
    array norms = mx::sqrt(mx::sum(mx::square(w), -1));
    w = mx::multiply(mx::expand_dims(mx::divide(mx::astype(*ad.m, mx::float32), norms), 1), w);
  }
  return w;
}

// The float dtype a layer's dense form takes: its weight's, or for a packed
// weight its scales' (mlx-lm dequantizes to the scales' dtype).
mx::Dtype dense_dtype(const nn::Linear& l) {
  if (!l.quant) return l.weight.dtype();
  return l.scales ? l.scales->dtype() : mx::float16;
}

void store_dense(Weights& w, const std::string& name, const array& dense) {
  w.erase(name + ".scales");
  w.erase(name + ".biases");
  w.clear_quant(name);
  w.set(name + ".weight", dense);
}

}  // namespace

std::vector<std::string> fuse_adapters(Weights& w, bool dequantize) {
  std::vector<std::string> fused;
  const auto adapted = w.adapted_modules();  // a copy: the loop edits the tree
  // Check first, change after: a layer that cannot be re-quantized leaves w untouched.
  for (const auto& [name, spec] : adapted) {
    const QuantSpec* q = w.quant(name);
    if (!dequantize && q && q->mode != "affine")
      throw Unsupported(fmt::format("[fuse] '{}' is stored as {} blocks, which lmlab cannot quantize to; give "
                                    "--dequantize for a float model",
                                    name, q->mode));
  }
  for (const auto& [name, spec] : adapted) {
    nn::Linear l = nn::Linear::view(w, name);
    const mx::Dtype dtype = dense_dtype(l);
    const std::optional<QuantSpec> q = l.quant;
    array merged = mx::astype(merged_weight(l), dtype);
    mx::eval(merged);
    w.clear_adapter(name);
    if (q && !dequantize) {
      // Back to the base's scheme (mlx-lm: QuantizedLinear.from_linear with the layer's bits and group size).
      auto packed = mx::quantize(merged, q->group_size, q->bits);
      mx::eval(packed);
      w.set(name + ".weight", packed[0]);
      w.set(name + ".scales", packed[1]);
      w.set(name + ".biases", packed[2]);
    } else {
      store_dense(w, name, merged);
    }
    fused.push_back(name);
  }
  if (dequantize) {
    // mlx-lm's --dequantize: the whole model becomes float, not only the fused layers.
    std::vector<std::string> packed;
    for (const auto& [name, _] : w.items())
      if (name.ends_with(".weight") && w.quant(name.substr(0, name.size() - 7))) packed.push_back(name.substr(0, name.size() - 7));
    for (const std::string& name : packed) {
      nn::Linear l = nn::Linear::view(w, name);
      array dense = l.dense_weight(dense_dtype(l));
      mx::eval(dense);
      store_dense(w, name, dense);
    }
  }
  return fused;
}

}  // namespace lmlab::train
