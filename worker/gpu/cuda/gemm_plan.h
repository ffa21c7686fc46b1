// The cuBLAS calls of the plugin, as data: every GEMM that GemmBf16 and RunAttention issue is
// first described by one of the Plan* functions below and then executed field by field
// (attention.cu). Plain C++ without CUDA types, so that the CPU tests (gpu_kernels_test.cc)
// execute the very same descriptors with a scalar column-major GEMM and compare with the
// references: the row-major <-> column-major mapping, leading dimensions, batch strides and
// offsets are checked without a GPU.
//
// Column-major semantics (cuBLAS, BLAS): for batch b in [0, batch),
//   C_b[i + j*ldc] = alpha * sum_l opA(i, l) * opB(l, j) + beta * C_b[i + j*ldc],
//   i < m, j < n, l < k, where X_b = base_X + offset_x + b * stride_x and
//   opA(i, l) = trans_a ? A_b[l + i*lda] : A_b[i + l*lda],
//   opB(l, j) = trans_b ? B_b[j + l*ldb] : B_b[l + j*ldb].
// Offsets and strides count ELEMENTS of the operand's type.
#ifndef IMPQ_WORKER_GPU_CUDA_GEMM_PLAN_H_
#define IMPQ_WORKER_GPU_CUDA_GEMM_PLAN_H_

#include <cstdint>

namespace impq::gpu {

struct GemmCall {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t offset_a = 0, offset_b = 0, offset_c = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 1;
  float alpha = 1.0f, beta = 0.0f;
};

// Row-major Y[rows, out] = X[rows, in] . W[out, in]^T + beta * Y, with A = W, B = X, C = Y.
// A row-major matrix M[r][c] (row stride ld) is the column-major M^T with leading dimension
// ld, so Y^T (m = out, n = rows, ldc = out) = W (op T of W^T [in, out], lda = in) . X^T
// (op N, [in, rows], ldb = in).
inline GemmCall PlanLinear(int64_t rows, int64_t in, int64_t out, float beta) {
  GemmCall c;
  c.trans_a = true;
  c.trans_b = false;
  c.m = out;
  c.n = rows;
  c.k = in;
  c.lda = in;
  c.ldb = in;
  c.ldc = out;
  c.beta = beta;
  return c;
}

// Attention scores of one sequence: A = k [Hkv, T, hd], B = q [H, T, hd], C = scores f32
// [H*T, T] (row h*T + i, column j). The G = H/Hkv query heads of kv head g are contiguous in
// q, so each kv head is ONE row-major product S_g [G*T, T] = scale * Q_g [G*T, hd] . K_g^T,
// batched over g: Q_g at g*G*T*hd, K_g at g*T*hd, S_g at g*G*T*T. Column-major:
// m = T (keys), n = G*T (queries), k = hd.
inline GemmCall PlanAttentionScores(int64_t T, int H, int Hkv, int hd, float scale) {
  const int64_t G = H / Hkv;
  GemmCall c;
  c.trans_a = true;
  c.trans_b = false;
  c.m = T;
  c.n = G * T;
  c.k = hd;
  c.lda = hd;
  c.ldb = hd;
  c.ldc = T;
  c.stride_a = T * hd;
  c.stride_b = G * T * hd;
  c.stride_c = G * T * T;
  c.batch = Hkv;
  c.alpha = scale;
  return c;
}

// P . V for local head gl in [0, G) of every kv head (h = g*G + gl), batched over g:
// A = v [Hkv, T, hd], B = the bf16 probabilities, stored IN PLACE over the f32 scores (row
// h*T + i of P starts at bf16 element (h*T + i) * 2T: row stride 2T), C = out [T, H*hd] bf16.
// Column-major out^T_h = V_g^T . P_h^T: m = hd, n = T (queries), k = T (keys);
// A = V_g (op N, lda = hd) at g*T*hd; B = P_h (op N, ldb = 2T) at (g*G + gl)*T*2T;
// C at gl*hd + g*G*hd with ldc = H*hd.
inline GemmCall PlanAttentionPv(int64_t T, int H, int Hkv, int hd, int gl) {
  const int64_t G = H / Hkv;
  GemmCall c;
  c.trans_a = false;
  c.trans_b = false;
  c.m = hd;
  c.n = T;
  c.k = T;
  c.lda = hd;
  c.ldb = 2 * T;
  c.ldc = static_cast<int64_t>(H) * hd;
  c.offset_b = static_cast<int64_t>(gl) * T * 2 * T;
  c.offset_c = static_cast<int64_t>(gl) * hd;
  c.stride_a = T * hd;
  c.stride_b = G * T * 2 * T;
  c.stride_c = G * hd;
  c.batch = Hkv;
  return c;
}

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_GEMM_PLAN_H_
