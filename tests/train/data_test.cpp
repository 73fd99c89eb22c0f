// Fine-tuning data: the token ids and prompt offsets of every format equal
// mlx-lm's tuner/datasets.py (transformers' chat templates) on Super Bowl,
// chat and WikiSQL records; prompt masking leaves exactly the last message;
// malformed input is located (file:line, reason) and skipped or refused; a
// one-file split is seeded and disjoint; the preflight report counts
// truncation, loss share and duplicates.
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmlab/data.h"
#include "models/model_test_util.h"
#include "train/numpy_random.h"

namespace lmlab::test {
namespace {

using train::DataFormat;
using train::DataOptions;

std::filesystem::path lora_fixtures() { return fixtures_dir() / "lora"; }

struct Tok {
  Tokenizer tok;
  ChatTemplate tmpl;
};

const Tok& smol() {
  static Tok t = [] {
    Tokenizer tok = Tokenizer::from_file(lora_fixtures() / "tokenizer");
    return Tok{tok, ChatTemplate(tok.chat_template())};
  }();
  return t;
}

// Where two id sequences first differ, with the text around it.
std::string first_difference(const std::vector<int>& a, const std::vector<int>& b) {
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  if (i == a.size() && i == b.size()) return "equal";
  auto around = [&](const std::vector<int>& v) {
    std::vector<int> w(v.begin() + std::min(i, v.size()), v.begin() + std::min(i + 6, v.size()));
    return smol().tok.decode(w);
  };
  return fmt::format("first difference at {} of {}/{}: '{}' vs '{}'", i, a.size(), b.size(), around(a), around(b));
}

void write(const std::filesystem::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

TEST(Data, TokensAndOffsetsEqualMlxLm) {
  LMLAB_REQUIRE_FILE(lora_fixtures() / "datasets.json");
  auto golden = read_json(lora_fixtures() / "datasets.json");
  int checked = 0;
  for (const auto& c : golden["cases"]) {
    const std::string format = c["format"];
    const std::string file = c["file"];
    // One file of `count` records as the train split of a folder.
    auto dir = temp_dir("data-oracle");
    std::ifstream in(file);
    std::string line, text;
    for (int i = 0; i < c["count"].get<int>() && std::getline(in, line); ++i) text += line + "\n";
    write(dir / "train.jsonl", text);
    DataOptions o{.path = dir.string(), .mask_prompt = c["mask_prompt"]};
    train::Dataset d = train::load_dataset(o, smol().tok, &smol().tmpl, /*strict=*/true);
    ASSERT_EQ(d.train.examples.size(), c["records"].size()) << file;
    EXPECT_EQ(train::format_name(d.train.format), format);
    for (size_t i = 0; i < d.train.examples.size(); ++i) {
      const auto& want = c["records"][i];
      const auto& got = d.train.examples[i];
      const auto want_tokens = want["tokens"].get<std::vector<int>>();
      EXPECT_EQ(got.tokens, want_tokens) << file << " record " << i << ": "
                                         << first_difference(got.tokens, want_tokens);
      if (o.mask_prompt) EXPECT_EQ(got.offset, want["offset"].get<int>()) << file << " record " << i;
      ++checked;
    }
  }
  std::printf("[ data     ] %d records equal mlx-lm's tokens and offsets\n", checked);
  EXPECT_EQ(checked, 93);
}

TEST(Data, PromptMaskingLeavesExactlyTheLastMessage) {
  nlohmann::ordered_json r = {{"prompt", "Who won?"}, {"completion", "The Eagles, 40-22."}};
  DataOptions o{.mask_prompt = true};
  train::Example e = train::encode_record(r, DataFormat::completions, o, smol().tok, &smol().tmpl);
  std::vector<int> prompt(e.tokens.begin(), e.tokens.begin() + e.offset);
  std::vector<int> answer(e.tokens.begin() + e.offset, e.tokens.end());
  EXPECT_EQ(smol().tok.decode(answer), "The Eagles, 40-22.<|im_end|>\n");
  const std::string p = smol().tok.decode(prompt);
  EXPECT_EQ(p.substr(p.size() - 22), "<|im_start|>assistant\n") << p;
  // Targets in the loss: the completion's tokens only.
  EXPECT_EQ(train::loss_targets(e, 2048, /*mask_prompt=*/true), static_cast<int64_t>(answer.size()));
  EXPECT_EQ(train::loss_targets(e, 2048, /*mask_prompt=*/false), static_cast<int64_t>(e.tokens.size() - 1));
  // Truncation cuts the loss targets too.
  EXPECT_EQ(train::loss_targets(e, e.offset + 2, /*mask_prompt=*/true), 2);
}

TEST(Data, TextRecordsEndWithOneEos) {
  DataOptions o;
  const int eos = *smol().tok.token_to_id("<|im_end|>");
  auto e = train::encode_record({{"text", "hello world"}}, DataFormat::text, o, smol().tok, nullptr);
  EXPECT_EQ(e.tokens.back(), eos);
  auto f = train::encode_record({{"text", "hello world<|im_end|>"}}, DataFormat::text, o, smol().tok, nullptr);
  EXPECT_EQ(f.tokens, e.tokens) << "an EOS already there is not doubled";
  EXPECT_EQ(e.offset, 0);
}

TEST(Data, MalformedRecordsAreLocatedAndSkippedOrRefused) {
  auto dir = temp_dir("data-bad");
  write(dir / "train.jsonl",
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n"  // 1: fine, sets the format
        "\n"                                            // 2: blank
        "   \n"                                         // 3: blank
        "{\"prompt\": \"a\", \"completion\": \n"        // 4: bad JSON
        "{\"prompt\": \"a\"}\n"                         // 5: missing completion
        "{\"prompt\": 3, \"completion\": \"b\"}\n"      // 6: not a string
        "[1, 2]\n"                                      // 7: not an object
        "{\"prompt\": \"c\", \"completion\": \"d\"}\r\n");  // 8: fine (CRLF)
  write(dir / "valid.jsonl", "");  // an empty split
  DataOptions o{.path = dir.string()};
  train::Dataset d = train::load_dataset(o, smol().tok, &smol().tmpl, /*strict=*/false);
  EXPECT_EQ(d.train.examples.size(), 2u);
  EXPECT_EQ(d.train.blank_lines, 2);
  ASSERT_EQ(d.train.issues.size(), 4u);
  const int lines[] = {4, 5, 6, 7};
  const char* reasons[] = {"bad JSON", "missing field 'completion'", "field 'prompt' is not a string",
                           "must be a JSON object"};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(d.train.issues[i].line, lines[i]);
    EXPECT_NE(d.train.issues[i].reason.find(reasons[i]), std::string::npos) << d.train.issues[i].reason;
  }
  EXPECT_EQ(d.train.examples[1].line, 8);
  EXPECT_TRUE(d.valid.examples.empty());
  try {
    train::load_dataset(o, smol().tok, &smol().tmpl, /*strict=*/true);
    FAIL() << "strict loading must stop at line 4";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("train.jsonl:4: bad JSON"), std::string::npos) << e.what();
  }
  auto rep = train::data_report(d, o);
  bool warned_empty = false;
  for (const auto& w : rep.warnings) warned_empty = warned_empty || w.find("no validation records") != std::string::npos;
  EXPECT_TRUE(warned_empty);
}

TEST(Data, UnknownFormatsAndMissingFilesAreClearErrors) {
  auto dir = temp_dir("data-none");
  DataOptions o{.path = dir.string()};
  EXPECT_THROW(train::load_dataset(o, smol().tok, &smol().tmpl, true), std::invalid_argument);  // no files
  write(dir / "train.jsonl", "{\"question\": \"a\"}\n");
  try {
    train::load_dataset(o, smol().tok, &smol().tmpl, true);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("train.jsonl:1: no known format"), std::string::npos) << e.what();
  }
  write(dir / "train.jsonl", "{\"text\": \"a\"}\n");
  o.mask_prompt = true;
  EXPECT_THROW(train::load_dataset(o, smol().tok, &smol().tmpl, true), std::invalid_argument);
  o.path = (dir / "absent").string();
  EXPECT_THROW(train::load_dataset(o, smol().tok, &smol().tmpl, true), std::invalid_argument);
}

TEST(Data, OneFileSplitIsSeededAndDisjoint) {
  auto dir = temp_dir("data-split");
  std::string text;
  for (int i = 0; i < 100; ++i) text += "{\"text\": \"record " + std::to_string(i) + "\"}\n";
  write(dir / "all.jsonl", text);
  DataOptions o{.path = (dir / "all.jsonl").string(), .valid_fraction = 0.1, .test_fraction = 0.2, .seed = 3};
  auto a = train::load_dataset(o, smol().tok, nullptr, true);
  auto b = train::load_dataset(o, smol().tok, nullptr, true);
  EXPECT_EQ(a.train.examples.size(), 70u);
  EXPECT_EQ(a.valid.examples.size(), 10u);
  EXPECT_EQ(a.test.examples.size(), 20u);
  std::set<int> lines;
  for (const auto* s : {&a.train, &a.valid, &a.test})
    for (const auto& e : s->examples) EXPECT_TRUE(lines.insert(e.line).second) << "line " << e.line << " twice";
  EXPECT_EQ(lines.size(), 100u);
  for (size_t i = 0; i < a.valid.examples.size(); ++i) EXPECT_EQ(a.valid.examples[i].line, b.valid.examples[i].line);
  o.seed = 4;
  auto c = train::load_dataset(o, smol().tok, nullptr, true);
  bool same = true;
  for (size_t i = 0; i < a.valid.examples.size(); ++i) same = same && a.valid.examples[i].line == c.valid.examples[i].line;
  EXPECT_FALSE(same) << "another seed, another split";
}

TEST(Data, ReportCountsTruncationLossShareAndDuplicates) {
  auto dir = temp_dir("data-report");
  std::string long_completion(3000, 'x');
  write(dir / "train.jsonl", "{\"prompt\": \"q1\", \"completion\": \"a1\"}\n{\"prompt\": \"q2\", \"completion\": \"" +
                                 long_completion + "\"}\n{\"prompt\": \"q3\", \"completion\": \"a3\"}\n");
  write(dir / "valid.jsonl", "{\"prompt\": \"q1\", \"completion\": \"a1\"}\n{\"prompt\": \"q4\", \"completion\": \"a4\"}\n");
  DataOptions o{.path = dir.string(), .mask_prompt = true, .max_seq_length = 128};
  auto d = train::load_dataset(o, smol().tok, &smol().tmpl, true);
  auto r = train::data_report(d, o, /*batch_size=*/4);
  ASSERT_EQ(r.splits.size(), 2u);
  EXPECT_EQ(r.splits[0].truncated, 1);
  EXPECT_EQ(r.splits[1].duplicates, 1);
  int64_t want = 0;
  for (const auto& e : d.train.examples) want += std::min<int>(e.tokens.size(), 128) - e.offset;
  EXPECT_EQ(r.splits[0].loss_tokens, want);
  EXPECT_LT(r.splits[0].loss_tokens, r.splits[0].total_tokens);
  auto j = r.to_json();
  EXPECT_EQ(j["splits"][0]["truncated"], 1);
  int warnings = 0;
  for (const auto& w : r.warnings)
    warnings += w.find("longer than") != std::string::npos || w.find("also in an earlier split") != std::string::npos ||
                w.find("a batch needs 4") != std::string::npos;
  EXPECT_EQ(warnings, 4) << "truncation, duplicates, and two splits smaller than a batch";
}

TEST(Data, NumpyPermutationMatchesNumpy) {
  // np.random.seed(0); [np.random.permutation(10) for _ in range(2)]
  train::NumpyRandom rng(0);
  EXPECT_EQ(rng.permutation(10), (std::vector<int>{2, 8, 4, 9, 1, 6, 7, 3, 0, 5}));
  EXPECT_EQ(rng.permutation(10), (std::vector<int>{3, 5, 1, 2, 9, 8, 0, 6, 7, 4}));
  std::string saved = rng.state();
  auto next = rng.permutation(7);
  train::NumpyRandom other(99);
  other.set_state(saved);
  EXPECT_EQ(other.permutation(7), next);
}

}  // namespace
}  // namespace lmlab::test
