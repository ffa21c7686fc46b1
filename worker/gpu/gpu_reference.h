// Scalar CPU references of the CUDA plugin's kernels (one per kernel_* entry point of
// gpu_api.h, plus the pieces the model pass composes) and the host-side bf16 helpers.
//
// Each reference computes what its kernel is specified to compute (cuda/kernels.cuh,
// "Numerics") with the CPU's OWN code where the CPU has it, so that "GPU == reference" also
// means "GPU == the CPU engine up to the bf16 roundings":
//   - RTN is quant::RtnQuantizer itself (bit for bit), dequantization is block_format.h's
//     impq_dequantize_value;
//   - RMSNorm is forward::RmsNormRow (double sum of squares, float scaling), the head norm and
//     rotary are forward::RmsNormRow + forward::RopeHead on the CPU's rope tables;
//   - SwiGLU / GeGLU are forward::SiluMul / forward::GeluTanhMul, the NLL is the evaluator's
//     forward::LogSumExp(row) - row[target] on soft-capped rows (forward::SoftcapRow);
//   - softmax is LlamaForward's: max, forward::FastExp(s - max), 1/sum, p = e * (1/sum), with
//     the sum taken in double (the GPU sums in f32: a tolerance, see gpu_kernels_test.cc);
//   - products (GEMM, q.k, p.v) accumulate in double and are rounded to f32 once.
// Where a kernel ends in bf16, the reference can also return the f32 value BEFORE that
// rounding (out_f32), so tests can compare with the CPU engine with bf16 switched off.
//
// Signatures mirror the plugin's C ABI (host pointers, the same argument order); buffers are
// row-major and sized as gpu_api.h says. REQUIRES (not checked): the kernel's documented
// preconditions (valid sizes, tokens/targets in range, bits in {2, 3, 4, 8}). Plain functions,
// thread-safe, deterministic.
#ifndef IMPQ_WORKER_GPU_GPU_REFERENCE_H_
#define IMPQ_WORKER_GPU_GPU_REFERENCE_H_

#include <cstdint>

#include "absl/status/status.h"

namespace impq::gpu {

// ---- bf16 (bfloat16: 1 sign, 8 exponent, 7 mantissa bits; the top half of a binary32) ----

// Round-to-nearest-even of a float to bf16 bits, exactly as CUDA's __float2bfloat16_rn:
// ties to even, subnormals rounded (not flushed), values beyond the largest bf16 (after
// rounding) become +-inf, +-inf stay, and every NaN becomes the canonical quiet NaN 0x7FFF.
uint16_t F32ToBf16Bits(float x);
// Exact widening (bits << 16).
float Bf16BitsToF32(uint16_t b);
// Bf16BitsToF32(F32ToBf16Bits(x)).
float RoundBf16(float x);

// ---- quantization (worker/quant/block_format.h layout) ----

// kernel_rtn_quantize: quant::RtnQuantizer at `bits`, group `group`. packed holds
// rows * ceil(cols*bits/8) bytes, scales/zeros rows * ceil(cols/group) floats.
// InvalidArgument exactly when RtnQuantizer rejects the input (bad shape, non-finite weight).
absl::Status RtnQuantizeRef(int bits, int64_t rows, int64_t cols, int64_t group,
                            const float* w, uint8_t* packed, float* scales, float* zeros);
// kernel_pack / kernel_unpack: one code per byte <-> packed rows (zero padding bits).
// Pack REQUIRES every code < 2^bits.
void PackRef(int bits, int64_t rows, int64_t cols, const uint8_t* codes, uint8_t* packed);
void UnpackRef(int bits, int64_t rows, int64_t cols, const uint8_t* packed, uint8_t* codes);
// kernel_dequantize: out = impq_dequantize_value(code, scale, zero); out_bf16 its bf16 bits.
// Either output may be null.
void DequantizeRef(int bits, int64_t rows, int64_t cols, int64_t group, const uint8_t* packed,
                   const float* scales, const float* zeros, float* out_f32, uint16_t* out_bf16);

// ---- forward pieces ----

// kernel_embed: out[r] = table[tokens[r]] * scale (float multiply; scale 1 copies exactly).
void EmbedRef(const float* table, int64_t vocab, int dim, const int32_t* tokens, int64_t rows,
              float scale, float* out);
// kernel_rmsnorm: per row forward::RmsNormRow(x, mult, eps). Either output may be null.
void RmsNormRef(const float* x, int64_t rows, int dim, const float* mult, float eps,
                float* out_f32, uint16_t* out_bf16);
// Gemma-2 post-norm (LaunchRmsNormAdd): x[r] += forward::RmsNormRow(in[r], mult, eps).
void RmsNormAddRef(const float* in, int64_t rows, int dim, const float* mult, float eps,
                   float* x);
// kernel_rope for ONE sequence of T rows ([T, heads*head_dim] f32): per head, optional
// forward::RmsNormRow with head_mult (Qwen-3; null = none), then forward::RopeHead at position
// t with cos/sin rows t of the CPU's tables ([>= T, head_dim/2]); written head-major
// [heads, T, head_dim]. rope_style: IMPQ_GPU_ROPE_*. Either output may be null.
void RopeRef(const float* x, int64_t T, int heads, int head_dim, const float* head_mult,
             float eps, const float* cos, const float* sin, int rope_style, float* out_f32,
             uint16_t* out_bf16);
// [T, heads*head_dim] -> [heads, T, head_dim] (LaunchToHeadMajor). Either output may be null.
void ToHeadMajorRef(const float* x, int64_t T, int heads, int head_dim, float* out_f32,
                    uint16_t* out_bf16);
// kernel_glu: forward::SiluMul (IMPQ_GPU_ACT_SILU) or forward::GeluTanhMul
// (IMPQ_GPU_ACT_GELU_TANH) of gate and up. Either output may be null.
void GluRef(const float* gate, const float* up, int64_t n, int activation, float* out_f32,
            uint16_t* out_bf16);
// kernel_gemm: y[r, o] = f32(sum_i x[r, i] * w[o, i] in double) (+ beta * y[r, o] when
// beta != 0; with beta == 0 the old y is NOT read, as cuBLAS). x, w bf16 bits.
void GemmRef(const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w, int64_t out,
             float beta, float* y);
// The same on f32 operands (for composing references with the bf16 roundings switched off).
void GemmRefF32(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                float beta, float* y);
// kernel_attention on f32 operands (the bf16 ones widened, or any floats): causal GQA over
// ONE sequence, q [H, T, hd], k/v [Hkv, T, hd]; query head h reads kv head h / (H / Hkv).
// For query i, key j is visible iff j <= i and (window == 0 or i - window < j). Per visible
// key: s = f32(scale * q.k (double)); with softcap > 0, s = softcap * tanh(s / softcap)
// (forward::SoftcapRow); then m = max s, e = forward::FastExp(s - m), S = sum e (double),
// inv = 1.0f / f32(S), p = e * inv, rounded to bf16 when round_probs; out[i, h*hd + d] =
// f32(sum_j p_j v[j, d] (double)); out_bf16 its bf16 bits. Either output may be null.
void AttentionRefF32(const float* q, const float* k, const float* v, int64_t T, int H, int Hkv,
                     int head_dim, float scale, float softcap, int window, bool round_probs,
                     float* out_f32, uint16_t* out_bf16);
// kernel_attention itself: bf16 q/k/v, probabilities rounded to bf16, bf16 output.
void AttentionRef(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t T, int H,
                  int Hkv, int head_dim, float scale, float softcap, int window,
                  uint16_t* out_bf16);
// kernel_nll: nll[r] = f32(forward::LogSumExp(c(row)) - c(row)[target]) with
// c = forward::SoftcapRow when softcap > 0, identity otherwise (the evaluator's formula).
void NllRef(const float* logits, int64_t rows, int vocab, const int32_t* targets,
            float softcap, float* nll);

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_GPU_REFERENCE_H_
