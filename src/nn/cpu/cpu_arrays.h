// Helpers for lmlab's CPU primitives (internal): reading an evaluated array's
// elements in row-major order, the base class that gives a fused primitive its
// derivatives through the MLX composition it stands for, and the device test.
// Nothing here runs threads or touches memory beyond the arrays it is given.
#pragma once

#include <functional>
#include <vector>

#include <mlx/array.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/primitives.h>
#include <mlx/utils.h>

namespace lmlab::nn::cpu {

// A row-contiguous copy of an evaluated array's elements (a transposed view, a
// slice, a broadcast), copied a row at a time when the last axis is dense.
std::vector<char> gather(const mlx::core::array& a);

// An evaluated array's elements in row-major order, for a kernel that needs
// them so: the array's own buffer when it already is, else a gathered copy
// that this object owns.
class RowMajor {
 public:
  explicit RowMajor(const mlx::core::array& a);
  RowMajor(const RowMajor&) = delete;
  RowMajor& operator=(const RowMajor&) = delete;
  template <class T>
  const T* data() const {
    return static_cast<const T*>(ptr_);
  }

 private:
  std::vector<char> copy_;
  const void* ptr_;
};

// The MLX composition a fused primitive stands for: its inputs → its one output.
using Composition = std::function<mlx::core::array(const std::vector<mlx::core::array>&)>;

// For eval_cpu of a primitive on `stream`: allocates the outputs, registers
// the inputs and outputs with the stream's command encoder, and returns the
// encoder to dispatch the kernel on.
mlx::core::cpu::CommandEncoder& encode(const mlx::core::Stream& stream, const std::vector<mlx::core::array>& inputs,
                                       std::vector<mlx::core::array>& outputs);
mlx::core::cpu::CommandEncoder& encode(const mlx::core::Stream& stream, const std::vector<mlx::core::array>& inputs,
                                       mlx::core::array& out);

// Base of lmlab's fused CPU primitives (attention, SwiGLU): evaluated by
// eval_cpu only, differentiated through composition() (the vjp for the
// requested arguments, the jvp with zero tangents for the others).
class FusedCpuPrimitive : public mlx::core::UnaryPrimitive {
 public:
  using mlx::core::UnaryPrimitive::UnaryPrimitive;
  virtual Composition composition() = 0;

  void eval_gpu(const std::vector<mlx::core::array>& inputs, mlx::core::array& out) override;
  std::vector<mlx::core::array> vjp(const std::vector<mlx::core::array>& primals,
                                    const std::vector<mlx::core::array>& cotangents,
                                    const std::vector<int>& argnums,
                                    const std::vector<mlx::core::array>& outputs) override;
  std::vector<mlx::core::array> jvp(const std::vector<mlx::core::array>& primals,
                                    const std::vector<mlx::core::array>& tangents,
                                    const std::vector<int>& argnums) override;

 protected:
  // For eval_cpu: allocates out, registers inputs and out with this stream's
  // command encoder, and returns the encoder to dispatch the kernel on.
  mlx::core::cpu::CommandEncoder& encode(const std::vector<mlx::core::array>& inputs, mlx::core::array& out);
};

// Whether s (a stream, a device, a device type, or {} for the default device) is the CPU.
bool on_cpu(const mlx::core::StreamOrDevice& s);

}  // namespace lmlab::nn::cpu
