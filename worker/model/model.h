// The in-memory model every reader produces and every engine consumes.
//
// A Model is an architecture config plus named float32 tensors per decoder layer: the two
// norms and the seven linear weights (attention q/k/v/o, feed-forward gate/up/down), each a
// PyTorch nn.Linear matrix [out_features, in_features]. Quantization backends replace linear
// weights by swapping pointers in a WeightSet (worker/forward), never by editing the Model.
// Immutable after loading; thread-safe for concurrent reads.
#ifndef IMPQ_WORKER_MODEL_MODEL_H_
#define IMPQ_WORKER_MODEL_MODEL_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "worker/model/tensor.h"

namespace impq::model {

// The seven linear modules of a Llama decoder block, in a fixed order used everywhere
// (player numbering at module granularity is layer * kNumLinear + kind).
enum class LinearKind : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLinear = 7;
// "attn_q", "attn_k", "attn_v", "attn_o", "ffn_gate", "ffn_up", "ffn_down".
const char* LinearKindName(LinearKind kind);

// How rotary embeddings pair the dimensions of a head.
enum class RopeStyle {
  kInterleaved,  // (x[2i], x[2i+1]): Meta / llama2.c / GGUF "normal" rope
  kHalf,         // (x[i], x[i + head_dim/2]): Hugging Face rotate_half
};

// Llama-3's rotary frequency rule (HF rope_scaling {"rope_type": "llama3", ...}): frequencies
// whose wavelength exceeds original_max_position / low_freq_factor are divided by `factor`,
// those below original_max_position / high_freq_factor are kept, and the band in between is
// interpolated. factor == 0 means no scaling.
struct RopeScaling {
  float factor = 0.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position = 8192;
};

// The feed-forward gate's activation: SwiGLU (Llama, Qwen) or GeGLU with the tanh
// approximation of GELU (Gemma-2, HF "gelu_pytorch_tanh").
enum class FfnActivation { kSilu, kGeluTanh };

// The largest size or count a config may hold (2^24; the largest real ones are ~2^17).
inline constexpr int64_t kMaxConfigSize = int64_t{1} << 24;

// The defaults of every architecture-specific field give the plain Llama block; the other
// architectures switch their quirks on (qwen3_arch.cc, gemma2_arch.cc).
struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;          // hidden size
  int hidden_dim = 0;   // feed-forward inner size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;     // dim / n_heads for Llama
  int vocab_size = 0;
  // The maximum context the model was trained for (config metadata, unverifiable against the
  // tensors: no weight depends on it). Nothing is allocated from it: it only bounds the
  // context an evaluation may ask for (eval::BuildEvalSet, the job's ctx check); the CPU
  // forward pass's memory follows the tokens actually evaluated (forward/llama_forward.h).
  int seq_len = 0;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  bool tied_embeddings = true;

  // Llama-3: the "llama3" frequency rule.
  RopeScaling rope_scaling;
  // GGUF rope_freqs.weight (llama.cpp's form of the Llama-3 rule): frequency i is divided by
  // rope_freq_factors[i]. Empty, or head_dim/2 values > 0.
  std::vector<float> rope_freq_factors;
  // Qwen-3: RMSNorm over each q and k head (LayerWeights::q_norm / k_norm, [head_dim]) between
  // the projection and the rotary embedding.
  bool qk_norm = false;
  // Gemma-2: RMSNorm of the attention and feed-forward outputs before they join the residual
  // stream (LayerWeights::post_attn_norm / post_ffn_norm, [dim]).
  bool post_norms = false;
  // Gemma-2 (Hugging Face weights): every RMSNorm multiplies by (norm_weight_offset + w).
  // GGUF gemma2 files store 1 + w already (llama.cpp's converter adds it) and use 0.
  float norm_weight_offset = 0.0f;
  // Gemma-2: embedding rows are multiplied by float32(sqrt(dim)) (the head is not).
  bool scale_embeddings = false;
  FfnActivation ffn_activation = FfnActivation::kSilu;
  // Gemma-2 soft-capping, x -> cap · tanh(x / cap), of the scaled attention scores and of the
  // final logits. 0 = off.
  float attn_logit_softcap = 0.0f;
  float final_logit_softcap = 0.0f;
  // Gemma-2: layers with an even index attend only to the last `sliding_window` positions
  // (key j is visible from query i when i - sliding_window < j <= i); odd layers attend to
  // every earlier position (HF Gemma2Attention: sliding where layer_idx % 2 == 0). 0 = off.
  int sliding_window = 0;
  // Gemma-2: attention scores are scaled by query_pre_attn_scalar^-1/2 instead of
  // head_dim^-1/2. 0 = head_dim.
  float query_pre_attn_scalar = 0.0f;

  bool LayerUsesSlidingWindow(int layer) const { return sliding_window > 0 && layer % 2 == 0; }
  // The attention scale: 1/sqrt(query_pre_attn_scalar or head_dim).
  float AttentionScale() const;
  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // [out, in] of a linear module.
  int64_t LinearRows(LinearKind kind) const;
  int64_t LinearCols(LinearKind kind) const;
  // Checks the config is internally consistent; the message names the field. Every size and
  // count (dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, seq_len, and
  // the products q_dim, kv_dim) is in [1, kMaxConfigSize]: a sanity bound against overflow
  // in the shape arithmetic, not a memory bound — what a reader allocates is bounded by the
  // tensors in its file, checked against the config before anything is allocated
  // (AssembleModel, Llama2cReader).
  absl::Status Validate() const;
  // "dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512 seq_len=512".
  std::string ToString() const;
};

struct LayerWeights {
  Tensor attn_norm;                       // [dim]
  Tensor ffn_norm;                        // [dim] (Gemma-2: pre_feedforward_layernorm)
  Tensor q_norm, k_norm;                  // [head_dim] when config.qk_norm, else empty
  Tensor post_attn_norm, post_ffn_norm;   // [dim] when config.post_norms, else empty
  std::array<Tensor, kNumLinear> linear;  // indexed by LinearKind
  const Tensor& operator[](LinearKind k) const { return linear[static_cast<int>(k)]; }
};

struct Model {
  ModelConfig config;
  std::string source;      // file the weights came from
  Tensor embedding;        // [vocab, dim]
  std::vector<LayerWeights> layers;
  Tensor final_norm;       // [dim]
  Tensor output;           // [vocab, dim]; shares the embedding's storage when tied

  // Checks every tensor is present with the shape the config implies. The message names the
  // tensor, the expected and the actual shape.
  absl::Status Validate() const;
  // Number of weights in the linear modules (the quantizable part).
  int64_t LinearParameterCount() const;
};

// Builds a model of the given shape with seeded random weights (normal, std 0.02 for linear
// and embedding weights, norm multipliers (offset + w) near 1). The tensors the Llama block
// lacks (q/k norms, post-norms) are drawn after all others, so a Llama config gives the same
// weights as before they existed. Used by tests and benchmarks for realistic shapes.
Model MakeRandomModel(const ModelConfig& config, uint64_t seed);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_MODEL_H_
