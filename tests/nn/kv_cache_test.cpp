// nn::KVCache on its own: entries written in chunks that cross the buffer's
// growth step come back as the concatenation of everything written.
#include <mlx/mlx.h>

#include "lmlab/nn.h"
#include "test_util.h"

namespace lmlab::test {
namespace {

namespace mx = mlx::core;

TEST(KvCache, GrowingPastItsStepKeepsEveryEntry) {
  nn::KVCache cache(1, 4);  // buffers grow 4 positions at a time
  std::vector<mx::array> ks, vs;
  int seed = 0;
  for (int n : {3, 3, 1, 5, 2, 6}) {
    ks.push_back(mx::random::normal({1, 2, n, 3}, mx::float32, mx::random::key(++seed)));
    vs.push_back(mx::random::normal({1, 2, n, 5}, mx::float32, mx::random::key(++seed)));
    auto [k, v] = cache.update(0, ks.back(), vs.back());
    ASSERT_TRUE(mx::array_equal(k, mx::concatenate(ks, 2)).item<bool>()) << "keys after " << ks.size() << " chunks";
    ASSERT_TRUE(mx::array_equal(v, mx::concatenate(vs, 2)).item<bool>()) << "values after " << vs.size() << " chunks";
  }
  EXPECT_EQ(cache.offset(), 20);
}

}  // namespace
}  // namespace lmlab::test
