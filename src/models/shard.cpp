// Tensor-parallel sharding of a Transformer (see shard.h), after mlx-lm's
// models/llama.py `shard` and mlx/nn/layers/distributed.py.
#include "models/shard.h"

#include <fmt/format.h>
#include <mlx/mlx.h>

#include "lmlab/core.h"
#include "lmlab/ggml.h"
#include "nn/linear.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::models {

namespace {

// [begin, end) of part `r` when `total` units are dealt to `n` parts as evenly
// as possible (the first total % n parts get one more).
std::pair<int, int> balanced(int total, int n, int r) {
  const int q = total / n, rem = total % n;
  const int begin = r * q + std::min(r, rem);
  return {begin, begin + q + (r < rem ? 1 : 0)};
}

// Query and key/value heads of rank r: whole key/value groups when there are
// at least as many key/value heads as ranks, else a share of one group.
void plan_heads(const nn::BlockSpec& s, int r, int n, int layer, BlockShard& out) {
  const int H = s.heads, Hk = s.kv_heads, g = H / Hk;
  if (Hk >= n) {
    std::tie(out.kv_begin, out.kv_end) = balanced(Hk, n, r);
    out.q_begin = out.kv_begin * g, out.q_end = out.kv_end * g;
    return;
  }
  const int share = n / Hk;  // ranks per key/value head
  if (n % Hk != 0 || g % share != 0) {
    std::vector<int> fit;  // rank counts that do split these heads
    for (int m = 2; m <= H; ++m)
      if (m <= Hk || (m % Hk == 0 && g % (m / Hk) == 0)) fit.push_back(m);
    throw std::invalid_argument(fmt::format(
        "[shard] layer {}: {} query heads in {} key/value groups cannot be split over {} ranks (each rank needs "
        "whole key/value heads, or an equal share of one group's query heads); ranks that fit: {}",
        layer, H, Hk, n, fmt::join(fit, ", ")));
  }
  out.kv_begin = r / share, out.kv_end = out.kv_begin + 1;
  out.q_begin = out.kv_begin * g + (r % share) * (g / share);
  out.q_end = out.q_begin + g / share;
}

int group_of(const Weights& w, const std::string& name) {
  const QuantSpec* q = w.quant(name);
  return q ? q->group_size : 1;
}

array cut(const array& a, int axis, int begin, int end) {
  mx::Shape start(a.ndim(), 0), stop = a.shape();
  start[axis] = begin, stop[axis] = end;
  // contiguous() copies a slice that is a small part of its buffer, so the
  // whole tensor is freed once the shard is evaluated.
  return mx::contiguous(mx::slice(a, start, stop));
}

// Rows [begin, end) of module `name`'s outputs: weight, scales and biases by
// row, the bias, a LoRA B (r, out) by column and a DoRA magnitude.
void cut_outputs(Weights& w, const std::string& name, int begin, int end, std::vector<array>& made) {
  auto put = [&](const std::string& t, int axis) {
    if (const array* a = w.find(t)) w.set(t, cut(*a, axis, begin, end)), made.push_back(w.at(t));
  };
  for (const char* leaf : {".weight", ".scales", ".biases", ".bias", ".m"}) put(name + leaf, 0);
  put(name + ".lora_b", 1);
}

// Input columns [begin, end) of module `name`: in packed words when quantized
// (begin and end on group boundaries), scales/biases by group, a LoRA A
// (in, r) by row. The bias stays whole: the block adds it after the all-sum.
void cut_inputs(Weights& w, const std::string& name, int begin, int end, std::vector<array>& made, int layer) {
  const QuantSpec* q = w.quant(name);
  const int gs = q ? q->group_size : 1;
  // Stored columns per group: uint32 words of `bits`-bit values (affine), or
  // one whole block's bytes (raw ggml blocks, whose group is the block).
  int stored_per_group = q ? gs * q->bits / 32 : 1;
  if (q && io::is_ggml_mode(q->mode))
    stored_per_group = io::ggml_block(static_cast<uint32_t>(io::ggml_mode_type(q->mode)))->bytes;
  auto put = [&](const std::string& t, int axis, int b, int e) {
    if (const array* a = w.find(t)) w.set(t, cut(*a, axis, b, e)), made.push_back(w.at(t));
  };
  put(name + ".weight", 1, begin / gs * stored_per_group, end / gs * stored_per_group);
  put(name + ".scales", 1, begin / gs, end / gs);
  put(name + ".biases", 1, begin / gs, end / gs);
  put(name + ".lora_a", 0, begin, end);
  if (w.contains(name + ".m"))
    throw Unsupported(fmt::format("[shard] layer {}: a DoRA adapter on '{}' normalises whole weight rows, which "
                                  "tensor parallelism splits; fuse it first (lmlab fuse) or use LoRA",
                                  layer, name));
}

}  // namespace

BlockShard plan_block_shard(const nn::BlockSpec& spec, int intermediate, int o_group, int down_group, int rank, int n,
                            int layer) {
  BlockShard s;
  plan_heads(spec, rank, n, layer, s);
  for (int head : {s.q_begin, s.q_end})
    if (head * spec.head_dim % o_group != 0)
      throw std::invalid_argument(fmt::format(
          "[shard] layer {}: rank {}'s query heads {}..{} meet the attention output projection at input column {}, "
          "which is not on a boundary of its quantization groups of {}; use fewer ranks",
          layer, rank, s.q_begin, s.q_end - 1, head * spec.head_dim, o_group));
  const int units = intermediate / down_group;  // down's input in whole quantization groups
  if (units < n)
    throw std::invalid_argument(fmt::format(
        "[shard] layer {}: the MLP's {} columns form {} quantization groups of {}, fewer than the {} ranks; use at "
        "most {} ranks",
        layer, intermediate, units, down_group, n, units));
  auto [b, e] = balanced(units, n, rank);
  s.mlp_begin = b * down_group, s.mlp_end = e * down_group;
  return s;
}

void shard(Transformer& model, const mx::distributed::Group& group) {
  const int n = group.size(), r = group.rank();
  Weights& w = model.weights();
  std::vector<nn::DecoderBlock> blocks;
  for (const nn::DecoderBlock& block : model.spec().blocks) {
    const nn::BlockSpec& spec = block.spec();
    const nn::BlockNames& names = block.names();
    const int layer = block.layer(), Dh = spec.head_dim;
    if (spec.mlp != nn::MlpKind::dense)
      throw Unsupported(fmt::format("[shard] layer {}: mixture-of-experts blocks are not split across ranks; run the "
                                    "model on one device (without lmlab launch)",
                                    layer));
    const int I = nn::Linear::view(w, names.gate).out_features();
    const BlockShard s = plan_block_shard(spec, I, group_of(w, names.o), group_of(w, names.down), r, n, layer);
    std::vector<array> made;
    cut_outputs(w, names.q, s.q_begin * Dh, s.q_end * Dh, made);
    for (const std::string* kv : {&names.k, &names.v}) cut_outputs(w, *kv, s.kv_begin * Dh, s.kv_end * Dh, made);
    cut_inputs(w, names.o, s.q_begin * Dh, s.q_end * Dh, made, layer);
    for (const std::string* p : {&names.gate, &names.up}) cut_outputs(w, *p, s.mlp_begin, s.mlp_end, made);
    cut_inputs(w, names.down, s.mlp_begin, s.mlp_end, made, layer);
    mx::eval(made);  // this layer's whole tensors are released here
    nn::BlockSpec local = spec;
    local.heads = s.q_end - s.q_begin;
    local.kv_heads = s.kv_end - s.kv_begin;
    local.group = group;
    blocks.emplace_back(layer, std::move(local), names);
  }
  model.set_blocks(std::move(blocks), group);
  mx::clear_cache();
}

}  // namespace lmlab::models
