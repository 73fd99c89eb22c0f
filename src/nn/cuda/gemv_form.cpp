// nn::cuda::gemv_form: exact 8-bit repacking for the GPU GEMV, cached per buffer.
#include "nn/cuda/gemv_form.h"

#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include <mlx/mlx.h>

#include "lmlab/ggml.h"
#include "lmlab/io.h"

namespace mx = mlx::core;

namespace lmlab::nn::cuda {

namespace {

bool gemv_native(const QuantizedLinear& p) {
  return p.ggml_type < 0 && (p.bits == 4 || p.bits == 8) &&
         (p.group_size == 32 || p.group_size == 64 || p.group_size == 128);
}

// (N, K) uint8 levels as MLX's 8-bit words: level e at bits 8·(e mod 4) of
// word e/4, which is the bytes' own order on a little-endian machine.
mx::array pack8(const mx::array& levels) { return mx::view(mx::contiguous(levels), mx::uint32); }

QuantizedLinear repack(const QuantizedLinear& p, mx::Dtype dtype) {
  QuantizedLinear r = p;
  r.bits = 8;
  r.ggml_type = -1;
  r.activations.clear();
  if (p.ggml_type >= 0) {
    io::GgmlAffine a = io::ggml_affine_form(p.w, static_cast<io::GgmlType>(p.ggml_type));
    r.w = pack8(a.levels);
    r.scales = mx::astype(a.scales, dtype);
    r.biases = mx::astype(a.biases, dtype);
    r.group_size = 16;
  } else {
    // The levels: dequantized with unit scales and zero biases, in float32
    // (exact for up to 24 bits).
    const mx::array ones = mx::ones(p.scales.shape(), mx::float32), zeros = mx::zeros(p.scales.shape(), mx::float32);
    mx::array levels = mx::dequantize(p.w, ones, zeros, p.group_size, p.bits, "affine", std::nullopt, mx::float32);
    r.w = pack8(mx::astype(levels, mx::uint8));
  }
  mx::eval(r.w, r.scales, r.biases);
  return r;
}

bool repackable(const QuantizedLinear& p) {
  if (p.ggml_type >= 0) {
    const auto t = static_cast<io::GgmlType>(p.ggml_type);
    return t == io::GgmlType::Q2_K || t == io::GgmlType::Q3_K || t == io::GgmlType::Q6_K;
  }
  return p.bits >= 2 && p.bits <= 7 && p.bits != 4 &&
         (p.group_size == 32 || p.group_size == 64 || p.group_size == 128);
}

}  // namespace

std::optional<QuantizedLinear> gemv_form(const QuantizedLinear& p, mx::Dtype dtype) {
  if (gemv_native(p)) return p;
  if (!repackable(p)) return std::nullopt;
  // Weights loaded lazily (a safetensors file) are read here, as the step
  // would read them anyway: the cache is keyed on their buffers.
  if (!p.w.is_available() || !p.scales.is_available() || !p.biases.is_available()) mx::eval(p.w, p.scales, p.biases);
  // Keyed on the buffers (a freed buffer's entry never answers for a new one
  // at the same address: the weak pointers must still lead to these buffers).
  struct Entry {
    std::weak_ptr<mx::array::Data> w, scales, biases;
    QuantizedLinear form;
  };
  using Key = std::tuple<const void*, const void*, const void*, int>;
  static std::mutex mutex;
  static std::map<Key, Entry> cache;
  const Key key{p.w.data<void>(), p.scales.data<void>(), p.biases.data<void>(), static_cast<int>(dtype.val())};
  {
    std::lock_guard lock(mutex);
    auto it = cache.find(key);
    if (it != cache.end() && it->second.w.lock() == p.w.data_shared_ptr() &&
        it->second.scales.lock() == p.scales.data_shared_ptr() && it->second.biases.lock() == p.biases.data_shared_ptr()) {
      QuantizedLinear form = it->second.form;
      form.bias = p.bias;
      return form;
    }
  }
  QuantizedLinear form = repack(p, dtype);
  QuantizedLinear cached = form;
  cached.bias.reset();  // the caller's, never held here
  std::lock_guard lock(mutex);
  std::erase_if(cache, [](const auto& kv) { return kv.second.w.expired(); });
  cache.insert_or_assign(key,
                         Entry{p.w.data_shared_ptr(), p.scales.data_shared_ptr(), p.biases.data_shared_ptr(), cached});
  return form;
}

}  // namespace lmlab::nn::cuda
