// The Qwen-3 architecture (Qwen3ForCausalLM; GGUF "qwen3"): the Llama block plus an RMSNorm of
// every q and k head (weights [head_dim], shared by the heads) between the projection and the
// rotary embedding (ModelConfig::qk_norm). head_dim comes from the config and need not be
// hidden_size / num_attention_heads (Qwen3Config's default is 128).
//
// Both formats use the rotate_half rotary layout: llama.cpp runs qwen3 with its NEOX rope and
// its converter leaves Q/K unpermuted.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"

namespace impq::model {
namespace {

class Qwen3ArchImpl : public ModelArch {
 public:
  std::string name() const override { return "qwen3"; }
  std::vector<std::string> hf_classes() const override { return {"Qwen3ForCausalLM"}; }
  std::string gguf_arch() const override { return "qwen3"; }

  absl::StatusOr<ModelConfig> ConfigFromHf(const nlohmann::json& j,
                                           const std::string& path) const override {
    HfCommonDefaults d;  // Qwen3Config's defaults
    d.head_dim = 128;
    d.max_position = 32768;
    ASSIGN_OR_RETURN(ModelConfig c, CommonConfigFromHf(j, path, name(), d));
    if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
      return absl::UnimplementedError(absl::StrCat(path, ": hidden_act ", j["hidden_act"].dump(),
                                                   " is not supported (only \"silu\")"));
    }
    ASSIGN_OR_RETURN(bool swa, HfBool(j, "use_sliding_window", path, false));
    if (swa) {
      return absl::UnimplementedError(
          absl::StrCat(path, ": use_sliding_window = true is not supported for Qwen-3"));
    }
    RETURN_IF_ERROR(RefuseHfRopeScaling(j, path));
    c.qk_norm = true;
    RETURN_IF_ERROR(CheckConfig(c, path));
    return c;
  }

  absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) const override {
    ASSIGN_OR_RETURN(ModelConfig c,
                     CommonConfigFromGguf(g, gguf_arch(), GgufTensorName(TensorRole::kEmbedding, 0),
                                          GgufTensorName(TensorRole::kOutput, 0)));
    c.arch = name();
    c.rope_style = RopeStyle::kHalf;
    c.qk_norm = true;
    RETURN_IF_ERROR(CheckConfig(c, g.path()));
    return c;
  }

  std::string HfTensorName(TensorRole role, int l) const override {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    switch (role) {
      case TensorRole::kQNorm: return p + "self_attn.q_norm.weight";
      case TensorRole::kKNorm: return p + "self_attn.k_norm.weight";
      default: return LlamaHfTensorName(role, l);
    }
  }
  std::string GgufTensorName(TensorRole role, int l) const override {
    const std::string p = absl::StrCat("blk.", l, ".");
    switch (role) {
      case TensorRole::kQNorm: return p + "attn_q_norm.weight";
      case TensorRole::kKNorm: return p + "attn_k_norm.weight";
      default: return LlamaGgufTensorName(role, l);
    }
  }
};

}  // namespace

const ModelArch& Qwen3Arch() {
  static const Qwen3ArchImpl kArch;
  return kArch;
}

}  // namespace impq::model
