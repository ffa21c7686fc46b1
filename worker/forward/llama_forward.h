// The CPU forward pass of a Llama-family decoder over a whole window of tokens (prefill).
//
//   x = embed(tokens)
//   for each block:  x += Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n),   n = rmsnorm(x) · attn_norm
//                    x += Wdown · (silu(Wgate·m) ⊙ Wup·m),              m = rmsnorm(x) · ffn_norm
//   logits = Wout · rmsnorm(x) · final_norm
// Attention is causal and grouped-query (query head h reads kv head h / (n_heads/n_kv_heads)),
// computed per head in blocks of query rows with sgemm and a row softmax (small head dims: row by
// row, CausalAttentionHead).
//
// The other architectures are switches of ModelConfig on this one path (model.h):
//   Llama-3  rotary frequencies by the llama3 rule (rope.h);
//   Qwen-3   q and k heads RMS-normed (q_norm, k_norm) before the rotary embedding;
//   Gemma-2  x = embed · √dim; norms multiply by (1 + w); the attention and MLP outputs are
//            RMS-normed (post_attn_norm, post_ffn_norm) before joining x; GeGLU (tanh GELU)
//            instead of SwiGLU; scores scaled by query_pre_attn_scalar^-½ and soft-capped;
//            even layers attend to a sliding window; final logits soft-capped.
// The quantizable linear modules are the same seven in every architecture.
//
// The pass is split into Embed / RunBlock / Logits so callers can restart at any block (prefix
// reuse along a permutation walk) and score only the rows they need. Results are bit for bit
// independent of the ThreadPool's size (see matmul.h).
//
// LlamaForward is immutable after construction and thread-safe; a Workspace is
// thread-compatible (one per concurrently evaluated sequence).
#ifndef IMPQ_WORKER_FORWARD_LLAMA_FORWARD_H_
#define IMPQ_WORKER_FORWARD_LLAMA_FORWARD_H_

#include <cstdint>
#include <span>
#include <vector>

#include "common/thread_pool.h"
#include "worker/forward/weight_set.h"
#include "worker/model/model.h"

namespace impq::forward {

// Sees the input of the linear modules during a forward pass (e.g. to collect GPTQ's
// calibration statistics). Called once per distinct input: kQ stands for q, k and v (one
// shared input), kO for o, kGate for gate and up, kDown for down. `x` is [rows, cols],
// row-major, valid only during the call. Called from the thread running the block.
class LinearInputObserver {
 public:
  virtual ~LinearInputObserver() = default;
  virtual void OnLinearInput(int layer, model::LinearKind kind, const float* x, int64_t rows,
                             int64_t cols) = 0;
};

// Row stride of the transposed keys and values of small-head attention (CausalAttentionHead
// reads whole blocks of 16 keys).
inline int64_t SmallHeadKeyStride(int64_t T) { return T + 16; }

// Scratch buffers for sequences of up to `capacity` tokens. Grows on demand.
class Workspace {
 public:
  Workspace() = default;
  void Reserve(const model::ModelConfig& c, int64_t tokens);

  std::vector<float> x;       // [T, dim] residual stream
  std::vector<float> xb;      // [T, dim] normed input of a sub-block
  std::vector<float> q, k, v; // [T, q_dim], [T, kv_dim], [T, kv_dim]
  std::vector<float> att;     // [T, q_dim] attention output before Wo
  std::vector<float> proj;    // [T, dim] output of Wo / Wdown
  std::vector<float> h1, h3;  // [T, hidden]
  std::vector<float> kt, vt;  // [kv_dim, SmallHeadKeyStride(T)]: k, v transposed (small head dims)
  std::vector<float> scores;  // [n_heads, kAttnRows, T]
  std::vector<float> logits;  // [kLogitRows, vocab]
  int64_t capacity = 0;
};

class LlamaForward {
 public:
  // Query rows per attention block, logit rows per head block.
  static constexpr int64_t kAttnRows = 64;
  static constexpr int64_t kLogitRows = 256;
  // Head dims up to this run attention row by row (CausalAttentionHead: q·kᵀ with an inner
  // dimension this short gains nothing from sgemm); larger ones as sgemm over query blocks.
  static constexpr int64_t kSmallHeadDim = 16;  // <= kAttentionMaxHeadDim

  // Rotary cos/sin rows precomputed at construction: positions [0, min(seq_len, this)).
  // Positions beyond are computed when a sequence reaches them (the same double-precision
  // formula, so the values are identical). Why not [0, seq_len): seq_len is file metadata,
  // which no tensor confirms (model.h), and a table from it is an allocation an attacker sizes
  // (2^24 positions at head_dim 8: 512 MiB); the memory of a pass must follow the tokens it
  // evaluates. 8192 rows cost at most 8 MiB (head_dim 256) and cover every context impq
  // evaluates by default; a longer context pays head_dim/2 sin/cos pairs per position beyond
  // it per layer, negligible next to that position's attention over thousands of keys.
  static constexpr int64_t kRopeTablePositions = 8192;

  // REQUIRES: model.Validate().ok(); `model` outlives this object.
  explicit LlamaForward(const model::Model& model);

  const model::ModelConfig& config() const { return model_.config; }
  const model::Model& model() const { return model_; }

  // ws.x[0 .. T·dim) = embedding rows of `tokens`. REQUIRES: 0 <= token < vocab,
  // tokens.size() <= seq_len.
  void Embed(std::span<const int> tokens, Workspace& ws) const;
  // Runs decoder block `layer` on the T rows in ws.x (positions 0..T-1), in place.
  void RunBlock(int layer, const WeightSet& weights, int64_t T, Workspace& ws,
                ThreadPool* pool, LinearInputObserver* observer = nullptr) const;
  // The two halves of RunBlock (which is exactly one then the other): the attention sublayer
  // (norm, q/k/v, attention, o, residual add) and the feed-forward sublayer (norm, gate/up,
  // activation, down, residual add). Prefix reuse restarts at either.
  void RunAttentionSublayer(int layer, const WeightSet& weights, int64_t T, Workspace& ws,
                            ThreadPool* pool, LinearInputObserver* observer = nullptr) const;
  void RunFfnSublayer(int layer, const WeightSet& weights, int64_t T, Workspace& ws,
                      ThreadPool* pool, LinearInputObserver* observer = nullptr) const;
  // Final norm and output head for rows [row_begin, row_begin + rows) of ws.x:
  // ws.logits[r * vocab ...] holds row row_begin + r. REQUIRES: rows <= kLogitRows.
  void Logits(int64_t row_begin, int64_t rows, Workspace& ws, ThreadPool* pool) const;

  // Logits of every position of `tokens` ([T, vocab], row-major): RunBlocks, then Logits
  // block by block. For tests, tools and decoding; evaluation scores rows as it goes instead.
  std::vector<float> AllLogits(std::span<const int> tokens, const WeightSet& weights,
                               Workspace& ws, ThreadPool* pool) const;

  // The whole pass: Embed, every block. Leaves the final hidden states in ws.x.
  void RunBlocks(std::span<const int> tokens, const WeightSet& weights, Workspace& ws,
                 ThreadPool* pool, LinearInputObserver* observer = nullptr) const;

 private:
  void Attention(int layer, int64_t T, Workspace& ws, ThreadPool* pool) const;

  // The multipliers of a layer's norms: the model's weights, or (offset + w) precomputed in
  // float32 when config.norm_weight_offset != 0 (as HF Gemma-2 computes 1.0 + weight.float()).
  // Null where the architecture has no such norm.
  struct LayerNorms {
    const float* attn = nullptr;
    const float* ffn = nullptr;
    const float* q = nullptr;
    const float* k = nullptr;
    const float* post_attn = nullptr;
    const float* post_ffn = nullptr;
  };
  const float* NormMultiplier(const model::Tensor& w);

  // cos and sin of position `pos` for every frequency (head_dim/2 values each).
  void RopeRow(int64_t pos, float* cos, float* sin) const;

  const model::Model& model_;
  std::vector<double> rope_inv_freq_;       // [head_dim/2]
  int64_t rope_rows_ = 0;                   // min(seq_len, kRopeTablePositions)
  std::vector<float> rope_cos_, rope_sin_;  // [rope_rows_, head_dim/2]
  std::vector<std::vector<float>> offset_norms_;  // storage behind NormMultiplier
  std::vector<LayerNorms> norms_;                 // [layer]
  const float* final_norm_ = nullptr;
};

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_LLAMA_FORWARD_H_
