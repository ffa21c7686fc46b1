#include "worker/model/model_arch.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace impq::model {

const ModelArch& LlamaArch();   // llama_arch.cc
const ModelArch& Qwen3Arch();   // qwen3_arch.cc
const ModelArch& Gemma2Arch();  // gemma2_arch.cc

const std::vector<const ModelArch*>& AllArchitectures() {
  static const std::vector<const ModelArch*> kArchs = {&LlamaArch(), &Qwen3Arch(),
                                                       &Gemma2Arch()};
  return kArchs;
}

const ModelArch* FindArchByHfClass(const std::string& hf_class) {
  for (const ModelArch* a : AllArchitectures()) {
    for (const std::string& c : a->hf_classes()) {
      if (c == hf_class) return a;
    }
  }
  return nullptr;
}

const ModelArch* FindArchByGguf(const std::string& gguf_arch) {
  for (const ModelArch* a : AllArchitectures()) {
    if (a->gguf_arch() == gguf_arch) return a;
  }
  return nullptr;
}

std::string SupportedHfClasses() {
  std::vector<std::string> names;
  for (const ModelArch* a : AllArchitectures()) {
    for (const std::string& c : a->hf_classes()) names.push_back(c);
  }
  return absl::StrJoin(names, ", ");
}

std::string SupportedGgufArchs() {
  std::vector<std::string> names;
  for (const ModelArch* a : AllArchitectures()) names.push_back(a->gguf_arch());
  return absl::StrJoin(names, ", ");
}

namespace {
constexpr int64_t kMaxSize = kMaxConfigSize;
}  // namespace

absl::StatusOr<int> HfInt(const nlohmann::json& config, const std::string& key,
                          const std::string& path, std::optional<int> default_value) {
  if (!config.contains(key) || config[key].is_null()) {
    if (default_value) return *default_value;
    return absl::InvalidArgumentError(absl::StrCat(path, ": required field \"", key,
                                                   "\" is missing"));
  }
  const nlohmann::json& v = config[key];
  if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > kMaxSize) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field \"", key, "\" = ", v.dump(),
                                                   " must be an integer in [1, ", kMaxSize, "]"));
  }
  return static_cast<int>(v.get<int64_t>());
}

absl::StatusOr<double> HfPositive(const nlohmann::json& config, const std::string& key,
                                  const std::string& path, std::optional<double> default_value) {
  if (!config.contains(key) || config[key].is_null()) {
    if (default_value) return *default_value;
    return absl::InvalidArgumentError(absl::StrCat(path, ": required field \"", key,
                                                   "\" is missing"));
  }
  const nlohmann::json& v = config[key];
  if (!v.is_number() || !(v.get<double>() > 0) || !std::isfinite(v.get<double>())) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field \"", key, "\" = ", v.dump(),
                                                   " must be a finite number > 0"));
  }
  return v.get<double>();
}

absl::StatusOr<bool> HfBool(const nlohmann::json& config, const std::string& key,
                            const std::string& path, bool default_value) {
  if (!config.contains(key) || config[key].is_null()) return default_value;
  if (!config[key].is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": field \"", key, "\" = ",
                                                   config[key].dump(), " must be true or false"));
  }
  return config[key].get<bool>();
}

absl::StatusOr<int> GgufInt(const GgufFile& gguf, const std::string& key,
                            std::optional<int> default_value) {
  if (gguf.Find(key) == nullptr && default_value) return *default_value;
  ASSIGN_OR_RETURN(int64_t v, gguf.GetInt(key));
  if (v < 1 || v > kMaxSize) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": GGUF metadata key ", key,
                                                   " = ", v, " must be in [1, ", kMaxSize, "]"));
  }
  return static_cast<int>(v);
}

absl::StatusOr<double> GgufPositive(const GgufFile& gguf, const std::string& key,
                                    std::optional<double> default_value) {
  if (gguf.Find(key) == nullptr && default_value) return *default_value;
  ASSIGN_OR_RETURN(double v, gguf.GetFloat(key));
  if (!(v > 0) || !std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat(gguf.path(), ": GGUF metadata key ", key,
                                                   " = ", v, " must be a finite number > 0"));
  }
  return v;
}

absl::Status CheckConfig(const ModelConfig& c, const std::string& path) {
  if (absl::Status s = c.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> CommonConfigFromHf(const nlohmann::json& j, const std::string& path,
                                               const std::string& arch_name,
                                               const HfCommonDefaults& d) {
  ModelConfig c;
  c.arch = arch_name;
  ASSIGN_OR_RETURN(c.dim, HfInt(j, "hidden_size", path, std::nullopt));
  ASSIGN_OR_RETURN(c.hidden_dim, HfInt(j, "intermediate_size", path, std::nullopt));
  ASSIGN_OR_RETURN(c.n_layers, HfInt(j, "num_hidden_layers", path, std::nullopt));
  ASSIGN_OR_RETURN(c.n_heads, HfInt(j, "num_attention_heads", path, std::nullopt));
  ASSIGN_OR_RETURN(c.n_kv_heads, HfInt(j, "num_key_value_heads", path, c.n_heads));
  if (!j.contains("head_dim") && d.head_dim == 0 && c.dim % c.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": hidden_size ", c.dim,
                                                   " is not a multiple of num_attention_heads ",
                                                   c.n_heads, " and head_dim is not given"));
  }
  ASSIGN_OR_RETURN(c.head_dim,
                   HfInt(j, "head_dim", path, d.head_dim > 0 ? d.head_dim : c.dim / c.n_heads));
  ASSIGN_OR_RETURN(c.vocab_size, HfInt(j, "vocab_size", path, std::nullopt));
  ASSIGN_OR_RETURN(c.seq_len, HfInt(j, "max_position_embeddings", path, d.max_position));
  ASSIGN_OR_RETURN(double eps, HfPositive(j, "rms_norm_eps", path, d.rms_norm_eps));
  ASSIGN_OR_RETURN(double theta, HfPositive(j, "rope_theta", path, 10000.0));
  c.norm_eps = static_cast<float>(eps);
  c.rope_theta = static_cast<float>(theta);
  ASSIGN_OR_RETURN(c.tied_embeddings,
                   HfBool(j, "tie_word_embeddings", path, d.tie_word_embeddings));
  c.rope_style = RopeStyle::kHalf;
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    ASSIGN_OR_RETURN(bool on, HfBool(j, bias, path, false));
    if (on) {
      return absl::UnimplementedError(absl::StrCat(path, ": ", bias,
                                                   " = true is not supported (no biases)"));
    }
  }
  return c;
}

absl::Status RefuseHfRopeScaling(const nlohmann::json& j, const std::string& path) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return absl::OkStatus();
  const nlohmann::json& rs = j["rope_scaling"];
  std::string type = "?";
  if (rs.is_object()) {
    if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"];
    else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"];
  }
  if (type == "default") return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(path, ": rope_scaling type \"", type,
                                               "\" is not supported for this architecture "
                                               "(only unscaled rotary embeddings are)"));
}

absl::StatusOr<ModelConfig> CommonConfigFromGguf(const GgufFile& g, const std::string& arch,
                                                 const std::string& embedding_tensor,
                                                 const std::string& output_tensor) {
  ModelConfig c;
  const std::string k = arch + ".";
  ASSIGN_OR_RETURN(c.dim, GgufInt(g, k + "embedding_length", std::nullopt));
  ASSIGN_OR_RETURN(c.hidden_dim, GgufInt(g, k + "feed_forward_length", std::nullopt));
  ASSIGN_OR_RETURN(c.n_layers, GgufInt(g, k + "block_count", std::nullopt));
  ASSIGN_OR_RETURN(c.n_heads, GgufInt(g, k + "attention.head_count", std::nullopt));
  ASSIGN_OR_RETURN(c.n_kv_heads, GgufInt(g, k + "attention.head_count_kv", c.n_heads));
  ASSIGN_OR_RETURN(c.seq_len, GgufInt(g, k + "context_length", std::nullopt));
  ASSIGN_OR_RETURN(double eps, GgufPositive(g, k + "attention.layer_norm_rms_epsilon", 1e-5));
  ASSIGN_OR_RETURN(double theta, GgufPositive(g, k + "rope.freq_base", 10000.0));
  c.norm_eps = static_cast<float>(eps);
  c.rope_theta = static_cast<float>(theta);
  if (g.Find(k + "attention.key_length") == nullptr && c.dim % c.n_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        g.path(), ": ", k, "embedding_length ", c.dim, " is not a multiple of ", k,
        "attention.head_count ", c.n_heads, " and ", k, "attention.key_length is not given"));
  }
  ASSIGN_OR_RETURN(c.head_dim, GgufInt(g, k + "attention.key_length", c.dim / c.n_heads));
  ASSIGN_OR_RETURN(int value_len, GgufInt(g, k + "attention.value_length", c.head_dim));
  ASSIGN_OR_RETURN(int rope_dims, GgufInt(g, k + "rope.dimension_count", c.head_dim));
  if (value_len != c.head_dim || rope_dims != c.head_dim) {
    return absl::UnimplementedError(absl::StrCat(
        g.path(), ": key_length ", c.head_dim, ", value_length ", value_len,
        " and rope.dimension_count ", rope_dims, " differ; only equal sizes are supported"));
  }
  if (g.Find(k + "vocab_size") != nullptr) {
    ASSIGN_OR_RETURN(c.vocab_size, GgufInt(g, k + "vocab_size", std::nullopt));
  } else if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->type == GgufType::kArray && tokens->count > 0) {
    c.vocab_size = static_cast<int>(std::min<uint64_t>(tokens->count, 1 << 30));
  } else if (const GgufTensorInfo* e = g.FindTensor(embedding_tensor);
             e != nullptr && e->shape.size() == 2) {
    c.vocab_size = static_cast<int>(std::min<int64_t>(e->shape[0], 1 << 30));
  }
  if (const GgufValue* v = g.Find(k + "rope.scaling.type");
      v != nullptr && !(v->type == GgufType::kString && v->str == "none")) {
    return absl::UnimplementedError(absl::StrCat(g.path(), ": ", k, "rope.scaling.type \"",
                                                 v->str, "\" is not supported"));
  }
  // llama.cpp ties the head when output.weight is absent; converters that write the tied
  // head twice (convert-llama2c-to-ggml) store identical bytes, which is tied too.
  c.tied_embeddings = g.FindTensor(output_tensor) == nullptr ||
                      g.SameData(embedding_tensor, output_tensor);
  c.arch = arch;
  return c;
}

std::string LlamaHfTensorName(TensorRole role, int l) {
  const std::string p = absl::StrCat("model.layers.", l, ".");
  switch (role) {
    case TensorRole::kEmbedding: return "model.embed_tokens.weight";
    case TensorRole::kFinalNorm: return "model.norm.weight";
    case TensorRole::kOutput: return "lm_head.weight";
    case TensorRole::kAttnNorm: return p + "input_layernorm.weight";
    case TensorRole::kFfnNorm: return p + "post_attention_layernorm.weight";
    case TensorRole::kQ: return p + "self_attn.q_proj.weight";
    case TensorRole::kK: return p + "self_attn.k_proj.weight";
    case TensorRole::kV: return p + "self_attn.v_proj.weight";
    case TensorRole::kO: return p + "self_attn.o_proj.weight";
    case TensorRole::kGate: return p + "mlp.gate_proj.weight";
    case TensorRole::kUp: return p + "mlp.up_proj.weight";
    case TensorRole::kDown: return p + "mlp.down_proj.weight";
    default: return "";
  }
}

std::string LlamaGgufTensorName(TensorRole role, int l) {
  const std::string p = absl::StrCat("blk.", l, ".");
  switch (role) {
    case TensorRole::kEmbedding: return "token_embd.weight";
    case TensorRole::kFinalNorm: return "output_norm.weight";
    case TensorRole::kOutput: return "output.weight";
    case TensorRole::kAttnNorm: return p + "attn_norm.weight";
    case TensorRole::kFfnNorm: return p + "ffn_norm.weight";
    case TensorRole::kQ: return p + "attn_q.weight";
    case TensorRole::kK: return p + "attn_k.weight";
    case TensorRole::kV: return p + "attn_v.weight";
    case TensorRole::kO: return p + "attn_output.weight";
    case TensorRole::kGate: return p + "ffn_gate.weight";
    case TensorRole::kUp: return p + "ffn_up.weight";
    case TensorRole::kDown: return p + "ffn_down.weight";
    default: return "";
  }
}

FieldSpelling GgufFieldSpelling(const std::string& gguf_arch) {
  return [gguf_arch](const std::string& field) -> std::string {
    static const std::map<std::string, std::string> kKeys = {
        {"dim", "embedding_length"},          {"hidden_dim", "feed_forward_length"},
        {"n_layers", "block_count"},          {"n_heads", "attention.head_count"},
        {"n_kv_heads", "attention.head_count_kv"}, {"head_dim", "attention.key_length"},
        {"seq_len", "context_length"}};
    if (field == "vocab_size") {
      return absl::StrCat(gguf_arch, ".vocab_size (or tokenizer.ggml.tokens' count)");
    }
    auto it = kKeys.find(field);
    return it == kKeys.end() ? field : absl::StrCat(gguf_arch, ".", it->second);
  };
}

FieldSpelling HfFieldSpelling() {
  return [](const std::string& field) -> std::string {
    static const std::map<std::string, std::string> kKeys = {
        {"dim", "hidden_size"},           {"hidden_dim", "intermediate_size"},
        {"n_layers", "num_hidden_layers"}, {"n_heads", "num_attention_heads"},
        {"n_kv_heads", "num_key_value_heads"}, {"head_dim", "head_dim"},
        {"vocab_size", "vocab_size"},     {"seq_len", "max_position_embeddings"}};
    auto it = kKeys.find(field);
    return absl::StrCat("config.json ", it == kKeys.end() ? field : it->second);
  };
}

namespace {

// "dim (llama.embedding_length) = 64", "q_dim = n_heads × head_dim (... × ...) = 64".
std::string DescribeDim(const ModelConfig& c, const std::string& label, const FieldSpelling& f) {
  if (label == "q_dim" || label == "kv_dim") {
    const std::string heads = label == "q_dim" ? "n_heads" : "n_kv_heads";
    return absl::StrCat(label, " = ", heads, " * head_dim (", f(heads), " * ", f("head_dim"),
                        ") = ", label == "q_dim" ? c.q_dim() : c.kv_dim());
  }
  const int v = label == "vocab_size" ? c.vocab_size : label == "dim" ? c.dim
              : label == "hidden_dim" ? c.hidden_dim : c.head_dim;
  return absl::StrCat(label, " (", f(label), ") = ", v);
}

// Step 2 of AssembleModel: the layer count against the layers the file holds tensors for.
absl::Status CheckLayerCount(const ModelConfig& c, const TensorSource& src) {
  // The architecture's per-layer name prefix ("blk.", "model.layers."): whatever precedes the
  // layer number in a layer tensor's name.
  constexpr int kProbe = 987654321;
  const std::string probe = src.file_name(TensorRole::kAttnNorm, kProbe);
  const size_t at = probe.find(std::to_string(kProbe));
  IMPQ_CHECK(at != std::string::npos) << "layer tensor name without its layer: " << probe;
  const std::string prefix = probe.substr(0, at);
  int64_t top = -1;  // the highest layer any tensor belongs to
  std::string top_name;
  for (const std::string& name : src.names) {
    if (!absl::StartsWith(name, prefix)) continue;
    size_t end = prefix.size();
    int64_t layer = 0;
    while (end < name.size() && end - prefix.size() < 12 && absl::ascii_isdigit(name[end])) {
      layer = layer * 10 + (name[end] - '0');
      ++end;
    }
    if (end == prefix.size() || end >= name.size() || name[end] != '.') continue;
    if (layer > top) {
      top = layer;
      top_name = name;
    }
  }
  const std::string field = absl::StrCat(src.field("n_layers"), " (n_layers)");
  if (top >= c.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        src.path, ": ", field, " = ", c.n_layers, ", but the file holds tensors of ", top + 1,
        " layers (", top_name, " belongs to layer ", top,
        "): the metadata claims fewer layers than the file holds"));
  }
  if (top + 1 < c.n_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        src.path, ": ", field, " = ", c.n_layers, ", but the file holds tensors of ",
        top + 1, " layers (no ", src.file_name(TensorRole::kAttnNorm, static_cast<int>(top + 1)),
        "): the metadata claims more layers than the file holds"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Model> AssembleModel(const ModelConfig& config, const TensorSource& src) {
  RETURN_IF_ERROR(CheckConfig(config, src.path));
  RETURN_IF_ERROR(CheckLayerCount(config, src));
  const ModelConfig& c = config;
  // A dimension of an expected shape: its value and the config field it comes from.
  struct Dim {
    int64_t value;
    const char* label;
  };
  auto get = [&](TensorRole role, int layer, std::vector<Dim> want,
                 std::string impq_name) -> absl::StatusOr<Tensor> {
    ASSIGN_OR_RETURN(Tensor t, src.fetch(role, layer));
    std::vector<int64_t> want_shape;
    std::vector<std::string> labels;
    for (const Dim& d : want) {
      want_shape.push_back(d.value);
      labels.push_back(d.label);
    }
    if (t.shape() != want_shape) {
      std::string why;
      if (t.shape().size() == want.size()) {
        for (size_t i = 0; i < want.size(); ++i) {
          if (t.shape()[i] == want[i].value) continue;
          why = absl::StrCat(": its dimension ", i, " is ", t.shape()[i], " where ",
                             DescribeDim(c, want[i].label, src.field));
          break;
        }
      }
      return absl::InvalidArgumentError(absl::StrCat(
          src.path, ": tensor ", src.file_name(role, layer), " has shape ", t.ShapeString(),
          ", expected [", absl::StrJoin(want_shape, ", "), "] = [", absl::StrJoin(labels, ", "),
          "] for ", c.ToString(), why));
    }
    if (absl::Status s = CheckFinite(t, src.file_name(role, layer)); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(src.path, ": ", s.message()));
    }
    return t.WithName(std::move(impq_name));
  };
  // The labelled [rows, cols] of a linear module.
  auto linear_dims = [&](LinearKind k) -> std::vector<Dim> {
    const char* rows = k == LinearKind::kQ                          ? "q_dim"
                       : k == LinearKind::kK || k == LinearKind::kV ? "kv_dim"
                       : k == LinearKind::kGate || k == LinearKind::kUp ? "hidden_dim"
                                                                        : "dim";
    const char* cols = k == LinearKind::kO ? "q_dim" : k == LinearKind::kDown ? "hidden_dim" : "dim";
    return {{c.LinearRows(k), rows}, {c.LinearCols(k), cols}};
  };
  Model m;
  m.config = c;
  m.source = src.path;
  ASSIGN_OR_RETURN(m.embedding, get(TensorRole::kEmbedding, 0,
                                    {{c.vocab_size, "vocab_size"}, {c.dim, "dim"}},
                                    "token_embedding"));
  static constexpr TensorRole kLinearRoles[kNumLinear] = {
      TensorRole::kQ, TensorRole::kK, TensorRole::kV, TensorRole::kO,
      TensorRole::kGate, TensorRole::kUp, TensorRole::kDown};
  m.layers.resize(c.n_layers);  // bounded: CheckLayerCount found tensors of every layer
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = m.layers[l];
    const std::string p = absl::StrCat("layers.", l, ".");
    const std::vector<Dim> dim = {{c.dim, "dim"}}, head = {{c.head_dim, "head_dim"}};
    ASSIGN_OR_RETURN(lw.attn_norm, get(TensorRole::kAttnNorm, l, dim, p + "attn_norm"));
    ASSIGN_OR_RETURN(lw.ffn_norm, get(TensorRole::kFfnNorm, l, dim, p + "ffn_norm"));
    if (c.qk_norm) {
      ASSIGN_OR_RETURN(lw.q_norm, get(TensorRole::kQNorm, l, head, p + "q_norm"));
      ASSIGN_OR_RETURN(lw.k_norm, get(TensorRole::kKNorm, l, head, p + "k_norm"));
    }
    if (c.post_norms) {
      ASSIGN_OR_RETURN(lw.post_attn_norm,
                       get(TensorRole::kPostAttnNorm, l, dim, p + "post_attn_norm"));
      ASSIGN_OR_RETURN(lw.post_ffn_norm,
                       get(TensorRole::kPostFfnNorm, l, dim, p + "post_ffn_norm"));
    }
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      ASSIGN_OR_RETURN(lw.linear[k],
                       get(kLinearRoles[k], l, linear_dims(kind), p + LinearKindName(kind)));
    }
  }
  ASSIGN_OR_RETURN(m.final_norm, get(TensorRole::kFinalNorm, 0, {{c.dim, "dim"}}, "final_norm"));
  if (c.tied_embeddings) {
    m.output = m.embedding.WithName("output");
  } else {
    ASSIGN_OR_RETURN(m.output, get(TensorRole::kOutput, 0,
                                   {{c.vocab_size, "vocab_size"}, {c.dim, "dim"}}, "output"));
  }
  if (absl::Status s = m.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(src.path, ": ", s.message()));
  }
  return m;
}

}  // namespace impq::model
