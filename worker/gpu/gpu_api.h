/* The C ABI between impq and its CUDA plugin (libimpq_cuda.so, a dlopen()ed MODULE).
 *
 * Why a plugin: cuBLAS adds ~110 KiB of static TLS, which breaks prometheus-cpp's civetweb
 * threads in any process that links it (../shared/TOOLCHAIN.md, pitfall 3). impq therefore
 * never links CUDA: worker/gpu/gpu_runtime.cc dlopen()s the plugin, calls
 * impq_gpu_get_api(), checks `version`, and wraps every entry point into absl::Status.
 *
 * Conventions for every entry point:
 *   - returns IMPQ_GPU_OK (0) on success, else one of the IMPQ_GPU_E* codes with a message in
 *     err->message that names the argument or the CUDA/cuBLAS call and its error string;
 *   - pointers marked "host" are host memory; the plugin copies in and out itself;
 *   - a call never leaves the device in a state where the next call fails because of it
 *     (sticky CUDA errors are reported as IMPQ_GPU_EDEVICE and the device is then unusable:
 *     the worker reports itself not serving).
 *
 * Two groups of entry points:
 *   1. kernel_*: run ONE kernel (or one composite: GEMM, attention) on host buffers. Used by
 *      tests/benchmarks to compare each GPU kernel against the CPU reference.
 *   2. model_*: a resident model (the 2-, 3-, 4- and 8-bit variants a job needs of every linear
 *      module dequantized to bf16 and kept on the device, so an assignment change swaps
 *      pointers), an evaluation set uploaded once, and evaluate() with prefix reuse along
 *      permutation walks.
 *
 * Versions. The table only grows at its end, so a host accepts a plugin of any version from
 * IMPQ_GPU_API_MIN_VERSION to IMPQ_GPU_API_VERSION and reads only the entry points that
 * version has (gpu_runtime.cc copies the older table's prefix):
 *   1  2- and 4-bit weights only (bits 3 and 8 refused with IMPQ_GPU_EINVAL);
 *   2  every width of worker/quant/block_format.h (2, 3, 4, 8): IMPQ_GPU_VARIANT_3BIT/_8BIT,
 *      bits 3 and 8 in every kernel_* and model_set_linear_packed, and
 *      model_set_linear_rtn_widths.
 *
 * Plain C: compiled by g++ (host) and nvcc (plugin). */
#ifndef IMPQ_WORKER_GPU_GPU_API_H_
#define IMPQ_WORKER_GPU_GPU_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IMPQ_GPU_API_VERSION 2
/* The oldest plugin version a host of this version still loads (see "Versions"). */
#define IMPQ_GPU_API_MIN_VERSION 1

#define IMPQ_GPU_OK 0
#define IMPQ_GPU_EINVAL 1       /* bad argument (absl InvalidArgument) */
#define IMPQ_GPU_ENOMEM 2       /* device memory exhausted (ResourceExhausted) */
#define IMPQ_GPU_EDEVICE 3      /* CUDA / cuBLAS failure (Internal); device unusable if sticky */
#define IMPQ_GPU_ENODEVICE 4    /* no usable device / driver (Unavailable) */

typedef struct ImpqGpuError {
  char message[1024];
} ImpqGpuError;

typedef struct ImpqGpuDeviceInfo {
  char name[256];
  int device;               /* CUDA ordinal */
  int cc_major, cc_minor;   /* compute capability */
  int sm_count;
  int64_t total_bytes;      /* device memory */
  int64_t free_bytes;       /* free at probe time */
  int driver_version, runtime_version;  /* cudaDriverGetVersion / cudaRuntimeGetVersion */
} ImpqGpuDeviceInfo;

/* Rotary embedding pairing (= model::RopeStyle). */
#define IMPQ_GPU_ROPE_INTERLEAVED 0 /* (x[2i], x[2i+1]) */
#define IMPQ_GPU_ROPE_HALF 1        /* (x[i], x[i + head_dim/2]) */
/* Gated feed-forward activation (= model::FfnActivation). */
#define IMPQ_GPU_ACT_SILU 0
#define IMPQ_GPU_ACT_GELU_TANH 1
/* Variants of a linear module kept on the device (the coalition picks one per module). The
 * values of version 1 keep their numbers; 3 and 8 bits (version 2) come after them. */
#define IMPQ_GPU_VARIANT_2BIT 0
#define IMPQ_GPU_VARIANT_4BIT 1
#define IMPQ_GPU_VARIANT_FULL 2 /* the unquantized weights, bf16 */
#define IMPQ_GPU_VARIANT_3BIT 3 /* version >= 2 */
#define IMPQ_GPU_VARIANT_8BIT 4 /* version >= 2 */
#define IMPQ_GPU_NUM_VARIANTS 5

/* The variant holding a module quantized at `bits` (2, 3, 4 or 8), -1 for any other value. */
static inline int impq_gpu_variant_of_bits(int bits) {
  switch (bits) {
    case 2:
      return IMPQ_GPU_VARIANT_2BIT;
    case 3:
      return IMPQ_GPU_VARIANT_3BIT;
    case 4:
      return IMPQ_GPU_VARIANT_4BIT;
    case 8:
      return IMPQ_GPU_VARIANT_8BIT;
    default:
      return -1;
  }
}

/* Bit b set: width b (model_set_linear_rtn_widths). */
#define IMPQ_GPU_WIDTH_MASK(b) (1u << (b))

/* Per-layer norm multipliers (host, float32), already including Gemma's (offset + w): the
 * same arrays LlamaForward multiplies by. Null where the architecture has no such norm. */
typedef struct ImpqGpuLayerNorms {
  const float* attn;       /* [dim] */
  const float* ffn;        /* [dim] */
  const float* q;          /* [head_dim], qk_norm only */
  const float* k;          /* [head_dim], qk_norm only */
  const float* post_attn;  /* [dim], post_norms only */
  const float* post_ffn;   /* [dim], post_norms only */
} ImpqGpuLayerNorms;

/* Everything but the linear modules. Host pointers; copied by model_create. */
typedef struct ImpqGpuModelDesc {
  int dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len;
  float norm_eps;
  int rope_style;            /* IMPQ_GPU_ROPE_* */
  const float* rope_cos;     /* [seq_len, head_dim/2]: the CPU's own tables (forward/rope.h) */
  const float* rope_sin;     /* [seq_len, head_dim/2] */
  int qk_norm;               /* Qwen-3 */
  int post_norms;            /* Gemma-2 */
  float embed_scale;         /* 1, or float32(sqrt(dim)) for Gemma-2 */
  int ffn_activation;        /* IMPQ_GPU_ACT_* */
  float attn_scale;          /* ModelConfig::AttentionScale() */
  float attn_logit_softcap;  /* 0 = off */
  float final_logit_softcap; /* 0 = off */
  int sliding_window;        /* 0 = off; applies to even layers (ModelConfig) */
  const float* embedding;    /* [vocab, dim] */
  const float* output;       /* [vocab, dim]; may equal embedding (tied) */
  const float* final_norm;   /* [dim] multiplier */
  const ImpqGpuLayerNorms* layers; /* [n_layers] */
} ImpqGpuModelDesc;

typedef struct ImpqGpuModel ImpqGpuModel; /* opaque */

typedef struct ImpqGpuEvalStats {
  int64_t block_evals_done;  /* decoder blocks run x sequences, since model_set_eval */
  int64_t block_evals_full;  /* what full evaluations would have run */
  int64_t cache_bytes;       /* device bytes of the prefix cache */
  int64_t cached_sequences;
  int64_t resident_bytes;    /* device bytes of weights (all variants) */
} ImpqGpuEvalStats;

typedef struct ImpqGpuApi {
  int version; /* IMPQ_GPU_API_VERSION */

  /* ---- device ---- */
  /* Number of usable devices (0 with no driver: never an error for "no GPU"; err->message
   * then says why, e.g. the cudaGetDeviceCount error). */
  int (*device_count)(int* count, ImpqGpuError* err);
  int (*device_info)(int device, ImpqGpuDeviceInfo* info, ImpqGpuError* err);

  /* ---- 1. single kernels on host buffers (tests, benchmarks) ---- */
  /* Every entry point with `bits` takes 2, 3, 4 or 8: the widths of block_format.h (a
   * version-1 plugin takes 2 or 4 and refuses 3 and 8 with IMPQ_GPU_EINVAL naming the
   * value). */
  /* RTN quantization, the CPU's RtnQuantizer bit for bit: codes packed per block_format.h,
   * scales/zeros [rows][groups]. */
  int (*kernel_rtn_quantize)(int device, int bits, int64_t rows, int64_t cols, int64_t group,
                             const float* w, uint8_t* packed, float* scales, float* zeros,
                             ImpqGpuError* err);
  /* One code per byte <-> packed rows (block_format.h layout, zero padding bits). */
  int (*kernel_pack)(int device, int bits, int64_t rows, int64_t cols, const uint8_t* codes,
                     uint8_t* packed, ImpqGpuError* err);
  int (*kernel_unpack)(int device, int bits, int64_t rows, int64_t cols, const uint8_t* packed,
                       uint8_t* codes, ImpqGpuError* err);
  /* Dequantize to f32 and/or bf16 (as raw uint16 bits); either output may be null. */
  int (*kernel_dequantize)(int device, int bits, int64_t rows, int64_t cols, int64_t group,
                           const uint8_t* packed, const float* scales, const float* zeros,
                           float* out_f32, uint16_t* out_bf16, ImpqGpuError* err);
  /* out[r] = table[tokens[r]] * scale. */
  int (*kernel_embed)(int device, const float* table, int64_t vocab, int dim,
                      const int32_t* tokens, int64_t rows, float scale, float* out,
                      ImpqGpuError* err);
  /* out = x / sqrt(mean(x^2) + eps) * mult, per row; f32 and/or bf16 output. */
  int (*kernel_rmsnorm)(int device, const float* x, int64_t rows, int dim, const float* mult,
                        float eps, float* out_f32, uint16_t* out_bf16, ImpqGpuError* err);
  /* Attention input preparation for ONE sequence of T rows: optional per-head RMSNorm
   * (head_mult non-null: Qwen-3 q/k norm), rotary embedding at positions 0..T-1, transpose
   * [T, heads*head_dim] -> [heads, T, head_dim], bf16 output. */
  int (*kernel_rope)(int device, const float* x, int64_t T, int heads, int head_dim,
                     const float* head_mult, float eps, const float* cos, const float* sin,
                     int rope_style, uint16_t* out_bf16, ImpqGpuError* err);
  /* Causal GQA attention of ONE sequence: q [H, T, hd], k/v [Hkv, T, hd] (bf16 bits),
   * scores = scale * q.k (f32), optional softcap, optional sliding window (0 = off),
   * softmax, probabilities rounded to bf16, times v; out [T, H*hd] bf16 bits. */
  int (*kernel_attention)(int device, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                          int64_t T, int H, int Hkv, int head_dim, float scale, float softcap,
                          int window, uint16_t* out_bf16, ImpqGpuError* err);
  /* out = act(gate) * up, bf16 bits. */
  int (*kernel_glu)(int device, const float* gate, const float* up, int64_t n, int activation,
                    uint16_t* out_bf16, ImpqGpuError* err);
  /* Y[rows, out] (f32) = X[rows, in] . W[out, in]^T, both bf16 bits, f32 accumulation
   * (cuBLAS), plus beta * Y. */
  int (*kernel_gemm)(int device, const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w,
                     int64_t out, float beta, float* y, ImpqGpuError* err);
  /* nll[r] = logsumexp(c(logits[r])) - c(logits[r][target[r]]), c = softcap (0 = identity). */
  int (*kernel_nll)(int device, const float* logits, int64_t rows, int vocab,
                    const int32_t* targets, float softcap, float* nll, ImpqGpuError* err);
  /* cuBLAS bf16 GEMM throughput (TFLOP/s) of [m,k] x [k,n] with f32 accumulation, median of
   * `iters` timed runs after warm-up (the peak the benchmarks compare against). */
  int (*bench_gemm_tflops)(int device, int64_t m, int64_t n, int64_t k, int iters,
                           double* tflops, ImpqGpuError* err);

  /* ---- 2. resident model ---- */
  int (*model_create)(int device, const ImpqGpuModelDesc* desc, ImpqGpuModel** out,
                      ImpqGpuError* err);
  void (*model_destroy)(ImpqGpuModel* model);
  /* The variant impq_gpu_variant_of_bits(bits) of linear module (layer, kind =
   * model::LinearKind) from packed codes (bits 2, 3, 4 or 8 — 2 or 4 in version 1 —
   * dequantized on the device to bf16 and kept), or from f32 weights (IMPQ_GPU_VARIANT_FULL:
   * rounded to bf16). Host pointers. */
  int (*model_set_linear_packed)(ImpqGpuModel* model, int layer, int kind, int bits,
                                 int64_t group, const uint8_t* packed, const float* scales,
                                 const float* zeros, ImpqGpuError* err);
  int (*model_set_linear_f32)(ImpqGpuModel* model, int layer, int kind, const float* w,
                              ImpqGpuError* err);
  /* Quantizes f32 weights with RTN on the device at 2 AND 4 bits (group `group`) and keeps
   * both dequantized variants (and the full one when keep_full != 0). For large synthetic
   * models (benchmarks) where host quantization would dominate. Equals
   * model_set_linear_rtn_widths with IMPQ_GPU_WIDTH_MASK(2) | IMPQ_GPU_WIDTH_MASK(4). */
  int (*model_set_linear_rtn)(ImpqGpuModel* model, int layer, int kind, const float* w,
                              int64_t group, int keep_full, ImpqGpuError* err);
  /* The evaluation set: n_seqs sequences, sequence s = tokens[offsets[s] .. offsets[s+1]),
   * rows p in [score_begin[s], len - 1) scored (row p predicts token p + 1). Replaces any
   * previous set and clears the prefix cache. max_cache_bytes caps the prefix cache (0 =
   * no reuse). */
  int (*model_set_eval)(ImpqGpuModel* model, const int32_t* tokens, const int64_t* offsets,
                        int64_t n_seqs, const int64_t* score_begin, int64_t max_cache_bytes,
                        ImpqGpuError* err);
  /* Loss of one assignment: variants[layer * 7 + kind] in IMPQ_GPU_VARIANT_*. Writes each
   * sequence's NLL sum (f64) into seq_nll[n_seqs]; restarts at the first block whose variants
   * differ from the previous call's (prefix reuse). */
  int (*model_evaluate)(ImpqGpuModel* model, const uint8_t* variants, double* seq_nll,
                        ImpqGpuError* err);
  int (*model_stats)(ImpqGpuModel* model, ImpqGpuEvalStats* stats, ImpqGpuError* err);

  /* ---- version 2 (absent from a version-1 table: read only when version >= 2) ---- */
  /* As model_set_linear_rtn, at every width whose IMPQ_GPU_WIDTH_MASK bit is set in
   * `widths_mask` (a non-empty subset of 2, 3, 4, 8; anything else is IMPQ_GPU_EINVAL naming
   * the mask). Each width's codes are those of the CPU's RtnQuantizer (kernel_rtn_quantize). */
  int (*model_set_linear_rtn_widths)(ImpqGpuModel* model, int layer, int kind, const float* w,
                                     int64_t group, unsigned widths_mask, int keep_full,
                                     ImpqGpuError* err);
} ImpqGpuApi;

/* Bytes of the leading part of ImpqGpuApi that a plugin of `version` fills (0 for a version
 * outside [IMPQ_GPU_API_MIN_VERSION, IMPQ_GPU_API_VERSION]). */
static inline size_t impq_gpu_api_bytes(int version) {
  if (version == 1) return offsetof(ImpqGpuApi, model_set_linear_rtn_widths);
  if (version == 2) return sizeof(ImpqGpuApi);
  return 0;
}

/* The plugin's one exported symbol. */
typedef const ImpqGpuApi* (*ImpqGpuGetApiFn)(void);
#define IMPQ_GPU_GET_API_SYMBOL "impq_gpu_get_api"

#ifdef __cplusplus
}
#endif

#endif /* IMPQ_WORKER_GPU_GPU_API_H_ */
