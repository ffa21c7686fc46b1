// An allocation of an `impq run --json` file written in the form another quantizer applies as
// written, so a person can use it without translating it by hand (`impq export`,
// cli/export_command.cc). Each format follows the target tool's own matching rules (read from
// its source; tests/export_tools_test.cc replays them on 32-layer Llama-3, Qwen-3 and Gemma-2
// names):
//
//   llama.cpp  a `llama-quantize --tensor-type-file` file: whitespace-separated tokens
//              `^blk\.3\.ffn_down\.weight$=q2_K`, one per quantizable linear tensor, nothing
//              else (that parser has no comments). Patterns are anchored and escaped, so each
//              matches exactly one tensor (llama.cpp applies the first pattern whose
//              std::regex_search matches). Every type requested is one whose block divides the
//              tensor's rows, so llama.cpp's shape fallback never changes it (LlamaCppTypeFor).
//              A notes file beside it holds the command line, the llama.cpp versions the
//              flags need, and every module whose type differs from its width, with the reason.
//   gptqmodel  a GPTQModel QuantizeConfig as JSON (only QuantizeConfig fields): base bits and
//              group size plus one "dynamic" entry per module, `+:^model\.layers\.3\.mlp\.
//              down_proj$` -> {"bits": 2, "group_size": 64} (full precision: `-:^...$` -> {},
//              GPTQModel's "do not quantize").
//   hqq        JSON {"modules": full HF module name -> BaseQuantizeConfig arguments {"nbits",
//              "group_size", "axis"} or null (keep), "transformers": an HqqConfig
//              {dynamic_config, skip_modules} when transformers' lookup (the last two parts of a
//              module's name) can express the allocation, else null with the reason}, and a
//              loader script beside it (HQQ's own quant_config is keyed by module kind, the same
//              for every layer; the script puts an HQQLinear on each module by full name).
//   quanto     JSON {"weights": {"qint2" | "qint4" | "qint8": [exact module names]}, "keep":
//              [...]}: one optimum-quanto `quantize(model, weights=QTYPE, include=NAMES)` call
//              per type. quanto has no 3-bit type: an allocation with 3-bit modules is refused.
// Every module of a player gets the player's width; block players give all seven linears of
// the layer one width. Pure functions of the run file and the allocation; thread-safe.
#ifndef IMPQ_CLI_ALLOCATION_EXPORT_H_
#define IMPQ_CLI_ALLOCATION_EXPORT_H_

#include <cstdint>
#include <map>
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
  int64_t in_features = 0;  // the row length (llama.cpp's ne[0], HF's in_features)
  std::string hf_name;      // "model.layers.3.mlp.down_proj" (the architecture's HF name)
  std::string gguf_name;    // "blk.3.ffn_down.weight" (the architecture's GGUF tensor name)
};

// Every linear module of the run's model (layer-major, LinearKind order) with its width under
// `bits` (one per player of `run`). InvalidArgument when the run's architecture is not one
// impq knows (names it and the known ones) or bits.size() is not the number of players.
absl::StatusOr<std::vector<ModuleWidth>> ModuleWidths(const RunFile& run,
                                                      const std::vector<int>& bits);

// The llama.cpp type a module of `bits` with rows of `in_features` weights is exported as, and
// why when it is not the width's own type.
struct LlamaCppChoice {
  std::string type;    // ggml_type_name spelling: q2_K, q3_K, q4_K, q4_0, q8_0, f16, f32
  int type_bits = 0;   // the bits of a weight's code in that type (16/32 for f16/f32)
  std::string reason;  // empty when `type` is the width's own type
};
// Rows that are multiples of 256: 2 -> q2_K, 3 -> q3_K, 4 -> q4_K, 8 -> q8_0; 16 -> f16,
// 32 -> f32. Narrower rows (the .cc says why): multiples of 32 take q4_0 for 2/3/4 bits and
// q8_0 for 8; others f16. InvalidArgument for a width that is none of these.
absl::StatusOr<LlamaCppChoice> LlamaCppTypeFor(int bits, int64_t in_features);

// The base type the llama-quantize command names: its default tensor type (q6_K) is never one
// the export requests, so no override can be mistaken for "no override".
inline constexpr char kLlamaCppBaseType[] = "Q6_K";

struct LlamaCppOptions {
  std::string input_gguf;   // the command's input model (a placeholder name when unknown)
  std::string output_gguf;  // the command's output model
  std::string types_file;   // where the types file is written (named in the command)
};

// The two llama.cpp files: `types` (the --tensor-type-file) and `notes` (plain text: the
// command, versions, and every module exported at another width than the allocation's).
struct LlamaCppFiles {
  std::string types;
  std::string notes;
};
absl::StatusOr<LlamaCppFiles> LlamaCppExport(const RunFile& run, const PickedAllocation& picked,
                                             const LlamaCppOptions& options);
// The GPTQModel QuantizeConfig JSON (header above), pretty-printed.
absl::StatusOr<std::string> GptqModelExport(const RunFile& run, const PickedAllocation& picked);

// The HQQ config JSON (header above), pretty-printed, and the loader script shipped beside it.
struct HqqFiles {
  std::string config;
  std::string loader;  // Python; kHqqLoaderName
};
inline constexpr char kHqqLoaderName[] = "impq_hqq_apply.py";
absl::StatusOr<HqqFiles> HqqExport(const RunFile& run, const PickedAllocation& picked);

// The optimum-quanto JSON (header above), pretty-printed. InvalidArgument naming the count and
// the first 3-bit module when the allocation has any (quanto has qint2/qint4/qint8 only).
absl::StatusOr<std::string> QuantoExport(const RunFile& run, const PickedAllocation& picked);

}  // namespace impq::cli

#endif  // IMPQ_CLI_ALLOCATION_EXPORT_H_
