#include "worker/forward/kernels.h"

#include <algorithm>
#include <cmath>

namespace impq::forward {

// The hot row kernels get an AVX2 clone next to the baseline x86-64 one, picked at load time.
// Both run the same float operations in the same order (neither target has FMA instructions,
// "avx2" does not imply "fma", so no multiply-add can be contracted whatever -ffp-contract
// says; fixed-lane sums), so results do not depend on which clone runs. The GPU plugin's
// bit-exact kernels rely on this too: building impq with -march=native (FMA) would break them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IMPQ_KERNEL_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define IMPQ_KERNEL_CLONES
#endif

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

namespace {

// Σ v[0..n) with 16 independent partial sums, combined in a fixed order: vectorizes without
// -ffast-math and gives the same result on every run.
float SumLanes(const float* __restrict v, int64_t n) {
  float lane[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int k = 0; k < 16; ++k) lane[k] += v[j + k];
  }
  for (; j < n; ++j) lane[j & 15] += v[j];
  float s = 0.0f;
  for (int k = 0; k < 16; ++k) s += lane[k];
  return s;
}

float MaxOf(const float* __restrict v, int64_t n) {
  float mx = v[0];
  for (int64_t j = 1; j < n; ++j) mx = v[j] > mx ? v[j] : mx;
  return mx;
}

}  // namespace

IMPQ_KERNEL_CLONES
void SoftmaxPrefixRow(float* row, int64_t valid, int64_t n) {
  const float mx = MaxOf(row, valid);
  for (int64_t j = 0; j < valid; ++j) row[j] = FastExp(row[j] - mx);
  const float sum = SumLanes(row, valid);
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
  for (int64_t j = valid; j < n; ++j) row[j] = 0.0f;
}

IMPQ_KERNEL_CLONES
void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + FastExp(-g)) * up[i];
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

double LogSumExp(const float* row, int64_t n) {
  const float mx = MaxOf(row, n);
  // Float exponentials summed in 16 double lanes (fixed order): each term is in (0, 1], so
  // the double sum loses nothing that matters against the float inputs.
  double lane[16] = {};
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    for (int k = 0; k < 16; ++k) lane[k] += FastExp(row[j + k] - mx);
  }
  for (; j < n; ++j) lane[j & 15] += FastExp(row[j] - mx);
  double sum = 0.0;
  for (int k = 0; k < 16; ++k) sum += lane[k];
  return mx + std::log(sum);
}

}  // namespace impq::forward
