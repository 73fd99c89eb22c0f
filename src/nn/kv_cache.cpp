// The standard KV cache of mlx-lm: buffers grow in `step`-token chunks and new
// entries are written with slice_update, so a decode step costs no copy of the
// whole cache when MLX can donate the old buffer.
#include <mlx/mlx.h>

#include "lmlab/nn.h"

namespace mx = mlx::core;

namespace lmlab::nn {

KVCache::KVCache(int num_layers, int step) : layers_(num_layers), step_(step) {}

std::pair<array, array> KVCache::update(int layer, const array& k, const array& v) {
  Layer& c = layers_.at(layer);
  const int prev = c.offset;
  const int n = k.shape(2);
  if (!c.keys || prev + n > c.keys->shape(2)) {
    const int grow = ((n + step_ - 1) / step_) * step_;
    auto shape_k = k.shape();
    auto shape_v = v.shape();
    shape_k[2] = shape_v[2] = grow;
    array nk = mx::zeros(shape_k, k.dtype());
    array nv = mx::zeros(shape_v, v.dtype());
    if (c.keys) {
      auto trim = [&](const array& a) {
        mx::Shape stop = a.shape();
        stop[2] = prev;
        return mx::slice(a, {0, 0, 0, 0}, stop);
      };
      c.keys = mx::concatenate({trim(*c.keys), nk}, 2);
      c.values = mx::concatenate({trim(*c.values), nv}, 2);
    } else {
      c.keys = nk;
      c.values = nv;
    }
  }
  c.offset = prev + n;
  mx::Shape start = {0, 0, prev, 0};
  mx::Shape stop_k = k.shape(), stop_v = v.shape();
  stop_k[2] = stop_v[2] = c.offset;
  c.keys = mx::slice_update(*c.keys, k, start, stop_k);
  c.values = mx::slice_update(*c.values, v, start, stop_v);
  mx::Shape ks = c.keys->shape(), vs = c.values->shape();
  ks[2] = vs[2] = c.offset;
  return {mx::slice(*c.keys, {0, 0, 0, 0}, ks), mx::slice(*c.values, {0, 0, 0, 0}, vs)};
}

void KVCache::trim(int n) {
  for (auto& c : layers_) c.offset = std::max(0, c.offset - n);
}

void KVCache::reset() {
  for (auto& c : layers_) c = Layer{};
}

std::vector<array> KVCache::state() const {
  std::vector<array> s;
  for (auto& c : layers_)
    if (c.keys) {
      s.push_back(*c.keys);
      s.push_back(*c.values);
    }
  return s;
}

size_t KVCache::nbytes() const {
  size_t n = 0;
  for (auto& c : layers_)
    if (c.keys) n += c.keys->nbytes() + c.values->nbytes();
  return n;
}

}  // namespace lmlab::nn
