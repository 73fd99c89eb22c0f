// Model directories: quantization config with per-layer overrides, sharded
// files, save → read round trip, and broken inputs.
#include <fstream>

#include <mlx/mlx.h>

#include "lmlab/io.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
using json = nlohmann::json;

void write_json(const std::filesystem::path& p, const json& j) { std::ofstream(p) << j.dump(); }

TEST(ModelDir, PerLayerQuantizationOverrides) {
  auto dir = temp_dir("dir-quant");
  mx::array w = mx::random::normal({8, 128});
  auto q4 = mx::quantize(w, 64, 4);
  auto q8 = mx::quantize(w, 32, 8);
  mx::save_safetensors((dir / "model-00001-of-00002.safetensors").string(),
                       {{"a.weight", q4[0]}, {"a.scales", q4[1]}, {"a.biases", q4[2]}});
  mx::save_safetensors((dir / "model-00002-of-00002.safetensors").string(),
                       {{"b.weight", q8[0]}, {"b.scales", q8[1]}, {"b.biases", q8[2]}, {"n.weight", mx::ones({8})}});
  write_json(dir / "config.json",
             {{"model_type", "llama"}, {"quantization", {{"group_size", 64}, {"bits", 4}, {"b", {{"group_size", 32}, {"bits", 8}}}}}});
  auto m = io::read_model_dir(dir);
  EXPECT_EQ(m.weights.size(), 7u);
  ASSERT_NE(m.weights.quant("a"), nullptr);
  EXPECT_EQ(*m.weights.quant("a"), (QuantSpec{.bits = 4, .group_size = 64}));
  EXPECT_EQ(*m.weights.quant("b"), (QuantSpec{.bits = 8, .group_size = 32}));
  EXPECT_EQ(m.weights.quant("n"), nullptr);
}

// generation_config.json's eos_token_id (often a list: end of text and end of
// turn) replaces config.json's, as transformers and mlx-lm read it.
TEST(ModelDir, GenerationConfigEosTokensWin) {
  auto dir = temp_dir("dir-eos");
  mx::save_safetensors((dir / "model.safetensors").string(), {{"n.weight", mx::ones({8})}});
  write_json(dir / "config.json", {{"model_type", "llama"}, {"eos_token_id", 2}});
  EXPECT_EQ(io::read_model_dir(dir).config["eos_token_id"], 2);
  write_json(dir / "generation_config.json", {{"eos_token_id", {2, 32007}}, {"temperature", 0.6}});
  EXPECT_EQ(io::read_model_dir(dir).config["eos_token_id"], json({2, 32007}));
}

TEST(ModelDir, SaveThenReadRoundTrips) {
  auto root = temp_dir("dir-save");
  Weights w;
  auto q = mx::quantize(mx::random::normal({4, 64}), 32, 4);
  w.set("x.weight", q[0]);
  w.set("x.scales", q[1]);
  w.set("x.biases", q[2]);
  w.set_quant("x", {.bits = 4, .group_size = 32});
  w.set("y.weight", mx::arange(6.0f));
  io::save_model_dir(root / "out", {{"model_type", "llama"}}, w);
  auto back = io::read_model_dir(root / "out");
  EXPECT_EQ(*back.weights.quant("x"), (QuantSpec{.bits = 4, .group_size = 32}));
  EXPECT_TRUE(mx::array_equal(back.weights.at("x.weight"), q[0]).item<bool>());
  EXPECT_TRUE(mx::array_equal(back.weights.at("y.weight"), mx::arange(6.0f)).item<bool>());
  EXPECT_THROW(io::save_model_dir(root / "out", {}, w), std::invalid_argument);  // never overwrite
  for (auto& e : std::filesystem::directory_iterator(root))  // no temp folder left behind
    EXPECT_EQ(e.path().filename(), "out");
}

TEST(ModelDir, BrokenInputsAreClearErrors) {
  auto dir = temp_dir("dir-broken");
  EXPECT_THROW(io::read_model_dir(dir), std::runtime_error);  // no config.json
  std::ofstream(dir / "config.json") << "{ not json";
  EXPECT_THROW(io::read_model_dir(dir), std::invalid_argument);
  write_json(dir / "config.json", {{"model_type", "llama"}});
  EXPECT_THROW(io::read_model_dir(dir), std::runtime_error);  // no weights
  std::ofstream(dir / "model.safetensors", std::ios::binary) << std::string("\x10\0\0\0\0\0\0\0{\"a\":", 13);
  EXPECT_THROW(io::read_model_dir(dir), std::runtime_error);  // truncated safetensors
  auto q = mx::quantize(mx::random::normal({4, 64}), 32, 4);
  mx::save_safetensors((dir / "model.safetensors").string(), {{"x.weight", q[0]}, {"x.scales", q[1]}, {"x.biases", q[2]}});
  EXPECT_THROW(io::read_model_dir(dir), std::invalid_argument);  // scales without a quantization config
}

}  // namespace
}  // namespace lmlab::test
