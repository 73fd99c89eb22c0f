#include "nn/cpu_arrays.h"

#include <cstring>
#include <variant>

#include <mlx/device.h>

namespace mx = mlx::core;

namespace lmlab::nn::detail {

std::vector<char> gather(const mx::array& a) {
  const int64_t item = a.itemsize(), ndim = a.ndim();
  std::vector<char> out(a.size() * item);
  if (a.size() == 0) return out;
  const char* src = static_cast<const char*>(a.data<void>());
  const bool dense_rows = a.strides().back() == 1;
  const int64_t run = dense_rows ? a.shape(-1) : 1;  // elements copied per step
  const int64_t inner_dims = dense_rows ? ndim - 1 : ndim;
  std::vector<int> idx(ndim, 0);
  for (int64_t i = 0; i * run < static_cast<int64_t>(a.size()); ++i) {
    int64_t off = 0;
    for (int64_t d = 0; d < inner_dims; ++d) off += static_cast<int64_t>(idx[d]) * a.strides()[d];
    std::memcpy(out.data() + i * run * item, src + off * item, run * item);
    for (int64_t d = inner_dims - 1; d >= 0; --d) {
      if (++idx[d] < a.shape(d)) break;
      idx[d] = 0;
    }
  }
  return out;
}

bool on_cpu(const mx::StreamOrDevice& s) {
  if (auto* stream = std::get_if<mx::Stream>(&s)) return stream->device == mx::Device::cpu;
  if (auto* device = std::get_if<mx::Device>(&s)) return *device == mx::Device::cpu;
  if (auto* type = std::get_if<mx::Device::DeviceType>(&s)) return *type == mx::Device::cpu;
  return mx::default_device() == mx::Device::cpu;
}

}  // namespace lmlab::nn::detail
