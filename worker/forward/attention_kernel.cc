#include "worker/forward/attention_kernel.h"

#include <algorithm>

#include "common/logging.h"
#include "worker/forward/kernels.h"
#include "worker/forward/simd_lanes.h"

namespace impq::forward {
namespace {

using simd::Fma16;
using simd::Load16;
using simd::Splat16;
using simd::Store16;
using simd::V16;

// FastExp (kernels.h) with its multiply-adds fused, on 16 lanes at once. The scalar
// FastExpFma below is the same function on one lane.
IMPQ_KERNEL_INLINE V16 ExpFma16(V16 x) {
  const V16 lo = Splat16(-87.33654f), hi = Splat16(88.72283f);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const V16 magic = Splat16(12582912.0f);
  const V16 n = Fma16(x, Splat16(1.44269504088896341f), magic) - magic;
  V16 r = Fma16(n, Splat16(-0.693359375f), x);
  r = Fma16(n, Splat16(2.12194440e-4f), r);
  const V16 z = r * r;
  V16 y = Splat16(1.9875691500e-4f);
  y = Fma16(y, r, Splat16(1.3981999507e-3f));
  y = Fma16(y, r, Splat16(8.3334519073e-3f));
  y = Fma16(y, r, Splat16(4.1665795894e-2f));
  y = Fma16(y, r, Splat16(1.6666665459e-1f));
  y = Fma16(y, r, Splat16(5.0000001201e-1f));
  y = Fma16(y, z, r) + Splat16(1.0f);
  // 2^n as two factors (n = 128 only at the clamp), built in the exponent bits.
  typedef int32_t I16 __attribute__((vector_size(64)));
  const I16 ni = __builtin_convertvector(n, I16);
  const I16 half = ni >> 1;
  const I16 a = (half + 127) << 23;
  const I16 b = (ni - half + 127) << 23;
  V16 fa, fb;
  __builtin_memcpy(&fa, &a, sizeof(fa));
  __builtin_memcpy(&fb, &b, sizeof(fb));
  return y * fa * fb;
}

IMPQ_KERNEL_INLINE float ExpFma1(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const float n = __builtin_fmaf(x, 1.44269504088896341f, 12582912.0f) - 12582912.0f;
  float r = __builtin_fmaf(n, -0.693359375f, x);
  r = __builtin_fmaf(n, 2.12194440e-4f, r);
  const float z = r * r;
  float y = 1.9875691500e-4f;
  y = __builtin_fmaf(y, r, 1.3981999507e-3f);
  y = __builtin_fmaf(y, r, 8.3334519073e-3f);
  y = __builtin_fmaf(y, r, 4.1665795894e-2f);
  y = __builtin_fmaf(y, r, 1.6666665459e-1f);
  y = __builtin_fmaf(y, r, 5.0000001201e-1f);
  y = __builtin_fmaf(y, z, r) + 1.0f;
  const int ni = static_cast<int>(n);
  const int half = ni >> 1;
  const unsigned a = static_cast<unsigned>(half + 127) << 23;
  const unsigned b = static_cast<unsigned>(ni - half + 127) << 23;
  float fa, fb;
  __builtin_memcpy(&fa, &a, 4);
  __builtin_memcpy(&fb, &b, 4);
  return y * fa * fb;
}

// s[j] = Σ_d qs[d]·kt[d][first + j] for j < n16 (n rounded up to a multiple of 16), fused in
// dimension order. HD > 0: the head dim as a constant (the dimension loop unrolled); HD = 0:
// any head dim, one pass over the keys per dimension. Both round alike.
template <int HD>
IMPQ_KERNEL_INLINE void Scores(const float* __restrict qs, const float* __restrict kt,
                               int64_t ld, int64_t hd, int64_t first, int64_t n16,
                               float* __restrict s) {
  const float* __restrict k0 = kt + first;
  if constexpr (HD > 0) {
    for (int64_t j = 0; j < n16; j += 16) {
      V16 acc = qs[0] * Load16(k0 + j);
#pragma GCC unroll 16
      for (int d = 1; d < HD; ++d) acc = Fma16(Splat16(qs[d]), Load16(k0 + d * ld + j), acc);
      Store16(s + j, acc);
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
IMPQ_KERNEL_INLINE float MaxScore(const float* __restrict s, int64_t n, int64_t n16) {
  V16 m0 = Splat16(s[0]), m1 = m0;
  int64_t j = 0;
  for (; j + 32 < n16; j += 32) {
    m0 = simd::Max16(Load16(s + j), m0);
    m1 = simd::Max16(Load16(s + j + 16), m1);
  }
  for (; j + 16 < n16; j += 16) m0 = simd::Max16(Load16(s + j), m0);
  V16 lane_index;
  for (int k = 0; k < 16; ++k) lane_index[k] = static_cast<float>(k);
  const V16 last = Load16(s + j);
  m1 = simd::Max16(lane_index < Splat16(static_cast<float>(n - j)) ? last : m0, m1);
  return simd::MaxTree16(simd::Max16(m0, m1));
}

// In place e[j] = FastExpFma(e[j] − mx) for j < n and e[j] = 0 for n <= j < n16; returns
// Σ e (16 lanes, ReduceTree16; the zeros add nothing).
IMPQ_KERNEL_INLINE float Exponentials(float* __restrict e, int64_t n, int64_t n16, float mx) {
  const V16 m = Splat16(mx);
  V16 z = {};
  int64_t j = 0;
  for (; j + 16 < n16; j += 16) {
    const V16 x = ExpFma16(Load16(e + j) - m);
    Store16(e + j, x);
    z += x;
  }
  // The last block: lanes at or past n are keys this row does not see.
  V16 lane_index;
  for (int k = 0; k < 16; ++k) lane_index[k] = static_cast<float>(k);
  const V16 x = ExpFma16(Load16(e + j) - m);
  const V16 masked = lane_index < Splat16(static_cast<float>(n - j)) ? x : V16{};
  Store16(e + j, masked);
  z += masked;
  return simd::ReduceTree16(z);
}

// out[d] = Σ_{j < n16} e[j]·v[d·ld + j] for the D <= 8 dimensions d < D, in one pass over e
// (D independent fused partial sums keep the vector units busy).
template <int D>
IMPQ_KERNEL_INLINE void WeightedSums(const float* __restrict e, const float* __restrict v,
                                     int64_t ld, int64_t n16, float* __restrict out) {
  V16 acc[D];
#pragma GCC unroll 8
  for (int d = 0; d < D; ++d) acc[d] = V16{};
  for (int64_t j = 0; j < n16; j += 16) {
    const V16 ev = Load16(e + j);
#pragma GCC unroll 8
    for (int d = 0; d < D; ++d) acc[d] = Fma16(ev, Load16(v + d * ld + j), acc[d]);
  }
#pragma GCC unroll 8
  for (int d = 0; d < D; ++d) out[d] = simd::ReduceTree16(acc[d]);
}

template <int HD>
IMPQ_KERNEL_INLINE void AttentionRows(const float* q, int64_t ldq, const float* kt,
                                      const float* vt, int64_t ld, int64_t T, int64_t hd,
                                      float scale, float softcap, int64_t window, float* out,
                                      int64_t ldo, float* __restrict s) {
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

}  // namespace

float FastExpFma(float x) { return ExpFma1(x); }

IMPQ_FMA_KERNEL_CLONES
void CausalAttentionHead(const float* q, int64_t ldq, const float* kt, const float* vt,
                         int64_t ld, int64_t T, int64_t head_dim, float scale, float softcap,
                         int64_t window, float* out, int64_t ldo, float* scratch) {
  IMPQ_CHECK(head_dim >= 1 && head_dim <= kAttentionMaxHeadDim) << "head_dim " << head_dim;
  IMPQ_CHECK(ld >= T + 15) << "ld " << ld << " for T " << T;
  switch (head_dim) {
    case 8:
      return AttentionRows<8>(q, ldq, kt, vt, ld, T, head_dim, scale, softcap, window, out, ldo,
                              scratch);
    case 16:
      return AttentionRows<16>(q, ldq, kt, vt, ld, T, head_dim, scale, softcap, window, out, ldo,
                               scratch);
    default:
      return AttentionRows<0>(q, ldq, kt, vt, ld, T, head_dim, scale, softcap, window, out, ldo,
                              scratch);
  }
}

}  // namespace impq::forward
