#include "worker/model/model_arch.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace impq::model {

const ModelArch& LlamaArch();  // llama_arch.cc

const std::vector<const ModelArch*>& AllArchitectures() {
  static const std::vector<const ModelArch*> kArchs = {&LlamaArch()};
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
constexpr int64_t kMaxSize = int64_t{1} << 24;
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

absl::StatusOr<Model> AssembleModel(const ModelConfig& config, const TensorFetch& fetch,
                                    const std::function<std::string(TensorRole, int)>& file_name,
                                    const std::string& source) {
  RETURN_IF_ERROR(config.Validate());
  const ModelConfig& c = config;
  auto get = [&](TensorRole role, int layer, std::vector<int64_t> want,
                 std::string impq_name) -> absl::StatusOr<Tensor> {
    ASSIGN_OR_RETURN(Tensor t, fetch(role, layer));
    if (t.shape() != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensor ", file_name(role, layer), " has shape ", t.ShapeString(),
          ", expected [", absl::StrJoin(want, ", "), "] for ", c.ToString()));
    }
    return t.WithName(std::move(impq_name));
  };
  Model m;
  m.config = c;
  m.source = source;
  ASSIGN_OR_RETURN(m.embedding, get(TensorRole::kEmbedding, 0, {c.vocab_size, c.dim},
                                    "token_embedding"));
  static constexpr TensorRole kLinearRoles[kNumLinear] = {
      TensorRole::kQ, TensorRole::kK, TensorRole::kV, TensorRole::kO,
      TensorRole::kGate, TensorRole::kUp, TensorRole::kDown};
  m.layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = m.layers[l];
    const std::string p = absl::StrCat("layers.", l, ".");
    ASSIGN_OR_RETURN(lw.attn_norm, get(TensorRole::kAttnNorm, l, {c.dim}, p + "attn_norm"));
    ASSIGN_OR_RETURN(lw.ffn_norm, get(TensorRole::kFfnNorm, l, {c.dim}, p + "ffn_norm"));
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      ASSIGN_OR_RETURN(lw.linear[k], get(kLinearRoles[k], l,
                                         {c.LinearRows(kind), c.LinearCols(kind)},
                                         p + LinearKindName(kind)));
    }
  }
  ASSIGN_OR_RETURN(m.final_norm, get(TensorRole::kFinalNorm, 0, {c.dim}, "final_norm"));
  if (c.tied_embeddings) {
    m.output = m.embedding.WithName("output");
  } else {
    ASSIGN_OR_RETURN(m.output, get(TensorRole::kOutput, 0, {c.vocab_size, c.dim}, "output"));
  }
  if (absl::Status s = m.Validate(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", s.message()));
  }
  return m;
}

}  // namespace impq::model
