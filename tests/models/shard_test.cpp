// How a block's heads and MLP columns are dealt to ranks (models/shard.h):
// whole key/value groups as evenly as they divide, shared key/value heads when
// there are fewer than ranks, cuts on quantization-group boundaries, and a
// clear refusal for what cannot be split. The numerics of sharded models are
// checked with real ranks in tensor_parallel_test.cpp.
#include "models/shard.h"

#include <array>
#include <functional>

#include "lmlab/io.h"
#include "models/model_test_util.h"
#include "models/transformer.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

nn::BlockSpec spec(int heads, int kv_heads, int head_dim) {
  nn::BlockSpec s;
  s.heads = heads, s.kv_heads = kv_heads, s.head_dim = head_dim, s.hidden = heads * head_dim;
  return s;
}

std::vector<models::BlockShard> plan_all(const nn::BlockSpec& s, int I, int o_group, int down_group, int n) {
  std::vector<models::BlockShard> out;
  for (int r = 0; r < n; ++r) out.push_back(models::plan_block_shard(s, I, o_group, down_group, r, n, /*layer=*/3));
  return out;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

// A rank's part as {q_begin, q_end, kv_begin, kv_end, mlp_begin, mlp_end}.
using Part = std::array<int, 6>;
Part part(const models::BlockShard& s) { return {s.q_begin, s.q_end, s.kv_begin, s.kv_end, s.mlp_begin, s.mlp_end}; }

TEST(Shard, EvenSplitMatchesMlxLm) {
  // Llama-3-8B's shape on 2 ranks: 16 + 16 heads, 4 + 4 key/value heads, half the MLP each.
  auto p = plan_all(spec(32, 8, 128), 14336, 64, 64, 2);
  EXPECT_EQ(part(p[0]), (Part{0, 16, 0, 4, 0, 7168}));
  EXPECT_EQ(part(p[1]), (Part{16, 32, 4, 8, 7168, 14336}));
}

TEST(Shard, UnevenHeadsGoInWholeKeyValueGroups) {
  // SmolLM2-135M: 9 query heads in 3 groups of 3; 2 ranks get 2 and 1 groups.
  auto p = plan_all(spec(9, 3, 64), 1536, 32, 32, 2);
  EXPECT_EQ(part(p[0]), (Part{0, 6, 0, 2, 0, 768}));
  EXPECT_EQ(part(p[1]), (Part{6, 9, 2, 3, 768, 1536}));
  // 3 ranks: one group each.
  auto t = plan_all(spec(9, 3, 64), 1536, 32, 32, 3);
  for (int r = 0; r < 3; ++r) EXPECT_EQ(part(t[r]), (Part{3 * r, 3 * r + 3, r, r + 1, 512 * r, 512 * r + 512}));
}

TEST(Shard, FewerKeyValueHeadsThanRanksAreShared) {
  // 4 query heads on 1 key/value head, 2 ranks: each keeps the key/value head and 2 query heads.
  auto p = plan_all(spec(4, 1, 16), 96, 32, 32, 2);
  EXPECT_EQ(part(p[0]), (Part{0, 2, 0, 1, 0, 64}));
  EXPECT_EQ(part(p[1]), (Part{2, 4, 0, 1, 64, 96}));
  // 8 heads on 2 key/value heads over 4 ranks: two ranks per key/value head.
  auto q = plan_all(spec(8, 2, 16), 128, 1, 1, 4);
  EXPECT_EQ(part(q[1]), (Part{2, 4, 0, 1, 32, 64}));
  EXPECT_EQ(part(q[3]), (Part{6, 8, 1, 2, 96, 128}));
}

TEST(Shard, MlpColumnsFollowQuantizationGroups) {
  // 96 columns of 8-bit groups of 32 (the tiny fixtures' down_proj): 64 + 32, never 48 + 48.
  auto p = plan_all(spec(4, 2, 16), 96, 32, 32, 2);
  EXPECT_EQ(p[0].mlp_end, 64);
  EXPECT_EQ(p[1].mlp_begin, 64);
  // Unquantized, any column may be a boundary.
  EXPECT_EQ(plan_all(spec(4, 2, 16), 96, 1, 1, 2)[0].mlp_end, 48);
}

TEST(Shard, WhatCannotBeSplitIsRefusedClearly) {
  // 4 heads in 1 group over 3 ranks: 3 does not divide the group.
  EXPECT_NE(message_of([] { models::plan_block_shard(spec(4, 1, 16), 96, 1, 1, 0, 3, 3); }).find(
                "layer 3: 4 query heads in 1 key/value groups cannot be split over 3 ranks (each rank needs whole "
                "key/value heads, or an equal share of one group's query heads); ranks that fit: 2, 4"),
            std::string::npos);
  // The MLP's 96 columns are 3 groups of 32: not 4 ranks.
  EXPECT_NE(message_of([] { models::plan_block_shard(spec(8, 4, 16), 96, 1, 32, 0, 4, 3); }).find(
                "3 quantization groups of 32, fewer than the 4 ranks; use at most 3 ranks"),
            std::string::npos);
  // Rank 1's heads start at column 48 of an o_proj quantized in groups of 32 (3 heads of 16 each side).
  EXPECT_NE(message_of([] { models::plan_block_shard(spec(6, 6, 16), 128, 32, 1, 1, 2, 3); }).find(
                "input column 48, which is not on a boundary of its quantization groups of 32"),
            std::string::npos);
}

// Mixture-of-experts blocks are not split: one line, before any tensor is cut.
TEST(Shard, MixtureOfExpertsIsRefused) {
  (void)cpu_context();
  auto dir = tiny_checkpoint_dir("mixtral");
  LMLAB_REQUIRE_FILE(dir / "config.json");
  io::ModelDir d = io::read_model_dir(dir);
  auto model = make_model(d.config, std::move(d.weights), mlx::core::float32);
  auto& t = dynamic_cast<models::Transformer&>(*model);
  const auto before = t.weights().at("model.layers.0.self_attn.q_proj.weight").shape();
  try {
    models::shard(t, mlx::core::distributed::init());
    FAIL() << "no throw";
  } catch (const Unsupported& e) {
    EXPECT_NE(std::string(e.what()).find("[shard] layer 0: mixture-of-experts blocks are not split across ranks"),
              std::string::npos)
        << e.what();
  }
  EXPECT_EQ(t.weights().at("model.layers.0.self_attn.q_proj.weight").shape(), before);
}

}  // namespace
}  // namespace lmlab::test
