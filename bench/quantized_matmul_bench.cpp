// nn::quantized_matmul (lmlab's CPU kernel) vs mx::quantized_matmul on the
// shapes of SmolLM2-135M (D 576, FFN 1536, vocab 49152 with the 8-bit tied
// head), for decode (M = 1) and a prefill chunk (M = 128). Float32 activations,
// float16 scales as loaded from a Q4_1/Q8_0 GGUF.
//   lmlab_bench --benchmark_filter=QuantizedMatmul
#include <ctime>

#include <benchmark/benchmark.h>
#include <mlx/mlx.h>

#include "nn/cpu/quantized_matmul.h"

namespace {

namespace mx = mlx::core;

template <bool Ours>
void BM_QuantizedMatmul(benchmark::State& state) {
  const int M = state.range(0), N = state.range(1), K = state.range(2), bits = state.range(3);
  auto q = mx::quantize(mx::random::normal({N, K}, mx::float32, 0.0f, 0.05f, mx::random::key(1)), 32, bits);
  auto scales = mx::astype(q[1], mx::float16), biases = mx::astype(q[2], mx::float16);
  auto x = mx::random::normal({M, K}, mx::float32, mx::random::key(2));
  mx::eval({q[0], scales, biases, x});
  // Process CPU time over all threads: on a shared machine wall time also
  // counts the time other processes hold the cores.
  const std::clock_t start = std::clock();
  for (auto _ : state) {
    auto y = Ours ? lmlab::nn::quantized_matmul(x, q[0], scales, biases, 32, bits)
                  : mx::quantized_matmul(x, q[0], scales, biases, /*transpose=*/true, 32, bits);
    mx::eval(y);
  }
  state.counters["process_cpu_us"] = benchmark::Counter(
      1e6 * static_cast<double>(std::clock() - start) / CLOCKS_PER_SEC / state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] = benchmark::Counter(static_cast<double>(N) * K * bits / 8,
                                                     benchmark::Counter::kIsIterationInvariantRate,
                                                     benchmark::Counter::kIs1000);
}

void Shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K", "bits"});
  for (int M : {1, 128}) {
    b->Args({M, 576, 576, 4});
    b->Args({M, 1536, 576, 4});
    b->Args({M, 576, 1536, 4});
    b->Args({M, 49152, 576, 8});
  }
  b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

BENCHMARK(BM_QuantizedMatmul<true>)->Name("QuantizedMatmul/lmlab")->Apply(Shapes);
BENCHMARK(BM_QuantizedMatmul<false>)->Name("QuantizedMatmul/mlx")->Apply(Shapes);

}  // namespace
