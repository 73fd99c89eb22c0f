// numpy's legacy global generator (np.random.seed / np.random.permutation):
// MT19937 seeded with init_genrand, permutations by a Fisher-Yates shuffle that
// draws each index with mask-and-reject on 32-bit outputs. mlx_lm.lora orders
// its batches with exactly these draws, so the same seed gives the same batches.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace lmlab::train {

class NumpyRandom {
 public:
  explicit NumpyRandom(uint32_t seed = 0) : mt_(seed) {}
  // np.random.permutation(n) after the draws so far.
  std::vector<int> permutation(int n);
  // The generator's whole state as text, and back (exact resume).
  std::string state() const;
  void set_state(const std::string& s);

 private:
  uint32_t interval(uint32_t max);
  std::mt19937 mt_;
};

}  // namespace lmlab::train
