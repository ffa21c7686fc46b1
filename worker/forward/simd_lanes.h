// Internal to worker/forward: what the CPU row kernels share to vectorize without giving up
// determinism.
//
// Clones. Each hot kernel is compiled several times and the best one for the CPU is picked at
// load time (GCC's target_clones). Every clone runs the same float operations in the same
// order, so results do not depend on which one runs:
//   IMPQ_KERNEL_CLONES      AVX-512, AVX2 and baseline x86-64 clones of kernels with no fused
//                           multiply-add anywhere ("avx2" does not imply "fma", and the files
//                           are compiled with -ffp-contract=off for the AVX-512 clone, whose
//                           target has FMA). The GPU plugin's bit-exact tests reproduce these
//                           kernels' roundings (FastExp, SiluMul, ...): building impq with
//                           -march=native would break them.
//   IMPQ_FMA_KERNEL_CLONES  AVX-512, Haswell (AVX2 + FMA) and baseline clones of kernels that
//                           fuse multiply-adds explicitly (Fma16, __builtin_fmaf): one rounding
//                           per multiply-add in every clone; the baseline clone gets it from
//                           libm's fmaf (slow, but only pre-2013 CPUs lack FMA).
// Fixed lanes. Sums are taken in 16 lanes (V16: one AVX-512 register, two AVX2 ones, four SSE
// ones) — term j goes to lane j mod 16 — and the lanes are added in order at the end, so a sum
// is the same at any vector width.
#ifndef IMPQ_WORKER_FORWARD_SIMD_LANES_H_
#define IMPQ_WORKER_FORWARD_SIMD_LANES_H_

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IMPQ_KERNEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define IMPQ_FMA_KERNEL_CLONES \
  __attribute__((target_clones("avx512f", "arch=haswell", "default")))
#else
#define IMPQ_KERNEL_CLONES
#define IMPQ_FMA_KERNEL_CLONES
#endif
// Helpers of the cloned kernels are inlined into each clone (a plain call would run the
// baseline x86-64 code from inside the AVX-512 or AVX2 clone).
#define IMPQ_KERNEL_INLINE inline __attribute__((always_inline))

namespace impq::forward::simd {

typedef float V16 __attribute__((vector_size(64)));

IMPQ_KERNEL_INLINE V16 Load16(const float* p) {
  V16 v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}
IMPQ_KERNEL_INLINE void Store16(float* p, V16 v) { __builtin_memcpy(p, &v, sizeof(v)); }
IMPQ_KERNEL_INLINE V16 Splat16(float x) {
  V16 v;
  for (int k = 0; k < 16; ++k) v[k] = x;
  return v;
}
// a·b + c with one rounding, lane by lane.
IMPQ_KERNEL_INLINE V16 Fma16(V16 a, V16 b, V16 c) {
  V16 r;
  for (int k = 0; k < 16; ++k) r[k] = __builtin_fmaf(a[k], b[k], c[k]);
  return r;
}
IMPQ_KERNEL_INLINE V16 Max16(V16 a, V16 b) { return a > b ? a : b; }
// The 16 lanes of v added as a tree: lane k + lane k+8, then k + k+4, then k + k+2, then
// 0 + 1 — four vector steps instead of fifteen dependent adds (a fixed order, as
// ReduceLanes's, only a different one).
IMPQ_KERNEL_INLINE float ReduceTree16(V16 v) {
  typedef float V8 __attribute__((vector_size(32)));
  typedef float V4 __attribute__((vector_size(16)));
  const V8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const V4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  const float c0 = b[0] + b[2], c1 = b[1] + b[3];
  return c0 + c1;
}

// The largest lane of v (exact: a maximum does not depend on the order it is taken in).
IMPQ_KERNEL_INLINE float MaxTree16(V16 v) {
  typedef float V8 __attribute__((vector_size(32)));
  typedef float V4 __attribute__((vector_size(16)));
  const V8 a0 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  const V8 a1 = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  const V8 a = a0 > a1 ? a0 : a1;
  const V4 b0 = __builtin_shufflevector(a, a, 0, 1, 2, 3);
  const V4 b1 = __builtin_shufflevector(a, a, 4, 5, 6, 7);
  const V4 b = b0 > b1 ? b0 : b1;
  const float c0 = b[0] > b[2] ? b[0] : b[2], c1 = b[1] > b[3] ? b[1] : b[3];
  return c0 > c1 ? c0 : c1;
}

// lane[0] + lane[1] + ... + lane[15], in that order.
IMPQ_KERNEL_INLINE float ReduceLanes(const float* lane) {
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += lane[k];
  return s;
}

// max v[0..n) with independent running maxima (so the loop vectorizes without -ffast-math,
// and four of them so that it is not bound by the compare's latency). The maximum does not
// depend on the order it is taken in (up to the sign of a zero, which no caller can observe:
// they only subtract it), so this is exactly the scalar loop's value.
IMPQ_KERNEL_INLINE float MaxOf(const float* __restrict v, int64_t n) {
  V16 m0 = Splat16(v[0]), m1 = m0, m2 = m0, m3 = m0;
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    m0 = Max16(Load16(v + j), m0);
    m1 = Max16(Load16(v + j + 16), m1);
    m2 = Max16(Load16(v + j + 32), m2);
    m3 = Max16(Load16(v + j + 48), m3);
  }
  for (; j + 16 <= n; j += 16) m0 = Max16(Load16(v + j), m0);
  float lane[16];
  Store16(lane, Max16(Max16(m0, m1), Max16(m2, m3)));
  for (; j < n; ++j) lane[j & 15] = v[j] > lane[j & 15] ? v[j] : lane[j & 15];
  float mx = lane[0];
  for (int k = 1; k < 16; ++k) mx = lane[k] > mx ? lane[k] : mx;
  return mx;
}

}  // namespace impq::forward::simd

#endif  // IMPQ_WORKER_FORWARD_SIMD_LANES_H_
