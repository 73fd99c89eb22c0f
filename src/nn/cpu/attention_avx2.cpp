// AVX2 + FMA kernel for nn::cpu_attention (see attention_kernels.h). Compiled
// with -mavx2 -mfma and only called after a run-time CPU check; internal
// linkage throughout, no standard-library templates.
//
// Per query row and key range: scores of four keys at a time (four independent
// FMA chains, reduced together), an exp over the scores eight at a time, then
// the weighted sum of value rows accumulated in registers (D/8 vectors).
#include "nn/cpu/attention_kernels.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define LMLAB_ATTN_AVX2 1
#include "nn/cpu/avx2_math.h"
#endif

namespace lmlab::nn::cpu {

#ifdef LMLAB_ATTN_AVX2
namespace {

using namespace avx2;

constexpr int kMaxD = 256;  // head sizes above this use the scalar kernel

void attend(const AttnProblem& p, int b, int h, int j0_range, int j1, float* scores, float* m_out, float* s_out,
            float* o_out) {
  const int D = p.D, V8 = D / 8;
  const int kv = h / (p.H / p.Hk);
  const float* kbase = p.k + b * p.ks[0] + kv * p.ks[1];
  const float* vbase = p.v + b * p.vs[0] + kv * p.vs[1];
  for (int i = 0; i < p.L; ++i) {
    float* out = o_out + static_cast<long>(i) * D;
    const int end = p.Lk - p.L + i + 1 < j1 ? p.Lk - p.L + i + 1 : j1;  // keys this row sees, up to j1
    const int first = first_key(p, i);
    const int j0 = first > j0_range ? first : j0_range;
    const int n = end - j0;
    if (n <= 0) {
      m_out[i] = -__builtin_inff();
      s_out[i] = 0.0f;
      for (int d = 0; d < D; ++d) out[d] = 0.0f;
      continue;
    }
    const float* qrow = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
    const float* krows = kbase + static_cast<long>(j0) * p.ks[2];
    const float* vrows = vbase + static_cast<long>(j0) * p.vs[2];
    __m256 q[kMaxD / 8];
    for (int c = 0; c < V8; ++c) q[c] = _mm256_mul_ps(_mm256_loadu_ps(qrow + 8 * c), _mm256_set1_ps(p.scale));

    // Scores, four keys at a time.
    int j = 0;
    for (; j + 4 <= n; j += 4) {
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int c = 0; c < V8; ++c)
        for (int t = 0; t < 4; ++t)
          acc[t] = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(krows + (j + t) * p.ks[2] + 8 * c), acc[t]);
      _mm_storeu_ps(scores + j, hsum4(acc[0], acc[1], acc[2], acc[3]));
    }
    for (; j < n; ++j) {
      __m256 acc = _mm256_setzero_ps();
      for (int c = 0; c < V8; ++c) acc = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(krows + j * p.ks[2] + 8 * c), acc);
      scores[j] = hsum(acc);
    }

    // Softmax numerators and their sum.
    __m256 vmax = _mm256_set1_ps(-3.402823466e38f);
    for (j = 0; j + 8 <= n; j += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(scores + j));
    float mx = hmax(vmax);
    for (; j < n; ++j) mx = scores[j] > mx ? scores[j] : mx;
    const __m256 m8 = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
      const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(scores + j), m8));
      _mm256_storeu_ps(scores + j, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    if (j < n) {
      alignas(32) float tail[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int t = 0; j + t < n; ++t) tail[t] = scores[j + t] - mx;
      alignas(32) float e[8];
      _mm256_store_ps(e, exp_nonpositive(_mm256_load_ps(tail)));
      for (int t = 0; j + t < n; ++t) {
        scores[j + t] = e[t];
        sum += e[t];
      }
    }

    // Σ p_j v_j.
    __m256 o[kMaxD / 8];
    for (int c = 0; c < V8; ++c) o[c] = _mm256_setzero_ps();
    for (j = 0; j < n; ++j) {
      const __m256 pj = _mm256_broadcast_ss(scores + j);
      const float* vrow = vrows + j * p.vs[2];
      for (int c = 0; c < V8; ++c) o[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vrow + 8 * c), o[c]);
    }
    for (int c = 0; c < V8; ++c) _mm256_storeu_ps(out + 8 * c, o[c]);
    m_out[i] = mx;
    s_out[i] = sum;
  }
}

// q·k_j for n key rows (stride ks) into out[0..n), q held in registers, four keys at a time.
inline void dots(const __m256* q, int V8, const float* rows, long stride, int n, float* out) {
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int c = 0; c < V8; ++c)
      for (int t = 0; t < 4; ++t) acc[t] = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(rows + (j + t) * stride + 8 * c), acc[t]);
    _mm_storeu_ps(out + j, hsum4(acc[0], acc[1], acc[2], acc[3]));
  }
  for (; j < n; ++j) {
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < V8; ++c) acc = _mm256_fmadd_ps(q[c], _mm256_loadu_ps(rows + j * stride + 8 * c), acc);
    out[j] = hsum(acc);
  }
}

void attend_grad(const AttnProblem& p, const AttnGrad& g, int b, int h, float* scratch) {
  const int D = p.D, V8 = D / 8;
  const AttnGradRows rows = grad_rows(p, g, b, h);
  const float *kbase = rows.k, *vbase = rows.v;
  float *dk = rows.dk, *dv = rows.dv;
  float *prob = scratch, *dprob = scratch + p.Lk;
  for (int i = 0; i < p.L; ++i) {
    const float* qrow = p.q + b * p.qs[0] + h * p.qs[1] + i * p.qs[2];
    const float* drow = g.dout + b * g.dos[0] + h * g.dos[1] + i * g.dos[2];
    float* dq = g.dq + ((static_cast<long>(b) * p.H + h) * p.L + i) * D;
    const int j0 = first_key(p, i), n = p.Lk - p.L + i + 1 - j0;
    __m256 q[kMaxD / 8], dout[kMaxD / 8], acc[kMaxD / 8];
    for (int c = 0; c < V8; ++c) {
      q[c] = _mm256_mul_ps(_mm256_loadu_ps(qrow + 8 * c), _mm256_set1_ps(p.scale));
      dout[c] = _mm256_loadu_ps(drow + 8 * c);
      acc[c] = _mm256_setzero_ps();
    }
    if (n > 0) {
      const float* krows = kbase + static_cast<long>(j0) * p.ks[2];
      const float* vrows = vbase + static_cast<long>(j0) * p.vs[2];
      dots(q, V8, krows, p.ks[2], n, prob);
      dots(dout, V8, vrows, p.vs[2], n, dprob);
      float mx = prob[0];
      for (int j = 1; j < n; ++j) mx = prob[j] > mx ? prob[j] : mx;
      // P_j = e^(s_j − max) / Σ, and δ = Σ P_j dP_j.
      const __m256 m8 = _mm256_set1_ps(mx);
      __m256 vsum = _mm256_setzero_ps();
      int j = 0;
      for (; j + 8 <= n; j += 8) {
        const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(prob + j), m8));
        _mm256_storeu_ps(prob + j, e);
        vsum = _mm256_add_ps(vsum, e);
      }
      float sum = hsum(vsum);
      for (; j < n; ++j) sum += prob[j] = __builtin_expf(prob[j] - mx);
      const float inv = 1.0f / sum;
      float delta = 0.0f;
      for (j = 0; j < n; ++j) {
        prob[j] *= inv;
        delta += prob[j] * dprob[j];
      }
      // dv_j += P_j dout, dq += dS_j k_j, dk_j += dS_j q (q already scaled: dS_j here lacks the scale).
      for (j = 0; j < n; ++j) {
        const __m256 pj = _mm256_set1_ps(prob[j]), ds = _mm256_set1_ps(prob[j] * (dprob[j] - delta));
        const float* krow = krows + j * p.ks[2];
        float* dvrow = dv + static_cast<long>(j0 + j) * D;
        float* dkrow = dk + static_cast<long>(j0 + j) * D;
        for (int c = 0; c < V8; ++c) {
          _mm256_storeu_ps(dvrow + 8 * c, _mm256_fmadd_ps(pj, dout[c], _mm256_loadu_ps(dvrow + 8 * c)));
          acc[c] = _mm256_fmadd_ps(ds, _mm256_loadu_ps(krow + 8 * c), acc[c]);
          _mm256_storeu_ps(dkrow + 8 * c, _mm256_fmadd_ps(ds, q[c], _mm256_loadu_ps(dkrow + 8 * c)));
        }
      }
    }
    const __m256 scale = _mm256_set1_ps(p.scale);
    for (int c = 0; c < V8; ++c) _mm256_storeu_ps(dq + 8 * c, _mm256_mul_ps(scale, acc[c]));
  }
}

}  // namespace

AttnKernel avx2_attend() { return &attend; }
AttnGradKernel avx2_attend_grad() { return &attend_grad; }

#else

AttnKernel avx2_attend() { return nullptr; }
AttnGradKernel avx2_attend_grad() { return nullptr; }

#endif

}  // namespace lmlab::nn::cpu
