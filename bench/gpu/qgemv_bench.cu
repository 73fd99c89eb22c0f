// Times lmlab's quantized GEMV kernels (src/nn/cuda/kernels.cu) alone, on the
// matrices of one decode step of a Llama-shaped model, to see how close each
// launch comes to the GPU's read bandwidth. No MLX: the kernels are launched
// directly, every layer with its own random weights (more bytes than the L2
// holds), and timed as CUDA graphs replayed back to back.
//
//   nvcc -std=c++17 -O3 -arch=sm_90 -I src bench/gpu/qgemv_bench.cu -o qgemv_bench
//   ./qgemv_bench [SHAPE ...]          (8b 3b 1b 135m; default all)
//   QGEMV_OVERLAP=1|2 [QGEMV_PREFETCH=1] ./qgemv_bench ...   (launches overlapped, below)
//
// With a reference copy of the kernels, its entry points renamed, e.g. those
// of the last commit,
//   git show HEAD:src/nn/cuda/kernels.cu |
//     sed 's/lmlab_\(qgemv\|rope_cache\|attention\|combine\)_/orig_\1_/g; s/LMLAB_/ORIG_/g' > /tmp/kernels_orig.cu
//   nvcc ... -DQGEMV_ORIG='"/tmp/kernels_orig.cu"' bench/gpu/qgemv_bench.cu -o qgemv_bench
//   ./qgemv_bench check
// compares the outputs of every launch form with the reference's, bit for bit.
//
// Per shape and dtype it prints, for each of the step's four GEMV launches
// (RMSNorm + q/k/v, o + residual, RMSNorm + gate/up + SwiGLU, down +
// residual), microseconds a launch and the bytes it reads per second, and the
// four in sequence over all layers: a decode step's GEMV time.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "nn/cuda/kernels.cu"
#ifdef QGEMV_ORIG
namespace orig {
#include QGEMV_ORIG
}
#endif

using lmlab::nn::cuda::QGemvParams;

namespace {

void ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
  std::exit(1);
}

struct Shape {
  const char* name;
  int hidden, inter, q, kv, layers, group;
};

const Shape kShapes[] = {
    {"8b", 4096, 14336, 4096, 1024, 32, 64},
    {"3b", 3072, 8192, 3072, 1024, 28, 64},
    {"1b", 2048, 8192, 2048, 512, 16, 64},
    {"135m", 576, 1536, 576, 192, 30, 32},
};

using Kernel = void (*)(QGemvParams);

// The M = 1 entry points for 4-bit weights (the shapes' groups: 32, 64).
Kernel pick(bool bf16, int group) {
  if (bf16) return group == 32 ? lmlab_qgemv_bf16_b4_g32_m1 : lmlab_qgemv_bf16_b4_g64_m1;
  return group == 32 ? lmlab_qgemv_f16_b4_g32_m1 : lmlab_qgemv_f16_b4_g64_m1;
}

// Random bytes on the device (weights), and small random half values (scales, biases, x).
void* random_bytes(size_t n, unsigned seed) {
  std::vector<uint32_t> h((n + 3) / 4);
  for (auto& v : h) {
    seed = seed * 1664525u + 1013904223u;
    v = seed;
  }
  void* d = nullptr;
  ok(cudaMalloc(&d, h.size() * 4), "cudaMalloc");
  ok(cudaMemcpy(d, h.data(), n, cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

// n half-precision values in [lo, lo + span): f16 or bf16 bit patterns.
void* random_halves(size_t n, float lo, float span, bool bf16, unsigned seed) {
  std::vector<uint16_t> h(n);
  for (auto& v : h) {
    seed = seed * 1664525u + 1013904223u;
    const float f = lo + span * static_cast<float>(seed >> 8) / 16777216.0f;
    if (bf16) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      v = static_cast<uint16_t>(u >> 16);
    } else {
      v = __half_as_ushort(__float2half(f));
    }
  }
  void* d = nullptr;
  ok(cudaMalloc(&d, n * 2), "cudaMalloc");
  ok(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

struct Mat {
  lmlab::nn::cuda::QMat q;
  long bytes;  // weights + scales + biases
};

Mat make_mat(int n, int K, int group, bool bf16, unsigned seed) {
  Mat m{};
  m.q.w = static_cast<const uint32_t*>(random_bytes(static_cast<size_t>(n) * K / 2, seed));
  m.q.scales = random_halves(static_cast<size_t>(n) * (K / group), 0.001f, 0.01f, bf16, seed + 1);
  m.q.biases = random_halves(static_cast<size_t>(n) * (K / group), -0.05f, 0.1f, bf16, seed + 2);
  m.q.n = n;
  m.bytes = static_cast<long>(n) * K / 2 + 2L * 2 * n * (K / group);
  return m;
}

// qgemv_smem (src/nn/cuda/qgemv.cpp).
long smem_bytes(int K, int M = 1, int bits = 4) {
  const int elems = 128 / bits, chunks = K / elems;
  const long row_pieces = static_cast<long>((chunks + 31) / 32) * 32 * (elems / 8);
  return M * (row_pieces * 16 + static_cast<long>(chunks) * 4);
}

struct Launch {
  QGemvParams p;
  int K;
  long bytes;
};

int tasks_of(const QGemvParams& p) {
  int slots = p.mat[0].n;
  if (p.mode != 2)
    for (int j = 1; j < p.nmat; ++j) slots += p.mat[j].n;
  return p.mode == 2 ? slots : p.rows_per_task == 1 ? slots : (slots + 1) / 2;
}

// QGEMV_ROWS=1 or 2: weight rows a warp task in the o, down and q/k/v
// launches; unset (0): add_qgemv's choice.
int rows_per_task() {
  const char* v = std::getenv("QGEMV_ROWS");
  return v ? std::atoi(v) : 0;
}

// A launch's parameters and geometry, as add_qgemv sets them.
struct Shaped {
  QGemvParams p;
  int grid, smem, per_sm;
};

Shaped shape(const Launch& l, Kernel f, int sms) {
  Shaped r{l.p, 0, static_cast<int>(smem_bytes(l.K)), 0};
  ok(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&r.per_sm, f, 256, r.smem), "occupancy");
  const int wave = std::max(r.per_sm, 1) * sms;
  // As add_qgemv: one row a task when every row gets a warp of one wave.
  int slots = r.p.mat[0].n;
  for (int j = 1; j < r.p.nmat; ++j) slots += r.p.mat[j].n;
  if (r.p.mode != 2 && r.p.rows_per_task == 0) r.p.rows_per_task = slots <= wave * 8 ? 1 : 2;
  r.grid = std::min((tasks_of(r.p) + 7) / 8, wave);
  return r;
}

void enqueue(const Launch& l, Kernel f, int sms, cudaStream_t s, bool show) {
  const Shaped x = shape(l, f, sms);
  f<<<x.grid, 256, x.smem, s>>>(x.p);
  if (show) std::printf("  grid %d blocks (%d a multiprocessor at most), %d tasks, %d B shared\n", x.grid, x.per_sm, tasks_of(l.p), x.smem);
}

// QGEMV_OVERLAP=1|2: the graph's launches overlap, each placed once every
// block of the one before has passed its wait (1, as a replayed decode step's
// StepGraph does) or has started (2), and waiting for it inside the kernel;
// QGEMV_PREFETCH=1 adds the weights' prefetch before that wait.
bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && std::string(v) == "1";
}

// The launches as a graph built node by node, each joined to the one before
// by a programmatic edge from its trigger (port 1) or start (port 2), as
// StepGraph builds it.
cudaGraph_t overlapped_graph(const std::vector<const Launch*>& ls, Kernel f, int sms, int port) {
  cudaGraph_t g;
  ok(cudaGraphCreate(&g, 0), "graph");
  cudaGraphNode_t prev = nullptr;
  const int prefetch = env_on("QGEMV_PREFETCH") ? 1 : 0;
  for (const Launch* l : ls) {
    Shaped x = shape(*l, f, sms);
    x.p.prefetch = prefetch;
    void* args[] = {&x.p};  // copied by cudaGraphAddKernelNode
    cudaKernelNodeParams kp{};
    kp.func = reinterpret_cast<void*>(f);
    kp.gridDim = dim3(x.grid);
    kp.blockDim = dim3(256);
    kp.sharedMemBytes = x.smem;
    kp.kernelParams = args;
    cudaGraphNode_t node;
    ok(cudaGraphAddKernelNode(&node, g, nullptr, 0, &kp), "add node");
    if (prev) {
      cudaGraphEdgeData e{};
      e.from_port = port == 2 ? cudaGraphKernelNodePortLaunchCompletion : cudaGraphKernelNodePortProgrammatic;
      e.type = cudaGraphDependencyTypeProgrammatic;
      ok(cudaGraphAddDependencies(g, &prev, &node, &e, 1), "programmatic edge");
    }
    prev = node;
  }
  return g;
}

// Microseconds per replay of the launches, as one graph (mean of 20 after 3).
double time_graph(const std::vector<const Launch*>& ls, Kernel f, int sms, cudaStream_t s) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  const char* overlap = std::getenv("QGEMV_OVERLAP");
  if (overlap && (std::string(overlap) == "1" || std::string(overlap) == "2")) {
    g = overlapped_graph(ls, f, sms, std::string(overlap) == "2" ? 2 : 1);
  } else {
    ok(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), "capture");
    for (const Launch* l : ls) enqueue(*l, f, sms, s, ls.size() > 1 && l == ls[0] && ls[1]->K == l->K && ls[1]->bytes == l->bytes);
    ok(cudaStreamEndCapture(s, &g), "end capture");
  }
  ok(cudaGraphInstantiate(&ge, g, 0), "instantiate");
  for (int i = 0; i < 3; ++i) ok(cudaGraphLaunch(ge, s), "launch");
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a, s);
  const int reps = 20;
  for (int i = 0; i < reps; ++i) ok(cudaGraphLaunch(ge, s), "launch");
  cudaEventRecord(b, s);
  ok(cudaEventSynchronize(b), "sync");
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return 1000.0 * ms / reps;
}

void run(const Shape& sh, bool bf16, int sms, cudaStream_t s) {
  const int H = sh.hidden, I = sh.inter, G = sh.group;
  const long max_k = std::max(H, I);
  void* x = random_halves(max_k, -1.0f, 2.0f, bf16, 7);
  void* norm = random_halves(H, 0.5f, 1.0f, bf16, 8);
  void* res = random_halves(H, -1.0f, 2.0f, bf16, 9);
  void *q_out, *k_out, *v_out, *h_out, *act;
  ok(cudaMalloc(&q_out, sh.q * 2), "m");
  ok(cudaMalloc(&k_out, sh.kv * 2), "m");
  ok(cudaMalloc(&v_out, sh.kv * 2), "m");
  ok(cudaMalloc(&h_out, H * 2), "m");
  ok(cudaMalloc(&act, I * 2), "m");
  std::vector<Launch> kinds[4];
  std::vector<Mat> mats;
  for (int layer = 0; layer < sh.layers; ++layer) {
    const unsigned seed = 1000u * layer;
    Mat wq = make_mat(sh.q, H, G, bf16, seed + 1), wk = make_mat(sh.kv, H, G, bf16, seed + 4),
        wv = make_mat(sh.kv, H, G, bf16, seed + 7), wo = make_mat(H, sh.q, G, bf16, seed + 10),
        wg = make_mat(I, H, G, bf16, seed + 13), wu = make_mat(I, H, G, bf16, seed + 16),
        wd = make_mat(H, I, G, bf16, seed + 19);
    QGemvParams p{};
    p.eps = 1e-5f;
    p.M = 1;
    p.rows_per_task = rows_per_task();
    // RMSNorm + q/k/v
    p.x = x, p.norm = norm, p.K = H, p.x_stride = H, p.out_stride = H, p.nmat = 3, p.mode = 0;
    p.mat[0] = wq.q, p.mat[1] = wk.q, p.mat[2] = wv.q;
    p.mat[0].out = q_out, p.mat[1].out = k_out, p.mat[2].out = v_out;
    kinds[0].push_back({p, H, wq.bytes + wk.bytes + wv.bytes});
    // o + residual
    p = QGemvParams{};
    p.rows_per_task = rows_per_task();
    p.M = 1, p.x = x, p.res = res, p.K = sh.q, p.x_stride = sh.q, p.out_stride = H, p.nmat = 1, p.mode = 1;
    p.mat[0] = wo.q, p.mat[0].out = h_out;
    kinds[1].push_back({p, sh.q, wo.bytes});
    // RMSNorm + gate/up + SwiGLU
    p = QGemvParams{};
    p.eps = 1e-5f, p.M = 1, p.x = x, p.norm = norm, p.K = H, p.x_stride = H, p.out_stride = I, p.nmat = 2, p.mode = 2;
    p.mat[0] = wg.q, p.mat[1] = wu.q, p.mat[0].out = act;
    kinds[2].push_back({p, H, wg.bytes + wu.bytes});
    // down + residual
    p = QGemvParams{};
    p.rows_per_task = rows_per_task();
    p.M = 1, p.x = x, p.res = res, p.K = I, p.x_stride = I, p.out_stride = H, p.nmat = 1, p.mode = 1;
    p.mat[0] = wd.q, p.mat[0].out = h_out;
    kinds[3].push_back({p, I, wd.bytes});
  }
  const Kernel f = pick(bf16, G);
  ok(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024), "smem attr");
  const char* names[4] = {"norm+qkv", "o+res", "norm+gate/up", "down+res"};
  // One plain launch of each kind first (outside graphs: what a profiler's
  // --launch-count 4 catches).
  for (int k = 0; k < 4; ++k) enqueue(kinds[k][0], f, sms, s, false);
  ok(cudaStreamSynchronize(s), "plain launches");
  std::vector<const Launch*> all;
  long all_bytes = 0;
  for (int l = 0; l < sh.layers; ++l)
    for (int k = 0; k < 4; ++k) {
      all.push_back(&kinds[k][l]);
      all_bytes += kinds[k][l].bytes;
    }
  for (int k = 0; k < 4; ++k) {
    std::vector<const Launch*> ls;
    for (auto& l : kinds[k]) ls.push_back(&l);
    const double us = time_graph(ls, f, sms, s) / sh.layers;
    std::printf("%-5s %-5s %-13s %8.2f us %7.2f MB %7.0f GB/s\n", sh.name, bf16 ? "bf16" : "f16", names[k], us,
                kinds[k][0].bytes / 1e6, kinds[k][0].bytes / us / 1e3);
  }
  const double us = time_graph(all, f, sms, s);
  std::printf("%-5s %-5s %-13s %8.1f us %7.1f MB %7.0f GB/s  (%d layers, %zu launches)\n", sh.name, bf16 ? "bf16" : "f16",
              "step", us, all_bytes / 1e6, all_bytes / us / 1e3, sh.layers, all.size());
  ok(cudaDeviceSynchronize(), "sync");
  ok(cudaGetLastError(), "kernels");
  // A checksum of the last outputs: variants of the kernels must agree.
  double sum = 0.0;
  for (auto [ptr, count] : {std::pair{q_out, sh.q}, {k_out, sh.kv}, {h_out, H}, {act, I}}) {
    std::vector<uint16_t> h(count);
    ok(cudaMemcpy(h.data(), ptr, count * 2, cudaMemcpyDeviceToHost), "copy back");
    for (uint16_t v : h) {
      float f;
      if (bf16) {
        const uint32_t u = static_cast<uint32_t>(v) << 16;
        std::memcpy(&f, &u, 4);
      } else {
        f = __half2float(__ushort_as_half(v));
      }
      sum += static_cast<double>(f) * (1 + (v % 7));
    }
  }
  std::printf("%-5s %-5s checksum %.9g\n", sh.name, bf16 ? "bf16" : "f16", sum);
  // Free everything this shape allocated (the next shape starts clean).
  for (int k = 0; k < 4; ++k)
    for (auto& l : kinds[k])
      for (int j = 0; j < l.p.nmat; ++j) {
        cudaFree(const_cast<uint32_t*>(l.p.mat[j].w));
        cudaFree(const_cast<void*>(l.p.mat[j].scales));
        cudaFree(const_cast<void*>(l.p.mat[j].biases));
      }
  for (void* ptr : {x, norm, res, q_out, k_out, v_out, h_out, act}) cudaFree(ptr);
}


#ifdef QGEMV_ORIG
// Compares every launch form (modes 0/1/2, 4- and 8-bit, M up to 8, both task
// sizes, norm, biases, residual) with a reference build of the kernels
// (QGEMV_ORIG: a copy of kernels.cu whose entry points are renamed orig_*):
// outputs must be bit-identical.
struct KernelPair {
  Kernel now, old;
};

#define QGEMV_PAIR(NAME, B, G, M) \
  KernelPair { lmlab_qgemv_##NAME##_b##B##_g##G##_m##M, orig::orig_qgemv_##NAME##_b##B##_g##G##_m##M }
KernelPair pick_pair(bool bf16, int bits, int group, int mr) {
#define QGEMV_PAIRS(NAME)                                                                                 \
  if (bits == 4 && group == 32) return mr == 1 ? QGEMV_PAIR(NAME, 4, 32, 1) : mr == 4 ? QGEMV_PAIR(NAME, 4, 32, 4) : QGEMV_PAIR(NAME, 4, 32, 8); \
  if (bits == 4) return mr == 1 ? QGEMV_PAIR(NAME, 4, 64, 1) : mr == 4 ? QGEMV_PAIR(NAME, 4, 64, 4) : QGEMV_PAIR(NAME, 4, 64, 8); \
  return mr == 1 ? QGEMV_PAIR(NAME, 8, 64, 1) : mr == 4 ? QGEMV_PAIR(NAME, 8, 64, 4) : QGEMV_PAIR(NAME, 8, 64, 8);
  if (bf16) {
    QGEMV_PAIRS(bf16)
  }
  QGEMV_PAIRS(f16)
}

int check(int sms) {
  int configs = 0, bad = 0;
  unsigned seed = 1;
  for (bool bf16 : {false, true})
    for (auto [bits, group] : {std::pair{4, 32}, {4, 64}, {8, 64}})
      for (int K : {576, 4096})
        for (int M : {1, 3, 4, 8})
          for (int form = 0; form < 6; ++form) {
            const int mr = M == 1 ? 1 : M <= 4 ? 4 : 8;
            const KernelPair kp = pick_pair(bf16, bits, group, mr);
            // forms: 0/1 q/k/v with norm and a bias (R 2, 1), 2/3 residual (R 2, 1), 4/5 gated silu, gelu
            QGemvParams p{};
            p.eps = 1e-5f, p.norm_offset = form == 5 ? 1.0f : 0.0f, p.M = M, p.K = K, p.x_stride = K + 8;
            p.rows_per_task = form == 1 || form == 3 ? 1 : 2;
            p.mode = form < 2 ? 0 : form < 4 ? 1 : 2;
            p.act = form == 5;
            p.nmat = p.mode == 0 ? 3 : p.mode == 2 ? 2 : 1;
            const int ns[3] = {517, 131, 131};
            p.out_stride = p.mode == 0 ? 0 : 517 + 3;
            void* x = random_halves(static_cast<size_t>(M) * p.x_stride, -1.0f, 2.0f, bf16, seed++);
            p.x = x;
            p.norm = p.mode == 1 ? nullptr : random_halves(K, 0.5f, 1.0f, bf16, seed++);
            p.res = p.mode == 1 ? random_halves(static_cast<size_t>(M) * p.out_stride, -1.0f, 2.0f, bf16, seed++) : nullptr;
            std::vector<void*> outs[2];
            long out_elems[3];
            for (int j = 0; j < p.nmat; ++j) {
              const int n = p.mode == 2 ? ns[0] : ns[j];
              auto& q = p.mat[j];
              q.w = static_cast<const uint32_t*>(random_bytes(static_cast<size_t>(n) * K * bits / 8, seed++));
              q.scales = random_halves(static_cast<size_t>(n) * (K / group), 0.001f, 0.01f, bf16, seed++);
              q.biases = random_halves(static_cast<size_t>(n) * (K / group), -0.05f, 0.1f, bf16, seed++);
              q.bias = (p.mode == 0 && j == 1) || (p.mode == 2 && form == 5) ? random_halves(n, -1.0f, 2.0f, bf16, seed++) : nullptr;
              q.n = n;
              out_elems[j] = static_cast<long>(M) * (p.nmat == 1 ? p.out_stride : n);
              if (p.mode == 2 && j == 1) continue;
              for (auto& o : outs) {
                void* d = nullptr;
                ok(cudaMalloc(&d, out_elems[j] * 2), "m");
                ok(cudaMemset(d, 0, out_elems[j] * 2), "memset");
                o.push_back(d);
              }
            }
            if (p.mode == 2) p.out_stride = ns[0];
            for (int v = 0; v < 2; ++v) {
              QGemvParams c = p;
              for (size_t j = 0; j < outs[v].size(); ++j) c.mat[j].out = outs[v][j];
              const Kernel f = v == 0 ? kp.now : kp.old;
              const long smem = smem_bytes(K, M, bits);
              ok(cudaFuncSetAttribute(f, cudaFuncAttributeMaxDynamicSharedMemorySize, 200 * 1024), "smem attr");
              int per_sm = 0;
              ok(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, f, 256, smem), "occupancy");
              int slots = p.mat[0].n;
              if (p.mode != 2)
                for (int j = 1; j < p.nmat; ++j) slots += p.mat[j].n;
              const int R = p.mode == 2 ? 1 : c.rows_per_task == 1 ? 1 : 2;
              const int tasks = (slots + R - 1) / R;
              // Small grids too, so that warps take several tasks.
              const int grid = std::min((tasks + 7) / 8, std::max(per_sm, 1) * (form % 2 ? sms : 3));
              f<<<grid, 256, smem>>>(c);
              ok(cudaDeviceSynchronize(), v == 0 ? "new kernel" : "reference kernel");
            }
            bool same = true;
            double max_diff = 0.0;
            for (size_t j = 0; j < outs[0].size(); ++j) {
              std::vector<uint16_t> a(out_elems[j]), b(out_elems[j]);
              ok(cudaMemcpy(a.data(), outs[0][j], a.size() * 2, cudaMemcpyDeviceToHost), "copy");
              ok(cudaMemcpy(b.data(), outs[1][j], b.size() * 2, cudaMemcpyDeviceToHost), "copy");
              for (size_t i = 0; i < a.size(); ++i)
                if (a[i] != b[i]) {
                  same = false;
                  max_diff = std::max(max_diff, static_cast<double>(std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]))));
                }
            }
            ++configs;
            if (!same) {
              ++bad;
              if (bad <= 20)
                std::printf("differs: %s b%d g%d K %d M %d form %d (max ulp-ish %g)\n", bf16 ? "bf16" : "f16", bits, group, K, M,
                            form, max_diff);
            }
            for (auto& o : outs)
              for (void* d : o) cudaFree(d);
            for (int j = 0; j < p.nmat; ++j) {
              cudaFree(const_cast<uint32_t*>(p.mat[j].w));
              cudaFree(const_cast<void*>(p.mat[j].scales));
              cudaFree(const_cast<void*>(p.mat[j].biases));
              cudaFree(const_cast<void*>(p.mat[j].bias));
            }
            cudaFree(x);
            cudaFree(const_cast<void*>(p.norm));
            cudaFree(const_cast<void*>(p.res));
          }
  std::printf("check: %d configurations, %d differ from the reference\n", configs, bad);
  return bad != 0;
}
#endif
}  // namespace

int main(int argc, char** argv) {
  cudaDeviceProp prop;
  ok(cudaGetDeviceProperties(&prop, 0), "device");
  std::printf("%s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
#ifdef QGEMV_ORIG
  if (argc > 1 && std::strcmp(argv[1], "check") == 0) return check(prop.multiProcessorCount);
#endif
  cudaStream_t s;
  ok(cudaStreamCreate(&s), "stream");
  for (const Shape& sh : kShapes) {
    bool want = argc == 1;
    for (int i = 1; i < argc; ++i) want |= std::strcmp(argv[i], sh.name) == 0;
    if (!want) continue;
    for (bool bf16 : {false, true}) run(sh, bf16, prop.multiProcessorCount, s);
  }
  return 0;
}
