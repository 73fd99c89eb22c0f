// The lab's range checks and JSON forms: edits that would have been silently
// wrong (NaN values, truncated shifts, flip-bits without a rate), histogram
// bins, temperatures; bit flips flip exactly the bits asked for; logits an
// edit made NaN or infinite still rank; results print as the CLI's JSON; a
// GGUF model saved as a directory loads with the same tokenizer and logits.
#include <bit>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "analysis/lab_test_util.h"
#include "lmlab/generate.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;
using json = nlohmann::json;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(LabOptions, EditsThatWouldBeSilentlyWrongAreRefused) {
  auto bad = [](an::EditSpec s) { return error_of([&] { an::validate(s); }); };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::Scale, .value = nan}).find("not a finite number"),
            std::string::npos);
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::ShiftWords, .value = 1.9}).find("integer"), std::string::npos);
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::ShiftWords, .value = 1e20}), "");
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::ShiftFields, .value = 300}), "");
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::FlipBits}).find("rate 0"), std::string::npos);
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::FlipBits, .rate = 1.5}), "");
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::FlipBits, .rate = 0.1, .positions = {3}}), "");
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::Noise, .value = -1}), "");
  EXPECT_NE(bad({.target = "x", .op = an::EditOp::Scale, .value = 2, .relative = true}), "");
  EXPECT_EQ(bad({.target = "x", .op = an::EditOp::ShiftWords, .value = -3}), "");
  EXPECT_EQ(bad({.target = "x", .op = an::EditOp::FlipBits, .rate = 1}), "");

  EXPECT_NE(error_of([] { an::validate(an::ViewOptions{.bins = 100000000}); }).find("bins 100000000"),
            std::string::npos);
  EXPECT_NE(error_of([] { an::validate(an::ViewOptions{.count = -1}); }), "");
  EXPECT_NE(error_of([] { an::validate(an::PredictOptions{.temperatures = {-1.0f}}); }), "");
  EXPECT_NE(error_of([] { an::validate(an::PredictOptions{.temperatures = {NAN}}); }), "");
  EXPECT_NE(error_of([] { an::validate(an::PredictOptions{.k = 0}); }), "");
}

int64_t differing_bits(const mx::array& a, const mx::array& b) {
  mx::array x = mx::contiguous(mx::view(a, mx::uint8)), y = mx::contiguous(mx::view(b, mx::uint8));
  mx::eval(x, y);
  int64_t n = 0;
  for (size_t i = 0; i < x.size(); ++i) n += std::popcount(uint8_t(x.data<uint8_t>()[i] ^ y.data<uint8_t>()[i]));
  return n;
}

TEST(LabOptions, FlipBitsFlipsExactlyRateTimesTheBits) {
  auto m = load_tiny("llama_q4");
  const std::string name = "model.layers.0.self_attn.q_proj.weight";
  const mx::array before = m->weights().at(name);
  const int64_t total = static_cast<int64_t>(before.nbytes()) * 8;
  for (double rate : {0.01, 0.75, 1.0}) {  // 0.75 and 1 take the complement path
    an::Surgery s(*m);
    s.apply({.target = name, .op = an::EditOp::FlipBits, .rate = rate, .seed = 7});
    EXPECT_EQ(differing_bits(before, m->weights().at(name)), std::llround(rate * total)) << rate;
    s.restore();
  }
  an::Surgery s(*m);
  s.apply({.target = name, .op = an::EditOp::FlipBits, .positions = {0, 33, 33}});  // a position once
  EXPECT_EQ(differing_bits(before, m->weights().at(name)), 2);
  EXPECT_THROW(s.apply({.target = name, .op = an::EditOp::FlipBits, .positions = {total}}), std::invalid_argument);
}

TEST(LabOptions, LogitsAnEditBrokeStillRank) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto top = an::top_k({1.0f, nan, inf, 2.0f, inf}, 5);
  ASSERT_EQ(top.size(), 5u);
  EXPECT_EQ(top[0].id, 2);
  EXPECT_EQ(top[1].id, 4);
  EXPECT_FLOAT_EQ(top[0].prob, 0.5f);  // the two +inf share the mass
  EXPECT_EQ(top[4].id, 1);              // NaN last, with no mass
  EXPECT_EQ(top[4].prob, 0.0f);
  EXPECT_EQ(an::top_k({nan, nan}, 1)[0].prob, 1.0f);
  EXPECT_THROW(an::top_k({1.0f}, 1, -1.0f), std::invalid_argument);
}

TEST(LabJson, ResultsPrintWithTheCliKeys) {
  auto m = load_tiny("llama_q4");
  json summary = an::inspect(*m);
  EXPECT_EQ(summary["config"]["num_hidden_layers"], m->config().num_hidden_layers);
  EXPECT_EQ(summary["context_length"], m->config().max_position_embeddings);
  const int64_t per_token = 2LL * m->config().num_hidden_layers * m->config().num_key_value_heads *
                            m->config().head_dim * 4;  // float32 cache
  EXPECT_EQ(summary["kv_cache"]["bytes_per_token"], per_token);
  EXPECT_EQ(summary["kv_cache"]["bytes_at_context_length"], per_token * m->config().max_position_embeddings);

  json view = an::view_tensor(*m, "model.layers.0.self_attn.q_proj.weight", {.count = 4, .bins = 3});
  EXPECT_EQ(view["values"].size(), 4u);
  EXPECT_EQ(view["histogram"]["counts"].size(), 3u);
  EXPECT_TRUE(view.contains("groups"));

  an::EditSpec spec{.target = "model.norm.weight", .op = an::EditOp::FlipBits, .positions = {1, 2}, .seed = 3};
  json j = spec;
  EXPECT_EQ(j["op"], "flip-bits");
  an::EditSpec back = j.get<an::EditSpec>();
  EXPECT_EQ(json(back), j);
  EXPECT_NE(error_of([] { json{{"op", "melt"}}.get<an::EditSpec>(); }).find("unknown edit"), std::string::npos);
  EXPECT_NE(error_of([] { json{{"vale", 1}}.get<an::EditSpec>(); }).find("did you mean \"value\""),
            std::string::npos);
  an::PredictOptions p = json{{"top_k", 3}, {"temperatures", {0.5, 1}}}.get<an::PredictOptions>();
  EXPECT_EQ(p.k, 3);
  EXPECT_EQ(p.temperatures, (std::vector<float>{0.5f, 1.0f}));
}

TEST(LabSave, AGgufModelSavesAsADirectoryThatLoadsTheSame) {
  LoadedModel& m = default_model();
  auto out = temp_dir("lab_save_gguf") / "copy";
  an::save_model(m, out.string());
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                        "generation_config.json"})
    EXPECT_TRUE(std::filesystem::exists(out / f)) << f;
  LoadedModel back = load_model(cpu_context(), {.model = out.string()});
  // The same tensors, byte for byte (hashed in one order: the GGUF keeps its own).
  std::vector<std::string> names;
  for (const auto& [n, a] : m.model->weights().items()) names.push_back(n);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(back.model->weights().items().size(), names.size());
  EXPECT_EQ(an::weights_hash(*back.model, names), an::weights_hash(*m.model, names));
  const std::string text = "The capital of France is";
  EXPECT_EQ(back.tokenizer.encode(text), m.tokenizer.encode(text));
  ASSERT_TRUE(back.chat_template);
  EXPECT_EQ(build_prompt(back, "hi", "Be brief", true), build_prompt(m, "hi", "Be brief", true));
  for (int id : m.tokenizer.eos_ids())
    EXPECT_NE(std::find(back.tokenizer.eos_ids().begin(), back.tokenizer.eos_ids().end(), id),
              back.tokenizer.eos_ids().end());
  std::vector<int> ids = m.tokenizer.encode(text);
  EXPECT_EQ(an::next_token_logits(*back.model, ids), an::next_token_logits(*m.model, ids));
}

TEST(LabSave, ATokenizerFromAnotherModelIsRefusedBeforeWriting) {
  LoadedModel& m = default_model();
  auto llama3 = fixtures_dir() / "tokenizer" / "llama3";
  LMLAB_REQUIRE_FILE(llama3 / "tokenizer.json");
  auto out = temp_dir("lab_save_tok") / "copy";
  std::string e = error_of([&] { an::save_model(m, out.string(), llama3.string()); });
  EXPECT_NE(e.find("128256 tokens but the model's vocabulary has 49152"), std::string::npos) << e;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_NE(error_of([&] { an::check_save(m, out.parent_path().string()); }).find("already exists"),
            std::string::npos);
  EXPECT_THROW(an::check_save(m, "/etc/hostname/x"), std::runtime_error);  // a file as the parent
}

}  // namespace
}  // namespace lmlab::test
