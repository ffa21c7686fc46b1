// Internal to worker/forward: what the CPU row kernels share to vectorize without giving up
// determinism.
//
// Clones. Each hot kernel is compiled several times and the best version for the CPU is picked
// at load time (GCC function multiversioning). Every version runs the same float operations in
// the same order, so results do not depend on which one runs:
//   IMPQ_KERNEL_CLONES  AVX-512, AVX2 and baseline x86-64 clones of kernels with no fused
//                       multiply-add anywhere ("avx2" does not imply "fma", and the files are
//                       compiled with -ffp-contract=off for the AVX-512 clone, whose target has
//                       FMA). The GPU plugin's bit-exact tests reproduce these kernels'
//                       roundings (FastExp, SiluMul, ...): building impq with -march=native
//                       would break them.
//   IMPQ_FMA_VERSION(v) one version of a kernel that fuses multiply-adds explicitly (Fma,
//                       __builtin_fmaf): one rounding per multiply-add in every version. v is
//                       "avx512f", "avx2,fma" (every AVX2-era Intel and AMD CPU) or "default"
//                       (libm's fmaf: slow, but only pre-2013 CPUs lack FMA). Each version
//                       instantiates its template with the lane representation it runs best
//                       (below).
//
// Fixed lanes. Sums are taken in 16 lanes — term j goes to lane j mod 16 — combined at the end
// in a fixed order, so a sum is the same at any vector width. The 16 lanes are one 64-byte
// vector (Wide16, for AVX-512) or two 32-byte ones (Halves16, for AVX2: GCC splits a 64-byte
// generic vector into single elements there); both give every lane the same operations.
#ifndef IMPQ_WORKER_FORWARD_SIMD_LANES_H_
#define IMPQ_WORKER_FORWARD_SIMD_LANES_H_

#include <cstdint>

#include "worker/forward/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IMPQ_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define IMPQ_FMA_VERSION(v) __attribute__((target(v)))
#define IMPQ_HAVE_FMA_VERSIONS 1
#else
#define IMPQ_KERNEL_CLONES
#define IMPQ_FMA_VERSION(v)
#define IMPQ_HAVE_FMA_VERSIONS 0
#endif
// Helpers of the cloned kernels are inlined into each clone (a plain call would run the
// baseline x86-64 code from inside the AVX-512 or AVX2 clone).
#define IMPQ_KERNEL_INLINE inline __attribute__((always_inline))

namespace impq::forward::simd {

typedef float F8 __attribute__((vector_size(32)));
typedef float F16 __attribute__((vector_size(64)));
typedef int32_t I8 __attribute__((vector_size(32)));
typedef int32_t I16 __attribute__((vector_size(64)));

// Lane-wise helpers on a plain float vector type F (F8 or F16) and its int type I.
template <class F>
IMPQ_KERNEL_INLINE F LoadVec(const float* p) {
  F v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
template <class F>
IMPQ_KERNEL_INLINE F SplatVec(float x) {
  F v;
  for (int k = 0; k < static_cast<int>(sizeof(F) / 4); ++k) v[k] = x;
  return v;
}
template <class F>
IMPQ_KERNEL_INLINE F FmaVec(F a, F b, F c) {  // a·b + c, one rounding per lane
  F r;
  for (int k = 0; k < static_cast<int>(sizeof(F) / 4); ++k) r[k] = __builtin_fmaf(a[k], b[k], c[k]);
  return r;
}
template <class F>
IMPQ_KERNEL_INLINE F MaxVec(F a, F b) {
  return a > b ? a : b;
}
// Lanes k < count of a, the others of b (count may be <= 0 or >= the width).
template <class F>
IMPQ_KERNEL_INLINE F FirstLanesVec(F a, F b, int64_t count, int offset) {
  F idx;
  for (int k = 0; k < static_cast<int>(sizeof(F) / 4); ++k) idx[k] = static_cast<float>(k + offset);
  return idx < SplatVec<F>(static_cast<float>(count)) ? a : b;
}
// FastExp (kernels.h) with its multiply-adds fused, lane by lane (FastExpFma's arithmetic).
template <class F, class I>
IMPQ_KERNEL_INLINE F ExpFmaVec(F x) {
  using namespace fast_exp;
  const F lo = SplatVec<F>(kMin), hi = SplatVec<F>(kMax);
  x = x < lo ? lo : x;
  x = x > hi ? hi : x;
  const F round = SplatVec<F>(kRound);
  const F n = FmaVec(x, SplatVec<F>(kLog2e), round) - round;
  F r = FmaVec(n, SplatVec<F>(-kLn2Hi), x);
  r = FmaVec(n, SplatVec<F>(-kLn2Lo), r);
  const F z = r * r;
  F y = SplatVec<F>(kPoly[0]);
  for (int i = 1; i < 6; ++i) y = FmaVec(y, r, SplatVec<F>(kPoly[i]));
  y = FmaVec(y, z, r) + SplatVec<F>(1.0f);
  // 2^n as two factors (n = 128 only at the clamp), built in the exponent bits.
  const I ni = __builtin_convertvector(n, I);
  const I half = ni >> 1;
  const I a = (half + 127) << 23;
  const I b = (ni - half + 127) << 23;
  F fa, fb;
  __builtin_memcpy(&fa, &a, sizeof(fa));
  __builtin_memcpy(&fb, &b, sizeof(fb));
  return y * fa * fb;
}

// The 8 lanes of a (lanes 0..7 of the 16, or the sum of the halves) reduced: k + k+4, then
// k + k+2, then 0 + 1.
IMPQ_KERNEL_INLINE float ReduceEight(F8 a) {
  typedef float F4 __attribute__((vector_size(16)));
  const F4 b =
      __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  const float c0 = b[0] + b[2], c1 = b[1] + b[3];
  return c0 + c1;
}
IMPQ_KERNEL_INLINE float MaxEight(F8 a) {
  typedef float F4 __attribute__((vector_size(16)));
  const F4 b0 = __builtin_shufflevector(a, a, 0, 1, 2, 3);
  const F4 b1 = __builtin_shufflevector(a, a, 4, 5, 6, 7);
  const F4 b = b0 > b1 ? b0 : b1;
  const float c0 = b[0] > b[2] ? b[0] : b[2], c1 = b[1] > b[3] ? b[1] : b[3];
  return c0 > c1 ? c0 : c1;
}

// 16 lanes as one 64-byte vector.
struct Wide16 {
  F16 v;
  static IMPQ_KERNEL_INLINE Wide16 Load(const float* p) { return {LoadVec<F16>(p)}; }
  static IMPQ_KERNEL_INLINE Wide16 Splat(float x) { return {SplatVec<F16>(x)}; }
  static IMPQ_KERNEL_INLINE Wide16 Zero() { return {F16{}}; }
  IMPQ_KERNEL_INLINE void Store(float* p) const { __builtin_memcpy(p, &v, sizeof(v)); }
  friend IMPQ_KERNEL_INLINE Wide16 operator+(Wide16 a, Wide16 b) { return {a.v + b.v}; }
  friend IMPQ_KERNEL_INLINE Wide16 operator-(Wide16 a, Wide16 b) { return {a.v - b.v}; }
  friend IMPQ_KERNEL_INLINE Wide16 operator*(Wide16 a, Wide16 b) { return {a.v * b.v}; }
  friend IMPQ_KERNEL_INLINE Wide16 Fma(Wide16 a, Wide16 b, Wide16 c) {
    return {FmaVec(a.v, b.v, c.v)};
  }
  friend IMPQ_KERNEL_INLINE Wide16 Max(Wide16 a, Wide16 b) { return {MaxVec(a.v, b.v)}; }
  friend IMPQ_KERNEL_INLINE Wide16 FirstLanes(Wide16 a, Wide16 b, int64_t count) {
    return {FirstLanesVec(a.v, b.v, count, 0)};
  }
  friend IMPQ_KERNEL_INLINE Wide16 ExpFma(Wide16 x) { return {ExpFmaVec<F16, I16>(x.v)}; }
  // Lane k + lane k+8 first, then ReduceEight: a fixed tree.
  IMPQ_KERNEL_INLINE float Sum() const {
    return ReduceEight(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                       __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));
  }
  IMPQ_KERNEL_INLINE float MaxLane() const {
    return MaxEight(MaxVec<F8>(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7),
                               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15)));
  }
};

// The same 16 lanes as two 32-byte vectors: lanes 0..7 and 8..15.
struct Halves16 {
  F8 lo, hi;
  static IMPQ_KERNEL_INLINE Halves16 Load(const float* p) {
    return {LoadVec<F8>(p), LoadVec<F8>(p + 8)};
  }
  static IMPQ_KERNEL_INLINE Halves16 Splat(float x) { return {SplatVec<F8>(x), SplatVec<F8>(x)}; }
  static IMPQ_KERNEL_INLINE Halves16 Zero() { return {F8{}, F8{}}; }
  IMPQ_KERNEL_INLINE void Store(float* p) const {
    __builtin_memcpy(p, &lo, sizeof(lo));
    __builtin_memcpy(p + 8, &hi, sizeof(hi));
  }
  friend IMPQ_KERNEL_INLINE Halves16 operator+(Halves16 a, Halves16 b) {
    return {a.lo + b.lo, a.hi + b.hi};
  }
  friend IMPQ_KERNEL_INLINE Halves16 operator-(Halves16 a, Halves16 b) {
    return {a.lo - b.lo, a.hi - b.hi};
  }
  friend IMPQ_KERNEL_INLINE Halves16 operator*(Halves16 a, Halves16 b) {
    return {a.lo * b.lo, a.hi * b.hi};
  }
  friend IMPQ_KERNEL_INLINE Halves16 Fma(Halves16 a, Halves16 b, Halves16 c) {
    return {FmaVec(a.lo, b.lo, c.lo), FmaVec(a.hi, b.hi, c.hi)};
  }
  friend IMPQ_KERNEL_INLINE Halves16 Max(Halves16 a, Halves16 b) {
    return {MaxVec(a.lo, b.lo), MaxVec(a.hi, b.hi)};
  }
  friend IMPQ_KERNEL_INLINE Halves16 FirstLanes(Halves16 a, Halves16 b, int64_t count) {
    return {FirstLanesVec(a.lo, b.lo, count, 0), FirstLanesVec(a.hi, b.hi, count, 8)};
  }
  friend IMPQ_KERNEL_INLINE Halves16 ExpFma(Halves16 x) {
    return {ExpFmaVec<F8, I8>(x.lo), ExpFmaVec<F8, I8>(x.hi)};
  }
  IMPQ_KERNEL_INLINE float Sum() const { return ReduceEight(lo + hi); }
  IMPQ_KERNEL_INLINE float MaxLane() const { return MaxEight(MaxVec(lo, hi)); }
};

// Σ v[0..n): lane k takes v[j] for j ≡ k (mod 16), in order; the lanes are then added
// lane[0] + lane[1] + ... + lane[15]. Vectorizes without -ffast-math and gives the same result
// on every run and with every clone.
IMPQ_KERNEL_INLINE float SumLanes(const float* __restrict v, int64_t n) {
  F8 lo = {}, hi = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    lo += LoadVec<F8>(v + j);
    hi += LoadVec<F8>(v + j + 8);
  }
  float lane[16];
  __builtin_memcpy(lane, &lo, sizeof(lo));
  __builtin_memcpy(lane + 8, &hi, sizeof(hi));
  for (; j < n; ++j) lane[j & 15] += v[j];
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += lane[k];
  return s;
}

// max v[0..n) with independent running maxima (so the loop vectorizes without -ffast-math,
// and several of them so that it is not bound by the compare's latency). The maximum does not
// depend on the order it is taken in (up to the sign of a zero, which no caller can observe:
// they only subtract it), so this is exactly the scalar loop's value.
IMPQ_KERNEL_INLINE float MaxOf(const float* __restrict v, int64_t n) {
  F8 m0 = SplatVec<F8>(v[0]), m1 = m0, m2 = m0, m3 = m0;
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = MaxVec(LoadVec<F8>(v + j), m0);
    m1 = MaxVec(LoadVec<F8>(v + j + 8), m1);
    m2 = MaxVec(LoadVec<F8>(v + j + 16), m2);
    m3 = MaxVec(LoadVec<F8>(v + j + 24), m3);
  }
  for (; j + 8 <= n; j += 8) m0 = MaxVec(LoadVec<F8>(v + j), m0);
  float mx = MaxEight(MaxVec(MaxVec(m0, m1), MaxVec(m2, m3)));
  for (; j < n; ++j) mx = v[j] > mx ? v[j] : mx;
  return mx;
}

}  // namespace impq::forward::simd

#endif  // IMPQ_WORKER_FORWARD_SIMD_LANES_H_
