// Gemma 3's SentencePiece-style vocabulary read from its GGUF (the cached
// gemma3-270m model) against llama.cpp's tokenizer on the same file and HF
// `tokenizers` on ../shared/tokenizers/gemma3 (tests/golden/gemma_golden.py).
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>

#include "lmlab/io.h"
#include "lmlab/tokenizer.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

using json = nlohmann::json;

std::filesystem::path gemma_path() { return default_model_path_for_tests().parent_path() / "gemma-3-270m-q4_k_m.gguf"; }

std::string show(const std::vector<int>& ids) {
  std::string s = "[";
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s + "]";
}

TEST(TokenizerGguf, Gemma3MatchesLlamaCppAndHf) {
  const auto golden = fixtures_dir() / "gemma" / "tokenizer.jsonl";
  LMLAB_REQUIRE_FILE(gemma_path());
  LMLAB_REQUIRE_FILE(golden);
  Tokenizer tok = Tokenizer::from_gguf(io::read_gguf(gemma_path()).meta);
  EXPECT_EQ(tok.vocab_size(), 262144);
  EXPECT_EQ(tok.bos_id(), 2);
  std::ifstream f(golden);
  int n = 0, llama_mismatch = 0, hf_mismatch = 0, decode_mismatch = 0;
  for (std::string line; std::getline(f, line); ++n) {
    json r = json::parse(line);
    const std::string text = r["text"];
    const auto llama = r["llama_cpp"].get<std::vector<int>>();
    const auto got = tok.encode(text, false);
    if (got != llama && ++llama_mismatch <= 3)
      ADD_FAILURE() << "llama.cpp differs for " << json(text).dump() << ":\n  llama.cpp " << show(llama)
                    << "\n  lmlab     " << show(got);
    hf_mismatch += got != r["hf"].get<std::vector<int>>();
    // Every token's text as HF decodes it; without special tokens as llama.cpp
    // does (the GGUF's control tokens, which are more than HF's special ones).
    const std::string dec = tok.decode(got, false), dec_skip = tok.decode(got, true);
    if (dec != r["hf_dec"].get<std::string>() && ++decode_mismatch <= 3)
      ADD_FAILURE() << "HF decodes " << json(text).dump() << " as " << r["hf_dec"].dump() << ", lmlab as "
                    << json(dec).dump();
    if (dec_skip != r["llama_cpp_dec"].get<std::string>() && ++decode_mismatch <= 3)
      ADD_FAILURE() << "llama.cpp decodes " << json(text).dump() << " without specials as "
                    << r["llama_cpp_dec"].dump() << ", lmlab as " << json(dec_skip).dump();
  }
  EXPECT_GE(n, 2000);
  EXPECT_EQ(llama_mismatch, 0) << n - llama_mismatch << "/" << n << " match llama.cpp";
  EXPECT_EQ(hf_mismatch, 0) << n - hf_mismatch << "/" << n << " match HF tokenizers";
  EXPECT_EQ(decode_mismatch, 0) << "decodes differ";
  std::printf("[ tokenizer ] gemma3 (gguf): %d strings, llama.cpp %d/%d, HF %d/%d match\n", n,
              n - llama_mismatch, n, n - hf_mismatch, n);
}

TEST(TokenizerGguf, Gemma3EndsGenerationWhereLlamaCppDoes) {
  const auto golden = fixtures_dir() / "gemma" / "vocab.json";
  LMLAB_REQUIRE_FILE(gemma_path());
  LMLAB_REQUIRE_FILE(golden);
  Tokenizer tok = Tokenizer::from_gguf(io::read_gguf(gemma_path()).meta);
  std::ifstream f(golden);
  auto want = json::parse(f)["eog"].get<std::vector<int>>();
  auto got = tok.eos_ids();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, want);  // <eos>, <end_of_turn>, </s>
}

TEST(TokenizerGguf, Gemma3TurnMarkersAreSpecial) {
  LMLAB_REQUIRE_FILE(gemma_path());
  Tokenizer tok = Tokenizer::from_gguf(io::read_gguf(gemma_path()).meta);
  auto ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>", true);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 2);  // <bos>
  EXPECT_EQ(tok.id_to_token(ids[1]), "<start_of_turn>");
  EXPECT_TRUE(tok.is_special(ids[1]));
  EXPECT_EQ(tok.decode(ids, true), "user\nHi");
}

}  // namespace
}  // namespace lmlab::test
