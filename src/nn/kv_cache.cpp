// The standard KV cache of mlx-lm: buffers grow in `step`-token chunks and new
// entries are written with slice_update, so a decode step costs no copy of the
// whole cache when MLX can donate the old buffer.
#include <mlx/mlx.h>

#include "lmlab/nn.h"

namespace mx = mlx::core;

namespace lmlab::nn {

KVCache::KVCache(int num_layers, int step) : layers_(num_layers), step_(step) {}

void KVCache::grow(Layer& c, mx::Shape k_shape, mx::Shape v_shape, mx::Dtype dtype, int n) {
  const int prev = c.offset;
  if (c.keys && prev + n <= c.keys->shape(2)) return;
  k_shape[2] = v_shape[2] = ((n + step_ - 1) / step_) * step_;
  array nk = mx::zeros(k_shape, dtype);
  array nv = mx::zeros(v_shape, dtype);
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

std::pair<array, array> KVCache::update(int layer, const array& k, const array& v) {
  Layer& c = layers_.at(layer);
  const int prev = c.offset;
  grow(c, k.shape(), v.shape(), k.dtype(), k.shape(2));
  c.offset = prev + k.shape(2);
  mx::Shape start = {0, 0, prev, 0};
  mx::Shape stop_k = k.shape(), stop_v = v.shape();
  stop_k[2] = stop_v[2] = c.offset;
  c.keys = mx::slice_update(*c.keys, k, start, stop_k);
  c.values = mx::slice_update(*c.values, v, start, stop_v);
  mx::Shape ks = c.keys->shape(), vs = c.values->shape();
  ks[2] = vs[2] = c.offset;
  return {mx::slice(*c.keys, {0, 0, 0, 0}, ks), mx::slice(*c.values, {0, 0, 0, 0}, vs)};
}

std::pair<array, array> KVCache::reserve(int layer, const mx::Shape& k_shape, const mx::Shape& v_shape,
                                         mx::Dtype dtype, int n) {
  Layer& c = layers_.at(layer);
  grow(c, k_shape, v_shape, dtype, n);
  return {*c.keys, *c.values};
}

void KVCache::commit(int layer, array keys, array values, int n) {
  Layer& c = layers_.at(layer);
  c.keys = std::move(keys);
  c.values = std::move(values);
  c.offset += n;
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
