// atlas: every tensor of a tiny quantized model perturbed in turn (noise and
// re-quantization), each entry measured against the unperturbed model and
// the model restored bit-exactly; a tied model gets embed, head and tied
// entries; the heatmap, the JSON round trip and the convert recipe's view;
// a pass that starts at the perturbed block gives the whole pass's numbers.
#include "analysis/lab_test_util.h"
#include "analysis/sweep_internal.h"
#include "lmlab/sweep.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;

LoadedModel tiny_loaded(const std::string& name) {
  LoadedModel m;
  m.model = load_tiny(name);
  m.path = name;
  return m;
}

std::vector<int> tokens() {
  std::vector<int> t;
  for (int i = 0; i < 96; ++i) t.push_back((i * 37 + 11) % 160);
  return t;
}

TEST(Atlas, EveryTensorOfEveryLayerIsMeasuredAndRestored) {
  for (const char* name : {"llama_q4", "qwen2_q4"}) {
    SCOPED_TRACE(name);
    LoadedModel m = tiny_loaded(name);
    const uint64_t h0 = an::weights_hash(*m.model);
    an::AtlasOptions o{.eval_tokens = tokens(), .windows = {.context = 32, .stride = 32}};
    an::Atlas a = an::run_atlas(m, o);
    const bool tied = m.model->config().tie_word_embeddings;
    EXPECT_EQ(a.tied, tied);
    EXPECT_EQ(a.entries.size(), 2u * 7 + 2 + (tied ? 1 : 0));
    for (const auto& e : a.entries) {
      EXPECT_GT(e.kl, 0) << e.tensor;
      EXPECT_GT(e.params, 0) << e.tensor;
    }
    EXPECT_EQ(an::weights_hash(*m.model), h0);
    int sides = 0;
    for (const auto& e : a.entries) sides += e.kind == "embed" || e.kind == "head" || e.kind == "tied";
    EXPECT_EQ(sides, tied ? 3 : 2);
  }
}

TEST(Atlas, PassFromThePerturbedBlockEqualsTheWholePass) {
  LoadedModel m = tiny_loaded("llama_q4");
  Model& model = *m.model;
  const int blocks = model.config().num_hidden_layers;
  const quant::WindowOptions windows{.context = 32, .stride = 24};
  const std::vector<int> t = tokens();
  ASSERT_TRUE(an::detail::keep_residuals(model, t, windows, 1));
  const an::detail::Baseline whole = an::detail::make_baseline(model, t, windows);
  const an::detail::Baseline kept = an::detail::make_baseline(model, t, windows, true);
  ASSERT_EQ(kept.residuals.size(), kept.logprobs.size());
  EXPECT_EQ(kept.ppl, whole.ppl);
  for (const std::string target : {"model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.v_proj.weight",
                                   "model.layers.1.post_attention_layernorm.weight", "lm_head.weight"}) {
    SCOPED_TRACE(target);
    an::Surgery s(model);
    s.apply({.target = target, .op = an::EditOp::Noise, .value = 2.0, .relative = true, .seed = 3});
    const int first = an::detail::first_layer_changed(model, {target});
    EXPECT_EQ(first, target == "lm_head.weight" ? blocks : target[13] - '0');
    const an::detail::Divergence full = an::detail::diverge(model, t, windows, whole);
    const an::detail::Divergence from = an::detail::diverge(model, t, windows, kept, first);
    EXPECT_GT(full.kl.mean, 0);
    EXPECT_EQ(from.kl.mean, full.kl.mean);
    EXPECT_EQ(from.kl.p99, full.kl.p99);
    EXPECT_EQ(from.top1, full.top1);
    EXPECT_EQ(from.ppl, full.ppl);
    // Starting past the edit leaves it out: the blocks before the start never run.
    if (first < blocks) EXPECT_EQ(an::detail::diverge(model, t, windows, kept, first + 1).kl.mean, 0.0);
    s.restore();
  }
  EXPECT_EQ(an::detail::first_layer_changed(model, {"model.embed_tokens.weight", "lm_head.weight"}), 0);
  EXPECT_EQ(an::detail::first_layer_changed(model, {"model.norm.weight"}), blocks);
}

TEST(Atlas, RequantizationToFewerBitsCostsMoreThanToMore) {
  LoadedModel m = tiny_loaded("llama_q4");
  auto kl_at = [&](int bits) {
    an::AtlasOptions o{.mode = "requantize", .bits = bits, .group_size = 32, .kinds = {"q", "down"}, .layers = {1},
                       .eval_tokens = tokens(), .windows = {.context = 32, .stride = 32}};
    double total = 0;
    for (const auto& e : an::run_atlas(m, o).entries) total += e.kl;
    return total;
  };
  EXPECT_GT(kl_at(2), kl_at(6));
}

TEST(Atlas, ReportsRoundTripAndFeedTheConvertRecipe) {
  LoadedModel m = tiny_loaded("qwen2_q4");
  an::AtlasOptions o{.mode = "requantize", .bits = 3, .group_size = 32, .eval_tokens = tokens(),
                     .windows = {.context = 32, .stride = 32}};
  an::Atlas a = an::run_atlas(m, o);
  auto dir = temp_dir("atlas-report");
  auto files = an::write_atlas_report(a, dir);
  ASSERT_EQ(files.size(), 3u);
  an::Atlas back = an::read_atlas(dir / "atlas.json");
  ASSERT_EQ(back.entries.size(), a.entries.size());
  EXPECT_EQ(back.entries[3].kl, a.entries[3].kl);
  std::string svg = an::atlas_svg(a);
  EXPECT_NE(svg.find("layer 1"), std::string::npos);
  EXPECT_NE(an::atlas_markdown(a).find("## Ranked by KL"), std::string::npos);
  quant::Sensitivity s = an::sensitivity(back);
  EXPECT_EQ(s.mode, "requantize");
  EXPECT_EQ(s.bits, 3);
  EXPECT_TRUE(s.kl.count("model.layers.0.self_attn.q_proj"));
  EXPECT_TRUE(s.kl.count("model.embed_tokens"));  // tied: the "tied" entry
  EXPECT_FALSE(s.kl.count("lm_head"));
  EXPECT_THROW(an::read_atlas(dir / "atlas.md"), std::invalid_argument);
}

TEST(Atlas, BadOptionsAreRefused) {
  LoadedModel m = tiny_loaded("llama_q4");
  EXPECT_THROW(an::run_atlas(m, {.mode = "melt", .eval_tokens = tokens()}), std::invalid_argument);
  EXPECT_THROW(an::run_atlas(m, {.kinds = {"q", "wq"}, .eval_tokens = tokens()}), std::invalid_argument);
  EXPECT_THROW(an::run_atlas(m, {.layers = {7}, .eval_tokens = tokens()}), std::invalid_argument);
  EXPECT_THROW(an::run_atlas(m, {.level = -1, .eval_tokens = tokens()}), std::invalid_argument);
  EXPECT_THROW(an::run_atlas(m, {.eval_tokens = {1, 2, 500}}), std::invalid_argument);  // outside the vocabulary
}

}  // namespace
}  // namespace lmlab::test
