// An allocation of an `impq run --json` file written in the form another quantizer reads, so
// a person can apply it without translating it by hand (`impq export`, cli/export_command.cc).
//
//   llama.cpp  per-tensor type lines `blk.3.ffn_down=q2_k` (2 -> q2_k, 3 -> q3_k, 4 -> q4_k,
//              8 -> q8_0; LlamaCppType), the arguments `llama-quantize
//              --tensor-type` takes (GGUF tensor names), after `#` comment lines with the full
//              llama-quantize command line.
//   gptqmodel  a GPTQModel QuantizeConfig as JSON: base bits and group size plus a "dynamic"
//              entry per module, `+:model\.layers\.3\.mlp\.down_proj$` -> {"bits": 2,
//              "group_size": 64}, bits 2, 3, 4 or 8 as GPTQModel takes them (full-precision
//              modules: `-:...` -> {}, not quantized).
//   hqq        HQQ's per-module quantization config as JSON: Hugging Face module name ->
//              BaseQuantizeConfig arguments {"nbits", "group_size", "axis"}, nbits 2, 3, 4 or 8
//              (null: keep).
// Every module of a player gets the player's width; block players give all seven linears of
// the layer one width. Pure functions of the run file and the allocation; thread-safe.
#ifndef IMPQ_CLI_ALLOCATION_EXPORT_H_
#define IMPQ_CLI_ALLOCATION_EXPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/run_file.h"
#include "worker/model/model.h"

namespace impq::cli {

// One linear module and the width the allocation gives it.
struct ModuleWidth {
  int layer = 0;
  model::LinearKind kind = model::LinearKind::kQ;
  int bits = 0;             // 2, 3, 4, 8; 16 or 32: full precision
  std::string hf_name;      // "model.layers.3.mlp.down_proj" (the architecture's HF name)
  std::string gguf_name;    // "blk.3.ffn_down" (the architecture's GGUF name, no ".weight")
};

// Every linear module of the run's model (layer-major, LinearKind order) with its width under
// `bits` (one per player of `run`). InvalidArgument when the run's architecture is not one
// impq knows (names it and the known ones) or bits.size() is not the number of players.
absl::StatusOr<std::vector<ModuleWidth>> ModuleWidths(const RunFile& run,
                                                      const std::vector<int>& bits);

// The llama-quantize type of a width: q2_k, q3_k, q4_k (k-quants, rows of 256 weights), q8_0
// (llama.cpp's 8-bit type; there is no 8-bit k-quant), f16 (16) or f32 (32); the .cc says why
// each. InvalidArgument for any other width.
absl::StatusOr<std::string> LlamaCppType(int bits);

struct LlamaCppOptions {
  std::string input_gguf;   // the command's input model (a placeholder name when unknown)
  std::string output_gguf;  // the command's output model
  std::string types_file;   // where the text is written (named in the grep alternative)
};

// The llama.cpp export (header above). `picked` names the allocation in the comments.
absl::StatusOr<std::string> LlamaCppExport(const RunFile& run, const PickedAllocation& picked,
                                           const LlamaCppOptions& options);
// The GPTQModel QuantizeConfig JSON (header above), pretty-printed.
absl::StatusOr<std::string> GptqModelExport(const RunFile& run, const PickedAllocation& picked);
// The HQQ per-module config JSON (header above), pretty-printed.
absl::StatusOr<std::string> HqqExport(const RunFile& run, const PickedAllocation& picked);

}  // namespace impq::cli

#endif  // IMPQ_CLI_ALLOCATION_EXPORT_H_
