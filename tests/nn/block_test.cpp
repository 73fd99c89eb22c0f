// nn::DecoderBlock and nn::Linear's adapter slot: a zero adapter changes
// nothing, a non-zero one turns the fused step off and gives the same logits as
// the composed block and as its merged weights (LoRA and DoRA); and a family
// added at run time (one spec, no change to io/ or nn/) with Gemma-style blocks
// (sandwich norms, (1 + w) norms, q/k norms, GeGLU, a sliding window, scaled
// embeddings) decodes through the fused step exactly as the composed block and
// as its own full forward pass.
#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "models/family.h"
#include "models/gguf.h"
#include "models/model_test_util.h"
#include "models/transformer.h"
#include "nn/linear.h"
#include "nn/nn_test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

using nn_util::load_tiny;
using nn_util::max_diff;

bool fused(const nn::KVCache& cache) {
  const mx::array keys = cache.state().at(0);
  return keys.has_primitive() && std::string(keys.primitive().name()) == "LmlabDecoderStep";
}


// Prefill then single tokens through a cache; the logits of every step, concatenated.
mx::array decode(const Model& m, const std::vector<int>& ids, int prefill, nn::Hooks* hooks = nullptr,
                 bool* all_fused = nullptr) {
  auto cache = m.make_cache();
  std::vector<mx::array> parts{m.forward(mx::array(ids.begin(), {1, prefill}, mx::int32), cache.get(), hooks)};
  if (all_fused) *all_fused = true;
  for (size_t i = prefill; i < ids.size(); ++i) {
    parts.push_back(m.forward(mx::array({ids[i]}, {1, 1}, mx::int32), cache.get(), hooks));
    if (all_fused) *all_fused = *all_fused && fused(*cache);
  }
  return mx::concatenate(parts, 1);
}

const std::vector<int> kIds = {5, 9, 2, 41, 7, 3, 11, 19, 23, 1, 8, 60, 4, 17};

// Attaches an adapter to every projection of every block: A ~ N(0, 0.1),
// B zero or N(0, 0.1), seeded.
void attach(Model& m, const std::string& kind, bool zero_b, int rank = 4) {
  auto& t = static_cast<const models::Transformer&>(m);
  mx::array key = mx::random::key(7);
  for (const auto& block : t.spec().blocks)
    for (const std::string* name : block.names().projections()) {
      nn::Linear l = nn::Linear::view(m.weights(), *name);
      auto keys = mx::random::split(key);
      key = keys.first;
      auto ab = mx::random::split(keys.second);
      mx::array a = mx::multiply(mx::random::normal({l.in_features(), rank}, mx::float32, 0, 1, ab.first), mx::array(0.1f));
      mx::array b = zero_b ? mx::zeros({rank, l.out_features()})
                           : mx::multiply(mx::random::normal({rank, l.out_features()}, mx::float32, 0, 1, ab.second),
                                          mx::array(0.1f));
      m.weights().set(*name + ".lora_a", a);
      m.weights().set(*name + ".lora_b", b);
      if (kind == "dora") {
        // mlx-lm starts m at the base rows' norms; a different magnitude exercises the rescaling.
        mx::array norms = mx::sqrt(mx::sum(mx::square(l.dense_weight(mx::float32)), -1));
        m.weights().set(*name + ".m", mx::multiply(norms, mx::array(1.25f)));
      }
      m.weights().set_adapter(*name, {.kind = kind, .scale = 2.0f});
    }
}

// Replaces every adapted projection by its merged dense weight (mlx-lm's fuse):
// W' = W + scale·Bᵀ Aᵀ, and for DoRA W' scaled per row to m / ‖W'‖.
void merge(Model& m) {
  Weights& w = m.weights();
  auto adapted = w.adapted_modules();
  for (const auto& [name, spec] : adapted) {
    nn::Linear l = nn::Linear::view(w, name);
    mx::array merged = mx::add(l.dense_weight(mx::float32),
                               mx::matmul(mx::multiply(mx::transpose(l.adapter->b), mx::array(spec.scale)),
                                          mx::transpose(l.adapter->a)));
    if (spec.kind == "dora")
      merged = mx::multiply(mx::expand_dims(mx::divide(*l.adapter->m, mx::sqrt(mx::sum(mx::square(merged), -1))), 1),
                            merged);
    mx::eval(merged);
    w.clear_adapter(name);
    w.clear_quant(name);
    w.erase(name + ".scales");
    w.erase(name + ".biases");
    w.set(name + ".weight", merged);
  }
}

TEST(Adapters, AZeroAdapterChangesNoLogit) {
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto base = load_tiny("llama_q4");
  bool base_fused = false;
  mx::array want = decode(*base, kIds, 6, nullptr, &base_fused);
  EXPECT_TRUE(base_fused);
  auto adapted = load_tiny("llama_q4");
  attach(*adapted, "lora", /*zero_b=*/true);
  bool adapted_fused = true;
  mx::array got = decode(*adapted, kIds, 6, nullptr, &adapted_fused);
  EXPECT_FALSE(adapted_fused) << "an adapter must turn the fused step off";
  EXPECT_EQ(max_diff(got, want), 0.0f);
}

TEST(Adapters, FusedStepSeesEveryChangeToTheTreeItHasRead) {
  // The block keeps what it read for the fused step while the tree is
  // unchanged (Weights::stamp): a changed tensor, then an attached adapter, on
  // a model that has already decoded, must be what the next step reads.
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto m = load_tiny("llama_q4"), fresh = load_tiny("llama_q4");
  bool all_fused = false;
  const mx::array before = decode(*m, kIds, 6, nullptr, &all_fused);
  EXPECT_TRUE(all_fused);
  for (Model* model : {m.get(), fresh.get()}) {
    const std::string name = "model.layers.1.mlp.down_proj.scales";
    model->weights().set(name, mx::multiply(model->weights().at(name), mx::array(1.5f, mx::float32)));
  }
  const mx::array changed = decode(*m, kIds, 6, nullptr, &all_fused);
  EXPECT_TRUE(all_fused);
  EXPECT_GT(max_diff(changed, before), 0.0f);
  EXPECT_EQ(max_diff(changed, decode(*fresh, kIds, 6)), 0.0f);
  attach(*m, "lora", /*zero_b=*/false);
  decode(*m, kIds, 6, nullptr, &all_fused);
  EXPECT_FALSE(all_fused) << "an adapter attached after decoding must turn the fused step off";
}

class AdapterKind : public ::testing::TestWithParam<std::string> {};

TEST_P(AdapterKind, ChangesLogitsAsTheComposedBlockAndItsMergedWeights) {
  LMLAB_SKIP_OFF_CPU();
  LMLAB_REQUIRE_FILE(fixtures_dir() / "model" / "tiny" / "llama_q4" / "config.json");
  auto base = load_tiny("llama_q4");
  mx::array plain = decode(*base, kIds, 6);
  auto adapted = load_tiny("llama_q4");
  attach(*adapted, GetParam(), /*zero_b=*/false);
  bool any_fused = true;
  mx::array cached = decode(*adapted, kIds, 6, nullptr, &any_fused);
  EXPECT_FALSE(any_fused);
  nn::Hooks composed;
  mx::array hooked = decode(*adapted, kIds, 6, &composed);
  EXPECT_EQ(max_diff(cached, hooked), 0.0f) << "decode path vs explicitly composed path";
  const float moved = max_diff(cached, plain);
  EXPECT_GT(moved, 1e-2f) << "the adapter must change the logits";
  merge(*adapted);
  const float vs_merged = max_diff(decode(*adapted, kIds, 6), cached);
  std::printf("[ adapter  ] %s: logits moved by %.3g; adapter vs merged weights %.3g\n", GetParam().c_str(), moved,
              vs_merged);
  EXPECT_LT(vs_merged, 1e-4f);
}

INSTANTIATE_TEST_SUITE_P(Tiny, AdapterKind, ::testing::Values("lora", "dora"));

// --- A family registered by a test: Gemma-style blocks, one spec, nothing else.

constexpr int kD = 64, kLayers = 2, kHeads = 4, kKv = 2, kDh = 16, kI = 128, kVocab = 97, kWindow = 5;

std::unique_ptr<Model> make_sandwich(const ModelConfig& c, Weights w, mx::Dtype dtype) {
  nn::BlockSpec spec = models::llama_block_spec(c);
  spec.norm_offset = 1.0f;
  spec.qk_norm = true;
  spec.sandwich_norms = true;
  spec.activation = nn::Activation::gelu_tanh;
  models::TransformerSpec t;
  t.embed_scale = 8.0f;
  t.norm_eps = spec.norm_eps;
  t.norm_offset = 1.0f;
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    nn::BlockSpec s = spec;
    s.sliding_window = l == 0 ? kWindow : 0;  // a local layer, then a global one
    nn::BlockNames n = nn::BlockNames::llama(l);
    const std::string p = fmt::format("model.layers.{}.", l);
    n.attn_out_norm = p + "post_attention_layernorm";
    n.mlp_norm = p + "pre_feedforward_layernorm";
    n.mlp_out_norm = p + "post_feedforward_layernorm";
    t.blocks.emplace_back(l, s, n);
  }
  return std::make_unique<models::Transformer>(c, std::move(t), std::move(w), dtype);
}

void register_sandwich() {
  static bool done = [] {
    models::register_family({
        .name = "lmlab_test_sandwich",
        .model_types = {"lmlab_test_sandwich"},
        .gguf_architectures = {"lmlab_test_sandwich"},
        .gguf_block_names = {{"post_attention_norm", "post_attention_layernorm"},
                             {"ffn_norm", "pre_feedforward_layernorm"},
                             {"post_ffw_norm", "post_feedforward_layernorm"}},
        .make = make_sandwich,
    });
    return true;
  }();
  (void)done;
}

nlohmann::json sandwich_config() {
  return {{"model_type", "lmlab_test_sandwich"}, {"hidden_size", kD},          {"num_hidden_layers", kLayers},
          {"num_attention_heads", kHeads},       {"num_key_value_heads", kKv}, {"head_dim", kDh},
          {"intermediate_size", kI},             {"vocab_size", kVocab},       {"rms_norm_eps", 1e-6},
          {"rope_theta", 10000.0}};
}

// Random weights under GGUF names, projections quantized 4-bit (group 32).
Weights sandwich_gguf_weights() {
  Weights w;
  mx::array key = mx::random::key(11);
  auto next = [&](const mx::Shape& shape, float scale) {
    auto k = mx::random::split(key);
    key = k.first;
    return mx::multiply(mx::random::normal(shape, mx::float32, 0, 1, k.second), mx::array(scale));
  };
  auto linear = [&](const std::string& name, int out, int in) {
    auto q = mx::quantize(next({out, in}, 0.2f), 32, 4);
    w.set(name + ".weight", q[0]);
    w.set(name + ".scales", q[1]);
    w.set(name + ".biases", q[2]);
    w.set_quant(name, {.bits = 4, .group_size = 32});
  };
  w.set("token_embd.weight", next({kVocab, kD}, 0.1f));
  w.set("output_norm.weight", next({kD}, 0.1f));
  for (int l = 0; l < kLayers; ++l) {
    const std::string p = fmt::format("blk.{}.", l);
    for (const char* n : {"attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"})
      w.set(p + n + ".weight", next({kD}, 0.1f));
    w.set(p + "attn_q_norm.weight", next({kDh}, 0.1f));
    w.set(p + "attn_k_norm.weight", next({kDh}, 0.1f));
    linear(p + "attn_q", kHeads * kDh, kD);
    linear(p + "attn_k", kKv * kDh, kD);
    linear(p + "attn_v", kKv * kDh, kD);
    linear(p + "attn_output", kD, kHeads * kDh);
    linear(p + "ffn_gate", kI, kD);
    linear(p + "ffn_up", kI, kD);
    linear(p + "ffn_down", kD, kI);
  }
  return w;
}

TEST(Family, AddedAtRunTimeWithGemmaStyleBlocks) {
  LMLAB_SKIP_OFF_CPU();
  register_sandwich();
  auto config = sandwich_config();
  Weights w = models::gguf_weights(sandwich_gguf_weights(), config);
  ASSERT_TRUE(w.contains("model.layers.1.post_feedforward_layernorm.weight"));
  ASSERT_TRUE(w.quant("model.layers.1.mlp.down_proj"));
  auto m = make_model(config, std::move(w), mx::float32);
  // 14 tokens through a window of 5: decode (fused) = composed = the full forward.
  bool all_fused = false;
  mx::array stepped = decode(*m, kIds, 3, nullptr, &all_fused);
  EXPECT_TRUE(all_fused);
  nn::Hooks composed;
  EXPECT_EQ(max_diff(stepped, decode(*m, kIds, 3, &composed)), 0.0f);
  mx::array full = m->forward(mx::array(kIds.begin(), {1, static_cast<int>(kIds.size())}, mx::int32));
  const float diff = max_diff(stepped, full);
  std::printf("[ family   ] run-time family: decode vs full forward %.3g\n", diff);
  EXPECT_LT(diff, 1e-5f);
  EXPECT_THROW(models::register_family({.name = "again", .model_types = {"lmlab_test_sandwich"}, .make = make_sandwich}),
               std::invalid_argument);
}

TEST(Family, ConfigThatDescribesFewerLayersThanTheWeightsIsRefused) {
  register_sandwich();
  auto config = sandwich_config();
  config["num_hidden_layers"] = 1;
  Weights w = models::gguf_weights(sandwich_gguf_weights(), sandwich_config());
  try {
    make_model(config, std::move(w), mx::float32);
    FAIL() << "a 2-layer checkpoint with num_hidden_layers = 1 must not load";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("num_hidden_layers = 1"), std::string::npos) << e.what();
  }
}

// embedding_rows gathers every array as uint32 words with int32 ids (one
// gather kernel for MLX to compile on a GPU): rows must equal the dequantized
// table's whatever the ids' integer type.
TEST(Embedding, RowsEqualTheDequantizedTableForEveryIdType) {
  io::ModelDir d = io::read_model_dir(fixtures_dir() / "model" / "tiny" / "llama_q4");
  const nn::Linear table = nn::Linear::view(d.weights, "model.embed_tokens");
  ASSERT_TRUE(table.quant);
  const int V = table.weight.shape(0);
  std::vector<int> ids = {0, 1, 127, 128, 129, V / 2, V - 2, V - 1};
  mx::array full = nn::embedding_rows(table, mx::arange(V, mx::int32), mx::float32);
  mx::array expected = mx::take(full, mx::array(ids.begin(), {static_cast<int>(ids.size())}, mx::int32), 0);
  for (mx::Dtype t : {mx::int32, mx::uint32, mx::int64}) {
    mx::array got = nn::embedding_rows(table, mx::astype(mx::array(ids.begin(), {static_cast<int>(ids.size())}, mx::int32), t),
                                       mx::float32);
    EXPECT_TRUE(mx::array_equal(got, expected).item<bool>()) << "ids of type " << t;
  }
}

}  // namespace
}  // namespace lmlab::test
