#include "cli/allocation_export.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/hqq_loader_py.h"
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

// A pattern that matches exactly `name` and nothing else, in ECMAScript (llama.cpp's
// std::regex) and Python `re` (GPTQModel) alike: anchored at both ends, every metacharacter
// escaped (module and tensor names only have dots, but nothing here relies on that).
std::string ExactRegex(const std::string& name) {
  std::string out = "^";
  for (char c : name) {
    if (absl::string_view("\\.^$|?*+()[]{}").find(c) != absl::string_view::npos) out += '\\';
    out += c;
  }
  return out + "$";
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
      m.in_features = Cols(run.model, m.kind);
      m.hf_name = StripWeight(arch->HfTensorName(RoleOf(m.kind), l));
      m.gguf_name = arch->GgufTensorName(RoleOf(m.kind), l);
      out.push_back(std::move(m));
    }
  }
  return out;
}


// The types, by how llama.cpp stores them (ggml's type table, blocks along a row):
//   q2_K, q3_K, q4_K: the k-quants of 2, 3 and 4 bits, super-blocks of 256 weights with
//     per-block scales, like impq's groups. 4 bits is q4_K rather than q4_0 to stay in one
//     family with 2 and 3 bits, which only exist as k-quants.
//   q8_0: llama.cpp's only 8-bit weight type (blocks of 32; there is no 8-bit k-quant).
//   f16 / f32: full precision.
// A type is only usable where its block divides the row. llama.cpp otherwise swaps it at
// quantization time (src/llama-quant.cpp tensor_type_fallback: q2_K and q3_K -> q4_0, q4_K ->
// q5_0, f16 when that does not divide either) or, for q8_0, which has no fallback, aborts the
// whole run. So the export never leaves the choice to llama.cpp: on rows that are not multiples
// of 256 it asks for q4_0 (4 bits in blocks of 32, the narrowest llama.cpp has: there is no 2-
// or 3-bit type with blocks of 32, and q4_0 is what llama.cpp itself turns q2_K/q3_K into),
// keeps q8_0 where 32 divides the row, and asks for f16 where nothing does. Real models'
// rows (4096, 14336, 3584, 12288, ...) are multiples of 256; test models' are often not.
absl::StatusOr<LlamaCppChoice> LlamaCppTypeFor(int bits, int64_t in_features) {
  switch (bits) {
    case 16: return LlamaCppChoice{"f16", 16, ""};
    case 32: return LlamaCppChoice{"f32", 32, ""};
    case 2: case 3: case 4: case 8: break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("width ", bits, " has no llama.cpp type"));
  }
  const std::string own = bits == 8 ? "q8_0" : absl::StrCat("q", bits, "_K");
  const int64_t own_block = bits == 8 ? 32 : 256;
  if (in_features % own_block == 0) return LlamaCppChoice{own, bits, ""};
  if (in_features % 32 == 0) {
    // Only 2/3/4 bits get here (q8_0's block is 32).
    return LlamaCppChoice{
        "q4_0", 4,
        absl::StrCat(own, " needs rows that are multiples of 256 weights (these have ",
                     in_features, ")",
                     bits == 4 ? "; q4_0 is llama.cpp's 4-bit type with blocks of 32"
                               : "; llama.cpp has no 2- or 3-bit type with blocks of 32, and "
                                 "q4_0 is the type it falls back to itself")};
  }
  return LlamaCppChoice{
      "f16", 16,
      absl::StrCat("rows of ", in_features, " weights are not a multiple of 32, the smallest "
                   "block of any llama.cpp quantized type",
                   bits == 8 ? " (for q8_0 llama.cpp has no fallback and aborts)"
                             : " (llama.cpp would fall back to f16 itself)")};
}

absl::StatusOr<LlamaCppFiles> LlamaCppExport(const RunFile& run, const PickedAllocation& picked,
                                             const LlamaCppOptions& options) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  LlamaCppFiles files;
  std::vector<std::string> changed;  // modules exported at another width, with the reason
  for (const ModuleWidth& m : modules) {
    ASSIGN_OR_RETURN(LlamaCppChoice c, LlamaCppTypeFor(m.bits, m.in_features));
    absl::StrAppend(&files.types, ExactRegex(m.gguf_name), "=", c.type, "\n");
    if (!c.reason.empty()) {
      changed.push_back(absl::StrCat("  ", m.gguf_name, ": ", m.bits, " bits -> ", c.type, " (",
                                     c.type_bits, " bits): ", c.reason));
    }
  }
  std::string& out = files.notes;
  absl::StrAppend(&out, "impq allocation ", picked.Describe(), " (",
                  picked.budget->budget_bytes, " bytes of linear weights in impq's format, ",
                  run.backend, " group ", run.group_size, ", ",
                  quant::PlayerGranularityName(run.players), " players)\n");
  absl::StrAppend(&out, "run file ", run.path, "; model ", run.model.config,
                  run.model.fingerprint.empty() ? "" : absl::StrCat(" ", run.model.fingerprint),
                  "\n\n");
  absl::StrAppend(
      &out, "Apply it (from an F16/BF16/F32 GGUF of the same model):\n\n  llama-quantize "
            "--token-embedding-type f16 --output-tensor-type f16 --tensor-type-file ",
      options.types_file, " ", options.input_gguf, " ", options.output_gguf, " ",
      kLlamaCppBaseType, "\n\n");
  absl::StrAppend(
      &out,
      "llama.cpp versions: --tensor-type-file needs llama.cpp with PR #18572 (January 2026);\n"
      "--token-embedding-type and --output-tensor-type came with PR #6239 (March 2024).\n"
      "Each token of ", options.types_file, " is also one --tensor-type argument, which\n"
      "llama.cpp has had since PR #12511 (April 2025). Where a tensor's rows are not a multiple\n"
      "of 256 weights, versions before PR #18952 (January 2026) skip its --tensor-type.\n\n"
      "How llama-quantize reads and applies the file (tools/quantize/quantize.cpp,\n"
      "src/llama-quant.cpp): the file is whitespace-separated NAME=TYPE tokens (no comments,\n"
      "hence these notes apart); NAME is lower-cased and used as a regular expression, TYPE\n"
      "is a ggml type name in any case. A quantizable tensor takes the type of the first\n"
      "pattern that matches it (std::regex_search); then, if the type's block does not divide\n"
      "the tensor's rows, llama.cpp falls back to another type (q2_K/q3_K -> q4_0, q4_K ->\n"
      "q5_0, f16 when even that fails) or, for q8_0, aborts. Every pattern here is anchored\n"
      "and escaped (^blk\\.3\\.ffn_down\\.weight$), so it matches one tensor only, and every\n"
      "type's block divides that tensor's rows, so no fallback applies. The base type ",
      kLlamaCppBaseType, "\n"
      "reaches no linear layer; embeddings and output head stay f16, as impq keeps them in\n"
      "full precision.\n\n"
      "Widths: 2 -> q2_K, 3 -> q3_K, 4 -> q4_K, 8 -> q8_0, full precision -> f16/f32.\n");
  if (changed.empty()) {
    absl::StrAppend(&out, "Every module gets its width's own type.\n");
  } else {
    absl::StrAppend(&out, changed.size(), " of ", modules.size(),
                    " modules get another type than their width's, because of their rows:\n",
                    absl::StrJoin(changed, "\n"), "\n");
  }
  return files;
}

absl::StatusOr<std::string> GptqModelExport(const RunFile& run, const PickedAllocation& picked) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  // GPTQModel's QuantizeConfig takes these group sizes only (gptqmodel/quantization/config.py).
  static constexpr int kGroupSizes[] = {-1, 16, 32, 64, 128, 256, 512, 1024};
  if (std::find(std::begin(kGroupSizes), std::end(kGroupSizes), run.group_size) ==
      std::end(kGroupSizes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        run.path, ": settings.group_size is ", run.group_size,
        " (GPTQModel takes -1, 16, 32, 64, 128, 256, 512 or 1024)"));
  }
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

namespace {

// transformers' HqqConfig for the allocation, or null and why not. transformers gives a module
// the dynamic_config entry of the last two parts of its name (quantizers/quantizer_hqq.py,
// create_quantized_param) and keeps it in full precision when a skip_modules entry is a
// substring of its name; so it can hold the allocation only when every quantized module of a
// kind has one width.
std::pair<ordered_json, std::string> TransformersHqqConfig(const std::vector<ModuleWidth>& modules,
                                                           int group_size) {
  std::map<std::string, std::set<int>> widths;  // tag -> quantized widths
  ordered_json skip = ordered_json::array({"lm_head"});
  for (const ModuleWidth& m : modules) {
    const size_t dot = m.hf_name.rfind('.', m.hf_name.rfind('.') - 1);
    const std::string tag = m.hf_name.substr(dot + 1);
    if (FullPrecision(m.bits)) {
      skip.push_back(m.hf_name);
    } else {
      widths[tag].insert(m.bits);
    }
  }
  ordered_json dynamic = ordered_json::object();
  std::vector<std::string> mixed;
  for (const auto& [tag, w] : widths) {
    if (w.size() > 1) {
      mixed.push_back(absl::StrCat(tag, " (", absl::StrJoin(w, ", "), " bits)"));
      continue;
    }
    dynamic[tag] = {{"nbits", *w.begin()}, {"group_size", group_size}, {"axis", 1}};
  }
  if (!mixed.empty()) {
    return {nullptr,
            absl::StrCat("transformers' HqqConfig cannot hold this allocation: it gives a module "
                         "the dynamic_config entry of the last two parts of its name, one width "
                         "for every layer, and here ",
                         absl::StrJoin(mixed, ", "),
                         " differ between layers. Apply it with impq_hqq_apply.py.")};
  }
  return {ordered_json{{"dynamic_config", dynamic}, {"skip_modules", skip}},
          "HqqConfig(dynamic_config=..., skip_modules=...) below gives every module its width: "
          "each kind has one width in every layer (transformers looks a module up by the last "
          "two parts of its name), and full-precision modules are skipped by name."};
}

}  // namespace

absl::StatusOr<HqqFiles> HqqExport(const RunFile& run, const PickedAllocation& picked) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  ordered_json by_name = ordered_json::object();
  for (const ModuleWidth& m : modules) {
    // axis 1: groups run along the input features, as impq's do.
    by_name[m.hf_name] = FullPrecision(m.bits)
                             ? ordered_json(nullptr)
                             : ordered_json{{"nbits", m.bits}, {"group_size", run.group_size},
                                            {"axis", 1}};
  }
  auto [transformers, why] = TransformersHqqConfig(modules, run.group_size);
  ordered_json j = {
      {"impq_allocation", picked.Describe()},
      {"usage", "from impq_hqq_apply import apply_allocation; apply_allocation(model, THIS_FILE) puts "
                "an HQQLinear with these BaseQuantizeConfig arguments on each module named "
                "here, by full name (null: kept in full precision)"},
      {"modules", by_name},
      {"transformers_note", why},
      {"transformers", transformers}};
  return HqqFiles{j.dump(2) + "\n", kHqqLoaderPy};
}

absl::StatusOr<std::string> QuantoExport(const RunFile& run, const PickedAllocation& picked) {
  ASSIGN_OR_RETURN(std::vector<ModuleWidth> modules, ModuleWidths(run, picked.allocation->bits));
  std::vector<std::string> three;
  std::map<int, ordered_json> names;  // bits -> module names
  ordered_json keep = ordered_json::array();
  for (const ModuleWidth& m : modules) {
    if (m.bits == 3) {
      three.push_back(m.hf_name);
    } else if (FullPrecision(m.bits)) {
      keep.push_back(m.hf_name);
    } else {
      names[m.bits].push_back(m.hf_name);
    }
  }
  if (!three.empty()) {
    // Widening them to qint4 would silently spend more than the budget: refuse instead.
    return absl::InvalidArgumentError(absl::StrCat(
        "--format quanto: optimum-quanto has no 3-bit weight type (qint2, qint4, qint8 only), "
        "and ", picked.Describe(), " puts ", three.size(), " modules at 3 bits (first ",
        three.front(), "); export an allocation without 3-bit modules, or another format"));
  }
  ordered_json weights = ordered_json::object();
  for (auto& [bits, list] : names) weights[absl::StrCat("qint", bits)] = std::move(list);
  ordered_json j = {
      {"impq_allocation", picked.Describe()},
      {"usage", "for qtype, names in THIS['weights'].items(): optimum.quanto.quantize(model, "
                "weights=qtype, include=names); then optimum.quanto.freeze(model)"},
      {"note", absl::StrCat("include= takes fnmatch patterns; these are exact module names "
                            "(no *, ? or [), so each matches its module only. quantize() has no "
                            "group-size argument: quanto picks its own groups, not impq's ",
                            run.group_size, ".")},
      {"weights", weights},
      {"keep", keep}};
  return j.dump(2) + "\n";
}

}  // namespace impq::cli
