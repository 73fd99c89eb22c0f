// The AVX2 kernels of quantized_matmul_avx2.cpp built again for CPUs with
// AVX-512 VNNI (compiled with -mavx512vnni -mavx512vl besides AVX2/FMA/F16C,
// chosen at run time): each int8 block dot product is one vpdpbusd instead of
// vpmaddubsw + vpmaddwd (+ vpaddd), the same int32 sums, so the same bits.
#define LMLAB_QMM_VNNI 1
#include "nn/cpu/quantized_matmul_avx2.cpp"  // NOLINT(bugprone-suspicious-include)
