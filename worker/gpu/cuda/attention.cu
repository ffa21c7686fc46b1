// The cuBLAS composites of kernels.cuh: the bf16 GEMM of every linear module and the causal
// grouped-query attention of one sequence.
//
// Row-major <-> column-major. cuBLAS is column-major; impq's buffers are row-major. A
// row-major matrix M[r][c] with row stride ld IS the column-major matrix M^T ([c, r], leading
// dimension ld). So a row-major product Y = X . W^T (Y [rows, out], X [rows, in], W [out, in])
// is the column-major product Y^T = W . X^T, where
//   - Y^T is the column-major view of Y: m = out, n = rows, ldc = out;
//   - W appears as its column-major view W^T ([in, out], lda = in) with op = T, giving W;
//   - X^T is the column-major view of X ([in, rows], ldb = in) with op = N;
// i.e. cublasGemmEx(OP_T, OP_N, m = out, n = rows, k = in, A = w, lda = in, B = x, ldb = in,
// C = y, ldc = out). The same mapping, with strides, gives the attention products below.
#include <climits>
#include <cstdint>
#include <string>

#include "worker/gpu/cuda/check.cuh"
#include "worker/gpu/cuda/device_math.cuh"
#include "worker/gpu/cuda/gemm_plan.h"
#include "worker/gpu/cuda/kernels.cuh"

namespace impq::gpu {
namespace {

constexpr int kWarp = kWarpSize;
constexpr int kSoftmaxThreads = 256;

bool FitsInt(int64_t v) { return v >= 0 && v <= INT_MAX; }

// The fused masked / soft-capped / windowed softmax of one score row per block.
// Row `row` = h * T + i (head h, query i) of the f32 scores S [H * T, T] (already scaled by
// the GEMM's alpha). Key j is visible iff first <= j <= i, first = max(0, i - window + 1)
// with a window, else 0 (LlamaForward::Attention). Over the visible keys only:
//   c = softcap > 0 ? cap * tanh(s / cap) : s;  m = max c;  e = FastExp(c - m);
//   S = sum e (double);  inv = 1.0f / f32(S);  p = bf16(e * inv);
// every other key gets p = 0 exactly.
//
// The bf16 probabilities are written IN PLACE over the row's own f32 storage: P row `row` is
// (bf16*)(S + row * T), elements 0..T-1, i.e. row stride 2T bf16 elements. Writing bf16
// element j overwrites f32 element j / 2 <= j. The row is walked in chunks of blockDim.x
// elements: every thread reads its scores of a chunk, the block synchronises, then writes the
// chunk's probabilities. A chunk starting at `base` overwrites f32 elements in
// [base / 2, (base + blockDim) / 2), all of which belong to this or an earlier chunk (already
// read), never to a later one; the max and sum passes end in block barriers before the
// first write. Each row is owned by exactly one block.
__global__ void AttentionSoftmaxKernel(float* s, int64_t T, float softcap, int window) {
  const int64_t row = blockIdx.x;
  const int64_t i = row % T;
  float* srow = s + row * T;
  bf16* prow = reinterpret_cast<bf16*>(srow);
  const int64_t first = window > 0 ? (i - window + 1 > 0 ? i - window + 1 : 0) : 0;

  float mx = -INFINITY;
  for (int64_t j = first + threadIdx.x; j <= i; j += blockDim.x) {
    const float c = SoftcapDev(srow[j], softcap);
    mx = c > mx ? c : mx;
  }
  mx = BlockMaxF(mx);
  double sum = 0.0;
  for (int64_t j = first + threadIdx.x; j <= i; j += blockDim.x) {
    sum += static_cast<double>(FastExpDev(__fsub_rn(SoftcapDev(srow[j], softcap), mx)));
  }
  sum = BlockSumD(sum);
  const float inv = __fdiv_rn(1.0f, static_cast<float>(sum));

  for (int64_t base = 0; base < T; base += blockDim.x) {
    const int64_t j = base + threadIdx.x;
    float p = 0.0f;
    if (j >= first && j <= i) {
      p = __fmul_rn(FastExpDev(__fsub_rn(SoftcapDev(srow[j], softcap), mx)), inv);
    }
    __syncthreads();  // all reads of this chunk before any write of it
    if (j < T) prow[j] = __float2bfloat16_rn(p);
  }
}

}  // namespace

namespace {

size_t ElementBytes(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

// Executes one GemmCall (gemm_plan.h) on bf16 A and B; C is f32 or bf16. Operand pointers are
// the bases the plan's offsets refer to.
cublasStatus_t Issue(cublasHandle_t handle, const GemmCall& c, const void* a, const void* b,
                     void* cc, cudaDataType c_type) {
  if (!FitsInt(c.m) || !FitsInt(c.n) || !FitsInt(c.k) || !FitsInt(c.lda) || !FitsInt(c.ldb) ||
      !FitsInt(c.ldc) || !FitsInt(c.batch) || c.m == 0 || c.n == 0 || c.k == 0 || c.batch == 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const auto* pa = static_cast<const char*>(a) + c.offset_a * ElementBytes(CUDA_R_16BF);
  const auto* pb = static_cast<const char*>(b) + c.offset_b * ElementBytes(CUDA_R_16BF);
  auto* pc = static_cast<char*>(cc) + c.offset_c * ElementBytes(c_type);
  const cublasOperation_t ta = c.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t tb = c.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  if (c.batch == 1) {
    return cublasGemmEx(handle, ta, tb, static_cast<int>(c.m), static_cast<int>(c.n),
                        static_cast<int>(c.k), &c.alpha, pa, CUDA_R_16BF, static_cast<int>(c.lda),
                        pb, CUDA_R_16BF, static_cast<int>(c.ldb), &c.beta, pc, c_type,
                        static_cast<int>(c.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  }
  return cublasGemmStridedBatchedEx(
      handle, ta, tb, static_cast<int>(c.m), static_cast<int>(c.n), static_cast<int>(c.k),
      &c.alpha, pa, CUDA_R_16BF, static_cast<int>(c.lda), c.stride_a, pb, CUDA_R_16BF,
      static_cast<int>(c.ldb), c.stride_b, &c.beta, pc, c_type, static_cast<int>(c.ldc),
      c.stride_c, static_cast<int>(c.batch), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

}  // namespace

cublasStatus_t GemmBf16(cublasHandle_t handle, const bf16* x, int64_t rows, int64_t in,
                        const bf16* w, int64_t out, float beta, float* y) {
  if (rows <= 0 || in <= 0 || out <= 0) return CUBLAS_STATUS_INVALID_VALUE;
  return Issue(handle, PlanLinear(rows, in, out, beta), w, x, y, CUDA_R_32F);
}

int64_t AttentionWorkspaceBytes(int64_t max_T, int H) {
  // f32 scores [H, T, T]; the bf16 probabilities reuse them in place.
  return static_cast<int64_t>(H) * max_T * max_T * static_cast<int64_t>(sizeof(float));
}

std::string RunAttention(cublasHandle_t handle, const bf16* q, const bf16* k, const bf16* v,
                         int64_t T, int H, int Hkv, int head_dim, float scale, float softcap,
                         int window, void* workspace, bf16* out, cudaStream_t stream) {
  if (T <= 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || head_dim <= 0 || window < 0 ||
      !(softcap >= 0.0f)) {
    return "RunAttention: invalid arguments (need T > 0, H % Hkv == 0, head_dim > 0, "
           "window >= 0, softcap >= 0)";
  }
  const int G = H / Hkv;
  const int64_t hd = head_dim;
  if (!FitsInt(G * T) || !FitsInt(2 * T) || !FitsInt(static_cast<int64_t>(H) * hd) ||
      !FitsInt(static_cast<int64_t>(H) * T)) {
    return "RunAttention: T * heads exceeds the int range of cuBLAS / the grid";
  }
  float* scores = static_cast<float*>(workspace);
  const bf16* probs = reinterpret_cast<const bf16*>(workspace);

  // The handle is bound to `stream` for these calls, and its math mode gets
  // CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION: the P.V products write bf16, and without
  // the flag cuBLAS may reduce split-K partial sums in the OUTPUT type, breaking the
  // f32-accumulation contract. Both are restored afterwards (also on errors).
  cudaStream_t prev = nullptr;
  cublasMath_t prev_math = CUBLAS_DEFAULT_MATH;
  cublasStatus_t st = cublasGetStream(handle, &prev);
  if (st != CUBLAS_STATUS_SUCCESS) return std::string("cublasGetStream: ") + CublasStatusName(st);
  st = cublasGetMathMode(handle, &prev_math);
  if (st != CUBLAS_STATUS_SUCCESS) {
    return std::string("cublasGetMathMode: ") + CublasStatusName(st);
  }
  const cublasMath_t math = static_cast<cublasMath_t>(
      static_cast<int>(prev_math) |
      static_cast<int>(CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION));
  std::string error;
  bool stream_set = false, math_set = false;
  if (prev != stream) {
    st = cublasSetStream(handle, stream);
    if (st == CUBLAS_STATUS_SUCCESS) {
      stream_set = true;
    } else {
      error = std::string("cublasSetStream: ") + CublasStatusName(st);
    }
  }
  if (error.empty() && math != prev_math) {
    st = cublasSetMathMode(handle, math);
    if (st == CUBLAS_STATUS_SUCCESS) {
      math_set = true;
    } else {
      error = std::string("cublasSetMathMode: ") + CublasStatusName(st);
    }
  }
  // 1. Scores, one GEMM per kv head g (batched over g). The G query heads sharing kv head g
  //    are h = g*G .. g*G+G-1, contiguous in q [H, T, hd]: one row-major [G*T, hd] matrix Q_g
  //    at q + g*G*T*hd. S_g [G*T, T] = scale * Q_g . K_g^T (K_g [T, hd] at k + g*T*hd), i.e.
  //    rows h*T + i of S at scores + g*G*T*T. Column-major (see the top of the file):
  //    m = T keys, n = G*T queries, k = hd; A = K_g (op T, lda = hd), B = Q_g (op N,
  //    ldb = hd), C = S_g (ldc = T).
  if (error.empty()) {
    st = Issue(handle, PlanAttentionScores(T, H, Hkv, head_dim, scale), k, q, scores, CUDA_R_32F);
    if (st != CUBLAS_STATUS_SUCCESS) {
      error = std::string("attention q.k^T cublasGemmStridedBatchedEx: ") + CublasStatusName(st);
    }
  }
  // 2. Softmax of every row h*T + i, probabilities in place (bf16, row stride 2T).
  if (error.empty()) {
    const int threads = T >= kSoftmaxThreads ? kSoftmaxThreads
                                             : static_cast<int>((T + kWarp - 1) / kWarp * kWarp);
    AttentionSoftmaxKernel<<<static_cast<unsigned>(static_cast<int64_t>(H) * T), threads, 0,
                             stream>>>(scores, T, softcap, window);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
      error = std::string("attention softmax launch: ") + cudaGetErrorString(e);
    }
  }
  // 3. out[i, h*hd + d] = sum_j P[h*T + i, j] * V_g[j, d], written straight into the
  //    [T, H*hd] bf16 output. Per local head gl (h = g*G + gl), batched over kv heads g:
  //    column-major out^T_h = V_g^T . P_h^T with m = hd, n = T queries, k = T keys;
  //    A = V_g (op N: V row-major [T, hd] is column-major [hd, T], lda = hd, stride T*hd),
  //    B = P_h (op N: P row-major [T, T] with row stride 2T is column-major P^T, ldb = 2T,
  //    at probs + (gl*T)*2T, stride between g: G*T*2T), C = out + gl*hd (ldc = H*hd,
  //    stride between g: G*hd). Masked probabilities are exact zeros.
  for (int gl = 0; gl < G && error.empty(); ++gl) {
    st = Issue(handle, PlanAttentionPv(T, H, Hkv, head_dim, gl), v, probs, out, CUDA_R_16BF);
    if (st != CUBLAS_STATUS_SUCCESS) {
      error = std::string("attention p.v cublasGemmStridedBatchedEx: ") + CublasStatusName(st);
    }
  }
  if (math_set) {
    st = cublasSetMathMode(handle, prev_math);
    if (st != CUBLAS_STATUS_SUCCESS && error.empty()) {
      error = std::string("cublasSetMathMode (restore): ") + CublasStatusName(st);
    }
  }
  if (stream_set) {
    st = cublasSetStream(handle, prev);
    if (st != CUBLAS_STATUS_SUCCESS && error.empty()) {
      error = std::string("cublasSetStream (restore): ") + CublasStatusName(st);
    }
  }
  return error;
}

}  // namespace impq::gpu
