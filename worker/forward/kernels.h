// Element-wise and row kernels of the Llama forward pass (CPU, float32).
// Each has a plain scalar reference in kernels_ref.h, and kernels_test.cc compares them.
#ifndef IMPQ_WORKER_FORWARD_KERNELS_H_
#define IMPQ_WORKER_FORWARD_KERNELS_H_

#include <cstdint>

namespace impq::forward {

// e^x in float32 without a libm call, so loops over it vectorize: Cody-Waite range reduction
// x = n·ln2 + r, |r| <= ln2/2, and Cephes' degree-7 polynomial for e^r, scaled by 2^n through
// the exponent bits. Relative error <= 2 ulp over [-87, 88] (kernels_test checks it against
// std::exp in double); inputs below -87.3 return ~1e-38, above 88.7 are clamped.
// FastExp's constants: the clamp, the rounding shift, ln 2 split in two (Cody-Waite), and the
// polynomial's coefficients from the highest degree down. FastExpFma and the vector kernels
// (simd_lanes.h) use the same ones.
namespace fast_exp {
inline constexpr float kMin = -87.33654f, kMax = 88.72283f;
inline constexpr float kLog2e = 1.44269504088896341f, kRound = 12582912.0f;  // 1.5 · 2^23
inline constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
inline constexpr float kPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                   4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
}  // namespace fast_exp

inline float FastExp(float x) {
  using namespace fast_exp;
  x = x < kMin ? kMin : x;
  x = x > kMax ? kMax : x;
  // Round x·log2(e) to the nearest integer with the 1.5·2^23 trick (no libm call).
  const float shifted = x * kLog2e + kRound;
  const float n = shifted - kRound;
  float r = x - n * kLn2Hi;
  r = r - n * kLn2Lo;
  const float z = r * r;
  float y = kPoly[0];
  for (int i = 1; i < 6; ++i) y = y * r + kPoly[i];
  y = y * z + r + 1.0f;
  // 2^n: n is in [-126, 128]; build the float with exponent n + 127 (n = 128 only at the
  // clamp, handled by splitting into two factors).
  const int ni = static_cast<int>(n);
  const int half = ni >> 1;
  const unsigned a = static_cast<unsigned>(half + 127) << 23;
  const unsigned b = static_cast<unsigned>(ni - half + 127) << 23;
  float fa, fb;
  __builtin_memcpy(&fa, &a, 4);
  __builtin_memcpy(&fb, &b, 4);
  return y * fa * fb;
}

// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i] for one row of n values. out may alias x.
void RmsNormRow(const float* x, const float* w, int64_t n, float eps, float* out);

// Rotates one head vector in place by the angles of one position. `cos`/`sin` hold head_dim/2
// values (frequency i). interleaved: pairs (v[2i], v[2i+1]); otherwise (v[i], v[i + hd/2]).
void RopeHead(float* v, int64_t head_dim, const float* cos, const float* sin, bool interleaved);

// In place: row[j] = softmax(row[0..valid))[j] for j < valid, 0 for valid <= j < n.
void SoftmaxPrefixRow(float* row, int64_t valid, int64_t n);

// gate[i] = silu(gate[i]) · up[i] = gate / (1 + exp(-gate)) · up.
void SiluMul(float* gate, const float* up, int64_t n);

// gate[i] = gelu_tanh(gate[i]) · up[i], gelu_tanh(g) = g/2 · (1 + tanh(√(2/π)·(g + 0.044715·g³)))
// (PyTorch's gelu(approximate="tanh"), Gemma-2's GeGLU).
void GeluTanhMul(float* gate, const float* up, int64_t n);

// In place: x[i] = cap · tanh(x[i] / cap) (Gemma-2's soft-capping). REQUIRES: cap > 0.
void SoftcapRow(float* x, int64_t n, float cap);

// log Σ_j exp(row[j]) over n logits, computed stably (max subtracted), accumulated in double.
double LogSumExp(const float* row, int64_t n);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_KERNELS_H_
