// Round trips, the streaming detokenizer, invalid UTF-8 input, malformed
// tokenizer.json and concurrent use, on the same fixtures as tokenizer_test.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "lmlab/tokenizer.h"
#include "test_util.h"

namespace lmlab {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const char* const kNames[] = {"llama3", "llama3_1", "qwen3", "llama2", "gemma3", "deepseek_v3"};

fs::path tok_fixture(const std::string& sub) { return test::fixtures_dir() / "tokenizer" / sub; }

std::vector<json> read_jsonl(const fs::path& path) {
  std::vector<json> out;
  std::ifstream f(path);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

bool valid_utf8(const std::string& s) {
  // Strict check, independent of the library's own validator.
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    char32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    static const char32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

TEST(TokenizerRoundTrip, DecodeOfEncodeMatchesHf) {
  for (const char* name : kNames) {
    LMLAB_REQUIRE_FILE(tok_fixture(name) / "golden.jsonl");
    Tokenizer tok = Tokenizer::from_file(tok_fixture(name));
    int bad = 0, n = 0;
    for (const json& r : read_jsonl(tok_fixture(name) / "golden.jsonl")) {
      ++n;
      std::string got = tok.decode(tok.encode(r["text"].get<std::string>(), false));
      if (got != r["dec_plain"] && ++bad <= 3)
        ADD_FAILURE() << name << ": " << r["text"].dump() << " -> " << json(got).dump()
                      << ", HF gives " << r["dec_plain"].dump();
    }
    EXPECT_GE(n, 2000) << name;
    EXPECT_EQ(bad, 0) << name << ": " << n - bad << "/" << n << " round trips match";
  }
}

// Streams ids one by one; every piece must be valid UTF-8 and the pieces must
// add up to the decode of the whole sequence.
void check_stream(const Tokenizer& tok, const std::vector<int>& ids, bool skip,
                  const std::string& want, const std::string& label, int& failures) {
  StreamingDetokenizer stream(tok, skip);
  std::string all;
  bool pieces_ok = true;
  for (int id : ids) {
    std::string piece = stream.add(id);
    pieces_ok = pieces_ok && valid_utf8(piece);
    all += piece;
  }
  std::string tail = stream.finish();
  all += tail;
  bool ok = pieces_ok && all == want && stream.text() == want;
  if (!ok && ++failures <= 3)
    ADD_FAILURE() << label << ": streamed " << json(all).dump() << " (pieces valid: " << pieces_ok
                  << "), decode gives " << json(want).dump();
}

TEST(TokenizerStreamingDetok, ConcatenationEqualsDecode) {
  std::vector<std::pair<std::string, Tokenizer>> toks;
  for (const char* name : kNames) {
    LMLAB_REQUIRE_FILE(tok_fixture(name) / "golden.jsonl");
    toks.emplace_back(name, Tokenizer::from_file(tok_fixture(name)));
  }
  for (auto& [name, tok] : toks) {
    int failures = 0, n = 0;
    for (const json& r : read_jsonl(tok_fixture(name) / "golden.jsonl")) {
      auto ids = r["ids_sp"].get<std::vector<int>>();
      check_stream(tok, ids, false, r["dec"], name + " " + r["text"].dump(), failures);
      check_stream(tok, ids, true, r["dec_skip"], name + " (skip) " + r["text"].dump(), failures);
      ++n;
    }
    EXPECT_GE(n, 2000) << name;
    EXPECT_EQ(failures, 0) << name << ": " << failures << " of " << 2 * n << " streams differ";
  }
}

TEST(TokenizerStreamingDetok, HoldsBackSplitCharacters) {
  LMLAB_REQUIRE_FILE(tok_fixture("llama2/tokenizer.json"));
  Tokenizer tok = Tokenizer::from_file(tok_fixture("llama2"));
  // "你" (E4 BD A0) as three byte-fallback tokens, then a word.
  std::vector<int> ids = {*tok.token_to_id("<0xE4>"), *tok.token_to_id("<0xBD>"),
                          *tok.token_to_id("<0xA0>"), *tok.token_to_id("▁ok")};
  StreamingDetokenizer s(tok);
  EXPECT_EQ(s.add(ids[0]), "");
  EXPECT_EQ(s.add(ids[1]), "");
  EXPECT_EQ(s.add(ids[2]), "");
  std::string rest = s.add(ids[3]);
  EXPECT_EQ(rest, "你 ok");
  rest += s.finish();
  EXPECT_EQ(rest, tok.decode(ids));
  // An unfinished character is flushed as U+FFFD by finish().
  StreamingDetokenizer cut(tok);
  EXPECT_EQ(cut.add(ids[0]), "");
  EXPECT_EQ(cut.add(ids[1]), "");
  EXPECT_EQ(cut.finish(), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(TokenizerInvalidUtf8, ReplacedLikePythonErrorsReplace) {
  for (const char* name : {"llama3", "llama2", "qwen3"}) {
    LMLAB_REQUIRE_FILE(tok_fixture(name) / "invalid_utf8.jsonl");
    Tokenizer tok = Tokenizer::from_file(tok_fixture(name));
    for (const json& r : read_jsonl(tok_fixture(name) / "invalid_utf8.jsonl")) {
      std::string hex = r["hex"], raw;
      for (size_t i = 0; i < hex.size(); i += 2)
        raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
      EXPECT_EQ(tok.encode(raw, false), r["ids"].get<std::vector<int>>()) << name << " bytes " << hex;
      EXPECT_TRUE(valid_utf8(tok.decode(tok.encode(raw, false)))) << hex;
    }
  }
}

TEST(TokenizerErrors, MalformedTokenizerJson) {
  auto throws_invalid = [](const std::string& text) {
    try {
      Tokenizer::from_json(text);
    } catch (const std::invalid_argument& e) {
      EXPECT_EQ(std::string(e.what()).rfind("[tokenizer] ", 0), 0u) << e.what();
      return true;
    } catch (...) {
      return false;
    }
    return false;
  };
  const std::string vocab = R"("vocab": {"a": 0, "b": 1, "ab": 2})";
  EXPECT_TRUE(throws_invalid("{not json"));
  EXPECT_TRUE(throws_invalid("[]"));
  EXPECT_TRUE(throws_invalid("{}"));                                         // no model
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "Unigram", "vocab": []}})"));  // unknown model
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE"}})"));             // no vocab
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["a c"]}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["abc"]}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": [1]}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab +
                             R"(}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "("}, "behavior": "Isolated"}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab +
                             R"(}, "pre_tokenizer": {"type": "Nope"}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab + R"(}, "decoder": 5})"));
  // A stray huge id would size the id -> token table in gigabytes (found by the fuzzer).
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 2000000000}}})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab +
                             R"(}, "added_tokens": [{"id": 2000000000, "content": "<x>"}]})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab +
                             R"(}, "added_tokens": [{"content": "x"}]})"));
  EXPECT_TRUE(throws_invalid(R"({"model": {"type": "BPE", )" + vocab +
                             R"(}, "normalizer": {"type": "Replace", "pattern": {}, "content": ""}})"));
  // A minimal valid file loads and merges.
  Tokenizer t = Tokenizer::from_json(R"({"model": {"type": "BPE", )" + vocab + R"(, "merges": ["a b"]}})");
  EXPECT_EQ(t.encode("ab"), std::vector<int>({2}));
  EXPECT_THROW(Tokenizer::from_file("/nonexistent/tokenizer.json"), std::runtime_error);
}

TEST(TokenizerErrors, BadGgufMetadata) {
  EXPECT_THROW(Tokenizer::from_gguf({}), std::invalid_argument);
  Metadata m{{"tokenizer.ggml.model", std::string("gpt2")},
             {"tokenizer.ggml.tokens", std::vector<std::string>{"a", "b"}}};
  EXPECT_THROW(Tokenizer::from_gguf(m), std::invalid_argument);  // no merges
  m["tokenizer.ggml.merges"] = std::vector<std::string>{"a c"};
  EXPECT_THROW(Tokenizer::from_gguf(m), std::invalid_argument);  // unknown merge token
  m["tokenizer.ggml.merges"] = std::vector<std::string>{};
  m["tokenizer.ggml.pre"] = std::string("no-such-pre");
  EXPECT_THROW(Tokenizer::from_gguf(m), Unsupported);
  m["tokenizer.ggml.model"] = std::string("bert");
  EXPECT_THROW(Tokenizer::from_gguf(m), Unsupported);
  m["tokenizer.ggml.model"] = int64_t{3};
  EXPECT_THROW(Tokenizer::from_gguf(m), std::invalid_argument);
}

TEST(TokenizerThreads, ConcurrentEncodeMatchesSerial) {
  LMLAB_REQUIRE_FILE(tok_fixture("llama3/golden.jsonl"));
  Tokenizer tok = Tokenizer::from_file(tok_fixture("llama3"));
  auto records = read_jsonl(tok_fixture("llama3/golden.jsonl"));
  std::vector<int> bad(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < records.size(); i += 2)
        bad[t] += tok.encode(records[i]["text"].get<std::string>(), false) !=
                  records[i]["ids"].get<std::vector<int>>();
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace lmlab

namespace lmlab {
namespace {

// Throughput probe for bench/tokenizer_bench.py (disabled in normal runs):
// encodes every line of $LMLAB_TOK_BENCH_TEXT with $LMLAB_TOK_BENCH_NAME.
TEST(TokenizerBench, DISABLED_Throughput) {
  const char* text_path = std::getenv("LMLAB_TOK_BENCH_TEXT");
  const char* name = std::getenv("LMLAB_TOK_BENCH_NAME");
  ASSERT_TRUE(text_path && name) << "set LMLAB_TOK_BENCH_TEXT and LMLAB_TOK_BENCH_NAME";
  std::string n = name;
  Tokenizer tok = n == "smollm2" ? [] {
    std::ifstream f(tok_fixture("smollm2/gguf_meta.json"));
    json j = json::parse(f);
    Metadata m;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const json& v = *it;
      if (v.is_boolean()) m[it.key()] = v.get<bool>();
      else if (v.is_number_integer()) m[it.key()] = v.get<int64_t>();
      else if (v.is_string()) m[it.key()] = v.get<std::string>();
      else if (v.is_array() && !v.empty() && v[0].is_string()) m[it.key()] = v.get<std::vector<std::string>>();
      else if (v.is_array() && !v.empty() && v[0].is_number_integer()) m[it.key()] = v.get<std::vector<int64_t>>();
    }
    return Tokenizer::from_gguf(m);
  }() : Tokenizer::from_file(tok_fixture(n));
  std::vector<std::string> lines;
  size_t bytes = 0;
  std::ifstream f(text_path);
  for (std::string line; std::getline(f, line);) bytes += line.size(), lines.push_back(line);
  size_t tokens = 0;
  auto t0 = std::chrono::steady_clock::now();
  for (const std::string& l : lines) tokens += tok.encode(l, false).size();
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("lmlab %s: %zu bytes, %zu tokens, %.3f s, %.2f MB/s\n", name, bytes, tokens, s,
              bytes / s / 1e6);
}

}  // namespace
}  // namespace lmlab
