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
enum class TensorRole {
  kEmbedding, kFinalNorm, kOutput,
  kAttnNorm, kFfnNorm, kQ, kK, kV, kO, kGate, kUp, kDown,
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

// Returns the tensor of `role` (and layer) from a file, in impq's shape convention
// (PyTorch [out, in] for linear weights); NotFound naming the file's tensor when absent.
using TensorFetch = std::function<absl::StatusOr<Tensor>(TensorRole role, int layer)>;

// Builds the Model of `config` from `fetch`, checking every shape (errors name the file's tensor
// name via `file_name`, the expected and the actual shape) and naming the tensors as impq does
// ("token_embedding", "layers.N.attn_q", ...). With config.tied_embeddings the output head
// shares the embedding and kOutput is not fetched.
absl::StatusOr<Model> AssembleModel(const ModelConfig& config, const TensorFetch& fetch,
                                    const std::function<std::string(TensorRole, int)>& file_name,
                                    const std::string& source);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_MODEL_ARCH_H_
