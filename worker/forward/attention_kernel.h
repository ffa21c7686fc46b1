// Causal attention of one query head, row by row, for small head dims (CPU, float32).
//
// For head dims up to LlamaForward::kSmallHeadDim, q·kᵀ has too short an inner dimension for
// a matrix product to pay, and the work is the row-wise part: the exponentials and the two
// short dot products per key. This kernel does both in registers, one query row at a time.
// Its scalar reference is AttentionHeadRef (kernels_ref.h); kernels_test compares them.
#ifndef IMPQ_WORKER_FORWARD_ATTENTION_KERNEL_H_
#define IMPQ_WORKER_FORWARD_ATTENTION_KERNEL_H_

#include <cstdint>

namespace impq::forward {

// e^x in float32 with fused multiply-adds: FastExp's range reduction and polynomial
// (kernels.h), each multiply-add rounded once. Relative error <= 2 ulp over [-87, 88]
// (kernels_test); inputs below -87.3 return ~1e-38, above 88.7 are clamped.
float FastExpFma(float x);

// For each query row t < T, over the keys j visible from t (j <= t, and j > t − window when
// window > 0):
//   s_j = Σ_d (scale·q[t][d]) · kt[d][j]        (fused multiply-adds, in dimension order)
//   s_j = cap · tanh(s_j / cap)                 when softcap > 0
//   e_j = FastExpFma(s_j − max_j s_j)
//   out[t][d] = (Σ_j e_j · vt[d][j]) · (1 / Σ_j e_j)
// Every sum over keys runs in 16 lanes (simd_lanes.h) combined in a fixed order, so the
// result is the same on every run, thread and CPU.
// q: T rows of head_dim values, row stride ldq; kt, vt: the kv head's keys and values
// transposed, [head_dim][ld] (row stride ld >= T + 15: rows are read in whole blocks of 16
// keys, and columns T..ld−1 must hold finite values, e.g. zeros); out: T rows, row stride ldo;
// scratch: >= T + 15 floats.
// REQUIRES: 1 <= head_dim <= kAttentionMaxHeadDim.
inline constexpr int64_t kAttentionMaxHeadDim = 64;
void CausalAttentionHead(const float* q, int64_t ldq, const float* kt, const float* vt, int64_t ld,
                         int64_t T, int64_t head_dim, float scale, float softcap, int64_t window,
                         float* out, int64_t ldo, float* scratch);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_ATTENTION_KERNEL_H_
