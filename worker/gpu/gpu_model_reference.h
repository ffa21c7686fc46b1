// The whole-model forward pass with the CUDA plugin's numerics, on the CPU.
//
// The plugin's model_evaluate (worker/gpu/cuda/model.cu) follows the contract written at the
// top of worker/gpu/cuda/kernels.cuh: the residual stream, norms, rotary embedding, softmax
// and NLL in f32; every GEMM operand rounded to bf16 (round to nearest even from f32) with
// f32 accumulation; attention probabilities rounded to bf16 before P·V. GpuModelReference
// computes the same function with the same rounding points, but accumulates every dot product
// and reduction in double (allowed by the contract: it only removes accumulation error), so
// the GPU's per-sequence NLL can be compared with it within an f32-accumulation tolerance
// (gpu_model_test.cc derives it).
//
// Rounding points, per decoder block (R = round f32 -> bf16, every stored value is f32):
//   n   = R(rmsnorm(x) · attn_norm)
//   q,k,v = n · R(W)ᵀ                         (f32)
//   q,k = R(rope(headnorm(q,k)))              (head norm only with qk_norm)
//   v   = R(v)
//   s   = f32(scale · q·k), softcap, causal/window mask; p = R(softmax(s)); a = R(p · v)
//   x  += a · R(Wo)ᵀ                           (or x += rmsnorm(a · R(Wo)ᵀ) · post_attn_norm)
//   m   = R(rmsnorm(x) · ffn_norm); h = R(act(m · R(Wgate)ᵀ) · (m · R(Wup)ᵀ))
//   x  += h · R(Wdown)ᵀ                        (or through post_ffn_norm)
// then logits = R(rmsnorm(x) · final_norm) · R(output)ᵀ (f32), final soft-cap, and
// nll = logsumexp(logits) - logits[target] in double. The embedding stays f32 (times √dim
// for Gemma-2, in f32). With Options::bf16 = false R is the identity: the pass is then the
// f32 CPU engine's function with double accumulation, which the CPU tests compare against
// forward::LlamaForward to check that every architecture switch is mirrored.
//
// Norm multipliers (Gemma's offset + w) and rotary tables are built by GpuModelTables exactly
// as forward::LlamaForward builds them; GpuEvaluator uploads the same arrays to the plugin.
//
// Immutable after construction; thread-safe. Slow (scalar loops): for small models only.
#ifndef IMPQ_WORKER_GPU_GPU_MODEL_REFERENCE_H_
#define IMPQ_WORKER_GPU_GPU_MODEL_REFERENCE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/weight_set.h"
#include "worker/model/model.h"

namespace impq::gpu {

// The f32 arrays besides the linear weights that the forward pass multiplies by, as
// forward::LlamaForward computes them: norm multipliers (offset + w) in f32 when
// config.norm_weight_offset != 0 (Qwen-3's q/k norms never take the offset), rotary tables
// cos/sin(float(pos · inv_freq)) from forward::RopeInvFrequencies, the embedding scale.
struct GpuModelTables {
  struct Layer {
    std::vector<float> attn, ffn;            // [dim]
    std::vector<float> q, k;                 // [head_dim]; empty without qk_norm
    std::vector<float> post_attn, post_ffn;  // [dim]; empty without post_norms
  };
  std::vector<Layer> layers;
  std::vector<float> final_norm;          // [dim]
  std::vector<float> rope_cos, rope_sin;  // [positions, head_dim / 2]
  float embed_scale = 1.0f;               // float(sqrt(dim)) when config.scale_embeddings
};
// The tables for sequences of up to `positions` tokens: sized by what will be evaluated,
// never by the context length a model file claims (config.seq_len, untrusted).
// REQUIRES: m.Validate().ok(), 1 <= positions <= m.config.seq_len.
GpuModelTables MakeGpuModelTables(const model::Model& m, int positions);

class GpuModelReference {
 public:
  struct Options {
    bool bf16 = true;  // false: no rounding anywhere (see the file comment)
    // The longest sequence it evaluates (its rotary tables' rows); 0: min(seq_len,
    // LlamaForward::kRopeTablePositions).
    int positions = 0;
  };

  // REQUIRES: m.Validate().ok(); `m` outlives the reference.
  explicit GpuModelReference(const model::Model& m);
  GpuModelReference(const model::Model& m, Options options);

  const model::Model& model() const { return model_; }
  // The longest sequence it evaluates (Options::positions).
  int positions() const {
    return static_cast<int>(tables_.rope_cos.size() / (model_.config.head_dim / 2));
  }

  // Logits of every position of `tokens` (positions 0..T-1) after the final soft-cap,
  // [T, vocab] row-major, as the plugin's f32 logits. `weights` gives the linear modules (f32;
  // rounded to bf16 here as the plugin does when it uploads a variant).
  // REQUIRES: 1 <= tokens.size() <= positions(), every token in [0, vocab).
  std::vector<float> Logits(std::span<const int> tokens, const forward::WeightSet& weights) const;

  // Σ over the scored rows of `seq` of logsumexp(logits[p]) - logits[p][tokens[p + 1]].
  // When max_abs_logit is given it receives the largest |logit| of the scored rows (the scale
  // the tests' error bounds need). REQUIRES: as Logits, and
  // 0 <= seq.score_begin < tokens.size() - 1.
  double SequenceNll(const eval::EvalSequence& seq, const forward::WeightSet& weights,
                     double* max_abs_logit = nullptr) const;

  // SequenceNll of every sequence of `set`, in order. InvalidArgument (from
  // eval::ValidateEvalSet) when the set does not fit the model, or a sequence is longer than
  // positions().
  absl::StatusOr<std::vector<double>> SequenceNlls(const eval::EvalSet& set,
                                                   const forward::WeightSet& weights) const;

 private:
  // x at the output of the last block: runs the decoder over `tokens`.
  std::vector<float> Hidden(std::span<const int> tokens, const forward::WeightSet& w) const;
  float R(float x) const;  // RoundBf16 (gpu_reference.h) when options_.bf16

  const model::Model& model_;
  const Options options_;
  const GpuModelTables tables_;
  std::vector<float> output_;  // the head, R() applied once
};

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_GPU_MODEL_REFERENCE_H_
