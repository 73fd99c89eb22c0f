// Tokenizer against the golden outputs of HF `tokenizers` (and llama.cpp) that
// tests/golden/tokenizer_golden.py writes: every corpus string must give the
// same ids with and without special tokens, and the same decodes.
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "lmlab/tokenizer.h"
#include "test_util.h"

namespace lmlab {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

fs::path tok_fixture(const std::string& sub) { return test::fixtures_dir() / "tokenizer" / sub; }

std::vector<json> read_jsonl(const fs::path& path) {
  std::vector<json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

// GGUF tokenizer.* keys dumped by the golden script, as lmlab::Metadata.
Metadata metadata_from_json(const json& j) {
  Metadata m;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const json& v = *it;
    if (v.is_boolean()) m[it.key()] = v.get<bool>();
    else if (v.is_number_integer()) m[it.key()] = v.get<int64_t>();
    else if (v.is_number_float()) m[it.key()] = v.get<double>();
    else if (v.is_string()) m[it.key()] = v.get<std::string>();
    else if (v.is_array() && !v.empty() && v[0].is_string()) m[it.key()] = v.get<std::vector<std::string>>();
    else if (v.is_array() && !v.empty() && v[0].is_number_integer()) m[it.key()] = v.get<std::vector<int64_t>>();
    else if (v.is_array()) m[it.key()] = v.get<std::vector<double>>();
  }
  return m;
}

Tokenizer smollm2() {
  std::ifstream f(tok_fixture("smollm2/gguf_meta.json"));
  return Tokenizer::from_gguf(metadata_from_json(json::parse(f)));
}

std::string show(const std::vector<int>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

// Counts mismatches of one field over the golden file, printing the first few.
struct Tally {
  std::string what;
  int mismatches = 0;
  void check(bool ok, const std::string& text, const std::string& expected, const std::string& got) {
    if (ok) return;
    if (++mismatches <= 5)
      ADD_FAILURE() << what << " mismatch for " << json(text).dump() << "\n  expected " << expected
                    << "\n  got      " << got;
  }
};

void compare_golden(const Tokenizer& tok, const fs::path& golden, const std::string& name) {
  LMLAB_REQUIRE_FILE(golden);
  auto records = read_jsonl(golden);
  ASSERT_GE(records.size(), 2000u);
  Tally ids{name + " encode"}, ids_sp{name + " encode+special"}, dec{name + " decode"},
      dec_skip{name + " decode(skip_special)"};
  for (const json& r : records) {
    std::string text = r["text"];
    auto want = r["ids"].get<std::vector<int>>(), want_sp = r["ids_sp"].get<std::vector<int>>();
    auto got = tok.encode(text, false), got_sp = tok.encode(text, true);
    ids.check(got == want, text, show(want), show(got));
    ids_sp.check(got_sp == want_sp, text, show(want_sp), show(got_sp));
    std::string d = tok.decode(want_sp, false), ds = tok.decode(want_sp, true);
    dec.check(d == r["dec"], text, json(r["dec"]).dump(), json(d).dump());
    dec_skip.check(ds == r["dec_skip"], text, json(r["dec_skip"]).dump(), json(ds).dump());
  }
  size_t n = records.size();
  for (const Tally* t : {&ids, &ids_sp, &dec, &dec_skip})
    EXPECT_EQ(t->mismatches, 0) << t->what << ": " << n - t->mismatches << "/" << n << " match";
  std::printf("[ tokenizer ] %s: %zu strings, encode %zu/%zu, decode %zu/%zu match\n", name.c_str(), n,
              n - ids.mismatches, n, n - dec.mismatches, n);
}

TEST(TokenizerGguf, SmolLM2MatchesHfTokenizers) {
  LMLAB_REQUIRE_FILE(tok_fixture("smollm2/gguf_meta.json"));
  Tokenizer tok = smollm2();
  EXPECT_EQ(tok.vocab_size(), 49152);
  EXPECT_FALSE(tok.bos_id() == std::nullopt);
  EXPECT_FALSE(tok.chat_template().empty());
  compare_golden(tok, tok_fixture("smollm2/golden.jsonl"), "smollm2 (gguf)");
}

TEST(TokenizerGguf, SmolLM2MatchesLlamaCpp) {
  LMLAB_REQUIRE_FILE(tok_fixture("smollm2/golden.jsonl"));
  Tokenizer tok = smollm2();
  int oracle_disagree = 0, ours_disagree = 0;
  const auto records = read_jsonl(tok_fixture("smollm2/golden.jsonl"));
  ASSERT_GE(records.size(), 2000u);
  for (const json& r : records) {
    auto llama = r["llama_cpp"].get<std::vector<int>>();
    oracle_disagree += llama != r["ids"].get<std::vector<int>>();
    auto got = tok.encode(r["text"].get<std::string>(), false);
    if (got != llama && ++ours_disagree <= 3)
      ADD_FAILURE() << "llama.cpp differs for " << r["text"].dump() << ": " << show(llama) << " vs "
                    << show(got);
  }
  // llama.cpp is an independent engine: we may differ from it only where HF does.
  EXPECT_LE(ours_disagree, oracle_disagree);
}

TEST(TokenizerGguf, SmolLM2Basics) {
  LMLAB_REQUIRE_FILE(tok_fixture("smollm2/gguf_meta.json"));
  Tokenizer tok = smollm2();
  auto ids = tok.encode("<|im_start|>user\nHello<|im_end|>", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok.id_to_token(ids[0]), "<|im_start|>");
  EXPECT_TRUE(tok.is_special(ids[0]));
  EXPECT_EQ(tok.decode(ids, true), "user\nHello");
  EXPECT_EQ(tok.token_to_id("<|im_end|>"), ids.back());
  EXPECT_NE(std::find(tok.eos_ids().begin(), tok.eos_ids().end(), ids.back()), tok.eos_ids().end());
  EXPECT_THROW(tok.id_to_token(-1), std::out_of_range);
  EXPECT_THROW(tok.id_to_token(tok.vocab_size()), std::out_of_range);
}

// SentencePiece BPE vocabularies in GGUF form (tokenizer.ggml.model "llama":
// pieces merged by tokenizer.ggml.scores, not by a merges list), written by the
// gguf package from shared tokenizers, and real model GGUFs listed in
// tokenizer_golden.py's SPM_REAL_GGUF: ids with and without BOS must be
// llama.cpp's on every corpus string.
TEST(TokenizerGgufSpm, MatchesLlamaCpp) {
  const fs::path dir = tok_fixture("gguf_spm");
  LMLAB_REQUIRE_FILE(dir / "index.json");
  std::ifstream f(dir / "index.json");
  const json index = json::parse(f);
  ASSERT_GE(index.size(), 3u);
  for (const auto& [name, file] : index.items()) {
    const fs::path path = fs::path(file.get<std::string>()).is_absolute() ? fs::path(file.get<std::string>())
                                                                          : dir / file.get<std::string>();
    const Tokenizer tok = Tokenizer::from_gguf(io::read_gguf(path).meta);
    EXPECT_EQ(tok.model_type(), "spm-bpe") << name;
    const auto records = read_jsonl(dir / (name + ".golden.jsonl"));
    ASSERT_GE(records.size(), 2000u) << name;
    Tally ids{name + " (gguf) encode"}, ids_bos{name + " (gguf) encode+special"};
    for (const json& r : records) {
      const std::string text = r["text"];
      const auto want = r["ids"].get<std::vector<int>>(), want_bos = r["ids_bos"].get<std::vector<int>>();
      const auto got = tok.encode(text, false), got_bos = tok.encode(text, true);
      ids.check(got == want, text, show(want), show(got));
      ids_bos.check(got_bos == want_bos, text, show(want_bos), show(got_bos));
    }
    const size_t n = records.size();
    EXPECT_EQ(ids.mismatches + ids_bos.mismatches, 0) << name;
    std::printf("[ tokenizer ] %s (gguf, llama vocabulary): %zu strings, %zu/%zu match llama.cpp\n", name.c_str(),
                n, n - ids.mismatches, n);
  }
}

// A GGUF's tokenizer written as tokenizer.json (what surgery --save writes for
// a GGUF model) loads as a tokenizer that matches HF and the GGUF one.
TEST(TokenizerGguf, WrittenAsTokenizerJsonGivesTheSameTokenizer) {
  LMLAB_REQUIRE_FILE(tok_fixture("smollm2/gguf_meta.json"));
  std::ifstream f(tok_fixture("smollm2/gguf_meta.json"));
  Metadata meta = metadata_from_json(json::parse(f));
  TokenizerFiles files = gguf_tokenizer_files(meta);
  Tokenizer written = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json);
  Tokenizer gguf = Tokenizer::from_gguf(meta);
  EXPECT_EQ(written.vocab_size(), gguf.vocab_size());
  EXPECT_EQ(written.bos_id(), gguf.bos_id());
  EXPECT_EQ(written.eos_token(), gguf.eos_token());
  EXPECT_EQ(written.chat_template(), gguf.chat_template());
  compare_golden(written, tok_fixture("smollm2/golden.jsonl"), "smollm2 (written tokenizer.json)");
  auto config = json::parse(files.tokenizer_config_json);
  EXPECT_EQ(config["tokenizer_class"], "PreTrainedTokenizerFast");
  // SentencePiece vocabularies keep scores, not merges: refused, not written wrong.
  meta["tokenizer.ggml.model"] = std::string("llama");
  EXPECT_THROW(gguf_tokenizer_files(meta), Unsupported);
}

class TokenizerJson : public ::testing::TestWithParam<std::string> {};

TEST_P(TokenizerJson, MatchesHfTokenizers) {
  fs::path dir = tok_fixture(GetParam());
  LMLAB_REQUIRE_FILE(dir / "tokenizer.json");
  Tokenizer tok = Tokenizer::from_file(dir);
  compare_golden(tok, dir / "golden.jsonl", GetParam());
}

INSTANTIATE_TEST_SUITE_P(Tokenizer, TokenizerJson,
                         ::testing::Values("llama3", "llama3_1", "qwen3", "llama2", "gemma3",
                                           "deepseek_v3", "llama2_whitespace", "llama2_metaspace",
                                           "llama3_lstrip", "llama3_duplicate_added"));

TEST(TokenizerJson, ConfigFields) {
  LMLAB_REQUIRE_FILE(tok_fixture("llama3_1/tokenizer.json"));
  Tokenizer l3 = Tokenizer::from_file(tok_fixture("llama3_1"));
  EXPECT_EQ(l3.bos_id(), 128000);
  EXPECT_EQ(l3.bos_token(), "<|begin_of_text|>");
  EXPECT_EQ(l3.eos_token(), "<|eot_id|>");
  EXPECT_EQ(l3.eos_ids().front(), 128009);
  EXPECT_FALSE(l3.chat_template().empty());
  EXPECT_EQ(l3.vocab_size(), 128256);
  Tokenizer q = Tokenizer::from_file(tok_fixture("qwen3/tokenizer.json"));
  EXPECT_EQ(q.bos_id(), std::nullopt);
  EXPECT_EQ(q.eos_token(), "<|im_end|>");
  EXPECT_EQ(q.encode_pieces("Hello world"), (std::vector<std::string>{"Hello", "Ġworld"}));
}

TEST(TokenizerJson, ChatTemplateJinjaFileWinsOverTheConfig) {
  // mlx_lm and transformers ≥ 4.47 save the template beside the config, as
  // the fixture smollm2-mlx-q4 has it; that file takes priority (transformers).
  const fs::path mlx_dir = test::fixtures_dir() / "model" / "smollm2-mlx-q4";
  LMLAB_REQUIRE_FILE(mlx_dir / "chat_template.jinja");
  auto slurp = [](const fs::path& p) {
    std::ifstream f(p);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  };
  EXPECT_EQ(Tokenizer::from_file(mlx_dir).chat_template(), slurp(mlx_dir / "chat_template.jinja"));
  const fs::path dir = test::temp_dir("jinja");
  fs::copy_file(tok_fixture("llama3_1/tokenizer.json"), dir / "tokenizer.json");
  fs::copy_file(tok_fixture("llama3_1/tokenizer_config.json"), dir / "tokenizer_config.json");
  EXPECT_NE(Tokenizer::from_file(dir).chat_template(), "{{ 'own' }}");
  std::ofstream(dir / "chat_template.jinja") << "{{ 'own' }}";
  EXPECT_EQ(Tokenizer::from_file(dir).chat_template(), "{{ 'own' }}");
}

}  // namespace
}  // namespace lmlab
