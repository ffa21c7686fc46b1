#include "worker/forward/attention_kernel.h"

#include <algorithm>

#include "common/logging.h"
#include "worker/forward/kernels.h"
#include "worker/forward/simd_lanes.h"

namespace impq::forward {
namespace {

// The kernel, on 16 lanes of representation L (simd::Wide16 or simd::Halves16: the same
// arithmetic lane by lane).
template <class L>
struct Attention {
  // s[j] = Σ_d qs[d]·kt[d][first + j] for j < n16 (n rounded up to a multiple of 16), fused
  // in dimension order. HD > 0: the head dim as a constant (the dimension loop unrolled);
  // HD = 0: any head dim, one pass over the keys per dimension. Both round alike.
  template <int HD>
  static IMPQ_KERNEL_INLINE void Scores(const float* __restrict qs, const float* __restrict kt,
                                        int64_t ld, int64_t hd, int64_t first, int64_t n16,
                                        float* __restrict s) {
    const float* __restrict k0 = kt + first;
    if constexpr (HD > 0) {
      for (int64_t j = 0; j < n16; j += 16) {
        L acc = L::Splat(qs[0]) * L::Load(k0 + j);
#pragma GCC unroll 16
        for (int d = 1; d < HD; ++d) acc = Fma(L::Splat(qs[d]), L::Load(k0 + d * ld + j), acc);
        acc.Store(s + j);
      }
    } else {
      for (int64_t j = 0; j < n16; ++j) s[j] = qs[0] * k0[j];
      for (int64_t d = 1; d < hd; ++d) {
        const float* __restrict kd = k0 + d * ld;
        for (int64_t j = 0; j < n16; ++j) s[j] = __builtin_fmaf(qs[d], kd[j], s[j]);
      }
    }
  }

  // max s[j] over j < n, reading whole blocks up to n16 (the lanes past n are masked).
  static IMPQ_KERNEL_INLINE float MaxScore(const float* __restrict s, int64_t n, int64_t n16) {
    L m0 = L::Splat(s[0]), m1 = m0;
    int64_t j = 0;
    for (; j + 32 < n16; j += 32) {
      m0 = Max(L::Load(s + j), m0);
      m1 = Max(L::Load(s + j + 16), m1);
    }
    for (; j + 16 < n16; j += 16) m0 = Max(L::Load(s + j), m0);
    m1 = Max(FirstLanes(L::Load(s + j), m0, n - j), m1);
    return Max(m0, m1).MaxLane();
  }

  // In place e[j] = FastExpFma(e[j] − mx) for j < n and e[j] = 0 for n <= j < n16; returns
  // Σ e (16 lanes, a fixed tree; the zeros add nothing).
  static IMPQ_KERNEL_INLINE float Exponentials(float* __restrict e, int64_t n, int64_t n16,
                                               float mx) {
    const L m = L::Splat(mx);
    L z = L::Zero();
    int64_t j = 0;
    for (; j + 16 < n16; j += 16) {
      const L x = ExpFma(L::Load(e + j) - m);
      x.Store(e + j);
      z = z + x;
    }
    // The last block: lanes at or past n are keys this row does not see.
    const L x = FirstLanes(ExpFma(L::Load(e + j) - m), L::Zero(), n - j);
    x.Store(e + j);
    z = z + x;
    return z.Sum();
  }

  // out[d] = Σ_{j < n16} e[j]·v[d·ld + j] for the D <= 8 dimensions d < D, in one pass over
  // e (D independent fused partial sums keep the vector units busy).
  template <int D>
  static IMPQ_KERNEL_INLINE void WeightedSums(const float* __restrict e, const float* __restrict v,
                                              int64_t ld, int64_t n16, float* __restrict out) {
    L acc[D];
#pragma GCC unroll 8
    for (int d = 0; d < D; ++d) acc[d] = L::Zero();
    for (int64_t j = 0; j < n16; j += 16) {
      const L ev = L::Load(e + j);
#pragma GCC unroll 8
      for (int d = 0; d < D; ++d) acc[d] = Fma(ev, L::Load(v + d * ld + j), acc[d]);
    }
#pragma GCC unroll 8
    for (int d = 0; d < D; ++d) out[d] = acc[d].Sum();
  }

  template <int HD>
  static IMPQ_KERNEL_INLINE void Rows(const float* q, int64_t ldq, const float* kt, const float* vt,
                                      int64_t ld, int64_t T, int64_t hd, float scale, float softcap,
                                      int64_t window, float* out, int64_t ldo,
                                      float* __restrict s) {
    float qs[kAttentionMaxHeadDim];  // scale·q of one row
    for (int64_t t = 0; t < T; ++t) {
      const int64_t first = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
      const int64_t n = t + 1 - first;
      const int64_t n16 = (n + 15) / 16 * 16;
      const float* qt = q + t * ldq;
      for (int64_t d = 0; d < hd; ++d) qs[d] = scale * qt[d];
      Scores<HD>(qs, kt, ld, hd, first, n16, s);
      if (softcap > 0) SoftcapRow(s, n, softcap);
      const float inv = 1.0f / Exponentials(s, n, n16, MaxScore(s, n, n16));
      const float* v = vt + first;
      float* o = out + t * ldo;
      int64_t d0 = 0;
      for (; d0 + 8 <= hd; d0 += 8) WeightedSums<8>(s, v + d0 * ld, ld, n16, o + d0);
      for (; d0 < hd; ++d0) WeightedSums<1>(s, v + d0 * ld, ld, n16, o + d0);
      for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
    }
  }

  static IMPQ_KERNEL_INLINE void Head(const float* q, int64_t ldq, const float* kt, const float* vt,
                                      int64_t ld, int64_t T, int64_t hd, float scale, float softcap,
                                      int64_t window, float* out, int64_t ldo, float* s) {
    switch (hd) {
      case 8:
        return Rows<8>(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
      case 16:
        return Rows<16>(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
      default:
        return Rows<0>(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
    }
  }
};

// The versions (simd_lanes.h): the same arithmetic, the lane representation each runs best.
IMPQ_FMA_VERSION("default")
void AttentionHeadVersion(const float* q, int64_t ldq, const float* kt, const float* vt, int64_t ld,
                          int64_t T, int64_t hd, float scale, float softcap, int64_t window,
                          float* out, int64_t ldo, float* s) {
  Attention<simd::Halves16>::Head(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
}
#if IMPQ_HAVE_FMA_VERSIONS
IMPQ_FMA_VERSION("avx2,fma")
void AttentionHeadVersion(const float* q, int64_t ldq, const float* kt, const float* vt, int64_t ld,
                          int64_t T, int64_t hd, float scale, float softcap, int64_t window,
                          float* out, int64_t ldo, float* s) {
  Attention<simd::Halves16>::Head(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
}
IMPQ_FMA_VERSION("avx512f")
void AttentionHeadVersion(const float* q, int64_t ldq, const float* kt, const float* vt, int64_t ld,
                          int64_t T, int64_t hd, float scale, float softcap, int64_t window,
                          float* out, int64_t ldo, float* s) {
  Attention<simd::Wide16>::Head(q, ldq, kt, vt, ld, T, hd, scale, softcap, window, out, ldo, s);
}
#endif

}  // namespace

float FastExpFma(float x) {
  typedef float F4 __attribute__((vector_size(16)));
  typedef int32_t I4 __attribute__((vector_size(16)));
  return simd::ExpFmaVec<F4, I4>(F4{x, x, x, x})[0];
}

void CausalAttentionHead(const float* q, int64_t ldq, const float* kt, const float* vt, int64_t ld,
                         int64_t T, int64_t head_dim, float scale, float softcap, int64_t window,
                         float* out, int64_t ldo, float* scratch) {
  IMPQ_CHECK(head_dim >= 1 && head_dim <= kAttentionMaxHeadDim) << "head_dim " << head_dim;
  IMPQ_CHECK(ld >= T + 15) << "ld " << ld << " for T " << T;
  AttentionHeadVersion(q, ldq, kt, vt, ld, T, head_dim, scale, softcap, window, out, ldo, scratch);
}

}  // namespace impq::forward
