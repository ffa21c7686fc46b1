#include "worker/quant/quantized_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "worker/model/impq_checkpoint.h"
#include "worker/model/model_arch.h"
#include "worker/model/safetensors_writer.h"

namespace impq::quant {
namespace {

using model::LinearKind;
using model::TensorRole;

constexpr TensorRole kLinearRoles[model::kNumLinear] = {
    TensorRole::kQ, TensorRole::kK, TensorRole::kV, TensorRole::kO,
    TensorRole::kGate, TensorRole::kUp, TensorRole::kDown};

std::string Module(const std::string& weight_name) {
  return absl::EndsWith(weight_name, ".weight")
             ? weight_name.substr(0, weight_name.size() - 7)
             : weight_name;
}

std::string Bytes(std::span<const float> v) {
  std::string out(v.size() * sizeof(float), '\0');
  if (!v.empty()) std::memcpy(out.data(), v.data(), out.size());
  return out;
}

}  // namespace

std::vector<int> CheckpointWidths(std::span<const int> bits) {
  std::vector<int> widths;
  for (int b : bits) {
    if (b != 16 && b != 32) widths.push_back(b);
  }
  std::sort(widths.begin(), widths.end());
  widths.erase(std::unique(widths.begin(), widths.end()), widths.end());
  if (widths.empty()) {
    widths.assign(std::begin(QuantizedModel::kDefaultWidths),
                  std::end(QuantizedModel::kDefaultWidths));
  }
  return widths;
}

absl::StatusOr<std::map<std::string, std::string>> BuildQuantizedCheckpoint(
    const QuantizedModel& qm, std::span<const int> bits, const nlohmann::json& provenance) {
  const model::Model& m = qm.model();
  const model::ModelConfig& c = m.config;
  if (static_cast<int>(bits.size()) != qm.num_players()) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: ", bits.size(), " widths for ",
                                                   qm.num_players(), " players"));
  }
  const model::ModelArch* arch = nullptr;
  for (const model::ModelArch* a : model::AllArchitectures()) {
    if (a->name() == c.arch) arch = a;
  }
  if (arch == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint: architecture \"", c.arch,
                                                   "\" has no Hugging Face names in impq"));
  }
  // Width of every module: its player's.
  std::vector<int> width(static_cast<size_t>(c.n_layers) * model::kNumLinear, 0);
  for (int p = 0; p < qm.num_players(); ++p) {
    const int b = bits[p];
    if (!qm.HasWidth(b) && b != 16 && b != 32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "checkpoint: player ", p, " (", qm.players()[p].name, ") has width ", b,
          "; expected one of the quantized model's widths (", absl::StrJoin(qm.widths(), ", "),
          ") or 16/32 for full precision"));
    }
    for (const LinearRef& r : qm.players()[p].linears) {
      width[static_cast<size_t>(r.layer) * model::kNumLinear + static_cast<int>(r.kind)] = b;
    }
  }

  // F32 tensors first (offsets stay 4-byte aligned for zero-copy reads), packed codes last.
  model::SafetensorsWriter f32, u8;
  auto add = [&](TensorRole role, int layer, const model::Tensor& t) {
    return f32.AddF32(arch->HfTensorName(role, layer), t.shape(), t.values());
  };
  nlohmann::json modules = nlohmann::json::object();
  RETURN_IF_ERROR(add(TensorRole::kEmbedding, 0, m.embedding));
  for (int l = 0; l < c.n_layers; ++l) {
    const model::LayerWeights& lw = m.layers[l];
    RETURN_IF_ERROR(add(TensorRole::kAttnNorm, l, lw.attn_norm));
    RETURN_IF_ERROR(add(TensorRole::kFfnNorm, l, lw.ffn_norm));
    if (c.qk_norm) {
      RETURN_IF_ERROR(add(TensorRole::kQNorm, l, lw.q_norm));
      RETURN_IF_ERROR(add(TensorRole::kKNorm, l, lw.k_norm));
    }
    if (c.post_norms) {
      RETURN_IF_ERROR(add(TensorRole::kPostAttnNorm, l, lw.post_attn_norm));
      RETURN_IF_ERROR(add(TensorRole::kPostFfnNorm, l, lw.post_ffn_norm));
    }
    for (int k = 0; k < model::kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      const std::string name = arch->HfTensorName(kLinearRoles[k], l);
      const std::string module = Module(name);
      const int b = width[static_cast<size_t>(l) * model::kNumLinear + k];
      modules[module] = b;
      if (b == 16 || b == 32) {
        RETURN_IF_ERROR(add(kLinearRoles[k], l, lw[kind]));
        continue;
      }
      const PackedTensor& p = qm.Packed(l, kind, b);
      RETURN_IF_ERROR(f32.Add(module + ".scales", "F32", {p.rows, p.groups_per_row()},
                              Bytes(p.scales)));
      RETURN_IF_ERROR(f32.Add(module + ".zeros", "F32", {p.rows, p.groups_per_row()},
                              Bytes(p.zeros)));
      RETURN_IF_ERROR(u8.Add(module + ".qweight", "U8", {p.rows, p.row_code_bytes()},
                             std::string(p.codes.begin(), p.codes.end())));
    }
  }
  RETURN_IF_ERROR(add(TensorRole::kFinalNorm, 0, m.final_norm));
  if (!c.tied_embeddings) RETURN_IF_ERROR(add(TensorRole::kOutput, 0, m.output));

  // One file: the F32 writer's entries, then the U8 ones, in one writer.
  model::SafetensorsWriter all;
  all.SetMetadata("format", "impq");
  for (const model::SafetensorsWriter* w : {&f32, &u8}) {
    for (const auto& e : w->entries()) RETURN_IF_ERROR(all.Add(e.name, e.dtype, e.shape, e.bytes));
  }

  nlohmann::json config = model::HfConfigFields(c);
  config["quantization_config"] = {
      {"quant_method", model::kImpqQuantMethod},
      {"format_version", model::kImpqCheckpointVersion},
      {"model_config", model::ModelConfigToJson(c)},
      {"group_size", qm.group_size()},
      {"modules", modules},
      {"backend", qm.backend()},
      {"players", PlayerGranularityName(qm.granularity())},
      {"bits", std::vector<int>(bits.begin(), bits.end())},
      {"allocation", provenance}};
  std::map<std::string, std::string> files;
  files["config.json"] = config.dump(2) + "\n";
  files["model.safetensors"] = all.Build();
  return files;
}

}  // namespace impq::quant
