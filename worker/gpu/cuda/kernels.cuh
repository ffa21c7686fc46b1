// Device-side building blocks of the CUDA plugin: kernels, the bf16 GEMM and the attention
// composite. Everything runs asynchronously on the given stream and operates on DEVICE
// pointers; a launcher returns the launch's cudaError_t (cudaGetLastError) or the cuBLAS
// status mapped by the caller. Plugin-internal (never included by host code of impq).
//
// Numerics (the contract the CPU references in worker/gpu/gpu_reference.h reproduce):
//   - residual stream, norms, rotary, softmax, NLL in f32;
//   - every GEMM operand is bf16 (round-to-nearest-even from f32), accumulation f32;
//   - attention probabilities are rounded to bf16 before the P.V product;
//   - the f32 expressions mirror the CPU engine's operation for operation with separately
//     rounded operations (no FMA contraction), exponentials are forward::FastExp bit for bit,
//     and the reductions (RMSNorm's sum of squares, softmax denominators, log-sum-exp)
//     accumulate in double, so that apart from cuBLAS's f32 accumulation and CUDA's tanhf
//     (soft-caps, GeGLU) a kernel differs from its reference only by the summation order of
//     a double sum (kernels.cu, gpu_kernels_test.cc derive the tolerances).
#ifndef IMPQ_WORKER_GPU_CUDA_KERNELS_CUH_
#define IMPQ_WORKER_GPU_CUDA_KERNELS_CUH_

#include <cstdint>
#include <string>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace impq::gpu {

struct OpProfile;  // profile.cuh

using bf16 = __nv_bfloat16;

// ---- quantization (worker/quant/block_format.h layout) ----
// RTN at `bits` with group `group`: bit-identical to quant::RtnQuantizer (codes, scales,
// zeros), including ragged last groups, zero and constant groups.
cudaError_t LaunchRtnQuantize(int bits, int64_t rows, int64_t cols, int64_t group,
                              const float* w, uint8_t* packed, float* scales, float* zeros,
                              cudaStream_t stream);
cudaError_t LaunchPack(int bits, int64_t rows, int64_t cols, const uint8_t* codes,
                       uint8_t* packed, cudaStream_t stream);
cudaError_t LaunchUnpack(int bits, int64_t rows, int64_t cols, const uint8_t* packed,
                         uint8_t* codes, cudaStream_t stream);
// Either output may be null.
cudaError_t LaunchDequantize(int bits, int64_t rows, int64_t cols, int64_t group,
                             const uint8_t* packed, const float* scales, const float* zeros,
                             float* out_f32, bf16* out_bf16, cudaStream_t stream);
cudaError_t LaunchF32ToBf16(const float* in, bf16* out, int64_t n, cudaStream_t stream);

// ---- forward pieces; rows = tokens of all sequences of a batch, concatenated ----
// x[r] = table[tokens[r]] * scale (f32). REQUIRES: every token in [0, vocab) (not checked on
// the device: an out-of-range token is an illegal memory access).
cudaError_t LaunchEmbed(const float* table, int dim, const int32_t* tokens, int64_t rows,
                        float scale, float* x, cudaStream_t stream);
// Per row: out = x * rsqrt(mean(x^2) + eps) * mult. Either output may be null; out_f32 may
// alias x (in place).
cudaError_t LaunchRmsNorm(const float* x, int64_t rows, int dim, const float* mult, float eps,
                          float* out_f32, bf16* out_bf16, cudaStream_t stream);
// Gemma-2 post-norm: x[r] += rmsnorm(in[r]) * mult.
cudaError_t LaunchRmsNormAdd(const float* in, int64_t rows, int dim, const float* mult,
                             float eps, float* x, cudaStream_t stream);
// Attention input of ONE sequence (T rows of [heads * head_dim] f32): optional per-head
// RMSNorm (head_mult != null), rotary at positions 0..T-1 from cos/sin [>=T, head_dim/2],
// written head-major [heads, T, head_dim] as bf16. rope_style: IMPQ_GPU_ROPE_*.
cudaError_t LaunchRope(const float* x, int64_t T, int heads, int head_dim,
                       const float* head_mult, float eps, const float* cos, const float* sin,
                       int rope_style, bf16* out, cudaStream_t stream);
// [T, heads*head_dim] f32 -> [heads, T, head_dim] bf16 (the V operand).
cudaError_t LaunchToHeadMajor(const float* x, int64_t T, int heads, int head_dim, bf16* out,
                              cudaStream_t stream);
// out[i] = act(gate[i]) * up[i] as bf16; activation: IMPQ_GPU_ACT_*.
cudaError_t LaunchGlu(const float* gate, const float* up, int64_t n, int activation, bf16* out,
                      cudaStream_t stream);
// nll[r] = logsumexp(c(logits[r])) - c(logits[r][targets[r]]), c(z) = cap*tanh(z/cap) when
// softcap > 0. logits [rows, vocab] f32. A target outside [0, vocab) gives NaN.
cudaError_t LaunchNll(const float* logits, int64_t rows, int vocab, const int32_t* targets,
                      float softcap, float* nll, cudaStream_t stream);

// ---- cuBLAS composites ----
// y[rows, out] = x[rows, in] . w[out, in]^T + beta * y, bf16 operands, f32 accumulate and
// output (cublasGemmEx, CUBLAS_COMPUTE_32F). The handle must be bound to `stream`.
cublasStatus_t GemmBf16(cublasHandle_t handle, const bf16* x, int64_t rows, int64_t in,
                        const bf16* w, int64_t out, float beta, float* y);

// The fused tensor-core attention (fused_attention.cu): same contract as RunAttention, no
// workspace; for head_dim in {16, 32, 64, 128, 256} and 16-byte aligned q, k, v.
bool FusedAttentionSupports(int head_dim);
cudaError_t LaunchFusedAttention(const bf16* q, const bf16* k, const bf16* v, int64_t T, int H,
                                 int Hkv, int head_dim, float scale, float softcap, int window,
                                 bf16* out, cudaStream_t stream);
// Which attention RunAttention runs for sequences of up to max_T tokens: the cuBLAS composite
// while its f32 score matrix (H * T^2 * 4 bytes) stays within 1 GiB (measured faster on an
// H100 at T = 2048, see README), else the fused kernel where it supports head_dim.
// $IMPQ_GPU_ATTENTION=fused / =cublas forces one (read at every call).
bool UseFusedAttention(int64_t max_T, int H, int head_dim);

// Scratch the attention of a sequence of up to max_T tokens needs (bytes): the f32 scores
// [H, T, T] and, for grouped-query attention (Hkv < H), k and v repeated per query head.
int64_t AttentionWorkspaceBytes(int64_t max_T, int H, int Hkv, int head_dim);
// Causal GQA attention of ONE sequence: q [H, T, hd], k and v [Hkv, T, hd] (bf16),
// out [T, H*hd] bf16. scores = scale * q.k^T (bf16 GEMM, f32 out), softcap (0 = off),
// causal mask, sliding window (0 = off: key j visible from query i iff j <= i and, with a
// window w, i - w < j), f32 softmax, probabilities rounded to bf16, times v (f32 acc).
// Two implementations with this contract (UseFusedAttention picks): the cuBLAS composite
// (attention.cu: f32 scores [H, T, T] in `workspace`, the bf16 probabilities written in place
// over them, queries in chunks (gemm_plan.h, AttentionChunkRows) so that the upper triangle
// is mostly skipped) and the fused tensor-core kernel (fused_attention.cu, no workspace).
// `workspace` holds workspace_bytes >= AttentionWorkspaceBytes(T, H, Hkv, head_dim) bytes; a
// smaller one selects the fused kernel where it applies, else is an error. The GEMMs run on
// the handle bound to `stream`: if the handle is bound to another stream, RunAttention
// rebinds it for its calls and restores it afterwards (note: cublasSetStream resets a cublasSetWorkspace workspace,
// so bind the handle to `stream` beforehand to keep one). It also adds
// CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION to the handle's math mode for its calls
// (restored after), so that the bf16-output P.V products reduce in f32. Returns "" on
// success, else the failing call and its error string.
std::string RunAttention(cublasHandle_t handle, const bf16* q, const bf16* k, const bf16* v,
                         int64_t T, int H, int Hkv, int head_dim, float scale, float softcap,
                         int window, void* workspace, int64_t workspace_bytes, bf16* out,
                         cudaStream_t stream, OpProfile* profile = nullptr);

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_KERNELS_CUH_
