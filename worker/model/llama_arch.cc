// The Llama architecture (LlamaForCausalLM; GGUF "llama"): Llama 1/2/3 and llama2.c models.
//
// Hugging Face checkpoints store Q and K permuted for the rotate_half rotary convention
// (convert_llama_weights_to_hf.py), so their models use RopeStyle::kHalf; llama.cpp's
// convert_hf_to_gguf.py undoes that permutation, so GGUF "llama" models use the Meta
// interleaved-pair convention (llama.cpp's "normal" rope), RopeStyle::kInterleaved.
//
// Llama-3's differences from Llama-2 are all in the config: GQA, rope_theta 500000, a tied or
// untied head, and the "llama3" rope-scaling rule (ModelConfig::rope_scaling). config.json
// spells the rule out (rope_scaling.{factor, low_freq_factor, high_freq_factor,
// original_max_position_embeddings}); llama.cpp's converter instead stores its per-frequency
// divisors as the tensor rope_freqs.weight, read here into ModelConfig::rope_freq_factors.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"

namespace impq::model {
namespace {

constexpr char kRopeFreqs[] = "rope_freqs.weight";

absl::Status ReadLlama3RopeScaling(const nlohmann::json& j, const std::string& path,
                                   ModelConfig& c) {
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return absl::OkStatus();
  const nlohmann::json& rs = j["rope_scaling"];
  std::string type = "?";
  if (rs.is_object()) {
    if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"];
    else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"];
  }
  if (type == "default") return absl::OkStatus();
  if (type != "llama3") {
    return absl::UnimplementedError(absl::StrCat(
        path, ": rope_scaling type \"", type,
        "\" is not supported (only \"default\" and \"llama3\" are)"));
  }
  const std::string p = path + " rope_scaling";
  ASSIGN_OR_RETURN(double factor, HfPositive(rs, "factor", p, std::nullopt));
  ASSIGN_OR_RETURN(double low, HfPositive(rs, "low_freq_factor", p, std::nullopt));
  ASSIGN_OR_RETURN(double high, HfPositive(rs, "high_freq_factor", p, std::nullopt));
  ASSIGN_OR_RETURN(int orig, HfInt(rs, "original_max_position_embeddings", p, std::nullopt));
  if (!(high > low)) {
    return absl::InvalidArgumentError(absl::StrCat(p, ": high_freq_factor ", high,
                                                   " must exceed low_freq_factor ", low));
  }
  c.rope_scaling = {static_cast<float>(factor), static_cast<float>(low),
                    static_cast<float>(high), orig};
  return absl::OkStatus();
}

class LlamaArchImpl : public ModelArch {
 public:
  std::string name() const override { return "llama"; }
  std::vector<std::string> hf_classes() const override { return {"LlamaForCausalLM"}; }
  std::string gguf_arch() const override { return "llama"; }

  absl::StatusOr<ModelConfig> ConfigFromHf(const nlohmann::json& j,
                                           const std::string& path) const override {
    // LlamaConfig's defaults for the optional fields.
    ASSIGN_OR_RETURN(ModelConfig c, CommonConfigFromHf(j, path, name(), HfCommonDefaults{}));
    // Features of LlamaConfig the forward pass does not compute: refuse rather than be wrong.
    if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
      return absl::UnimplementedError(absl::StrCat(path, ": hidden_act ", j["hidden_act"].dump(),
                                                   " is not supported (only \"silu\")"));
    }
    RETURN_IF_ERROR(ReadLlama3RopeScaling(j, path, c));
    RETURN_IF_ERROR(CheckConfig(c, path));
    return c;
  }

  absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) const override {
    ASSIGN_OR_RETURN(ModelConfig c,
                     CommonConfigFromGguf(g, gguf_arch(), GgufTensorName(TensorRole::kEmbedding, 0),
                                          GgufTensorName(TensorRole::kOutput, 0)));
    c.arch = name();
    c.rope_style = RopeStyle::kInterleaved;
    if (g.FindTensor(kRopeFreqs) != nullptr) {
      ASSIGN_OR_RETURN(Tensor f, g.ReadTensor(kRopeFreqs));
      if (f.shape() != std::vector<int64_t>{c.head_dim / 2}) {
        return absl::InvalidArgumentError(absl::StrCat(g.path(), ": tensor ", kRopeFreqs,
                                                       " has shape ", f.ShapeString(),
                                                       ", expected [", c.head_dim / 2, "]"));
      }
      c.rope_freq_factors.assign(f.values().begin(), f.values().end());
    }
    RETURN_IF_ERROR(CheckConfig(c, g.path()));
    return c;
  }

  std::string HfTensorName(TensorRole role, int l) const override {
    return LlamaHfTensorName(role, l);
  }
  std::string GgufTensorName(TensorRole role, int l) const override {
    return LlamaGgufTensorName(role, l);
  }
};

}  // namespace

const ModelArch& LlamaArch() {
  static const LlamaArchImpl kArch;
  return kArch;
}

}  // namespace impq::model
