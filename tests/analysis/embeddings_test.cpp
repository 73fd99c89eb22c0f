// embeddings: a row equals the dequantized table row, nearest neighbours are
// ranked by cosine without the token itself, and a token's input vector is
// context-free while its hidden state is not (golden on the default model).
#include <cmath>

#include "analysis/lab_test_util.h"

namespace lmlab::test {
namespace {

namespace an = lmlab::analysis;
namespace mx = mlx::core;

TEST(Embeddings, RowIsTheDequantizedTableRow) {
  auto m = load_tiny("llama_q4");
  std::vector<float> row = an::embedding_row(*m, 7);
  const Weights& w = m->weights();
  ASSERT_TRUE(w.quant("model.embed_tokens") != nullptr);
  mx::array table = mx::dequantize(w.at("model.embed_tokens.weight"), w.at("model.embed_tokens.scales"),
                                   w.at("model.embed_tokens.biases"), 32, w.quant("model.embed_tokens")->bits);
  std::vector<float> want = to_vec(mx::take(table, 7, 0));
  ASSERT_EQ(row.size(), want.size());
  for (size_t i = 0; i < row.size(); ++i) EXPECT_EQ(row[i], want[i]);
  EXPECT_THROW(an::embedding_row(*m, 160), std::invalid_argument);
}

TEST(Embeddings, NeighboursAreSortedByCosineAndExcludeTheToken) {
  auto m = load_tiny("llama");
  auto nb = an::nearest_tokens(*m, 11, 5);
  ASSERT_EQ(nb.size(), 5u);
  std::vector<float> a = an::embedding_row(*m, 11);
  for (size_t i = 0; i < nb.size(); ++i) {
    EXPECT_NE(nb[i].id, 11);
    if (i) EXPECT_GE(nb[i - 1].cosine, nb[i].cosine);
    std::vector<float> b = an::embedding_row(*m, nb[i].id);
    double dot = 0;
    for (size_t j = 0; j < a.size(); ++j) dot += double(a[j]) * b[j];
    EXPECT_NEAR(nb[i].cosine, dot / (an::l2_norm(a) * an::l2_norm(b)), 1e-5);
  }
}

TEST(Embeddings, InputVectorIsContextFreeHiddenStateIsNot) {
  auto m = load_tiny("qwen2");
  an::ContextCheck c = an::context_check(*m, {5, 9, 30, 2}, 2, {1, 30, 77}, 1, 1);
  EXPECT_EQ(c.embed_max_diff, 0.0f);
  EXPECT_GT(c.hidden_max_diff, 1e-3f);
  EXPECT_THROW(an::context_check(*m, {5, 9}, 0, {9, 5}, 0, 0), std::invalid_argument);  // different tokens
}

TEST(Embeddings, DefaultModelCatIsNearCat) {
  LoadedModel& m = default_model();
  int cat = m.tokenizer.encode(" cat", false).at(0);
  auto nb = an::nearest_tokens(*m.model, cat, 5);
  bool found = false;
  for (auto& n : nb) found |= m.tokenizer.decode(std::vector<int>{n.id}) == " Cat";
  EXPECT_TRUE(found);
  auto a = m.tokenizer.encode("The cat sat on the mat", false), b = m.tokenizer.encode("I have a black cat", false);
  an::ContextCheck c = an::context_check(*m.model, a, 1, b, 4, -1);
  EXPECT_EQ(c.layer, 15);
  EXPECT_EQ(c.embed_max_diff, 0.0f);
  EXPECT_GT(c.hidden_max_diff, 1.0f);
}

}  // namespace
}  // namespace lmlab::test
