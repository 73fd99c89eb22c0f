// convert: the same directory mlx_lm.convert writes (every tensor bit for bit,
// the config's quantization entries equal) for uniform and mixed recipes in
// three dtypes; mx::quantize through convert equals Python's mx.quantize at
// every bits × group size; mlx_lm loads what lmlab writes and its logits agree
// with lmlab's; recipes by hand; bad input leaves nothing behind.
#include <sys/stat.h>

#include <cmath>
#include <fstream>

#include "lmlab/quant.h"
#include "models/model_test_util.h"
#include "quant/convert.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;
namespace q = lmlab::quant;
namespace fs = std::filesystem;

fs::path quant_fixtures() { return fixtures_dir() / "quant"; }
fs::path small_model() { return quant_fixtures() / "small-f32"; }

// The mlx_lm.convert runs of tests/golden/quant_golden.py, as lmlab options.
struct Case {
  const char* name;
  q::ConvertOptions o;
};
std::vector<Case> cases() {
  return {{"uniform_q4_g64_bf16", {.dtype = "bfloat16", .quantize = true, .bits = 4, .group_size = 64}},
          {"uniform_q3_g128_f16", {.dtype = "float16", .quantize = true, .bits = 3, .group_size = 128}},
          {"mixed_3_6_g64_f16", {.dtype = "float16", .quantize = true, .group_size = 64, .recipe = "mixed_3_6"}},
          {"mixed_2_6_g32_f32", {.dtype = "float32", .quantize = true, .group_size = 32, .recipe = "mixed_2_6"}}};
}

std::unordered_map<std::string, mx::array> tensors(const fs::path& dir) {
  return mx::load_safetensors((dir / "model.safetensors").string()).first;
}

TEST(Convert, WritesWhatMlxLmConvertWritesBitForBit) {
  LMLAB_REQUIRE_FILE(small_model() / "config.json");
  auto out = temp_dir("convert-same");
  for (auto c : cases()) {
    SCOPED_TRACE(c.name);
    c.o.output = (out / c.name).string();
    q::ConvertResult r = q::convert(cpu_context(), small_model().string(), c.o);
    auto mine = tensors(out / c.name), theirs = tensors(quant_fixtures() / c.name);
    ASSERT_EQ(mine.size(), theirs.size());
    for (auto& [name, a] : theirs) {
      ASSERT_TRUE(mine.count(name)) << name;
      const mx::array& b = mine.at(name);
      ASSERT_EQ(a.dtype(), b.dtype()) << name;
      ASSERT_EQ(a.shape(), b.shape()) << name;
      EXPECT_TRUE(mx::array_equal(a, b).item<bool>()) << name;
    }
    nlohmann::json want = read_json(quant_fixtures() / c.name / "config.json");
    nlohmann::json got = read_json(out / c.name / "config.json");
    EXPECT_EQ(got["quantization"], want["quantization"]);
    EXPECT_EQ(got["quantization_config"], want["quantization_config"]);
    EXPECT_GT(r.bits_per_weight, 2.0);
  }
}

TEST(Convert, QuantizationEqualsPythonMxQuantizeAtEveryFormat) {
  LMLAB_REQUIRE_FILE(quant_fixtures() / "mx_quantize.safetensors");
  auto golden = mx::load_safetensors((quant_fixtures() / "mx_quantize.safetensors").string()).first;
  Weights w;
  w.set("m.weight", golden.at("input"));
  int checked = 0;
  for (int bits : {2, 3, 4, 5, 6, 8})
    for (int group : {32, 64, 128}) {
      auto r = q::detail::quantize_module(w, "m", {bits, group}, mx::float32);
      const std::string k = "b" + std::to_string(bits) + "_g" + std::to_string(group);
      EXPECT_TRUE(mx::array_equal(r[0], golden.at(k + ".weight")).item<bool>()) << k;
      EXPECT_TRUE(mx::array_equal(r[1], golden.at(k + ".scales")).item<bool>()) << k;
      EXPECT_TRUE(mx::array_equal(r[2], golden.at(k + ".biases")).item<bool>()) << k;
      ++checked;
    }
  EXPECT_EQ(checked, 18);
}

// Logits of mlx_lm's model for `dir` on fixed ids, from the test-only Python environment.
std::vector<float> mlx_lm_logits(const fs::path& dir, const std::vector<int>& ids) {
  auto tmp = temp_dir("convert-mlxlm");
  std::string list;
  for (int i : ids) list += std::to_string(i) + ",";
  std::ofstream(tmp / "run.py") << "import sys, mlx.core as mx\nfrom mlx_lm import load\n"
                                   "m, _ = load(sys.argv[1])\n"
                                   "x = m(mx.array([[" << list << "]]))[0, -1].astype(mx.float32)\n"
                                   "print(' '.join(repr(float(v)) for v in x.tolist()))\n";
  const std::string cmd = (source_dir() / ".deps" / "py" / "bin" / "python").string() + " " + (tmp / "run.py").string() +
                          " " + dir.string() + " > " + (tmp / "out").string() + " 2> " + (tmp / "err").string();
  EXPECT_EQ(std::system(cmd.c_str()), 0) << std::ifstream(tmp / "err").rdbuf();
  std::ifstream f(tmp / "out");
  std::vector<float> out;
  for (double v; f >> v;) out.push_back(static_cast<float>(v));
  return out;
}

TEST(Convert, MlxLmLoadsTheOutputAndAgreesOnLogits) {
  LMLAB_REQUIRE_FILE(small_model() / "config.json");
  auto out = temp_dir("convert-load");
  const std::vector<int> ids = {1, 504, 3575, 282, 4649, 314};
  for (auto c : {cases()[0], cases()[2]}) {
    SCOPED_TRACE(c.name);
    c.o.dtype = "float32";  // lmlab computes in float32 on the CPU; give mlx_lm the same numbers
    c.o.output = (out / c.name).string();
    q::convert(cpu_context(), small_model().string(), c.o);
    LoadedModel m = load_model(cpu_context(), {.model = c.o.output});
    mx::array l = m.model->forward(mx::array(ids.begin(), {1, static_cast<int>(ids.size())}, mx::int32));
    l = mx::astype(mx::take(l, static_cast<int>(ids.size()) - 1, 1), mx::float32);
    mx::eval(l);
    std::vector<float> mine(l.data<float>(), l.data<float>() + l.size());
    std::vector<float> theirs = mlx_lm_logits(out / c.name, ids);
    ASSERT_EQ(theirs.size(), mine.size());
    LogitDiff d = compare_logits(mine, theirs);
    std::printf("%s: max |logit difference| %.3g\n", c.name, d.max_abs);
    EXPECT_LT(d.max_abs, 2e-5);  // the same quantized weights, float32 in both engines (measured 1.8e-6)
    EXPECT_EQ(d.top1_a, d.top1_b);
  }
}

TEST(Convert, MixedRecipeFollowsMlxLmsRule) {
  std::map<std::string, q::ModuleShape> modules;
  for (int l = 0; l < 30; ++l)
    for (const char* p : {"self_attn.v_proj", "self_attn.q_proj", "mlp.down_proj"})
      modules["model.layers." + std::to_string(l) + "." + p] = {576, 576};
  modules["model.embed_tokens"] = {49152, 576};
  modules["lm_head"] = {49152, 576};
  modules["model.layers.0.mlp.odd"] = {10, 100};  // 100 % 64: left dense
  auto r = q::mixed_recipe("mixed_3_6", modules, 30, 64);
  // 30 layers: 30 // 8 = 3; more bits below 3, from 26 on, and where (i - 3) % 3 == 2.
  const std::set<int> more = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29};
  for (int l = 0; l < 30; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_EQ(r.at(p + "self_attn.v_proj").bits, more.count(l) ? 6 : 3) << l;
    EXPECT_EQ(r.at(p + "mlp.down_proj").bits, more.count(l) ? 6 : 3) << l;
    EXPECT_EQ(r.at(p + "self_attn.q_proj").bits, 3) << l;
  }
  EXPECT_EQ(r.at("lm_head").bits, 6);
  EXPECT_EQ(r.at("model.embed_tokens").bits, 3);
  EXPECT_FALSE(r.count("model.layers.0.mlp.odd"));
  EXPECT_EQ(q::mixed_recipe("mixed_3_4", modules, 30, 64).at("lm_head").bits, 4);
  EXPECT_THROW(q::mixed_recipe("mixed_9_9", modules, 30, 64), std::invalid_argument);
}

TEST(Convert, AtlasRecipeSpendsBitsWhereTheModelIsSensitive) {
  std::map<std::string, q::ModuleShape> modules = {{"a", {64, 256}}, {"b", {64, 256}}, {"c", {64, 256}}};
  std::map<std::string, std::map<int, double>> mse;
  for (const auto& [name, _] : modules)
    for (int b : {2, 3, 4, 5, 6, 8}) mse[name][b] = std::pow(4.0, -b);  // error shrinks fourfold per bit
  std::map<std::string, double> sens = {{"a", 100.0}, {"b", 1.0}, {"c", 0.01}};
  q::AtlasBudget budget{.target_bpw = 4.5, .params = 3 * 64 * 256, .fixed_bytes = 0, .scale_bytes = 2};
  auto r = q::atlas_recipe(modules, sens, mse, budget, 64);
  EXPECT_GT(r.at("a").bits, r.at("b").bits);
  EXPECT_GT(r.at("b").bits, r.at("c").bits);
  int64_t bytes = 0;
  for (const auto& [name, c] : r) bytes += q::quantized_bytes(modules.at(name), c, 2);
  const double bpw = bytes * 8.0 / budget.params;
  EXPECT_LE(bpw, 4.5);
  EXPECT_GT(bpw, 4.0);
  budget.target_bpw = 1.0;  // below 2 bits + scales: impossible
  EXPECT_THROW(q::atlas_recipe(modules, sens, mse, budget, 64), std::invalid_argument);
}

TEST(Convert, BadInputIsRefusedAndLeavesNothingBehind) {
  LMLAB_REQUIRE_FILE(small_model() / "config.json");
  auto dir = temp_dir("convert-bad");
  auto refuse = [&](q::ConvertOptions o, const std::string& needle) {
    try {
      q::convert(cpu_context(), small_model().string(), o);
      ADD_FAILURE() << "no error for " << needle;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  fs::create_directories(dir / "exists");
  refuse({.output = (dir / "exists").string(), .quantize = true}, "already exists");
  refuse({.output = (dir / "a").string(), .quantize = true, .bits = 7}, "7 bits");
  refuse({.output = (dir / "b").string(), .quantize = true, .group_size = 48}, "group size 48");
  refuse({.output = (dir / "c").string(), .quantize = true, .recipe = "best"}, "unknown recipe");
  refuse({.output = (dir / "d").string(), .quantize = true, .dequantize = true}, "not both");
  refuse({.output = (dir / "e").string(), .quantize = true, .recipe = "atlas", .target_bpw = 4}, "needs an atlas");
  refuse({.output = (dir / "f").string(), .dtype = "float8"}, "float8");
  // A file where a folder should be: nothing can be created under it.
  std::ofstream(dir / "file") << "x";
  refuse({.output = (dir / "file" / "out").string(), .quantize = true}, "cannot");
  // Writes that fail midway (a file size limit standing in for a full disk): no directory, no temp folder.
  const std::string cmd = "trap '' XFSZ; ulimit -f 2000; " + lmlab_binary() + " convert -m " + small_model().string() +
                          " -o " + (dir / "full").string() + " -q >/dev/null 2>" + (dir / "err").string();
  EXPECT_NE(std::system(("bash -c \"" + cmd + "\"").c_str()), 0);
  std::ifstream err(dir / "err");
  std::string line;
  std::getline(err, line);
  EXPECT_EQ(line.rfind("error: ", 0), 0u) << line;
  size_t left = 0;
  for (auto& e : fs::directory_iterator(dir)) left += e.path().filename().string().starts_with("full");
  EXPECT_EQ(left, 0u);
}

}  // namespace
}  // namespace lmlab::test
