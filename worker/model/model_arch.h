// What one model architecture means in each file format: how its config is spelled
// (config.json fields, GGUF metadata keys) and what its tensors are called. The readers
// (safetensors_reader, gguf_reader) are architecture-independent: they find the architecture
// here by name and assemble the Model through AssembleModel.
//
// Adding an architecture is one file (e.g. qwen3_arch.cc) defining a ModelArch and one line in
// AllArchitectures(). An architecture whose blocks carry tensors beyond the Llama set (Qwen-3's
// per-head q/k norms, Gemma-2's post-norms) adds TensorRoles and Model fields for them; the
// shared roles and the assembly stay shared.
#ifndef IMPQ_WORKER_MODEL_MODEL_ARCH_H_
#define IMPQ_WORKER_MODEL_MODEL_ARCH_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "worker/model/gguf_file.h"
#include "worker/model/model.h"

namespace impq::model {

// The tensors of a Llama-family model. Per-layer roles take a layer index; the others ignore it.
// kQNorm/kKNorm exist when ModelConfig::qk_norm, kPostAttnNorm/kPostFfnNorm when post_norms.
enum class TensorRole {
  kEmbedding, kFinalNorm, kOutput,
  kAttnNorm, kFfnNorm, kQ, kK, kV, kO, kGate, kUp, kDown,
  kQNorm, kKNorm, kPostAttnNorm, kPostFfnNorm,
};

class ModelArch {
 public:
  virtual ~ModelArch() = default;
  // impq's name, also ModelConfig::arch: "llama".
  virtual std::string name() const = 0;
  // Hugging Face config.json "architectures" entries this handles: {"LlamaForCausalLM"}.
  virtual std::vector<std::string> hf_classes() const = 0;
  // GGUF general.architecture value: "llama".
  virtual std::string gguf_arch() const = 0;

  // The config from a parsed config.json (`path` labels errors). Errors name the field, the
  // value and the reason (missing, out of range, a feature impq does not implement).
  virtual absl::StatusOr<ModelConfig> ConfigFromHf(const nlohmann::json& config,
                                                   const std::string& path) const = 0;
  // The config from GGUF metadata (and, where the metadata leaves it out, tensor shapes).
  virtual absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf) const = 0;

  virtual std::string HfTensorName(TensorRole role, int layer) const = 0;
  virtual std::string GgufTensorName(TensorRole role, int layer) const = 0;
};

// Every architecture compiled in.
const std::vector<const ModelArch*>& AllArchitectures();
// nullptr when none matches.
const ModelArch* FindArchByHfClass(const std::string& hf_class);
const ModelArch* FindArchByGguf(const std::string& gguf_arch);
// "LlamaForCausalLM" / "llama", comma-separated, for error messages.
std::string SupportedHfClasses();
std::string SupportedGgufArchs();

// Field readers shared by the architectures' config parsers. Errors name the file, the field,
// the value and the accepted range. Without a default a missing field is an error.
// An integer in [1, 2^24] (sizes and counts).
absl::StatusOr<int> HfInt(const nlohmann::json& config, const std::string& key,
                          const std::string& path, std::optional<int> default_value);
// A finite number > 0.
absl::StatusOr<double> HfPositive(const nlohmann::json& config, const std::string& key,
                                  const std::string& path, std::optional<double> default_value);
absl::StatusOr<bool> HfBool(const nlohmann::json& config, const std::string& key,
                            const std::string& path, bool default_value);
absl::StatusOr<int> GgufInt(const GgufFile& gguf, const std::string& key,
                            std::optional<int> default_value);
absl::StatusOr<double> GgufPositive(const GgufFile& gguf, const std::string& key,
                                    std::optional<double> default_value);

// The parts of a config every Llama-family architecture spells the same way.
//
// config.json: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads (default: heads), head_dim (default: `default_head_dim`, or
// hidden_size / heads when that is 0), vocab_size, max_position_embeddings, rms_norm_eps,
// rope_theta, tie_word_embeddings; attention_bias / mlp_bias = true are refused. Sets
// arch = `arch_name`, rope_style = kHalf. Does not validate (the caller adds its fields first).
struct HfCommonDefaults {
  int head_dim = 0;
  int max_position = 2048;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
};
absl::StatusOr<ModelConfig> CommonConfigFromHf(const nlohmann::json& config,
                                               const std::string& path,
                                               const std::string& arch_name,
                                               const HfCommonDefaults& defaults);
// GGUF: <arch>.embedding_length, feed_forward_length, block_count, attention.head_count(_kv),
// context_length, attention.layer_norm_rms_epsilon, rope.freq_base, attention.key_length /
// value_length, rope.dimension_count, vocab_size (or the tokenizer's or embedding's size);
// tied when `output_tensor` is absent or holds the bytes of `embedding_tensor`.
absl::StatusOr<ModelConfig> CommonConfigFromGguf(const GgufFile& gguf, const std::string& arch,
                                                 const std::string& embedding_tensor,
                                                 const std::string& output_tensor);
// Refuses an HF rope_scaling other than null / "default" (`path` labels the error).
absl::Status RefuseHfRopeScaling(const nlohmann::json& config, const std::string& path);
// The Llama tensor names of the shared roles (the others: "").
std::string LlamaHfTensorName(TensorRole role, int layer);
std::string LlamaGgufTensorName(TensorRole role, int layer);
// Validates `c`, prefixing the message with `path`.
absl::Status CheckConfig(const ModelConfig& c, const std::string& path);

// Returns the tensor of `role` (and layer) from a file, in impq's shape convention
// (PyTorch [out, in] for linear weights); NotFound naming the file's tensor when absent.
using TensorFetch = std::function<absl::StatusOr<Tensor>(TensorRole role, int layer)>;

// How a format spells a ModelConfig field ("dim", "n_layers", ...) in its metadata, for error
// messages: GGUF "llama.embedding_length", config.json "hidden_size", ...
using FieldSpelling = std::function<std::string(const std::string& field)>;
FieldSpelling GgufFieldSpelling(const std::string& gguf_arch);
FieldSpelling HfFieldSpelling();

// One model file (or set of shards) as AssembleModel sees it.
struct TensorSource {
  std::string path;                  // labels every error
  std::vector<std::string> names;    // every tensor the file(s) hold, as the file names them
  TensorFetch fetch;
  std::function<std::string(TensorRole, int)> file_name;  // the file's name of a role's tensor
  FieldSpelling field;
};

// Builds the Model of `config` from `src`. This is the one place the GGUF, safetensors and impq
// checkpoint readers check their metadata against their tensors, in this order, so that
// nothing is allocated from a number the tensors do not confirm:
//   1. the config is valid (ModelConfig::Validate: every size in [1, kMaxConfigSize]);
//   2. the layer count equals the layers the file holds tensors for (a tensor named with the
//      layer prefix of the architecture, "blk.N." / "model.layers.N.", for N >= n_layers means
//      the metadata claims fewer layers than the file holds; no tensor for layer n_layers - 1
//      means it claims more) — before the per-layer table is allocated;
//   3. every tensor has the shape the config implies (dims: vocab_size, dim, hidden_dim,
//      head_dim and the products q_dim, kv_dim), checked as it is fetched; a mismatch names
//      the tensor, the expected and actual shape, and the config field (as the format spells
//      it) the differing dimension comes from;
//   4. every value of every tensor is finite (CheckFinite), naming the tensor.
// Context length (seq_len) has no tensor to be checked against and nothing is allocated from
// it (ModelConfig::seq_len). File sizes need no separate check: every tensor's bytes were
// bounds-checked against its file when the file was opened, and 2-3 tie the config to them.
// Tensors are named as impq names them ("token_embedding", "layers.N.attn_q", ...). With
// config.tied_embeddings the output head shares the embedding and kOutput is not fetched.
absl::StatusOr<Model> AssembleModel(const ModelConfig& config, const TensorSource& src);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_MODEL_ARCH_H_
