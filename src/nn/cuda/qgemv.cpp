// nn::cuda::qgemv: the primitive (LmlabCudaQGemv) and the GEMV launches that the
// fused decoder step shares.
#include "nn/cuda/qgemv.h"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>
#include <mlx/mlx.h>
#include <mlx/primitives.h>

#include "nn/cuda/device.h"
#include "nn/cuda/qgemv_launch.h"

namespace mx = mlx::core;

namespace lmlab::nn::cuda {

long qgemv_smem(int M, int K, int bits) {
  const int elems = 128 / bits, chunks = K / elems;
  const long row_pieces = static_cast<long>((chunks + 31) / 32) * 32 * (elems / 8);
  return M * (row_pieces * 16 + static_cast<long>(chunks) * 4);
}

namespace {

// Rows per launch: 8 or 4 when as many fit the shared memory, else 1.
int rows_per_launch(int M, int K, int bits) {
  if (M > 4 && qgemv_smem(8, K, bits) <= kQGemvSmemLimit) return 8;
  if (M > 1 && qgemv_smem(4, K, bits) <= kQGemvSmemLimit) return 4;
  return 1;
}

}  // namespace

void add_qgemv(Launches& to, const QGemvParams& p, int K, int bits, int group_size, mx::Dtype t) {
  const size_t bytes = mx::size_of(t);
  const int M = p.M;
  const int mr = rows_per_launch(M, K, bits);
  CUfunction f =
      kernel(fmt::format("lmlab_qgemv_{}_b{}_g{}_m{}", t == mx::float16 ? "f16" : "bf16", bits, group_size, mr));
  int slots = p.mat[0].n;
  if (p.mode != 2)
    for (int j = 1; j < p.nmat; ++j) slots += p.mat[j].n;
  // A warp's task is two weight rows (kernels.cu, qgemv), or one where every
  // row gets a warp of the first wave anyway: a small matrix is then read by
  // twice the warps. One wave of blocks at most: each warp then takes several
  // tasks and a block's staging of the inputs serves them all (a second wave
  // would stage again and start its loads only when the first is done).
  for (int r0 = 0; r0 < M; r0 += mr) {
    QGemvParams c = p;
    c.M = std::min(mr, M - r0);
    c.K = K;
    c.x = static_cast<const char*>(p.x) + r0 * p.x_stride * bytes;
    if (p.res) c.res = static_cast<const char*>(p.res) + r0 * p.out_stride * bytes;
    for (int j = 0; j < p.nmat; ++j)
      c.mat[j].out = static_cast<char*>(p.mat[j].out) +
                     r0 * (p.nmat == 1 ? p.out_stride : static_cast<long>(p.mat[j].n)) * bytes;
    const uint32_t smem = static_cast<uint32_t>(qgemv_smem(c.M, K, bits));
    const int wave = resident_blocks(f, 256, smem) * multiprocessors();
    c.rows_per_task = p.mode != 2 && slots <= wave * 8 ? 1 : 2;
    const int tasks = p.mode == 2 || c.rows_per_task == 1 ? slots : (slots + 1) / 2;
    launch(to, f, dim3(std::min((tasks + 7) / 8, wave)), dim3(256), smem, c);
  }
}

namespace {

class LmlabCudaQGemv : public mx::Primitive {
 public:
  LmlabCudaQGemv(mx::Stream stream, int group_size, int bits)
      : mx::Primitive(stream), group_size_(group_size), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("[lmlab::nn::cuda::qgemv] GPU only");
  }

  void eval_gpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cu::get_command_encoder(stream());
    mx::cu::device(stream().device).make_current();
    const mx::array &x = in[0], &w = in[1];
    for (const mx::array& a : in)
      if (!a.flags().row_contiguous)
        throw std::runtime_error("[lmlab::nn::cuda::qgemv] inputs must be row-contiguous");
    const int K = x.shape(-1), N = w.shape(0);
    out[0].set_data(device_memory(out[0].nbytes(), enc));
    QGemvParams p{};
    p.x = mx::gpu_ptr<void>(x);
    p.M = static_cast<int>(x.size() / K);
    p.x_stride = K;
    p.out_stride = N;
    p.nmat = 1;
    p.mat[0] = QMat{mx::gpu_ptr<uint32_t>(w), mx::gpu_ptr<void>(in[2]), mx::gpu_ptr<void>(in[3]), nullptr,
                    mx::gpu_ptr<void>(out[0]), N};
    EncoderLaunches to(enc, in, out);
    add_qgemv(to, p, K, bits_, group_size_, x.dtype());
  }

  std::vector<mx::array> vjp(const std::vector<mx::array>& primals, const std::vector<mx::array>& cotangents,
                             const std::vector<int>& argnums, const std::vector<mx::array>&) override {
    std::vector<mx::array> grads;
    for (int arg : argnums) {
      if (arg != 0)
        throw std::invalid_argument("[lmlab::nn::cuda::qgemv] gradients only with respect to x, not the weights");
      // d(x Wᵀ)/dx applied to g: g W.
      grads.push_back(mx::quantized_matmul(cotangents[0], primals[1], primals[2], primals[3], /*transpose=*/false,
                                           group_size_, bits_, "affine", stream()));
    }
    return grads;
  }
  std::vector<mx::array> jvp(const std::vector<mx::array>& primals, const std::vector<mx::array>& tangents,
                             const std::vector<int>& argnums) override {
    for (int arg : argnums)
      if (arg != 0)
        throw std::invalid_argument("[lmlab::nn::cuda::qgemv] derivatives only with respect to x, not the weights");
    return {qgemv(tangents[0], primals[1], primals[2], primals[3], group_size_, bits_, stream())};
  }
  const char* name() const override { return "LmlabCudaQGemv"; }
  bool is_equivalent(const mx::Primitive& other) const override {
    auto* o = dynamic_cast<const LmlabCudaQGemv*>(&other);
    return o && o->group_size_ == group_size_ && o->bits_ == bits_;
  }
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override {
    mx::Shape shape = inputs[0].shape();
    shape.back() = inputs[1].shape(0);
    return {shape};
  }

 private:
  int group_size_, bits_;
};

bool same_shape(const array& a, int rows, int cols) { return a.ndim() == 2 && a.shape(0) == rows && a.shape(1) == cols; }

}  // namespace

bool qgemv_is_native(const array& x, const array& w, const array& scales, const std::optional<array>& biases,
                     int group_size, int bits, const std::string& mode, mx::StreamOrDevice s) {
  if (mx::to_stream(s).device != mx::Device::gpu || mode != "affine" || !biases) return false;
  if (x.ndim() < 1 || (x.dtype() != mx::float16 && x.dtype() != mx::bfloat16)) return false;
  if (bits != 4 && bits != 8) return false;
  if (group_size != 32 && group_size != 64 && group_size != 128) return false;
  const int K = x.shape(-1);
  if (K < group_size || K % group_size != 0 || x.size() / K > kMaxGemvRows || x.size() == 0) return false;
  if (w.dtype() != mx::uint32 || w.ndim() != 2 || static_cast<long>(w.shape(1)) * 32 / bits != K) return false;
  const int N = w.shape(0);
  if (scales.dtype() != x.dtype() || biases->dtype() != x.dtype()) return false;
  if (!same_shape(scales, N, K / group_size) || !same_shape(*biases, N, K / group_size)) return false;
  // One launch: its rows staged in shared memory together (more rows would be
  // launches ordered by the arrays each registers, which a lone primitive has
  // not got: MLX's own GEMV takes those).
  const int M = static_cast<int>(x.size() / K);
  return qgemv_smem(M, K, bits) <= kQGemvSmemLimit && rows_per_launch(M, K, bits) >= M;
}

array qgemv(const array& x, const array& w, const array& scales, const array& biases, int group_size, int bits,
            mx::StreamOrDevice s) {
  if (!qgemv_is_native(x, w, scales, biases, group_size, bits, "affine", s))
    throw std::invalid_argument("[lmlab::nn::cuda::qgemv] unsupported inputs (see qgemv_is_native)");
  mx::Shape shape = x.shape();
  shape.back() = w.shape(0);
  // The kernel reads rows in place: a strided view of x is copied first.
  const mx::Stream st = mx::to_stream(s);
  return array(std::move(shape), x.dtype(), std::make_shared<LmlabCudaQGemv>(st, group_size, bits),
               {mx::contiguous(x, false, st), mx::contiguous(w, false, st), mx::contiguous(scales, false, st),
                mx::contiguous(biases, false, st)});
}

}  // namespace lmlab::nn::cuda
