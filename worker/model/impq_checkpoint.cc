#include "worker/model/impq_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/status.h"
#include "worker/model/model_arch.h"
#include "worker/model/safetensors_file.h"
#include "worker/quant/packed_tensor.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr char kWeights[] = "model.safetensors";

std::string DirOf(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return path;
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// config.json of the directory, or an error naming it.
absl::StatusOr<json> ReadConfig(const std::string& dir) {
  const std::string path = (fs::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  return j;
}

// Typed field readers for ModelConfigFromJson; errors name the file and the field.
struct Reader {
  const json& j;
  const std::string& path;
  absl::Status Missing(const char* key) const {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model_config.", key,
                                                   " is missing or has the wrong type"));
  }
  absl::Status Int(const char* key, int* out) const {
    if (!j.contains(key) || !j[key].is_number_integer()) return Missing(key);
    // Range-checked before narrowing: ModelConfig::Validate then bounds every size.
    const int64_t v = j[key].is_number_unsigned()
                          ? static_cast<int64_t>(std::min<uint64_t>(j[key].get<uint64_t>(),
                                                                    uint64_t{1} << 62))
                          : j[key].get<int64_t>();
    if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": model_config.", key, " = ", v,
                                                     " is out of range"));
    }
    *out = static_cast<int>(v);
    return absl::OkStatus();
  }
  absl::Status Float(const char* key, float* out) const {
    if (!j.contains(key) || !j[key].is_number()) return Missing(key);
    *out = static_cast<float>(j[key].get<double>());
    return absl::OkStatus();
  }
  absl::Status Bool(const char* key, bool* out) const {
    if (!j.contains(key) || !j[key].is_boolean()) return Missing(key);
    *out = j[key].get<bool>();
    return absl::OkStatus();
  }
  absl::Status String(const char* key, std::string* out) const {
    if (!j.contains(key) || !j[key].is_string()) return Missing(key);
    *out = j[key].get<std::string>();
    return absl::OkStatus();
  }
};

}  // namespace

json ModelConfigToJson(const ModelConfig& c) {
  return {{"arch", c.arch},
          {"dim", c.dim},
          {"hidden_dim", c.hidden_dim},
          {"n_layers", c.n_layers},
          {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"seq_len", c.seq_len},
          {"norm_eps", c.norm_eps},
          {"rope_theta", c.rope_theta},
          {"rope_style", c.rope_style == RopeStyle::kInterleaved ? "interleaved" : "half"},
          {"tied_embeddings", c.tied_embeddings},
          {"rope_scaling",
           {{"factor", c.rope_scaling.factor},
            {"low_freq_factor", c.rope_scaling.low_freq_factor},
            {"high_freq_factor", c.rope_scaling.high_freq_factor},
            {"original_max_position", c.rope_scaling.original_max_position}}},
          {"rope_freq_factors", c.rope_freq_factors},
          {"qk_norm", c.qk_norm},
          {"post_norms", c.post_norms},
          {"norm_weight_offset", c.norm_weight_offset},
          {"scale_embeddings", c.scale_embeddings},
          {"ffn_activation", c.ffn_activation == FfnActivation::kSilu ? "silu" : "gelu_tanh"},
          {"attn_logit_softcap", c.attn_logit_softcap},
          {"final_logit_softcap", c.final_logit_softcap},
          {"sliding_window", c.sliding_window},
          {"query_pre_attn_scalar", c.query_pre_attn_scalar}};
}

absl::StatusOr<ModelConfig> ModelConfigFromJson(const json& j, const std::string& path) {
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model_config is not an object"));
  }
  const Reader r{j, path};
  ModelConfig c;
  RETURN_IF_ERROR(r.String("arch", &c.arch));
  RETURN_IF_ERROR(r.Int("dim", &c.dim));
  RETURN_IF_ERROR(r.Int("hidden_dim", &c.hidden_dim));
  RETURN_IF_ERROR(r.Int("n_layers", &c.n_layers));
  RETURN_IF_ERROR(r.Int("n_heads", &c.n_heads));
  RETURN_IF_ERROR(r.Int("n_kv_heads", &c.n_kv_heads));
  RETURN_IF_ERROR(r.Int("head_dim", &c.head_dim));
  RETURN_IF_ERROR(r.Int("vocab_size", &c.vocab_size));
  RETURN_IF_ERROR(r.Int("seq_len", &c.seq_len));
  RETURN_IF_ERROR(r.Float("norm_eps", &c.norm_eps));
  RETURN_IF_ERROR(r.Float("rope_theta", &c.rope_theta));
  std::string rope_style, activation;
  RETURN_IF_ERROR(r.String("rope_style", &rope_style));
  if (rope_style != "interleaved" && rope_style != "half") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model_config.rope_style is \"",
                                                   rope_style, "\" (expected interleaved or half)"));
  }
  c.rope_style = rope_style == "interleaved" ? RopeStyle::kInterleaved : RopeStyle::kHalf;
  RETURN_IF_ERROR(r.Bool("tied_embeddings", &c.tied_embeddings));
  if (!j.contains("rope_scaling") || !j["rope_scaling"].is_object()) return r.Missing("rope_scaling");
  const Reader rs{j["rope_scaling"], path};
  RETURN_IF_ERROR(rs.Float("factor", &c.rope_scaling.factor));
  RETURN_IF_ERROR(rs.Float("low_freq_factor", &c.rope_scaling.low_freq_factor));
  RETURN_IF_ERROR(rs.Float("high_freq_factor", &c.rope_scaling.high_freq_factor));
  RETURN_IF_ERROR(rs.Int("original_max_position", &c.rope_scaling.original_max_position));
  if (!j.contains("rope_freq_factors") || !j["rope_freq_factors"].is_array()) {
    return r.Missing("rope_freq_factors");
  }
  for (const json& v : j["rope_freq_factors"]) {
    if (!v.is_number()) return r.Missing("rope_freq_factors");
    c.rope_freq_factors.push_back(static_cast<float>(v.get<double>()));
  }
  RETURN_IF_ERROR(r.Bool("qk_norm", &c.qk_norm));
  RETURN_IF_ERROR(r.Bool("post_norms", &c.post_norms));
  RETURN_IF_ERROR(r.Float("norm_weight_offset", &c.norm_weight_offset));
  RETURN_IF_ERROR(r.Bool("scale_embeddings", &c.scale_embeddings));
  RETURN_IF_ERROR(r.String("ffn_activation", &activation));
  if (activation != "silu" && activation != "gelu_tanh") {
    return absl::InvalidArgumentError(absl::StrCat(path, ": model_config.ffn_activation is \"",
                                                   activation, "\" (expected silu or gelu_tanh)"));
  }
  c.ffn_activation = activation == "silu" ? FfnActivation::kSilu : FfnActivation::kGeluTanh;
  RETURN_IF_ERROR(r.Float("attn_logit_softcap", &c.attn_logit_softcap));
  RETURN_IF_ERROR(r.Float("final_logit_softcap", &c.final_logit_softcap));
  RETURN_IF_ERROR(r.Int("sliding_window", &c.sliding_window));
  RETURN_IF_ERROR(r.Float("query_pre_attn_scalar", &c.query_pre_attn_scalar));
  RETURN_IF_ERROR(CheckConfig(c, path));
  return c;
}

json HfConfigFields(const ModelConfig& c) {
  std::string hf_class;
  for (const ModelArch* a : AllArchitectures()) {
    if (a->name() == c.arch && !a->hf_classes().empty()) hf_class = a->hf_classes()[0];
  }
  return {{"architectures", {hf_class}},
          {"model_type", c.arch},
          {"hidden_size", c.dim},
          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_position_embeddings", c.seq_len},
          {"rms_norm_eps", c.norm_eps},
          {"rope_theta", c.rope_theta},
          {"tie_word_embeddings", c.tied_embeddings},
          {"torch_dtype", "float32"}};
}

bool ImpqCheckpointReader::Recognizes(const std::string& path, std::span<const uint8_t>) const {
  std::error_code ec;
  const bool dir = fs::is_directory(path, ec);
  if (!dir && fs::path(path).filename() != kWeights) return false;
  absl::StatusOr<json> config = ReadConfig(DirOf(path));
  if (!config.ok()) return false;
  const json& q = (*config)["quantization_config"];
  return q.is_object() && q.contains("quant_method") && q["quant_method"] == kImpqQuantMethod;
}

absl::StatusOr<Model> ImpqCheckpointReader::Read(const std::string& path) const {
  const std::string dir = DirOf(path);
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ASSIGN_OR_RETURN(json config, ReadConfig(dir));
  const json& q = config["quantization_config"];
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": quantization_config.", what));
  };
  if (!q.is_object()) return bad("is missing");
  if (!q.contains("format_version") || q["format_version"] != kImpqCheckpointVersion) {
    return bad(absl::StrCat("format_version is ", q.value("format_version", json()).dump(),
                            " (this impq reads ", kImpqCheckpointVersion, ")"));
  }
  if (!q.contains("model_config")) return bad("model_config is missing");
  ASSIGN_OR_RETURN(ModelConfig c, ModelConfigFromJson(q["model_config"], config_path));
  if (!q.contains("group_size") || !q["group_size"].is_number_integer() ||
      q["group_size"].get<int64_t>() <= 0) {
    return bad("group_size is missing or not a positive integer");
  }
  const int64_t group_size = q["group_size"].get<int64_t>();
  if (!q.contains("modules") || !q["modules"].is_object()) return bad("modules is missing");
  const json& modules = q["modules"];
  const ModelArch* arch = nullptr;
  for (const ModelArch* a : AllArchitectures()) {
    if (a->name() == c.arch) arch = a;
  }
  if (arch == nullptr) return bad(absl::StrCat("model_config.arch \"", c.arch, "\" is unknown"));

  const std::string weights = (fs::path(dir) / kWeights).string();
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(weights));
  TensorSource src;
  src.path = weights;
  for (const auto& [name, e] : file->entries()) src.names.push_back(name);
  src.file_name = [arch](TensorRole role, int layer) { return arch->HfTensorName(role, layer); };
  src.field = [&config_path](const std::string& field) {
    return absl::StrCat(config_path, " quantization_config.model_config.", field);
  };
  src.fetch = [&](TensorRole role, int layer) -> absl::StatusOr<Tensor> {
    const std::string name = arch->HfTensorName(role, layer);
    static constexpr TensorRole kLinear[] = {TensorRole::kQ,    TensorRole::kK,  TensorRole::kV,
                                             TensorRole::kO,    TensorRole::kGate,
                                             TensorRole::kUp,   TensorRole::kDown};
    int kind = -1;
    for (int k = 0; k < kNumLinear; ++k) {
      if (kLinear[k] == role) kind = k;
    }
    if (kind < 0) return file->ReadTensor(name);
    const std::string module = absl::EndsWith(name, ".weight") ? name.substr(0, name.size() - 7)
                                                                : name;
    if (!modules.contains(module) || !modules[module].is_number_integer()) {
      return bad(absl::StrCat("modules has no width for ", module));
    }
    const int bits = modules[module].get<int>();
    if (bits == 16 || bits == 32) return file->ReadTensor(name);
    if (!impq_bits_supported(bits)) {
      return bad(absl::StrCat("modules.", module, " is ", bits,
                              " (expected 2, 3, 4, 8, or 16/32 for full precision)"));
    }
    const auto lk = static_cast<LinearKind>(kind);
    const int64_t rows = c.LinearRows(lk), cols = c.LinearCols(lk);
    quant::PackedTensor p;
    p.rows = rows;
    p.cols = cols;
    p.bits = bits;
    p.group_size = group_size;
    auto entry = [&](const std::string& suffix, const std::string& dtype,
                     std::vector<int64_t> shape) -> absl::StatusOr<std::span<const uint8_t>> {
      const std::string t = module + suffix;
      auto it = file->entries().find(t);
      if (it == file->entries().end()) {
        return absl::NotFoundError(absl::StrCat(weights, ": tensor ", t, " is missing"));
      }
      if (it->second.dtype != dtype || it->second.shape != shape) {
        return absl::InvalidArgumentError(absl::StrCat(
            weights, ": tensor ", t, " is ", it->second.dtype, " of shape [",
            absl::StrJoin(it->second.shape, ", "), "], expected ", dtype, " [",
            absl::StrJoin(shape, ", "), "] for ", bits, "-bit ", rows, "x", cols, " at group ",
            group_size));
      }
      return file->RawBytes(t);
    };
    ASSIGN_OR_RETURN(std::span<const uint8_t> codes,
                     entry(".qweight", "U8", {rows, p.row_code_bytes()}));
    ASSIGN_OR_RETURN(std::span<const uint8_t> scales,
                     entry(".scales", "F32", {rows, p.groups_per_row()}));
    ASSIGN_OR_RETURN(std::span<const uint8_t> zeros,
                     entry(".zeros", "F32", {rows, p.groups_per_row()}));
    p.codes.assign(codes.begin(), codes.end());
    p.scales.resize(scales.size() / sizeof(float));
    p.zeros.resize(zeros.size() / sizeof(float));
    std::memcpy(p.scales.data(), scales.data(), scales.size());
    std::memcpy(p.zeros.data(), zeros.data(), zeros.size());
    if (absl::Status s = quant::ValidatePacked(p); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(weights, ": ", module, ": ", s.message()));
    }
    return Tensor::Owned(name, {rows, cols}, quant::Dequantize(p));
  };
  return AssembleModel(c, src);
}

}  // namespace impq::model
