#include "worker/forward/kernels.h"

#include <algorithm>
#include <cmath>

#include "worker/forward/simd_lanes.h"

namespace impq::forward {

IMPQ_KERNEL_CLONES
void RmsNormRow(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * w[i];
}

void RopeHead(float* v, int64_t head_dim, const float* cos, const float* sin, bool interleaved) {
  const int64_t half = head_dim / 2;
  if (interleaved) {
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[2 * i], b = v[2 * i + 1];
      v[2 * i] = a * cos[i] - b * sin[i];
      v[2 * i + 1] = a * sin[i] + b * cos[i];
    }
  } else {
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i], b = v[i + half];
      v[i] = a * cos[i] - b * sin[i];
      v[i + half] = a * sin[i] + b * cos[i];
    }
  }
}

IMPQ_KERNEL_CLONES
void SoftmaxPrefixRow(float* row, int64_t valid, int64_t n) {
  const float mx = simd::MaxOf(row, valid);
  for (int64_t j = 0; j < valid; ++j) row[j] = FastExp(row[j] - mx);
  const float sum = simd::SumLanes(row, valid);
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
  for (int64_t j = valid; j < n; ++j) row[j] = 0.0f;
}

IMPQ_KERNEL_CLONES
void SiluMul(float* gate, const float* up, int64_t n) {
  // The exponentials first, then the quotients, a block at a time: written as one loop, GCC
  // if-converts FastExp's clamp by computing the quotient twice (one vdivps per branch), and
  // division is the expensive part. Same operations either way, so the same values.
  constexpr int64_t kBlock = 256;
  float e[kBlock];
  for (int64_t i0 = 0; i0 < n; i0 += kBlock) {
    const int64_t m = std::min(kBlock, n - i0);
    float* __restrict g = gate + i0;
    const float* __restrict u = up + i0;
    for (int64_t i = 0; i < m; ++i) e[i] = FastExp(-g[i]);
    for (int64_t i = 0; i < m; ++i) g[i] = g[i] / (1.0f + e[i]) * u[i];
  }
}

IMPQ_KERNEL_CLONES
void GeluTanhMul(float* gate, const float* up, int64_t n) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(k * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void SoftcapRow(float* x, int64_t n, float cap) {
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

IMPQ_KERNEL_CLONES
double LogSumExp(const float* row, int64_t n) {
  const float mx = simd::MaxOf(row, n);
  // Float exponentials summed in 16 double lanes (fixed order): each term is in (0, 1], so
  // the double sum loses nothing that matters against the float inputs. The exponentials of
  // a block go through a small buffer first, so that the FastExp loop vectorizes on its own
  // and the double lanes stay in registers.
  typedef double D4 __attribute__((vector_size(32)));
  D4 acc[4] = {};  // lanes 0..3, 4..7, 8..11, 12..15
  float e[16];
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int k = 0; k < 16; ++k) e[k] = FastExp(row[j + k] - mx);
    typedef float F4 __attribute__((vector_size(16)));
    for (int q = 0; q < 4; ++q) {
      F4 f;
      __builtin_memcpy(&f, e + 4 * q, sizeof(f));
      acc[q] += __builtin_convertvector(f, D4);
    }
  }
  double lane[16];
  for (int q = 0; q < 4; ++q) {
    for (int k = 0; k < 4; ++k) lane[4 * q + k] = acc[q][k];
  }
  for (; j < n; ++j) lane[j & 15] += FastExp(row[j] - mx);
  double sum = 0.0;
  for (int k = 0; k < 16; ++k) sum += lane[k];
  return mx + std::log(sum);
}

}  // namespace impq::forward
