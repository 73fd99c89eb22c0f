// What a fine-tuning run trains: LoRA/DoRA adapters on the projections of the
// last N blocks (mlx-lm's linear_to_lora_layers), initialised exactly as mlx-lm
// initialises them for the same seed, or every tensor of the last N blocks
// (full fine-tuning).
#pragma once

#include <string>
#include <vector>

#include "lmlab/model.h"
#include "lmlab/train.h"
#include "models/transformer.h"

namespace lmlab::train {

// The modules to adapt, in the order mlx-lm creates their adapters (which fixes
// which random draws each gets): within each of the last num_layers blocks
// mlx-lm's module walk (MLP up, down, gate, or in a mixture-of-experts block
// the stacked experts' down, up, gate and the router; attention o, v, k, q), keeping those
// `keys` names (relative to the block; empty: all); then modules outside the
// blocks that `keys` name in full (e.g. lm_head). Throws std::invalid_argument
// for a key that matches nothing or num_layers beyond the model.
std::vector<std::string> lora_targets(const models::Transformer& t, int num_layers,
                                      const std::vector<std::string>& keys);

// Attaches adapters of `kind` (lora, dora) to `targets` with mlx-lm's initial
// values: after mx.random.seed(seed), per module one draw for the layer mlx-lm
// builds and discards, then lora_a ~ U(±1/√in) (in, r); lora_b = 0; DoRA's
// m = the base rows' norms. Stacked experts (E, out, in) get mlx-lm's
// LoRASwitchLinear layout: lora_a (E, r, in), lora_b (E, out, r); LoRA only. Returns the trainable names (P.lora_a,
// P.lora_b, and P.m for DoRA).
std::vector<std::string> attach_lora(Model& m, const std::vector<std::string>& targets, const LoraParameters& p,
                                     const std::string& kind, uint64_t seed);

// Full fine-tuning of the last num_layers blocks: every tensor they read, with
// quantized projections dequantized to the compute dtype first (a packed weight
// cannot be trained). Returns the trainable names.
std::vector<std::string> unfreeze_layers(Model& m, const models::Transformer& t, int num_layers);

}  // namespace lmlab::train
