#include "nn/cpu/cpu_arrays.h"

#include <cstring>
#include <stdexcept>
#include <string>
#include <variant>

#include <mlx/allocator.h>
#include <mlx/device.h>
#include <mlx/transforms.h>
#include <mlx/ops.h>

namespace mx = mlx::core;

namespace lmlab::nn::cpu {

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

RowMajor::RowMajor(const mx::array& a) {
  if (a.flags().row_contiguous) {
    ptr_ = a.data<void>();
  } else {
    copy_ = gather(a);
    ptr_ = copy_.data();
  }
}

mx::cpu::CommandEncoder& encode(const mx::Stream& stream, const std::vector<mx::array>& inputs,
                                std::vector<mx::array>& outputs) {
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& in : inputs) encoder.set_input_array(in);
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
    encoder.set_output_array(o);
  }
  return encoder;
}

mx::cpu::CommandEncoder& encode(const mx::Stream& stream, const std::vector<mx::array>& inputs, mx::array& out) {
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& in : inputs) encoder.set_input_array(in);
  encoder.set_output_array(out);
  return encoder;
}

mx::cpu::CommandEncoder& FusedCpuPrimitive::encode(const std::vector<mx::array>& inputs, mx::array& out) {
  return cpu::encode(stream(), inputs, out);
}

void FusedCpuPrimitive::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::runtime_error(std::string("[lmlab::nn] ") + name() + " runs on CPU streams only");
}

std::vector<mx::array> FusedCpuPrimitive::vjp(const std::vector<mx::array>& primals,
                                              const std::vector<mx::array>& cotangents,
                                              const std::vector<int>& argnums, const std::vector<mx::array>&) {
  const Composition reference = composition();
  auto f = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in)}; };
  auto grads = mx::vjp(f, primals, cotangents).second;
  std::vector<mx::array> out;
  for (int a : argnums) out.push_back(grads[a]);
  return out;
}

std::vector<mx::array> FusedCpuPrimitive::jvp(const std::vector<mx::array>& primals,
                                              const std::vector<mx::array>& tangents, const std::vector<int>& argnums) {
  const Composition reference = composition();
  auto f = [&](const std::vector<mx::array>& in) { return std::vector<mx::array>{reference(in)}; };
  std::vector<mx::array> all;
  for (const auto& p : primals) all.push_back(mx::zeros_like(p));
  for (size_t i = 0; i < argnums.size(); ++i) all[argnums[i]] = tangents[i];
  return mx::jvp(f, primals, all).second;
}

bool on_cpu(const mx::StreamOrDevice& s) {
  if (auto* stream = std::get_if<mx::Stream>(&s)) return stream->device == mx::Device::cpu;
  if (auto* device = std::get_if<mx::Device>(&s)) return *device == mx::Device::cpu;
  if (auto* type = std::get_if<mx::Device::DeviceType>(&s)) return *type == mx::Device::cpu;
  return mx::default_device() == mx::Device::cpu;
}

}  // namespace lmlab::nn::cpu
