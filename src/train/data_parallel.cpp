// Data parallelism: batch shares, token weights and the all-sum of a step.
#include "train/data_parallel.h"

#include <mlx/distributed/ops.h>
#include <mlx/mlx.h>

#include "lmlab/train.h"

namespace mx = mlx::core;
using mx::array;

namespace lmlab::train {

std::vector<int> rank_share(const std::vector<int>& batch, int rank, int size) {
  std::vector<int> mine;
  for (size_t i = rank; i < batch.size(); i += size) mine.push_back(batch[i]);
  return mine;
}

CombinedShare combine_share(const array& loss, const array& tokens, std::vector<array> grads, GradientReducer& r) {
  const array n = mx::astype(tokens, mx::float32);
  std::vector<array> all = r.sum({mx::multiply(mx::astype(loss, mx::float32), n), n});
  const array weight = mx::divide(n, all[1]);
  for (auto& g : grads) g = mx::astype(mx::multiply(mx::astype(g, mx::float32), weight), g.dtype());
  return {mx::astype(mx::divide(all[0], all[1]), loss.dtype()), mx::astype(all[1], tokens.dtype()), std::move(grads)};
}

namespace {

class GroupReducer : public GradientReducer {
 public:
  explicit GroupReducer(const mx::distributed::Group& g) : group_(g) {}
  int rank() const override { return group_.rank(); }
  int size() const override { return group_.size(); }

  std::vector<array> sum(std::vector<array> xs) override {
    if (xs.empty()) return xs;
    std::vector<array> flat;
    for (const auto& x : xs) flat.push_back(mx::reshape(mx::astype(x, mx::float32), {-1}));
    const array total = mx::distributed::all_sum(mx::concatenate(flat, 0), group_);
    int offset = 0;
    for (auto& x : xs) {
      const int n = static_cast<int>(x.size());
      x = mx::astype(mx::reshape(mx::slice(total, {offset}, {offset + n}), x.shape()), x.dtype());
      offset += n;
    }
    return xs;
  }

 private:
  mx::distributed::Group group_;
};

}  // namespace

std::shared_ptr<GradientReducer> group_reducer(const mx::distributed::Group& group) {
  return std::make_shared<GroupReducer>(group);
}

std::shared_ptr<GradientReducer> launch_reducer(const Context& ctx) {
  return ctx.world_size() > 1 ? group_reducer(*ctx.group()) : nullptr;
}

}  // namespace lmlab::train
