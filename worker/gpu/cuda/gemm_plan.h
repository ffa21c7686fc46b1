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

// ---- Causal attention of one sequence, in query chunks ----
// The causal mask makes the upper triangle of the T x T score matrix dead work. The queries
// are split into chunks of AttentionChunkRows(T) rows; chunk [c0, c1) needs the keys [0, c1)
// only, so the score and P.V products of all chunks together do (nc + 1) / (2 nc) of the full
// square's work (nc chunks: 56% at 8 chunks) and the softmax reads and writes that much less.
// One chunk (T <= 256) is the plain full product.
//
// Operands, per query head h (batch index, batch = H):
//   q  [H, T, hd] bf16;  kx, vx [H, T, hd] bf16: k and v with kv head h / G repeated for each
//   of its G = H / Hkv query heads (RunAttention expands them when G > 1);
//   scores f32 [H*T, T] (row h*T + i, column j = key), and the bf16 probabilities written IN
//   PLACE over them (row h*T + i starts at bf16 element (h*T + i) * 2T: row stride 2T);
//   out [T, H*hd] bf16 (row i, column h*hd + d).
inline int64_t AttentionChunkRows(int64_t T) {
  constexpr int64_t kMinChunk = 256, kMaxChunks = 8;
  if (T <= kMinChunk) return T < 1 ? 1 : T;
  const int64_t even = (T + kMaxChunks - 1) / kMaxChunks;
  return even > kMinChunk ? even : kMinChunk;
}

// Scores of queries [c0, c1) against keys [0, c1): S_h[i, j] = scale * q_h[i] . kx_h[j], the
// row-major product S_h[c0:c1, 0:c1] = Q_h[c0:c1] . Kx_h[0:c1]^T. Column-major (see PlanLinear):
// m = c1 (keys), n = c1 - c0 (queries), k = hd; A = Kx_h (op T, lda = hd, stride T*hd);
// B = Q_h at c0*hd (op N, ldb = hd, stride T*hd); C = S at row h*T + c0 (ldc = T, stride T*T).
inline GemmCall PlanAttentionScores(int64_t T, int H, int hd, float scale, int64_t c0,
                                    int64_t c1) {
  GemmCall c;
  c.trans_a = true;
  c.trans_b = false;
  c.m = c1;
  c.n = c1 - c0;
  c.k = hd;
  c.lda = hd;
  c.ldb = hd;
  c.ldc = T;
  c.offset_b = c0 * hd;
  c.offset_c = c0 * T;
  c.stride_a = T * hd;
  c.stride_b = T * hd;
  c.stride_c = T * T;
  c.batch = H;
  c.alpha = scale;
  return c;
}

// out[i, h*hd + d] = sum_{j < c1} P_h[i, j] * vx_h[j, d] for queries i in [c0, c1) (the
// probabilities of keys j > i are exact zeros). Column-major out^T_h = Vx_h^T . P_h^T:
// m = hd, n = c1 - c0 (queries), k = c1 (keys); A = Vx_h (op N: row-major [T, hd] is
// column-major [hd, T], lda = hd, stride T*hd); B = P_h at row c0 (op N, ldb = 2T, offset
// c0*2T, stride T*2T bf16 elements); C = out at row c0, column h*hd (ldc = H*hd, offset
// c0*H*hd, stride hd).
inline GemmCall PlanAttentionPv(int64_t T, int H, int hd, int64_t c0, int64_t c1) {
  GemmCall c;
  c.trans_a = false;
  c.trans_b = false;
  c.m = hd;
  c.n = c1 - c0;
  c.k = c1;
  c.lda = hd;
  c.ldb = 2 * T;
  c.ldc = static_cast<int64_t>(H) * hd;
  c.offset_b = c0 * 2 * T;
  c.offset_c = c0 * H * hd;
  c.stride_a = T * hd;
  c.stride_b = T * 2 * T;
  c.stride_c = hd;
  c.batch = H;
  return c;
}

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_GEMM_PLAN_H_
