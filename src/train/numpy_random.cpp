// numpy's legacy RandomState permutation (random_interval + _shuffle_raw).
#include "train/numpy_random.h"

#include <numeric>
#include <sstream>
#include <stdexcept>

namespace lmlab::train {

uint32_t NumpyRandom::interval(uint32_t max) {
  if (max == 0) return 0;
  uint32_t mask = max;
  for (int s : {1, 2, 4, 8, 16}) mask |= mask >> s;
  uint32_t v;
  while ((v = static_cast<uint32_t>(mt_()) & mask) > max) {
  }
  return v;
}

std::vector<int> NumpyRandom::permutation(int n) {
  std::vector<int> a(n);
  std::iota(a.begin(), a.end(), 0);
  for (int i = n - 1; i >= 1; --i) std::swap(a[i], a[interval(static_cast<uint32_t>(i))]);
  return a;
}

std::string NumpyRandom::state() const {
  std::ostringstream s;
  s << mt_;
  return s.str();
}

void NumpyRandom::set_state(const std::string& text) {
  std::istringstream s(text);
  std::mt19937 mt;
  s >> mt;
  if (!s) throw std::invalid_argument("[train] the saved batch-order generator state is corrupt");
  mt_ = mt;
}

}  // namespace lmlab::train
