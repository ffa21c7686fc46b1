// Element-wise and row kernels of the Llama forward pass (CPU, float32).
// Each has a plain scalar reference in kernels_ref.h, and kernels_test.cc compares them.
#ifndef IMPQ_WORKER_FORWARD_KERNELS_H_
#define IMPQ_WORKER_FORWARD_KERNELS_H_

#include <cstdint>

namespace impq::forward {

// out[i] = x[i] / sqrt(mean(x²) + eps) · w[i] for one row of n values. out may alias x.
void RmsNormRow(const float* x, const float* w, int64_t n, float eps, float* out);

// Rotates one head vector in place by the angles of one position. `cos`/`sin` hold head_dim/2
// values (frequency i). interleaved: pairs (v[2i], v[2i+1]); otherwise (v[i], v[i + hd/2]).
void RopeHead(float* v, int64_t head_dim, const float* cos, const float* sin, bool interleaved);

// In place: row[j] = softmax(row[0..valid))[j] for j < valid, 0 for valid <= j < n.
void SoftmaxPrefixRow(float* row, int64_t valid, int64_t n);

// gate[i] = silu(gate[i]) · up[i] = gate / (1 + exp(-gate)) · up.
void SiluMul(float* gate, const float* up, int64_t n);

// log Σ_j exp(row[j]) over n logits, computed stably (max subtracted), accumulated in double.
double LogSumExp(const float* row, int64_t n);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_KERNELS_H_
