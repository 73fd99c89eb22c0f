// Model::decode_rows (continuous batching): one new token for each of several
// sequences, each with its own cache at its own position, in one forward pass.
// Against each sequence decoded alone with Model::forward: on every quantized
// tiny family through the fused rows step (nn::cpu::decoder_step_rows), with
// the fused steps off (the composed block per sequence), on the MoE families
// (composed), and with more rows than the few-rows kernels take.
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

// Whether layer 0's newest keys came from the batched fused step.
bool from_rows_step(const nn::KVCache& cache) {
  const mx::array keys = cache.state().at(0);
  if (!keys.has_primitive()) return false;
  const std::string name = keys.primitive().name();
  return name == "LmlabDecoderStep" && keys.siblings().size() > 2;
}

struct Rows {
  float worst = 0;       // largest |logit difference| batched vs alone
  bool fused = true;     // every batched round went through the rows step
};

// Prefills sequences of different lengths (prompt b has 3 + 2b tokens), then
// decodes `rounds` tokens of each, batched and alone, feeding both the alone
// run's greedy token so that the two stay on one path.
Rows decode_both(const Model& m, int sequences, int rounds) {
  const int V = m.config().vocab_size;
  std::vector<std::unique_ptr<nn::KVCache>> batch, alone;
  std::vector<int> next;
  for (int b = 0; b < sequences; ++b) {
    std::vector<int> prompt;
    for (int t = 0; t < 3 + 2 * b; ++t) prompt.push_back((11 * b + 5 * t + 1) % V);
    mx::array tokens(prompt.begin(), {1, static_cast<int>(prompt.size())}, mx::int32);
    batch.push_back(m.make_cache());
    alone.push_back(m.make_cache());
    m.forward(tokens, batch.back().get());
    mx::array logits = m.forward(tokens, alone.back().get());
    next.push_back(mx::argmax(mx::reshape(mx::take(logits, logits.shape(1) - 1, 1), {-1})).item<int>());
  }
  Rows r;
  for (int round = 0; round < rounds; ++round) {
    std::vector<nn::KVCache*> caches;
    for (auto& c : batch) caches.push_back(c.get());
    mx::array together = m.decode_rows(mx::array(next.begin(), {sequences, 1}, mx::int32), caches);
    EXPECT_EQ(together.shape(), (mx::Shape{sequences, 1, V}));
    r.fused = r.fused && from_rows_step(*batch.front());
    for (int b = 0; b < sequences; ++b) {
      mx::array own = m.forward(mx::array({next[b]}, {1, 1}, mx::int32), alone[b].get());
      mx::array row = mx::slice(together, {b, 0, 0}, {b + 1, 1, V});
      r.worst = std::max(r.worst, mx::max(mx::abs(mx::subtract(row, own))).item<float>());
      next[b] = mx::argmax(mx::reshape(own, {-1})).item<int>();
      EXPECT_EQ(batch[b]->offset(), alone[b]->offset());
    }
  }
  return r;
}

class DecodeRowsFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(DecodeRowsFamily, EachRowIsItsSequenceDecodedAlone) {
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir(GetParam()) / "config.json");
  auto m = load_tiny(GetParam());
  Rows r = decode_both(*m, 3, 5);
  std::printf("[ rows     ] %s: max |logit diff| batched vs alone = %.3g\n", GetParam().c_str(), r.worst);
  EXPECT_TRUE(r.fused);
  EXPECT_LT(r.worst, 1e-5f);
  // The fused steps off: each sequence through the composed block.
  m->set_fused(false);
  Rows composed = decode_both(*m, 3, 3);
  EXPECT_FALSE(composed.fused);
  EXPECT_LT(composed.worst, 1e-5f);
}

TEST(DecodeRows, RawGgmlBlockProjectionsTakeTheRowsStep) {
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(tiny_checkpoint_dir("gemma3_text") / "config.json");
  auto m = nn_util::load_tiny_raw_blocks("gemma3_text");
  Rows r = decode_both(*m, 3, 4);
  std::printf("[ rows     ] gemma3_text, iq4_nl blocks: max |logit diff| batched vs alone = %.3g\n", r.worst);
  EXPECT_TRUE(r.fused);
  EXPECT_LT(r.worst, 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Tiny, DecodeRowsFamily,
                         ::testing::Values("llama_q4", "llama_yarn_q4", "mistral_q4", "qwen2_q4", "qwen3_q4",
                                           "gemma3_text_q4", "gemma3_text_q5", "phi3_q4"));

TEST(DecodeRows, ManyRowsTakeTheManyRowsKernels) {
  LMLAB_SKIP_OFF_CPU();
  // 12 rows: above the few-rows GEMV, so the float projections dequantize
  // panels (another summation order: not bit-identical, within 1e-4).
  auto m = load_tiny("qwen3_q4");
  Rows r = decode_both(*m, 12, 3);
  EXPECT_TRUE(r.fused);
  EXPECT_LT(r.worst, 1e-4f);
}

TEST(DecodeRows, MixtureOfExpertsComposesEachSequence) {
  LMLAB_SKIP_OFF_CPU();
  for (const char* name : {"mixtral", "qwen3_moe"}) {
    LMLAB_REQUIRE_FILE(tiny_checkpoint_dir(name) / "config.json");
    auto m = load_tiny(name);
    Rows r = decode_both(*m, 3, 3);
    EXPECT_FALSE(r.fused) << name;
    EXPECT_LT(r.worst, 1e-5f) << name;
  }
}

TEST(DecodeRows, RefusesRowsWithoutTheirOwnCache) {
  LMLAB_SKIP_OFF_CPU();
  auto m = load_tiny("llama_q4");
  auto a = m->make_cache(), b = m->make_cache();
  EXPECT_THROW(m->decode_rows(mx::array({1, 2}, {2, 1}, mx::int32), {a.get()}), std::invalid_argument);
  EXPECT_THROW(m->decode_rows(mx::array({1, 2}, {1, 2}, mx::int32), {a.get()}), std::invalid_argument);
  EXPECT_THROW(m->decode_rows(mx::array({1, 2}, {2, 1}, mx::int32), {a.get(), nullptr}), std::invalid_argument);
  nn::KVCache other(m->config().num_hidden_layers + 1);
  EXPECT_THROW(m->decode_rows(mx::array({1, 2}, {2, 1}, mx::int32), {a.get(), &other}), std::invalid_argument);
  // Empty caches are fine: position 0 for both.
  mx::array logits = m->decode_rows(mx::array({1, 2}, {2, 1}, mx::int32), {a.get(), b.get()});
  EXPECT_EQ(logits.shape(0), 2);
  EXPECT_EQ(a->offset(), 1);
  EXPECT_EQ(b->offset(), 1);
}

}  // namespace
}  // namespace lmlab::test
