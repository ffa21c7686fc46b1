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

struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;          // hidden size
  int hidden_dim = 0;   // feed-forward inner size
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;     // dim / n_heads for Llama
  int vocab_size = 0;
  int seq_len = 0;      // maximum context the model was trained for
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::kInterleaved;
  bool tied_embeddings = true;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  // [out, in] of a linear module.
  int64_t LinearRows(LinearKind kind) const;
  int64_t LinearCols(LinearKind kind) const;
  // Checks the config is internally consistent; the message names the field.
  absl::Status Validate() const;
  // "dim=64 hidden=172 layers=5 heads=8 kv_heads=4 vocab=512 seq_len=512".
  std::string ToString() const;
};

struct LayerWeights {
  Tensor attn_norm;                       // [dim]
  Tensor ffn_norm;                        // [dim]
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
// and embedding weights, norms near 1). Used by tests and benchmarks for realistic shapes.
Model MakeRandomModel(const ModelConfig& config, uint64_t seed);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_MODEL_H_
