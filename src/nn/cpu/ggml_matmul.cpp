// nn::ggml_matmul (ggml_matmul.h): an MLX primitive (LmlabGgmlMatmul) whose CPU
// evaluation splits W's rows over lmlab's compute pool, and the composed path.
#include "nn/cpu/ggml_matmul.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include <mlx/allocator.h>
#include <mlx/backend/cpu/encoder.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "lmlab/io.h"
#include "nn/cpu/cpu_arrays.h"
#include "nn/cpu/quantized_matmul_kernels.h"

namespace mx = mlx::core;

namespace lmlab::nn {

namespace {

// out (M, N) = x (M, K) · dequantize(W)ᵀ through lmlab's quantized-matmul
// pool and kernels (quantized_matmul_kernels.h, QmmProblem::ggml_type): a few
// rows by the Q6_K GEMV kernel or row decoding, more by decoded panels.
void run(io::GgmlType type, const float* x, const uint8_t* w, float* out, int M, int N, int K) {
  const io::GgmlBlock b = *io::ggml_block(static_cast<uint32_t>(type));
  cpu::QmmProblem p{.x = x, .w = reinterpret_cast<const uint32_t*>(w), .scales = nullptr, .biases = nullptr,
                    .scale_type = cpu::ScaleType::f32, .out = out, .M = M, .N = N, .K = K,
                    .group_size = b.elements, .bits = io::ggml_field_bits(type), .ggml_type = static_cast<int>(type)};
  cpu::run_qmm(p);
}

mx::array composed(const mx::array& x, const mx::array& blocks, io::GgmlType type, mx::StreamOrDevice s) {
  return mx::matmul(x, mx::transpose(io::ggml_dequantize(blocks, type, x.dtype()), s), s);
}

class LmlabGgmlMatmul : public mx::UnaryPrimitive {
 public:
  LmlabGgmlMatmul(mx::Stream stream, io::GgmlType type) : mx::UnaryPrimitive(stream), type_(type) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& encoder = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) encoder.set_input_array(in);
    encoder.set_output_array(out);
    encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]), w = mx::array::unsafe_weak_copy(inputs[1]),
                      out = mx::array::unsafe_weak_copy(out), type = type_]() mutable {
      const cpu::RowMajor xr(x), wr(w);
      const int K = x.shape(-1), N = out.shape(-1);
      run(type, xr.data<float>(), wr.data<uint8_t>(), out.data<float>(),
          K == 0 ? 0 : static_cast<int>(x.size() / K), N, K);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[lmlab::nn::ggml_matmul] CPU only; GPU streams dequantize with MLX ops");
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    for (int arg : argnums) {
      if (arg != 0)
        throw std::invalid_argument("[lmlab::nn::ggml_matmul] gradients only with respect to x, not the blocks");
      // d(x Wᵀ)/dx applied to g: g W.
      grads.push_back(mx::matmul(cotangents[0], io::ggml_dequantize(primals[1], type_, mx::float32), stream()));
    }
    return grads;
  }

  std::vector<mx::array> jvp(const std::vector<mx::array>& primals, const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    if (argnums.size() != 1 || argnums[0] != 0)
      throw std::invalid_argument("[lmlab::nn::ggml_matmul] derivatives only with respect to x, not the blocks");
    return {ggml_matmul(tangents[0], primals[1], type_, stream())};
  }

  const char* name() const override { return "LmlabGgmlMatmul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabGgmlMatmul*>(&other);
    return o && o->type_ == type_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    mx::Shape shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 private:
  io::GgmlType type_;
};

}  // namespace

bool ggml_matmul_is_native(const mx::array& x, const mx::array& blocks, io::GgmlType type, mx::StreamOrDevice s) {
  if (!cpu::on_cpu(s) || x.dtype() != mx::float32 || x.ndim() < 1) return false;
  const auto b = io::ggml_block(static_cast<uint32_t>(type));
  if (!b || !io::is_ggml_mode(io::ggml_mode_name(type))) return false;
  const int K = x.shape(-1);
  return blocks.dtype() == mx::uint8 && blocks.ndim() == 2 && K % b->elements == 0 &&
         static_cast<long>(blocks.shape(1)) == static_cast<long>(K) / b->elements * b->bytes;
}

mx::array ggml_matmul(const mx::array& x, const mx::array& blocks, io::GgmlType type, mx::StreamOrDevice s) {
  if (!ggml_matmul_is_native(x, blocks, type, s)) return composed(x, blocks, type, s);
  mx::Shape shape = x.shape();
  shape.back() = blocks.shape(0);
  return mx::array(std::move(shape), mx::float32, std::make_shared<LmlabGgmlMatmul>(mx::to_stream(s), type),
                   {x, blocks});
}

}  // namespace lmlab::nn
