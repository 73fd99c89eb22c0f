// nn::cpu::decoder_step, the fused decoder block nn::DecoderBlock runs for a few
// new tokens on the CPU, against the composed block (the same forward pass with an
// empty Hooks, which always composes MLX ops): on every quantized tiny family
// (biases, q/k norms, llama3/linear/yarn rope, GQA), on the default model with
// float and int8 activations, single tokens and chunks of up to 8, and the
// cache it writes in place.
#include <fmt/format.h>

#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "models/model_test_util.h"
#include "nn/nn_test_util.h"
#include "nn/cpu/decoder_step.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

using nn_util::load_tiny;
using nn_util::max_diff;

// Whether the newest entries of layer 0's cache came from the fused step.
bool fused(const nn::KVCache& cache) {
  const mx::array keys = cache.state().at(0);
  return keys.has_primitive() && std::string(keys.primitive().name()) == "LmlabDecoderStep";
}

// The cached positions of every layer, fused run against composed run.
float cache_diff(const nn::KVCache& a, const nn::KVCache& b) {
  auto sa = a.state(), sb = b.state();
  EXPECT_EQ(sa.size(), sb.size());
  float worst = 0;
  for (size_t i = 0; i < sa.size() && i < sb.size(); ++i) {
    mx::Shape stop = sa[i].shape();
    stop[2] = a.offset();
    worst = std::max(worst, max_diff(mx::slice(sa[i], {0, 0, 0, 0}, stop), mx::slice(sb[i], {0, 0, 0, 0}, stop)));
  }
  return worst;
}

// Feeds the same chunks to a fused and a composed run; returns the worst
// logit difference and checks each chunk took the path it should.
float run_both(const Model& m, const std::vector<std::vector<int>>& chunks, int batch = 1) {
  auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
  nn::Hooks composed;  // nothing captured or edited: the plain composed forward
  float worst = 0;
  for (const auto& c : chunks) {
    const int L = static_cast<int>(c.size());
    mx::array tokens = batched_chunk(c, batch, m.config().vocab_size);
    mx::array a = m.forward(tokens, fused_cache.get());
    EXPECT_EQ(fused(*fused_cache), batch * L <= nn::cpu::kDecoderStepMaxRows) << "chunk of " << L;
    mx::array b = m.forward(tokens, composed_cache.get(), &composed);
    EXPECT_FALSE(fused(*composed_cache));
    worst = std::max(worst, max_diff(a, b));
  }
  EXPECT_EQ(fused_cache->offset(), composed_cache->offset());
  EXPECT_LT(cache_diff(*fused_cache, *composed_cache), 1e-5f);
  return worst;
}

class DecoderStepFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderStepFamily, MatchesTheComposedBlock) {
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir(GetParam()) / "config.json");
  auto m = load_tiny(GetParam());
  // A 12-token prefill (composed), single tokens, a chunk of 3, a chunk of 8,
  // then more single tokens; and a first chunk short enough to be fused.
  std::vector<std::vector<int>> chunks = {{5, 9, 2, 41, 7, 3, 11, 19, 23, 1, 8, 60}, {4}, {17}, {2, 30, 9},
                                          {1, 2, 3, 4, 5, 6, 7, 8}, {12}, {13}};
  float diff = run_both(*m, chunks);
  std::printf("[ fused    ] %s: max |logit diff| fused vs composed = %.3g\n", GetParam().c_str(), diff);
  EXPECT_LT(diff, 1e-5f);
  EXPECT_LT(run_both(*m, {{3, 1, 4}, {1}, {5}}), 1e-5f);
  // Two sequences at once (B = 2): rows are B·L.
  EXPECT_LT(run_both(*m, {{3, 1, 4, 1, 5, 9, 2, 6, 5}, {3}, {5, 8, 9}, {7}}, 2), 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Tiny, DecoderStepFamily,
                         ::testing::Values("llama_q4", "llama3_scaled_q4", "llama_linear_rope_q4",
                                           "llama_yarn_q4", "mistral_q4", "qwen2_q4", "qwen3_q4", "gemma3_text_q4",
                                           "gemma3_text_q5", "phi3_q4"));

TEST(DecoderStep, RawGgmlBlockProjectionsMatchTheComposedBlock) {
  // Every projection kept as raw IQ4_NL blocks (as a GGUF's IQ4_NL, Q6_K...
  // tensors load): the step decodes them as nn::ggml_matmul does.
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir("gemma3_text") / "config.json");
  auto m = nn_util::load_tiny_raw_blocks("gemma3_text");
  ASSERT_EQ(m->weights().quant("model.layers.0.mlp.down_proj")->mode, "iq4_nl");
  float diff = run_both(*m, {{5, 9, 2, 41, 7, 3, 11, 19, 23, 1, 8, 60}, {4}, {17}, {2, 30, 9}, {12}});
  std::printf("[ fused    ] gemma3_text, iq4_nl blocks: max |logit diff| fused vs composed = %.3g\n", diff);
  EXPECT_LT(diff, 1e-5f);
  EXPECT_LT(run_both(*m, {{3, 1, 4, 1, 5}, {3}, {5, 8}}, 2), 1e-5f);
}

TEST(DecoderStep, DefaultModelDecodesAsTheComposedBlock) {
  LMLAB_SKIP_OFF_CPU();
  for (const char* act : {"float", "q8"}) {
    auto loaded = load_model(cpu_context(), {.activations = act});
    const Model& m = *loaded.model;
    auto fused_cache = m.make_cache(), composed_cache = m.make_cache();
    nn::Hooks composed;
    std::vector<int> prompt = loaded.tokenizer.encode("The capital of France is");
    mx::array tokens(prompt.begin(), {1, static_cast<int>(prompt.size())}, mx::int32);
    mx::array a = m.forward(tokens, fused_cache.get());
    mx::array b = m.forward(tokens, composed_cache.get(), &composed);
    float worst = 0;
    std::vector<int> ta, tb;
    for (int i = 0; i < 24; ++i) {
      worst = std::max(worst, max_diff(a, b));
      ta.push_back(mx::argmax(mx::reshape(mx::take(a, a.shape(1) - 1, 1), {-1})).item<int>());
      tb.push_back(mx::argmax(mx::reshape(mx::take(b, b.shape(1) - 1, 1), {-1})).item<int>());
      a = m.forward(mx::array({ta.back()}, {1, 1}, mx::int32), fused_cache.get());
      EXPECT_TRUE(fused(*fused_cache));
      b = m.forward(mx::array({tb.back()}, {1, 1}, mx::int32), composed_cache.get(), &composed);
    }
    std::printf("[ fused    ] default model, %s activations: max |logit diff| over 24 steps = %.3g\n", act, worst);
    EXPECT_EQ(ta, tb) << act;
    // Identical on x86 (the fused step rounds as MLX's CPU ops do). The bounds
    // leave room for a CPU whose MLX reductions sum in another order; logits of
    // this model reach ±30, and int8 activations can cross a rounding boundary.
    EXPECT_LT(worst, std::string(act) == "q8" ? 0.05f : 1e-3f) << act;
  }
}

TEST(DecoderStep, WritesTheCacheInPlace) {
  LMLAB_SKIP_OFF_CPU();
  auto m = load_tiny("llama_q4");
  auto cache = m->make_cache();
  m->forward(mx::array({1, 2, 3}, {1, 3}, mx::int32), cache.get());
  // A prefill whose logits nobody reads still fills the cache.
  mx::eval(cache->state());
  ASSERT_EQ(cache->offset(), 3);
  const float* buffer = cache->state()[0].data<float>();
  std::vector<mx::array> held = cache->state();  // an outside reference, as a pending step holds one
  for (int t = 0; t < 4; ++t) {
    m->forward(mx::array({t + 4}, {1, 1}, mx::int32), cache.get());
    mx::eval(cache->state());
    EXPECT_EQ(cache->state()[0].data<float>(), buffer) << "step " << t;
  }
  EXPECT_EQ(cache->offset(), 7);
  // The composed run over the same 7 tokens caches the same keys and values.
  auto composed_cache = m->make_cache();
  nn::Hooks composed;
  m->forward(mx::array({1, 2, 3, 4, 5, 6, 7}, {1, 7}, mx::int32), composed_cache.get(), &composed);
  EXPECT_LT(cache_diff(*cache, *composed_cache), 1e-5f);
}

TEST(DecoderStep, ComposedWhereItDoesNotApply) {
  LMLAB_SKIP_OFF_CPU();
  // Float weights, more than 8 rows, or hooks: the composed block.
  auto dense = load_tiny("llama");
  auto cache = dense->make_cache();
  dense->forward(mx::array({1, 2}, {1, 2}, mx::int32), cache.get());
  EXPECT_FALSE(fused(*cache));
  auto q4 = load_tiny("llama_q4");
  cache = q4->make_cache();
  std::vector<int> nine(9, 3);
  q4->forward(mx::array(nine.begin(), {1, 9}, mx::int32), cache.get());
  EXPECT_FALSE(fused(*cache));
  auto batch = q4->make_cache();
  q4->forward(mx::array({1, 2, 3, 4}, {2, 2}, mx::int32), batch.get());
  EXPECT_TRUE(fused(*batch));
  nn::Hooks hooks;
  hooks.residual = true;
  q4->forward(mx::array({1}, {1, 1}, mx::int32), cache.get(), &hooks);
  EXPECT_FALSE(fused(*cache));
  EXPECT_EQ(hooks.captured.count("layers.0.residual"), 1u);
}

TEST(DecoderStep, RejectsACacheTooSmall) {
  LMLAB_SKIP_OFF_CPU();
  auto m = load_tiny("llama_q4");
  const auto& c = m->config();
  const auto& w = m->weights();
  auto q = [&](const std::string& p) {
    return nn::cpu::QuantizedLinear{w.at(p + ".weight"), w.at(p + ".scales"), w.at(p + ".biases"), std::nullopt,
                               w.quant(p)->group_size, w.quant(p)->bits, ""};
  };
  const std::string l = "model.layers.0.";
  nn::cpu::DecoderLayerArrays arrays{w.at(l + "input_layernorm.weight"), w.at(l + "post_attention_layernorm.weight"),
                                q(l + "self_attn.q_proj"), q(l + "self_attn.k_proj"), q(l + "self_attn.v_proj"),
                                q(l + "self_attn.o_proj"), q(l + "mlp.gate_proj"), q(l + "mlp.up_proj"),
                                q(l + "mlp.down_proj"), std::nullopt, std::nullopt};
  nn::cpu::DecoderStepShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.head_dim, false, 1.0f,
                             1e-5f, 0.125f};
  mx::array h = mx::zeros({1, 2, c.hidden_size});
  mx::array kv = mx::zeros({1, c.num_key_value_heads, 4, c.head_dim});
  EXPECT_TRUE(nn::cpu::decoder_step_is_native(h, arrays, shape, kv, kv, 2));
  EXPECT_FALSE(nn::cpu::decoder_step_is_native(h, arrays, shape, kv, kv, 3));
  auto [cos, sin] = nn::cpu::rope_tables(nn::RoPE{.dims = c.head_dim}, 3, 2);
  EXPECT_THROW(nn::cpu::decoder_step(h, arrays, shape, cos, sin, kv, kv, 3), std::invalid_argument);
  EXPECT_THROW(nn::cpu::decoder_step(h, arrays, shape, mx::zeros({2, 3}), sin, kv, kv, 2), std::invalid_argument);
  EXPECT_THROW(mx::vjp([&](const std::vector<mx::array>& x) {
                 return std::vector<mx::array>{nn::cpu::decoder_step(x[0], arrays, shape, cos, sin, kv, kv, 2).h};
               }, {h}, {h}), std::invalid_argument);
}

}  // namespace
}  // namespace lmlab::test
