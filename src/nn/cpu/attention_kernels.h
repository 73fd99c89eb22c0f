// Kernels behind nn::cpu_attention (internal). The AVX2 set lives in
// attention_avx2.cpp, compiled with -mavx2 -mfma and chosen at run time; the
// portable scalar one in cpu_attention.cpp. Like quantized_matmul_kernels.h,
// this header holds no templates or inline functions.
#pragma once

namespace lmlab::nn::cpu {

// softmax(scale · q kᵀ + causal mask) v for float32 arrays addressed by element
// strides: q (B, H, L, D), k and v (B, Hk, Lk, D), out (B, H, L, D) row-contiguous.
// Query row i sits at absolute position t = Lk - L + i and sees keys 0..t, or
// with a sliding window W > 0 only keys t - W + 1..t (the last W positions).
// Query head h reads key/value head h / (H / Hk).
struct AttnProblem {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  long qs[4], ks[4], vs[4];  // strides of b, head, position, d
  int B, H, Hk, L, Lk, D;
  float scale;
  int window = 0;  // 0: no sliding window
};

// The first key query row i sees (the window's start, or 0).
int first_key(const AttnProblem& p, int i);

// One (b, h) pair, all L query rows, keys j0..j1-1 only; scratch holds j1 - j0
// floats. Per row i it leaves the softmax of that key range unnormalised:
// m[i] the largest score the row sees there (-inf when it sees none), s[i] =
// Σ e^(score - m[i]) and o[i·D ..] = Σ e^(score - m[i]) v_j (zero when it sees none).
using AttnKernel = void (*)(const AttnProblem& p, int b, int h, int j0, int j1, float* scratch, float* m,
                            float* s, float* o);

void attend_scalar(const AttnProblem& p, int b, int h, int j0, int j1, float* scratch, float* m, float* s,
                   float* o);
// All of p with the best kernel for it, split over lmlab's CPU compute pool by
// key/value head and key range, so that the H/Hk query heads sharing a key/value
// head read each stretch of the cache while it is in cache; the ranges' partial
// softmaxes are then merged (rescaled by e^(m_range - m_row)).
void run_attention(const AttnProblem& p);

// The AVX2+FMA kernel (D a multiple of 8 up to 256, unit d strides), or nullptr when not compiled in.
AttnKernel avx2_attend();

// The derivatives of p's attention for the cotangent dout (B, H, L, D, by
// element strides dos): dq (B, H, L, D), dk and dv (B, Hk, Lk, D), all
// row-contiguous. With P the softmax of a row and dP = dout vᵀ:
// dv += Pᵀ dout, dS = P ∘ (dP − rowsum(dout ∘ out)), dq = scale dS k, dk += scale dSᵀ q.
struct AttnGrad {
  const float* dout;
  long dos[4];
  float* dq;
  float* dk;
  float* dv;
};

// Where one (b, h) pair's derivative reads keys and values and adds dk and dv:
// the rows of h's key/value head.
struct AttnGradRows {
  const float* k;
  const float* v;
  float* dk;
  float* dv;
};
AttnGradRows grad_rows(const AttnProblem& p, const AttnGrad& g, int b, int h);

// One (b, h) pair, all L query rows: writes h's rows of dq and adds into dk
// and dv of h's key/value head; scratch holds 2·Lk floats.
using AttnGradKernel = void (*)(const AttnProblem& p, const AttnGrad& g, int b, int h, float* scratch);

void attend_grad_scalar(const AttnProblem& p, const AttnGrad& g, int b, int h, float* scratch);
// All of p, split over the compute pool by (b, key/value head): each task owns
// its dk and dv rows and the dq rows of the query heads that share them.
void run_attention_grad(const AttnProblem& p, const AttnGrad& g);

// The AVX2+FMA derivative kernel (same conditions as avx2_attend), or nullptr.
AttnGradKernel avx2_attend_grad();

}  // namespace lmlab::nn::cpu
