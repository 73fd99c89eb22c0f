// The lab commands on modules kept as raw GGML blocks (q2_k, q3_k, q6_k,
// iq4_nl, iq4_xs): `weights` shows each block's real fields and their values
// equal ggml's dequantization; `surgery` edits those fields, keeps the blocks
// valid, and restores them bit-exactly. The blocks come from the quant-type
// fixture (tests/golden/ggml_quants_golden.py), added to a tiny model's Weights.
#include "analysis/lab_test_util.h"
#include "lmlab/ggml.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

const char* const kModes[] = {"Q2_K", "Q3_K", "Q6_K", "IQ4_NL", "IQ4_XS"};

// A tiny model holding, besides its own tensors, `blocks.<TYPE>` for each raw-block type.
std::unique_ptr<Model> model_with_blocks() {
  auto m = load_tiny("llama");
  const auto path = fixtures_dir() / "quants" / "ggml_quants.gguf";
  Weights q = io::read_gguf_tensors(io::read_gguf(path));
  for (const char* t : kModes) {
    const std::string from = std::string(t) + ".quantized", to = std::string("blocks.") + t;
    m->weights().set(to + ".weight", q.at(from + ".weight"));
    m->weights().set_quant(to, *q.quant(from));
  }
  return m;
}

std::vector<float> row_values(const Model& m, const std::string& name, int row) {
  const QuantSpec& q = *m.weights().quant(name);
  mx::array r = mx::contiguous(mx::take(m.weights().at(name + ".weight"), row, 0));
  mx::eval(r);
  std::vector<float> out(q.unpacked_columns(r.size()));
  io::ggml_dequantize_row(io::ggml_mode_type(q.mode), r.data<uint8_t>(), out.data(), static_cast<int64_t>(out.size()));
  return out;
}

TEST(GgmlBlocksLab, WeightsShowsEachBlocksFields) {
  LMLAB_REQUIRE_FILE(fixtures_dir() / "quants" / "ggml_quants.gguf");
  auto m = model_with_blocks();
  for (const char* t : kModes) {
    const std::string name = std::string("blocks.") + t;
    an::TensorView v = an::view_tensor(*m, name + ".weight", {.row = 2, .col = 250, .count = 20});
    EXPECT_EQ(v.shape, (std::vector<int>{6, 512})) << t;
    EXPECT_EQ(v.dtype, "uint8") << t;
    EXPECT_EQ(v.mode, m->weights().quant(name)->mode);
    const std::vector<float> row = row_values(*m, name, 2);
    for (size_t i = 0; i < v.values.size(); ++i) EXPECT_EQ(v.values[i], row[250 + i]) << t;
    ASSERT_FALSE(v.blocks.empty()) << t;
    EXPECT_TRUE(v.groups.empty());
    for (const an::BlockView& b : v.blocks) {
      const int n = static_cast<int>(b.values.size());
      EXPECT_EQ(n, v.group_size);
      for (int i = 0; i < n; ++i) EXPECT_EQ(b.values[i], row[b.block * n + i]) << t << " block " << b.block;
      io::GgmlBlockFields f = io::ggml_unpack_block(io::ggml_mode_type(v.mode), b.bytes.data());
      EXPECT_EQ(f.q, b.fields);
      EXPECT_EQ(f.scales, b.scales);
      EXPECT_EQ(f.d, b.d);
    }
  }
  // The summary counts the logical values and every stored byte.
  an::ModelSummary s = an::inspect(*m);
  auto p = std::find_if(s.params.begin(), s.params.end(), [](const an::ParamInfo& p) { return p.name == "blocks.Q6_K.weight"; });
  ASSERT_NE(p, s.params.end());
  EXPECT_EQ(p->params, 6 * 512);
  EXPECT_EQ(p->bytes, 6 * 2 * 210);
}

TEST(GgmlBlocksLab, SurgeryEditsFieldsAndRestoresBitExactly) {
  LMLAB_REQUIRE_FILE(fixtures_dir() / "quants" / "ggml_quants.gguf");
  auto m = model_with_blocks();
  const uint64_t h0 = an::weights_hash(*m);
  an::Surgery s(*m);
  for (const char* t : kModes) {
    const std::string name = std::string("blocks.") + t, wn = name + ".weight";
    const io::GgmlType type = io::ggml_mode_type(m->weights().quant(name)->mode);
    const std::vector<float> before = row_values(*m, name, 1);
    // Scaling by 2 doubles d exactly in float16 (Q6_K's d are often subnormal,
    // where halving would round), so every value doubles exactly.
    s.apply({.target = wn, .op = an::EditOp::Scale, .value = 2.0});
    std::vector<float> twice = row_values(*m, name, 1);
    for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(twice[i], before[i] * 2.0f) << t << " " << i;
    s.restore();
    // Shifting fields clamps them to the field range and keeps the blocks readable.
    s.apply({.target = wn, .op = an::EditOp::ShiftFields, .value = 100});
    an::TensorView v = an::view_tensor(*m, wn, {.row = 0, .col = 0, .count = 4});
    const int top = (1 << io::ggml_field_bits(type)) - 1;
    for (int f : v.blocks[0].fields) EXPECT_EQ(f, top) << t;
    s.restore();
    for (const auto& e : {an::EditSpec{.target = wn, .op = an::EditOp::Noise, .value = 1.0, .relative = true, .seed = 2},
                          an::EditSpec{.target = wn, .op = an::EditOp::Noise, .value = 0.01, .seed = 3},
                          an::EditSpec{.target = wn, .op = an::EditOp::FlipBits, .rate = 0.01, .seed = 4},
                          an::EditSpec{.target = wn, .op = an::EditOp::Zero}}) {
      EXPECT_GT(s.apply(e).elements_changed, 0) << t << " " << an::edit_op_name(e.op);
      s.restore();
    }
    s.apply({.target = wn, .op = an::EditOp::Zero});
    for (float x : row_values(*m, name, 3)) ASSERT_EQ(x, 0.0f) << t;
    s.restore();
    EXPECT_THROW(s.apply({.target = wn, .op = an::EditOp::Set, .value = 1}), std::invalid_argument) << t;
    EXPECT_THROW(s.apply({.target = wn, .op = an::EditOp::ShiftWords, .value = 1}), std::invalid_argument) << t;
  }
  EXPECT_EQ(an::weights_hash(*m), h0);
}

}  // namespace
}  // namespace lmlab::test
