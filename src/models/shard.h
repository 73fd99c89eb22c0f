// Tensor parallelism (mlx-lm's `shard` on its Llama model, with mlx.nn's
// shard_linear): every rank keeps a slice of each block, found by the block's
// module names (BlockNames), never by patterns on tensor names.
//   q, k, v, gate, up  split by output rows ("all-to-sharded": a rank computes
//                      its heads and its MLP columns whole);
//   o, down            split by input columns ("sharded-to-all": the block
//                      all-sums their partial products, nn::BlockSpec::group).
// The embedding, the norms and the output head stay whole on every rank.
//
// Heads go to ranks in whole key/value groups, as evenly as they divide, so a
// model whose head count does not divide by the ranks still splits (SmolLM2's
// 9 query / 3 key-value heads on 2 ranks: 6 + 3). With fewer key/value heads
// than ranks, each key/value head is shared by n / Hk ranks that split its
// query heads. Quantized weights are cut on quantization-group boundaries
// (packed words, scales and biases consistently); what cannot be cut that way
// is refused with an error naming the layer, the dimension and the fix.
#pragma once

#include <mlx/distributed/distributed.h>

#include "models/transformer.h"

namespace lmlab::models {

// The part of one block a rank holds: [begin, end) ranges.
struct BlockShard {
  int q_begin = 0, q_end = 0;      // query heads
  int kv_begin = 0, kv_end = 0;    // key/value heads
  int mlp_begin = 0, mlp_end = 0;  // intermediate columns
};

// Rank `rank` of `n`'s part of a block with `spec`'s heads, `intermediate`
// MLP columns, and o/down quantized in groups of `o_group`/`down_group`
// input columns (1 when not quantized). Throws std::invalid_argument.
BlockShard plan_block_shard(const nn::BlockSpec& spec, int intermediate, int o_group, int down_group, int rank, int n,
                            int layer);

// Slices every block's weights (and attached LoRA adapters) to this rank's
// part, in place and before they are evaluated: at most one layer's whole
// tensors are resident at a time, then only the shards. Gives each block the
// group and its local head counts.
void shard(Transformer& model, const mlx::core::distributed::Group& group);

}  // namespace lmlab::models
