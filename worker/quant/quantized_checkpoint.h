// Writes impq's quantized checkpoint (the layout is worker/model/impq_checkpoint.h, whose
// reader LoadModel uses): every linear module of a QuantizedModel at the width an allocation
// gives its player, as the packed codes, scales and zeros QuantizedModel holds, and the other
// tensors in float32. Reading the result back gives, module for module, the dequantized
// weights QuantizedModel::Apply(bits) points at.
#ifndef IMPQ_WORKER_QUANT_QUANTIZED_CHECKPOINT_H_
#define IMPQ_WORKER_QUANT_QUANTIZED_CHECKPOINT_H_

#include <map>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/quant/quantized_model.h"

namespace impq::quant {

// The checkpoint's files, name -> contents: "config.json" and "model.safetensors" (the caller
// adds the tokenizer and writes them; nothing touches the disk here). `bits` has one width per
// player of `qm`: one of qm.widths() (2, 3, 4 or 8; stored as the packed bit streams of
// block_format.h), or 16/32 for full precision; `provenance` is stored as
// quantization_config.allocation (e.g. the run file, method, budget). InvalidArgument for a
// wrong-length `bits`, a width `qm` was not built with (names the player and qm's widths), or
// an architecture impq cannot name.
// The quantized widths `bits` uses (ascending, each once; 16 and 32 are not widths): the set
// a QuantizedModel needs for BuildQuantizedCheckpoint(qm, bits). A module's version at a
// width does not depend on the other widths prepared, so building with just these gives the
// checkpoint a larger set would. QuantizedModel::kDefaultWidths when every player is full
// precision (Build needs a width; none is used).
std::vector<int> CheckpointWidths(std::span<const int> bits);

absl::StatusOr<std::map<std::string, std::string>> BuildQuantizedCheckpoint(
    const QuantizedModel& qm, std::span<const int> bits, const nlohmann::json& provenance);

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_QUANTIZED_CHECKPOINT_H_
