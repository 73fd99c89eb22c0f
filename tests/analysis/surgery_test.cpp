// surgery: every edit is undone bit-exactly (hash and logits), quantized edits
// do what they say on the packed form, zeroing the embedding table leaves a
// model with no vocabulary (uniform next-token distribution), --save writes a
// loadable edited copy and never touches the source.
#include <cmath>

#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

const std::vector<int> kIds = {3, 17, 42, 99, 5, 120, 64, 8};
const char* kQ = "model.layers.0.self_attn.q_proj";

mx::array logits_of(const Model& m) {
  mx::array l = m.forward(mx::array(kIds.begin(), {1, (int)kIds.size()}, mx::int32));
  mx::eval(l);
  return l;
}

std::vector<an::EditSpec> every_edit(const std::string& quantized, const std::string& dense) {
  return {{.target = quantized, .op = an::EditOp::Zero},
          {.target = quantized, .op = an::EditOp::Scale, .value = 1.5},
          {.target = quantized, .op = an::EditOp::Noise, .value = 0.7, .relative = true, .seed = 3},
          {.target = quantized, .op = an::EditOp::Noise, .value = 0.05, .seed = 4},
          {.target = quantized, .op = an::EditOp::Set, .value = 0.01},
          {.target = quantized, .op = an::EditOp::ShiftWords, .value = 1},
          {.target = quantized, .op = an::EditOp::ShiftFields, .value = 2},
          {.target = quantized, .op = an::EditOp::FlipBits, .rate = 0.01, .seed = 5},
          {.target = dense, .op = an::EditOp::Noise, .value = 0.1, .relative = true, .seed = 6},
          {.target = dense, .op = an::EditOp::FlipBits, .positions = {0, 31, 100}},
          {.target = "model.layers.*.mlp.*_proj.weight", .op = an::EditOp::Scale, .value = -1}};
}

TEST(Surgery, EveryEditThenRestoreIsBitExact) {
  auto m = load_tiny("llama_q4");
  const uint64_t h0 = an::weights_hash(*m);
  mx::array l0 = logits_of(*m);
  an::Surgery s(*m);
  auto edits = every_edit(std::string(kQ) + ".weight", "model.layers.1.input_layernorm.weight");
  for (const auto& e : edits) {  // one at a time
    const an::EditRecord& r = s.apply(e);
    EXPECT_GT(r.elements_changed, 0) << an::edit_op_name(e.op);
    EXPECT_NE(an::weights_hash(*m), h0) << an::edit_op_name(e.op);
    s.restore();
    EXPECT_EQ(an::weights_hash(*m), h0) << an::edit_op_name(e.op);
  }
  for (const auto& e : edits) s.apply(e);  // all stacked
  EXPECT_FALSE(mx::array_equal(logits_of(*m), l0).item<bool>());
  EXPECT_GT(s.restore(), 0);
  EXPECT_EQ(an::weights_hash(*m), h0);
  EXPECT_TRUE(mx::array_equal(logits_of(*m), l0).item<bool>());
  EXPECT_TRUE(s.log().empty());
}

TEST(Surgery, QuantizedScaleAndSetAreExactOnTheDequantizedValues) {
  auto m = load_tiny("llama_q4");
  const std::string w = std::string(kQ) + ".weight";
  std::vector<float> before = an::view_tensor(*m, w, {.count = 64}).values;
  an::Surgery s(*m);
  s.apply({.target = w, .op = an::EditOp::Scale, .value = 2});
  std::vector<float> after = an::view_tensor(*m, w, {.count = 64}).values;
  for (size_t i = 0; i < before.size(); ++i) EXPECT_FLOAT_EQ(after[i], 2 * before[i]);
  s.apply({.target = w, .op = an::EditOp::Set, .value = 0.25});
  for (float v : an::view_tensor(*m, w, {.count = 64}).values) EXPECT_EQ(v, 0.25f);
  EXPECT_TRUE(m->weights().quant(kQ) != nullptr);  // still quantized
}

TEST(Surgery, ShiftWordsFollowsTheSeedNotebookAndFieldsClamp) {
  auto m = load_tiny("llama_q4");
  const std::string w = std::string(kQ) + ".weight";
  an::TensorView v0 = an::view_tensor(*m, w, {.count = 32});
  an::Surgery s(*m);
  s.apply({.target = w, .op = an::EditOp::ShiftWords, .value = 5});
  an::TensorView v1 = an::view_tensor(*m, w, {.count = 32});
  for (size_t i = 0; i < v0.groups[0].words.size(); ++i)
    EXPECT_EQ(v1.groups[0].words[i], static_cast<uint32_t>(static_cast<int64_t>(v0.groups[0].words[i]) - 5));
  s.restore();
  s.apply({.target = w, .op = an::EditOp::ShiftFields, .value = 3});
  an::TensorView v2 = an::view_tensor(*m, w, {.count = 32});
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(v2.groups[0].fields[i], std::min(v0.groups[0].fields[i] + 3, 15));
}

TEST(Surgery, FlippingABitTwiceIsTheIdentityOnBytes) {
  auto m = load_tiny("llama");
  const std::string n = "model.layers.0.self_attn.k_proj.weight";
  const uint64_t h0 = an::weights_hash(*m, {n});
  an::Surgery s(*m);
  EXPECT_EQ(s.apply({.target = n, .op = an::EditOp::FlipBits, .positions = {31}}).elements_changed, 1);
  // The sign bit of element 0.
  EXPECT_FLOAT_EQ(an::view_tensor(*m, n, {.count = 1}).values[0],
                  -an::view_tensor(*load_tiny("llama"), n, {.count = 1}).values[0]);
  s.apply({.target = n, .op = an::EditOp::FlipBits, .positions = {31}});
  EXPECT_EQ(an::weights_hash(*m, {n}), h0);
}

TEST(Surgery, BadTargetsAndOpsAreOneClearError) {
  auto m = load_tiny("llama_q4");
  an::Surgery s(*m);
  const uint64_t h0 = an::weights_hash(*m);
  EXPECT_THROW(s.apply({.target = "nothing.*"}), std::invalid_argument);
  EXPECT_THROW(s.apply({.target = "model.norm.weight", .op = an::EditOp::ShiftWords, .value = 1}),
               std::invalid_argument);
  EXPECT_THROW(s.apply({.target = "model.norm.weight", .op = an::EditOp::ShiftFields, .value = 1}),
               std::invalid_argument);
  EXPECT_THROW(an::parse_edit_op("melt"), std::invalid_argument);
  EXPECT_EQ(an::weights_hash(*m), h0);  // a refused edit changes nothing
}

TEST(Surgery, ZeroingTheEmbeddingTableErasesTheVocabulary) {
  for (const char* name : {"llama", "llama_q4"}) {
    auto m = load_tiny(name);
    an::Surgery s(*m);
    s.apply({.target = "model.embed_tokens.weight", .op = an::EditOp::Zero});
    // Zero inputs stay zero through every (bias-free) layer: all logits 0, a uniform guess.
    std::vector<float> l = an::next_token_logits(*m, kIds);
    for (float x : l) ASSERT_EQ(x, 0.0f) << name;
    EXPECT_NEAR(an::entropy_bits(l), std::log2(160.0), 1e-4);
  }
}

TEST(Surgery, DefaultModelLosesParisWithoutItsEmbedding) {
  LoadedModel& m = default_model();
  const uint64_t h0 = an::weights_hash(*m.model);
  an::Surgery s(*m.model);
  s.apply({.target = "model.embed_tokens.weight", .op = an::EditOp::Zero});
  auto p = an::predict(m, {"The capital of France is"}, {.k = 3, .chat_template = false});
  EXPECT_NEAR(p[0].entropy, std::log2(49152.0), 1e-3);  // uniform over the vocabulary
  s.restore();
  EXPECT_EQ(an::weights_hash(*m.model), h0);
  EXPECT_EQ(an::predict(m, {"The capital of France is"}, {.k = 1, .chat_template = false})[0].top[0].piece, " Paris");
}

TEST(Surgery, SaveWritesALoadableEditedCopyAndRefusesExistingDirs) {
  (void)cpu_context();
  auto src = fixtures_dir() / "model" / "smollm2-mlx-q4";
  LMLAB_REQUIRE_FILE(src / "config.json");
  LoadedModel m = load_model(cpu_context(), {.model = src.string()});
  an::Surgery s(*m.model);
  s.apply({.target = "model.layers.*.mlp.down_proj.weight", .op = an::EditOp::Scale, .value = 0.5});
  const uint64_t edited = an::weights_hash(*m.model);
  auto out = temp_dir("lab_surgery_save") / "edited";
  an::save_model(m, out.string());
  EXPECT_THROW(an::save_model(m, out.string()), std::invalid_argument);
  s.restore();
  LoadedModel back = load_model(cpu_context(), {.model = out.string()});
  EXPECT_EQ(an::weights_hash(*back.model), edited);
  EXPECT_TRUE(std::filesystem::exists(out / "tokenizer.json"));
  LoadedModel again = load_model(cpu_context(), {.model = src.string()});
  EXPECT_EQ(an::weights_hash(*again.model), an::weights_hash(*m.model));  // the source is untouched
}

}  // namespace
}  // namespace lmlab::test
