// impq's quantized checkpoint: a Hugging Face style directory whose linear weights are stored
// in impq's packed 2-, 3-, 4- or 8-bit format (worker/quant/block_format.h), written by `impq export
// --format safetensors` (worker/quant/quantized_checkpoint.h) and read back by LoadModel like
// any other model, dequantized exactly as QuantizedModel dequantizes (quant::Dequantize), so
// `impq eval` on it gives the loss `impq quantize-eval` gives for the same allocation.
//
// Directory layout:
//   config.json        the Hugging Face fields of the architecture (architectures, hidden_size,
//                      ...; informational for other tools) plus "quantization_config":
//     quant_method     "impq"                 (what makes LoadModel pick this reader)
//     format_version   1
//     model_config     every ModelConfig field (ModelConfigToJson): impq reads the config from
//                      here, not from the HF fields, so nothing is lost in translation (the
//                      rotary layout of Q/K included: "rope_style" "interleaved" | "half")
//     group_size       columns per quantization group
//     modules          HF module name ("model.layers.3.mlp.down_proj") -> width: 2, 3, 4 or 8
//                      for a packed module, 16 or 32 for one kept in full precision; every
//                      linear
//     backend, players, bits, allocation: provenance (ignored by the reader)
//   model.safetensors  every non-linear tensor as F32 under its HF name (Q/K rows as the source
//                      model stored them, in the layout model_config says); per linear module
//                      NAME (HF name without ".weight"):
//                        packed:         NAME.qweight U8 [rows, ceil(cols*bits/8)] (codes,
//                                        block_format.h layout: each row one little-endian
//                                        bit stream, so 3-bit codes straddle bytes and a row
//                                        ends in zero padding bits), NAME.scales F32
//                                        [rows, ceil(cols/group_size)], NAME.zeros F32 [same]
//                        full precision: NAME.weight F32 [rows, cols]
//   tokenizer.*        the tokenizer the run used, when it is a file (tokenizer.model,
//                      tokenizer.json, or a llama2.c tokenizer.bin)
#ifndef IMPQ_WORKER_MODEL_IMPQ_CHECKPOINT_H_
#define IMPQ_WORKER_MODEL_IMPQ_CHECKPOINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/model/model.h"
#include "worker/model/model_reader.h"

namespace impq::model {

inline constexpr char kImpqQuantMethod[] = "impq";
inline constexpr int kImpqCheckpointVersion = 1;

// Every ModelConfig field as JSON, and back. ModelConfigFromJson(ModelConfigToJson(c)) == c
// field for field (floats round-trip through JSON doubles exactly). FromJson errors name
// `path`, the field and its value; the result is validated.
nlohmann::json ModelConfigToJson(const ModelConfig& c);
absl::StatusOr<ModelConfig> ModelConfigFromJson(const nlohmann::json& j, const std::string& path);

// The Hugging Face config.json fields of `c` (architectures, model_type, hidden_size, ...,
// tie_word_embeddings) for tools that read the directory; impq itself does not read them back.
nlohmann::json HfConfigFields(const ModelConfig& c);

// Reads the directory above. A reference is the directory or its model.safetensors.
class ImpqCheckpointReader : public ModelReader {
 public:
  std::string format() const override { return "impq-checkpoint"; }
  // A directory (or the model.safetensors in one) whose config.json has
  // "quantization_config": {"quant_method": "impq"}.
  bool Recognizes(const std::string& path, std::span<const uint8_t> head) const override;
  // Errors name the file and the tensor or field: a missing or malformed quantization_config,
  // an unknown format_version, a module missing from "modules" or with an unsupported width,
  // a packed tensor of the wrong dtype or shape or failing quant::ValidatePacked, plus
  // everything AssembleModel checks.
  absl::StatusOr<Model> Read(const std::string& path) const override;
};

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_IMPQ_CHECKPOINT_H_
