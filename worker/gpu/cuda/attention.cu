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
#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "worker/gpu/cuda/check.cuh"
#include "worker/gpu/cuda/device_math.cuh"
#include "worker/gpu/cuda/gemm_plan.h"
#include "worker/gpu/cuda/kernels.cuh"
#include "worker/gpu/cuda/profile.cuh"

namespace impq::gpu {
namespace {

constexpr int kWarp = kWarpSize;
constexpr int kSoftmaxRowsPerBlock = 8;  // one warp per score row

bool FitsInt(int64_t v) { return v >= 0 && v <= INT_MAX; }

// The fused masked / soft-capped / windowed softmax of one score row per block.
// Row `row` = h * T + i (head h, query i) of the f32 scores S [H * T, T] (already scaled by
// the GEMM's alpha). Key j is visible iff first <= j <= i, first = max(0, i - window + 1)
// with a window, else 0 (LlamaForward::Attention). Over the visible keys only:
//   c = softcap > 0 ? cap * tanh(s / cap) : s;  m = max c;  e = FastExp(c - m);
//   S = sum e (double);  inv = 1.0f / f32(S);  p = bf16(e * inv);
// every other key below the row's width gets p = 0 exactly. The width is the end c1 of the
// row's query chunk (gemm_plan.h, AttentionChunkRows): the P.V product of that chunk reads
// keys [0, c1) only, and the scores GEMM wrote no more.
//
// The bf16 probabilities are written IN PLACE over the row's own f32 storage: P row `row` is
// (bf16*)(S + row * T), elements 0..width-1, i.e. row stride 2T bf16 elements. Writing bf16
// element j overwrites f32 element j / 2 <= j. One WARP owns a row (kSoftmaxRowsPerBlock rows
// per block, no block barriers) and walks it in chunks of 32 elements: every lane reads its
// score of a chunk, the warp synchronises, then writes the chunk's probabilities. A chunk
// starting at `base` overwrites f32 elements in [base / 2, (base + 32) / 2), all of which
// belong to this or an earlier chunk (already read), never to a later one; the max and sum
// passes end in warp reductions before the first write.
__global__ void AttentionSoftmaxKernel(float* s, int64_t rows, int64_t T, int64_t chunk,
                                       float softcap, int window) {
  const int lane = threadIdx.x % kWarp;
  const int64_t row =
      static_cast<int64_t>(blockIdx.x) * kSoftmaxRowsPerBlock + threadIdx.x / kWarp;
  if (row >= rows) return;  // whole warps only: the shuffles below see full warps
  const int64_t i = row % T;
  const int64_t width = (i / chunk + 1) * chunk < T ? (i / chunk + 1) * chunk : T;
  float* srow = s + row * T;
  bf16* prow = reinterpret_cast<bf16*>(srow);
  const int64_t first = window > 0 ? (i - window + 1 > 0 ? i - window + 1 : 0) : 0;

  float mx = -INFINITY;
  for (int64_t j = first + lane; j <= i; j += kWarp) {
    const float c = SoftcapDev(srow[j], softcap);
    mx = c > mx ? c : mx;
  }
  mx = WarpMaxF(mx);
  double sum = 0.0;
  for (int64_t j = first + lane; j <= i; j += kWarp) {
    sum += static_cast<double>(FastExpDev(__fsub_rn(SoftcapDev(srow[j], softcap), mx)));
  }
  sum = WarpSumD(sum);
  const float inv = __fdiv_rn(1.0f, static_cast<float>(sum));

  for (int64_t base = 0; base < width; base += kWarp) {
    const int64_t j = base + lane;
    float p = 0.0f;
    if (j >= first && j <= i) {
      p = __fmul_rn(FastExpDev(__fsub_rn(SoftcapDev(srow[j], softcap), mx)), inv);
    }
    __syncwarp();  // all reads of this chunk before any write of it
    if (j < width) prow[j] = __float2bfloat16_rn(p);
  }
}

// kx[h] = k[h / G], vx[h] = v[h / G] for the H = Hkv * G query heads; `per_head` elements of
// type V per head (V = uint4: 8 bf16 at once when the sizes and pointers allow).
template <typename V>
__global__ void ExpandKvKernel(const V* __restrict__ k, const V* __restrict__ v, int64_t per_head,
                               int G, int64_t total, V* __restrict__ kx, V* __restrict__ vx) {
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = idx / per_head;
    const int64_t src = (h / G) * per_head + idx % per_head;
    kx[idx] = k[src];
    vx[idx] = v[src];
  }
}

cudaError_t LaunchExpandKv(const bf16* k, const bf16* v, int64_t T, int H, int Hkv, int hd,
                           bf16* kx, bf16* vx, cudaStream_t stream) {
  const int G = H / Hkv;
  const int64_t per_head = T * hd;
  const int threads = 256;
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (per_head % 8 == 0 && aligned(k) && aligned(v) && aligned(kx) && aligned(vx)) {
    const int64_t total = per_head / 8 * H;
    const auto blocks =
        static_cast<unsigned>(std::min<int64_t>((total + threads - 1) / threads, 65536));
    ExpandKvKernel<uint4><<<blocks, threads, 0, stream>>>(
        reinterpret_cast<const uint4*>(k), reinterpret_cast<const uint4*>(v), per_head / 8, G,
        total, reinterpret_cast<uint4*>(kx), reinterpret_cast<uint4*>(vx));
  } else {
    const int64_t total = per_head * H;
    const auto blocks =
        static_cast<unsigned>(std::min<int64_t>((total + threads - 1) / threads, 65536));
    ExpandKvKernel<bf16><<<blocks, threads, 0, stream>>>(k, v, per_head, G, total, kx, vx);
  }
  return cudaGetLastError();
}

// The composite's f32 score matrix above which RunAttention takes the fused kernel instead
// (H * T^2 * 4 bytes: 512 MiB at T = 2048 with 32 heads, 2 GiB at T = 4096).
constexpr int64_t kMaxCompositeScoreBytes = int64_t{1} << 30;

// Workspace layout: f32 scores [H, T, T] (the bf16 probabilities in place), then, when
// G > 1, the expanded kx and vx [H, T, hd] bf16, each at a 256-byte aligned offset.
int64_t AlignUp(int64_t bytes) { return (bytes + 255) / 256 * 256; }
int64_t ScoreBytes(int64_t T, int H) {
  return AlignUp(static_cast<int64_t>(H) * T * T * static_cast<int64_t>(sizeof(float)));
}
int64_t ExpandedBytes(int64_t T, int H, int hd) {
  return AlignUp(static_cast<int64_t>(H) * T * hd * static_cast<int64_t>(sizeof(bf16)));
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

bool UseFusedAttention(int64_t max_T, int H, int head_dim) {
  // Read on every call (cheap next to an attention) so that tests can switch it.
  const char* e = std::getenv("IMPQ_GPU_ATTENTION");
  const int mode = e == nullptr                   ? 0   // by workspace size
                   : std::strcmp(e, "fused") == 0  ? 1   // always fused
                   : std::strcmp(e, "cublas") == 0 ? 2   // never
                                                   : 0;
  if (!FusedAttentionSupports(head_dim) || mode == 2) return false;
  return mode == 1 || ScoreBytes(max_T, H) > kMaxCompositeScoreBytes;
}

int64_t CompositeWorkspaceBytes(int64_t T, int H, int Hkv, int head_dim) {
  const int64_t scores = ScoreBytes(T, H);
  return Hkv == H ? scores : scores + 2 * ExpandedBytes(T, H, head_dim);
}

int64_t AttentionWorkspaceBytes(int64_t max_T, int H, int Hkv, int head_dim) {
  // The fused kernel keeps nothing of size T^2.
  return UseFusedAttention(max_T, H, head_dim) ? 256
                                               : CompositeWorkspaceBytes(max_T, H, Hkv, head_dim);
}

std::string RunAttention(cublasHandle_t handle, const bf16* q, const bf16* k, const bf16* v,
                         int64_t T, int H, int Hkv, int head_dim, float scale, float softcap,
                         int window, void* workspace, int64_t workspace_bytes, bf16* out,
                         cudaStream_t stream, OpProfile* profile) {
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
  const bool composite_fits = workspace_bytes >= CompositeWorkspaceBytes(T, H, Hkv, head_dim);
  if (UseFusedAttention(T, H, head_dim) || (!composite_fits && FusedAttentionSupports(head_dim))) {
    ProfiledOp t(profile, "attention: fused", stream);
    const cudaError_t e = LaunchFusedAttention(q, k, v, T, H, Hkv, head_dim, scale, softcap,
                                               window, out, stream);
    return e == cudaSuccess ? std::string()
                            : std::string("fused attention: ") + cudaGetErrorString(e);
  }
  if (!composite_fits) {
    return "RunAttention: workspace of " + std::to_string(workspace_bytes) +
           " bytes is smaller than the " +
           std::to_string(CompositeWorkspaceBytes(T, H, Hkv, head_dim)) +
           " the composite needs at T = " + std::to_string(T);
  }
  float* scores = static_cast<float*>(workspace);
  const bf16* probs = reinterpret_cast<const bf16*>(workspace);
  const int64_t chunk = AttentionChunkRows(T);

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
  // 0. GQA: repeat each kv head for its G query heads, so that every product below is one
  //    strided batch over the H query heads.
  const bf16* kx = k;
  const bf16* vx = v;
  if (error.empty() && G > 1) {
    ProfiledOp t(profile, "attention: kv expansion", stream);
    char* base = static_cast<char*>(workspace) + ScoreBytes(T, H);
    bf16* kxw = reinterpret_cast<bf16*>(base);
    bf16* vxw = reinterpret_cast<bf16*>(base + ExpandedBytes(T, H, head_dim));
    const cudaError_t e = LaunchExpandKv(k, v, T, H, Hkv, head_dim, kxw, vxw, stream);
    if (e != cudaSuccess) error = std::string("attention kv expansion: ") + cudaGetErrorString(e);
    kx = kxw;
    vx = vxw;
  }
  // 1. Scores of each query chunk [c0, c1) against keys [0, c1) (gemm_plan.h).
  for (int64_t c0 = 0; c0 < T && error.empty(); c0 += chunk) {
    ProfiledOp t(profile, "attention: q.k^T", stream);
    const int64_t c1 = std::min(T, c0 + chunk);
    st = Issue(handle, PlanAttentionScores(T, H, head_dim, scale, c0, c1), kx, q, scores,
               CUDA_R_32F);
    if (st != CUBLAS_STATUS_SUCCESS) {
      error = std::string("attention q.k^T cublasGemmStridedBatchedEx: ") + CublasStatusName(st);
    }
  }
  // 2. Softmax of every row h*T + i, probabilities in place (bf16, row stride 2T) up to the
  //    end of the row's chunk.
  if (error.empty()) {
    ProfiledOp t(profile, "attention: softmax", stream);
    const int64_t rows = static_cast<int64_t>(H) * T;
    const auto blocks =
        static_cast<unsigned>((rows + kSoftmaxRowsPerBlock - 1) / kSoftmaxRowsPerBlock);
    const int threads = kSoftmaxRowsPerBlock * kWarp;
    AttentionSoftmaxKernel<<<blocks, threads, 0, stream>>>(scores, rows, T, chunk, softcap,
                                                           window);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
      error = std::string("attention softmax launch: ") + cudaGetErrorString(e);
    }
  }
  // 3. out[i, h*hd + d] = sum_{j < c1} P[h*T + i, j] * vx_h[j, d] per query chunk, written
  //    straight into the [T, H*hd] bf16 output. Masked probabilities are exact zeros.
  for (int64_t c0 = 0; c0 < T && error.empty(); c0 += chunk) {
    ProfiledOp t(profile, "attention: p.v", stream);
    const int64_t c1 = std::min(T, c0 + chunk);
    st = Issue(handle, PlanAttentionPv(T, H, head_dim, c0, c1), vx, probs, out, CUDA_R_16BF);
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
