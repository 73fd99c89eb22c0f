// inspect: parameter counts by hand on the tiny fixtures, and the default
// model's totals (the "135M" of its name).
#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;

TEST(Inspect, TinyFloatCountsMatchTheConfig) {
  auto m = load_tiny("llama");
  an::ModelSummary s = an::inspect(*m);
  const int64_t D = 64, I = 96, V = 160, Dh = 16, H = 4, Hk = 2;
  const int64_t layer = D * H * Dh * 2 + D * Hk * Dh * 2 + 3 * D * I + 2 * D;
  EXPECT_EQ(s.groups[0].params, V * D);             // embedding
  EXPECT_EQ(s.groups[1].params, layer);             // one layer
  EXPECT_EQ(s.groups[2].params, 2 * layer);         // all layers
  EXPECT_EQ(s.groups[4].params, V * D);             // untied head
  EXPECT_EQ(s.total_params, 2 * V * D + 2 * layer + D);
  EXPECT_EQ(s.total_bytes, s.total_params * 4);
  EXPECT_NEAR(s.bits_per_param, 32.0, 1e-9);
}

TEST(Inspect, QuantizedRowsFoldScalesAndBiases) {
  auto m = load_tiny("llama_q4");
  an::ModelSummary s = an::inspect(*m);
  for (const auto& p : s.params) {
    if (p.name != "model.layers.0.self_attn.q_proj.weight" && p.name != "model.layers.0.mlp.down_proj.weight")
      continue;
    const int64_t groups = p.params / 32;
    EXPECT_EQ(p.bytes, p.params * p.bits / 8 + groups * 2 * 4) << p.name;  // float32 scales + biases
    EXPECT_EQ(p.bits, p.name.find("down_proj") != std::string::npos ? 8 : 4);
    EXPECT_EQ(p.shape.back(), p.stored_shape.back() * 32 / p.bits);
  }
  // Logical parameter counts do not depend on the storage.
  EXPECT_EQ(s.total_params, an::inspect(*load_tiny("llama")).total_params);
}

// Mixture of experts: stacked expert tensors count E × out × in parameters,
// and a token runs through k of E experts in each expert layer (Qwen3-MoE's
// layer 1 keeps a dense MLP, counted whole).
TEST(Inspect, ExpertsCountWholeAndActivePerToken) {
  const int64_t D = 64, V = 160, Dh = 32, H = 4, Hk = 2, E = 8, k = 3, Ie = 64, I = 128;
  const int64_t attn = D * H * Dh * 2 + D * Hk * Dh * 2 + 2 * Dh + 2 * D;  // q, o, k, v, q/k norms, two norms
  const int64_t experts = 3 * E * D * Ie, router = E * D;
  for (const char* name : {"qwen3_moe", "qwen3_moe_q4"}) {
    an::ModelSummary s = an::inspect(*load_tiny(name));
    EXPECT_EQ(s.experts, E) << name;
    EXPECT_EQ(s.experts_per_token, k) << name;
    EXPECT_EQ(s.total_params, V * D + D + 3 * attn + 2 * (router + experts) + 3 * D * I) << name;
    EXPECT_EQ(s.active_params, s.total_params - 2 * experts / E * (E - k)) << name;
  }
  an::ModelSummary dense = an::inspect(*load_tiny("llama"));
  EXPECT_EQ(dense.experts, 0);
  EXPECT_EQ(dense.active_params, dense.total_params);
}

TEST(Inspect, DefaultModelIs135M) {
  an::ModelSummary s = an::inspect(*default_model().model);
  EXPECT_EQ(s.total_params, 134515008);
  EXPECT_EQ(s.size_label, "135M");
  EXPECT_TRUE(s.tied_embeddings);
  EXPECT_EQ(s.groups[4].params, 0);  // the head is the embedding
}

}  // namespace
}  // namespace lmlab::test
