#include "cli/allocation_export.h"

#include <algorithm>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"

namespace impq::cli {
namespace {

using nlohmann::ordered_json;

model::TensorRole RoleOf(model::LinearKind kind) {
  switch (kind) {
    case model::LinearKind::kQ: return model::TensorRole::kQ;
    case model::LinearKind::kK: return model::TensorRole::kK;
    case model::LinearKind::kV: return model::TensorRole::kV;
    case model::LinearKind::kO: return model::TensorRole::kO;
    case model::LinearKind::kGate: return model::TensorRole::kGate;
    case model::LinearKind::kUp: return model::TensorRole::kUp;
    case model::LinearKind::kDown: return model::TensorRole::kDown;
  }
  return model::TensorRole::kQ;
}

std::string StripWeight(const std::string& name) {
  return absl::EndsWith(name, ".weight") ? name.substr(0, name.size() - 7) : name;
}

bool FullPrecision(int bits) { return bits >= 16; }

// A Python `re` pattern matching exactly `name` (dots escaped, end anchored; re.match anchors
// the start).
std::string ExactRegex(const std::string& name) {
  return absl::StrCat(absl::StrReplaceAll(name, {{".", "\\."}}), "$");
}

// The most frequent quantized width (ties: the wider); 4 when every module is full precision.
int BaseBits(const std::vector<ModuleWidth>& modules) {
  std::map<int, int> count;
  for (const ModuleWidth& m : modules) {
    if (!FullPrecision(m.bits)) ++count[m.bits];
  }
  int best = 4, best_count = 0;
  for (const auto& [bits, n] : count) {
    if (n >= best_count) {
      best = bits;
      best_count = n;
    }
  }
  return best;
}

int64_t Cols(const RunModel& m, model::LinearKind kind) {
  switch (kind) {
    case model::LinearKind::kO: return m.q_dim;
    case model::LinearKind::kDown: return m.hidden_dim;
    default: return m.dim;
  }
}

}  // namespace

absl::StatusOr<std::vector<ModuleWidth>> ModuleWidths(const RunFile& run,
                                                      const std::vector<int>& bits) {
  const model::ModelArch* arch = nullptr;
  std::vector<std::string> known;
  for (const model::ModelArch* a : model::AllArchitectures()) {
    known.push_back(a->name());
    if (a->name() == run.model.arch) arch = a;
  }
  if (arch == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(run.path, ": model.config names architecture \"",
                                                   run.model.arch, "\" (known: ",
                                                   absl::StrJoin(known, ", "), ")"));
  }
  if (bits.size() != run.model.player_names.size()) {
    return absl::InvalidArgumentError(absl::StrCat(run.path, ": ", bits.size(), " widths for ",
                                                   run.model.player_names.size(), " players"));
  }
  std::vector<ModuleWidth> out;
  for (int l = 0; l < run.model.n_layers; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) {
      ModuleWidth m;
      m.layer = l;
      m.kind = static_cast<model::LinearKind>(k);
      m.bits = run.players == quant::PlayerGranularity::kBlock ? bits[l]
                                                                : bits[l * model::kNumLinear + k];
      m.hf_name = StripWeight(arch->HfTensorName(RoleOf(m.kind), l));
      m.gguf_name = StripWeight(arch->GgufTensorName(RoleOf(m.kind), l));
      out.push_back(std::move(m));
    }
  }
  return out;
}

// One row per width impq packs, the llama.cpp type closest to it:
//   2 -> q2_k, 3 -> q3_k, 4 -> q4_k: the k-quants of that width (super-blocks of 256 weights
//     with per-block scales, like impq's groups). There is no legacy type below 4 bits (q4_0
//     is the smallest), so 2 and 3 bits can only be k-quants; 4 bits is q4_k, not q4_0, to
//     stay in one family with them (and it is Q4_K_M's own type).
//   8 -> q8_0: llama.cpp has no 8-bit k-quant; q8_0 (blocks of 32, one scale each) is its
//     8-bit type.
//   16 / 32 (full precision) -> f16 / f32.
// Row widths: the k-quants need rows that are multiples of 256 weights, q8_0 of 32. But
// llama-quantize applies a --tensor-type only where the command's base type (Q4_K_M, whose
// types are k-quants) needs no fallback, i.e. on rows of multiples of 256; on narrower rows it
// keeps the base type's fallback whatever was asked. So one rule holds for every width, and
// LlamaCppExport notes every quantized module whose rows are not multiples of 256.
absl::StatusOr<std::string> LlamaCppType(int bits) {
  switch (bits) {
    case 2: return std::string("q2_k");
    case 3: return std::string("q3_k");
    case 4: return std::string("q4_k");
    case 8: return std::string("q8_0");
    case 16: return std::string("f16");
    case 32: return std::string("f32");
  }
  return absl::InvalidArgumentError(absl::StrCat("width ", bits, " has no llama.cpp type"));
}

absl::StatusOr<std::string> LlamaCppExport(const RunFile& run, const PickedAllocation& picked,
                                           const LlamaCppOptions& options) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  std::vector<std::string> lines;
  std::string flags;
  std::vector<std::string> short_rows;  // modules whose rows k-quants cannot block
  for (const ModuleWidth& m : modules) {
    ASSIGN_OR_RETURN(std::string type, LlamaCppType(m.bits));
    lines.push_back(absl::StrCat(m.gguf_name, "=", type));
    absl::StrAppend(&flags, " --tensor-type ", lines.back());
    // The row rule of LlamaCppType's comment: any width, 256 weights.
    if (!FullPrecision(m.bits) && Cols(run.model, m.kind) % 256 != 0) {
      short_rows.push_back(absl::StrCat(model::LinearKindName(m.kind), " (",
                                        Cols(run.model, m.kind), ")"));
    }
  }
  std::string out;
  absl::StrAppend(&out, "# impq allocation ", picked.Describe(), " (",
                  picked.budget->budget_bytes, " bytes of linear weights in impq's format, ",
                  run.backend, " group ", run.group_size, ", ",
                  quant::PlayerGranularityName(run.players), " players)\n");
  absl::StrAppend(&out, "# run file ", run.path, "; model ", run.model.config,
                  run.model.fingerprint.empty() ? "" : absl::StrCat(" ", run.model.fingerprint),
                  "\n");
  absl::StrAppend(&out,
                  "# Each line below is one `llama-quantize --tensor-type NAME=TYPE` argument:\n"
                  "# NAME is searched as a regular expression in the GGUF tensor names and\n"
                  "# matches exactly one tensor (NAME.weight). Widths: 2 -> q2_k, 3 -> q3_k,\n"
                  "# 4 -> q4_k, 8 -> q8_0, full precision -> f16/f32; embeddings and output head\n"
                  "# stay f16 as impq keeps them in full precision.\n");
  if (!short_rows.empty()) {
    std::sort(short_rows.begin(), short_rows.end());
    short_rows.erase(std::unique(short_rows.begin(), short_rows.end()), short_rows.end());
    absl::StrAppend(&out,
                    "# Note: k-quants need rows that are multiples of 256 weights; llama-quantize "
                    "falls back\n# to another type for ",
                    absl::StrJoin(short_rows, ", "), ".\n");
  }
  absl::StrAppend(&out, "# Command:\n# llama-quantize --token-embedding-type f16 "
                        "--output-tensor-type f16",
                  flags, " ", options.input_gguf, " ", options.output_gguf, " Q4_K_M\n");
  absl::StrAppend(&out, "# or, in bash, with this file: llama-quantize --token-embedding-type f16 "
                        "--output-tensor-type f16 --tensor-type-file <(grep -v '^#' ",
                  options.types_file, ") ", options.input_gguf, " ", options.output_gguf,
                  " Q4_K_M\n");
  for (const std::string& l : lines) absl::StrAppend(&out, l, "\n");
  return out;
}

absl::StatusOr<std::string> GptqModelExport(const RunFile& run, const PickedAllocation& picked) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  ordered_json dynamic = ordered_json::object();
  for (const ModuleWidth& m : modules) {
    if (FullPrecision(m.bits)) {
      dynamic[absl::StrCat("-:", ExactRegex(m.hf_name))] = ordered_json::object();
    } else {
      dynamic[absl::StrCat("+:", ExactRegex(m.hf_name))] = {{"bits", m.bits},
                                                             {"group_size", run.group_size}};
    }
  }
  // impq's groups are asymmetric (a zero point per group): sym false.
  ordered_json j = {{"bits", BaseBits(modules)},
                    {"group_size", run.group_size},
                    {"sym", false},
                    {"desc_act", false},
                    {"dynamic", dynamic}};
  return j.dump(2) + "\n";
}

absl::StatusOr<std::string> HqqExport(const RunFile& run, const PickedAllocation& picked) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  ordered_json j = ordered_json::object();
  for (const ModuleWidth& m : modules) {
    // axis 1: groups run along the input features, as impq's do.
    j[m.hf_name] = FullPrecision(m.bits)
                       ? ordered_json(nullptr)
                       : ordered_json{{"nbits", m.bits}, {"group_size", run.group_size},
                                      {"axis", 1}};
  }
  return j.dump(2) + "\n";
}

}  // namespace impq::cli
