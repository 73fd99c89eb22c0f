// The lmlab binary as a user runs it: one clear error line and a non-zero exit
// for bad input, JSON output that parses, seeded sampling that repeats, and
// the default model's greedy answer (a behaviour check with real weights).
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lmlab::test {
namespace {

struct CliRun {
  int code;
  std::string out, err;
};

CliRun run(const std::string& args, const std::string& stdin_text = "") {
  auto dir = temp_dir("cli");
  std::ofstream(dir / "in") << stdin_text;
  std::string cmd = lmlab_binary() + " " + args + " < " + (dir / "in").string() + " > " +
                    (dir / "out").string() + " 2> " + (dir / "err").string();
  int status = std::system(cmd.c_str());
  auto slurp = [](const std::filesystem::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  return {WEXITSTATUS(status), slurp(dir / "out"), slurp(dir / "err")};
}

void expect_one_line_error(const CliRun& r, const std::string& needle) {
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.err.rfind("error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
}

TEST(Cli, MissingModelIsOneLine) {
  expect_one_line_error(run("generate --model /nonexistent/model.gguf -p hi"), "not found");
}

TEST(Cli, TruncatedModelIsOneLine) {
  auto dir = temp_dir("cli-trunc");
  std::ifstream src(default_model_path_for_tests(), std::ios::binary);
  std::string head(200000, '\0');
  src.read(head.data(), head.size());
  std::ofstream(dir / "cut.gguf", std::ios::binary) << head;
  expect_one_line_error(run("generate --model " + (dir / "cut.gguf").string() + " -p hi"), "truncated");
}

TEST(Cli, NotAModelIsOneLine) {
  auto dir = temp_dir("cli-garbage");
  std::ofstream(dir / "x.gguf") << "this is not a model";
  expect_one_line_error(run("generate --model " + (dir / "x.gguf").string() + " -p hi"), "GGUF");
}

TEST(Cli, PromptLongerThanContextIsOneLine) {
  std::string prompt;
  for (int i = 0; i < 9000; ++i) prompt += "word ";
  expect_one_line_error(run("generate --no-chat-template --max-tokens 1", prompt), "context");
}

TEST(Cli, BadOptionValueExitsNonZero) {
  EXPECT_NE(run("generate -p hi --max-tokens -3").code, 0);
  EXPECT_NE(run("generate -p hi --top-p 0").code, 0);
}

TEST(Cli, GreedyAnswerWithRealWeights) {
  CliRun r = run("generate --json --max-tokens 12 -p \"What is the capital of France?\"");
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["text"].get<std::string>().find("Paris"), std::string::npos) << j["text"];
  EXPECT_EQ(j["tokens"].size(), j["stats"]["generation_tokens"].get<size_t>());
  EXPECT_GT(j["stats"]["generation_tps"].get<double>(), 0);
  EXPECT_GT(j["stats"]["peak_memory_gb"].get<double>(), 0);
}

TEST(Cli, SeededSamplingRepeatsAndStopStringsCut) {
  std::string args = "generate --json --max-tokens 10 --temp 0.9 --top-p 0.95 --seed 11 -p \"Tell me a story\"";
  CliRun a = run(args), b = run(args);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["tokens"], nlohmann::json::parse(b.out)["tokens"]);
  CliRun s = run("generate --json --max-tokens 16 --stop Paris -p \"What is the capital of France?\"");
  ASSERT_EQ(s.code, 0) << s.err;
  auto j = nlohmann::json::parse(s.out);
  EXPECT_EQ(j["text"].get<std::string>().find("Paris"), std::string::npos);
  EXPECT_EQ(j["finish_reason"], "stop");
}

TEST(Cli, TokenizeInputFileGivesIdArrays) {
  auto dir = temp_dir("cli-tok");
  std::ofstream(dir / "in.json") << R"(["Rust", " Rust", "héllo 🦀"])";
  CliRun r = run("tokenize --json --input " + (dir / "in.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 3u);
  EXPECT_EQ(j[1], nlohmann::json::array({36828}));  // one token for " Rust"
  std::ofstream(dir / "bad.json") << R"(["ok", 3])";
  expect_one_line_error(run("tokenize --input " + (dir / "bad.json").string()), "element 1");
}

TEST(Cli, BenchOnBothRealModels) {
  // Tiny sizes: the figures must be sane and consistent, not fast.
  for (const std::string model : {"", "--model gemma3-270m "}) {
    CliRun r = run("bench " + model + "-p 8 -n 4 -b 1,2 -r 2 --warmup 1 --json");
    ASSERT_EQ(r.code, 0) << model << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["results"].size(), 2u) << model;
    for (int i = 0; i < 2; ++i) {
      const auto& row = j["results"][i];
      EXPECT_EQ(row["batch"], i + 1);
      EXPECT_EQ(row["prompt_tokens"], 8);
      EXPECT_EQ(row["gen_tokens"], 4);
      EXPECT_GT(row["peak_memory_gb"].get<double>(), 0);
      for (const char* k : {"pp", "tg"}) {
        const auto& t = row[k];
        ASSERT_EQ(t["samples"].size(), 2u) << model << k;
        const double a = t["samples"][0], b = t["samples"][1], mean = t["mean_tps"], sd = t["std_tps"];
        EXPECT_GT(std::min(a, b), 0) << model << k;
        EXPECT_NEAR(mean, (a + b) / 2, 1e-9 * mean);
        EXPECT_NEAR(sd, std::abs(a - b) / std::sqrt(2.0), 1e-9 * mean + 1e-12);
      }
      // The host's part of a decode step is inside the step's wall time.
      const auto& tg = row["tg"];
      const double build = tg["host_build_ms"], schedule = tg["host_schedule_ms"];
      const double wall_ms = (1e3 * (i + 1) / tg["samples"][0].get<double>() +
                              1e3 * (i + 1) / tg["samples"][1].get<double>()) / 2;
      EXPECT_GT(build, 0) << model;
      EXPECT_GE(schedule, 0) << model;
      EXPECT_LE(build + schedule, wall_ms) << model;
    }
  }
  expect_one_line_error(run("bench -b 0"), "--batch-sizes");
  expect_one_line_error(run("bench -p 8 -n 4 -r 0"), "--repetitions");
}

TEST(Cli, CompareFourModelsAgreesWithPplAndInspect) {
  // The reference, mlx-lm's 4-bit g32 copy of the same model (same tokenizer:
  // KL and top-1), Gemma 3 (another tokenizer: no KL) and the reference again
  // (KL 0, same texts).
  const auto q4 = fixtures_dir() / "model" / "smollm2-mlx-q4";
  LMLAB_REQUIRE_FILE(q4);
  auto dir = temp_dir("compare");
  const auto text = dir / "text.txt";
  std::ofstream(text) << "The ferry crossed the river twice a day. In spring the water rose, the ferry stopped, "
                         "and people walked along the bank to see how high it had climbed. The library opened at ten.";
  const std::string common = " -p 'What is the capital of France?' -n 6 -f " + text.string() +
                             " --context 32 --stride 16 --speed-prompt 16 --speed-gen 4 -r 2 --warmup 0";
  CliRun r = run("compare default " + q4.string() + " gemma3-270m default" + common + " --json -o " +
                 (dir / "report.json").string());
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(dir / "report.json")), j);
  const auto& m = j["models"];
  ASSERT_EQ(m.size(), 4u);
  for (const auto& x : m) {
    EXPECT_GT(x["pp_tps"]["mean"].get<double>(), 0) << x["name"];
    EXPECT_GT(x["tg_tps"]["mean"].get<double>(), 0) << x["name"];
    EXPECT_GT(x["peak_memory_gb"].get<double>(), 0) << x["name"];
    EXPECT_GT(x["bits_per_byte"].get<double>(), 0.3) << x["name"];
    EXPECT_LT(x["bits_per_byte"].get<double>(), 3.0) << x["name"];
    ASSERT_EQ(x["texts"].size(), 1u);
  }
  // Bits per byte: Σ NLL in bits over the text's bytes (all but a first token's few).
  const double text_bytes = static_cast<double>(std::filesystem::file_size(text));
  const auto& p0 = m[0]["perplexity"];
  const double nll_bits = p0["nll"]["mean"].get<double>() * p0["scored"].get<double>() / std::log(2.0);
  EXPECT_NEAR(m[0]["bits_per_byte"].get<double>() * text_bytes / nll_bits, 1.0, 0.05);
  // The same figures as the single-purpose commands.
  CliRun p = run("ppl " + text.string() + " --context 32 --stride 16 --json");
  ASSERT_EQ(p.code, 0) << p.err;
  const double ppl = nlohmann::json::parse(p.out)["perplexity"]["ppl"];
  EXPECT_NEAR(m[0]["perplexity"]["ppl"].get<double>(), ppl, 1e-6 * ppl);
  CliRun in = run("inspect --json");
  ASSERT_EQ(in.code, 0) << in.err;
  EXPECT_EQ(m[0]["params"], nlohmann::json::parse(in.out)["total_params"]);
  EXPECT_EQ(m[0]["quantization"], "Q4_1");
  EXPECT_NE(m[0]["texts"][0].get<std::string>().find("Paris"), std::string::npos) << m[0]["texts"][0];
  // The MLX 4-bit copy: near the reference, measured on the same tokens
  // (lmlab ppl --reference on this text: KL 0.45, top-1 64%).
  ASSERT_TRUE(m[1].contains("versus_reference")) << m[1];
  const auto& v = m[1]["versus_reference"];
  EXPECT_NEAR(v["reference"]["ppl"].get<double>(), ppl, 1e-6 * ppl);
  EXPECT_EQ(v["model"]["ppl"], m[1]["perplexity"]["ppl"]);
  EXPECT_GT(v["kl"]["mean"].get<double>(), 0.05);
  EXPECT_LT(v["kl"]["mean"].get<double>(), 2.0);
  EXPECT_GT(v["top1"]["agreement"].get<double>(), 0.4);
  EXPECT_EQ(m[1]["quantization"], "4-bit affine g32");
  EXPECT_EQ(m[1]["format"], "safetensors");
  // Gemma 3: another tokenizer, so no KL, and said why.
  EXPECT_FALSE(m[2].contains("versus_reference"));
  EXPECT_NE(m[2]["versus_reference_missing"].get<std::string>().find("tokenizer"), std::string::npos);
  EXPECT_EQ(m[2]["architecture"], "gemma3");
  // The reference against itself.
  EXPECT_LT(m[3]["versus_reference"]["kl"]["mean"].get<double>(), 1e-6);
  EXPECT_EQ(m[3]["versus_reference"]["top1"]["agreement"], 1.0);
  EXPECT_EQ(m[3]["texts"], m[0]["texts"]);
  // Markdown: a row per figure, a column per model.
  CliRun md = run("compare default default" + common);
  ASSERT_EQ(md.code, 0) << md.err;
  EXPECT_NE(md.out.find("| same top-1 as reference | reference | 100.00% |"), std::string::npos) << md.out;
  expect_one_line_error(run("compare default"), "at least two models");
  expect_one_line_error(run("compare default default -n 0"), "--max-tokens");
}

}  // namespace
}  // namespace lmlab::test
