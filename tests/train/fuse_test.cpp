// Fusing adapters equals running them: on the tiny 4-bit llama with a non-zero
// LoRA or DoRA adapter on every projection,
//  - --dequantize: the fused float model's logits equal the adapted model's
//    (float32 summation order only);
//  - re-quantized: each fused projection is exactly mx::quantize of the merged
//    weight at the base's bits and group size (as mlx-lm's fuse), and the
//    logits, moved by that rounding, stay far nearer the adapted model's than
//    the base's are;
//  - the saved directory (the 4-bit parity checkpoint fused) loads back with
//    the same logits;
//  - on a mixture of experts (the tiny 4-bit Qwen3-MoE with a dense layer among
//    sparse ones), adapters on every target mlx-lm's default keys give (stacked
//    experts, router, dense MLP, attention) fuse the same way: each expert's
//    W_e + s·B_e A_e.
#include <algorithm>

#include <mlx/mlx.h>

#include "lmlab/analysis.h"
#include "lmlab/io.h"
#include "lmlab/train.h"
#include "models/model_test_util.h"
#include "models/transformer.h"
#include "nn/linear.h"
#include "train/lora.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using mx::array;

array rnd(const mx::Shape& shape, float scale, uint64_t seed) {
  return mx::multiply(mx::random::normal(shape, mx::float32, 0, 1, mx::random::key(seed)), array(scale));
}

std::unique_ptr<Model> tiny_q4() {
  io::ModelDir d = io::read_model_dir(fixtures_dir() / "model" / "tiny" / "llama_q4");
  return make_model(d.config, std::move(d.weights), mx::float32);
}

void attach(Model& m, const std::string& kind) {
  uint64_t seed = 500;
  for (const auto& block : static_cast<const models::Transformer&>(m).spec().blocks)
    for (const std::string* p : block.names().projections()) {
      nn::Linear l = nn::Linear::view(m.weights(), *p);
      m.weights().set(*p + ".lora_a", rnd({l.in_features(), 4}, 0.3f, seed++));
      m.weights().set(*p + ".lora_b", rnd({4, l.out_features()}, 0.05f, seed++));
      if (kind == "dora") {
        array norms = mx::sqrt(mx::sum(mx::square(l.dense_weight(mx::float32)), -1));
        m.weights().set(*p + ".m", mx::multiply(norms, mx::add(array(1.0f), rnd({l.out_features()}, 0.1f, seed++))));
      }
      m.weights().set_adapter(*p, {.kind = kind, .scale = 4.0f});
    }
}

// Inside the tiny checkpoints' vocabulary of 160: the embedding gather does not
// bounds-check, and an id past the table reads whatever memory follows it.
const std::vector<int> kIds = {1, 17, 42, 99, 5, 150, 31, 8, 64, 12};

array logits(const Model& m) {
  EXPECT_LT(*std::max_element(kIds.begin(), kIds.end()), m.config().vocab_size);
  return m.forward(array(kIds.begin(), {1, int(kIds.size())}, mx::int32));
}

float max_abs_diff(const array& a, const array& b) { return mx::max(mx::abs(mx::subtract(a, b))).item<float>(); }
float mean_abs_diff(const array& a, const array& b) { return mx::mean(mx::abs(mx::subtract(a, b))).item<float>(); }

class Fuse : public ::testing::TestWithParam<std::string> {};

TEST_P(Fuse, DequantizedEqualsAdapterInference) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = tiny_q4();
  attach(*m, GetParam());
  array want = logits(*m);
  mx::eval(want);
  auto fused = train::fuse_adapters(m->weights(), /*dequantize=*/true);
  EXPECT_EQ(fused.size(), 14u);
  EXPECT_TRUE(m->weights().adapted_modules().empty());
  for (const auto& [name, a] : m->weights().items()) {
    EXPECT_FALSE(name.ends_with(".lora_a") || name.ends_with(".scales")) << name;
  }
  const float d = max_abs_diff(logits(*m), want);
  std::printf("[ fuse     ] %s --dequantize: max |Δ logit| %.2g\n", GetParam().c_str(), d);
  EXPECT_LT(d, 1e-4f);
}

TEST_P(Fuse, RequantizedIsTheMergedWeightQuantized) {
  (void)cpu_context();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = tiny_q4();
  array base_logits = logits(*m);
  mx::eval(base_logits);
  attach(*m, GetParam());
  // By hand, as tests/nn/block_test.cpp merges: W + s·BᵀAᵀ, DoRA rows to m/‖row‖;
  // then mx::quantize at the layer's own bits and group size.
  std::map<std::string, std::vector<array>> want;
  std::map<std::string, QuantSpec> specs;
  for (const auto& [name, _] : m->weights().adapted_modules()) {
    nn::Linear l = nn::Linear::view(m->weights(), name);
    array merged = mx::add(l.dense_weight(mx::float32), mx::matmul(mx::multiply(mx::transpose(l.adapter->b), array(4.0f)),
                                                                   mx::transpose(l.adapter->a)));
    if (GetParam() == "dora")
      merged = mx::multiply(
          mx::expand_dims(mx::divide(*l.adapter->m, mx::sqrt(mx::sum(mx::square(merged), -1))), 1), merged);
    specs.emplace(name, *l.quant);
    want.emplace(name, mx::quantize(mx::astype(merged, l.scales->dtype()), l.quant->group_size, l.quant->bits));
    mx::eval(want.at(name));
  }
  ASSERT_EQ(want.size(), 14u);
  array adapted_logits = logits(*m);
  mx::eval(adapted_logits);
  train::fuse_adapters(m->weights(), /*dequantize=*/false);
  const Weights& w = m->weights();
  for (const auto& [name, packed] : want) {
    ASSERT_TRUE(w.quant(name)) << name;
    EXPECT_EQ(w.quant(name)->bits, specs.at(name).bits) << name;
    EXPECT_EQ(w.quant(name)->group_size, specs.at(name).group_size) << name;
    EXPECT_TRUE(mx::array_equal(w.at(name + ".weight"), packed[0]).item<bool>()) << name;
    EXPECT_TRUE(mx::array_equal(w.at(name + ".scales"), packed[1]).item<bool>()) << name;
    EXPECT_TRUE(mx::array_equal(w.at(name + ".biases"), packed[2]).item<bool>()) << name;
  }
  // Every projection carries 4-bit rounding of its merged weight, so the logits
  // move; they must stay far closer to the adapted model's than the base's are.
  const float d = mean_abs_diff(logits(*m), adapted_logits), adapter = mean_abs_diff(base_logits, adapted_logits);
  std::printf("[ fuse     ] %s re-quantized: mean |Δ logit| %.2g (4-bit rounding; the adapters move them %.2g)\n",
              GetParam().c_str(), d, adapter);
  EXPECT_LT(d, 0.5f * adapter);
}

TEST_P(Fuse, SavedModelLoadsBackWithTheSameLogits) {
  (void)cpu_context();
  const auto src = fixtures_dir() / "lora" / "model";  // the parity checkpoint: it has a tokenizer
  LMLAB_REQUIRE_FILE(src / "config.json");
  LoadedModel m = load_model(cpu_context(), LoadOptions{.model = src.string()});
  attach(*m.model, GetParam());
  train::fuse_adapters(m.model->weights(), /*dequantize=*/false);
  array want = logits(*m.model);
  mx::eval(want);
  const auto dir = temp_dir("fused-" + GetParam()) / "model";
  analysis::save_model(m, dir.string());
  LoadedModel back = load_model(cpu_context(), LoadOptions{.model = dir.string()});
  EXPECT_LT(max_abs_diff(logits(*back.model), want), 1e-5f);
}

INSTANTIATE_TEST_SUITE_P(Adapters, Fuse, ::testing::Values("lora", "dora"));

TEST(FuseExperts, MixtureOfExpertsFusedEqualsAdapterInference) {
  (void)cpu_context();
  const auto dir = fixtures_dir() / "families" / "qwen3_moe_q4";
  LMLAB_REQUIRE_FILE(dir / "config.json");
  io::ModelDir md = io::read_model_dir(dir);
  auto m = make_model(md.config, std::move(md.weights), mx::float32);
  const auto& t = static_cast<const models::Transformer&>(*m);
  array base_logits = logits(*m);
  mx::eval(base_logits);
  const std::vector<std::string> targets = train::lora_targets(t, -1, {});
  train::attach_lora(*m, targets, {.rank = 4, .scale = 4.0f}, "lora", 0);
  // Non-zero lora_b everywhere (attach_lora starts it at zero, as mlx-lm does).
  uint64_t seed = 900;
  int experts = 0;
  for (const std::string& name : targets) {
    const array& b = m->weights().at(name + ".lora_b");
    m->weights().set(name + ".lora_b", rnd(b.shape(), 0.05f, seed++));
    experts += b.ndim() == 3;
  }
  EXPECT_EQ(experts, 2 * 3);  // two sparse layers × gate, up, down
  EXPECT_EQ(targets.size(), 2 * 8 + 7u);  // + the routers; the dense layer's seven
  array adapted = logits(*m);
  mx::eval(adapted);
  // W_e + s·B_e A_e of one expert projection, quantized as fuse re-quantizes it.
  const std::string probe = "model.layers.0.mlp.switch_mlp.up_proj";
  nn::Linear l = nn::Linear::view(m->weights(), probe);
  ASSERT_TRUE(l.stacked_experts() && l.adapter);
  array merged = mx::add(l.dense_weight(mx::float32), mx::matmul(mx::multiply(l.adapter->b, array(4.0f)), l.adapter->a));
  auto want = mx::quantize(mx::astype(merged, l.scales->dtype()), l.quant->group_size, l.quant->bits);
  mx::eval(want);
  Weights requantized = m->weights();
  train::fuse_adapters(requantized, /*dequantize=*/false);
  EXPECT_TRUE(mx::array_equal(requantized.at(probe + ".weight"), want[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(requantized.at(probe + ".scales"), want[1]).item<bool>());
  auto fused = train::fuse_adapters(m->weights(), /*dequantize=*/true);
  EXPECT_EQ(fused.size(), targets.size());
  const float d = max_abs_diff(logits(*m), adapted), moved = mean_abs_diff(base_logits, adapted);
  std::printf("[ fuse     ] experts --dequantize: max |Δ logit| %.2g (the adapters move them %.2g)\n", d, moved);
  EXPECT_LT(d, 1e-4f);
  EXPECT_GT(moved, 0.01f);
}

}  // namespace
}  // namespace lmlab::test
