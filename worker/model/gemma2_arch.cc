// The Gemma-2 architecture (Gemma2ForCausalLM; GGUF "gemma2"), after HF's modeling_gemma2:
//  - embeddings scaled by sqrt(hidden_size) (ModelConfig::scale_embeddings);
//  - every RMSNorm multiplies by (1 + w) (norm_weight_offset = 1; llama.cpp's converter adds
//    the 1 into the GGUF weights, so GGUF models use offset 0);
//  - four norms per block: input_layernorm before attention, post_attention_layernorm on the
//    attention output, pre_feedforward_layernorm before the MLP (impq's ffn_norm),
//    post_feedforward_layernorm on the MLP output (post_norms);
//  - GeGLU with the tanh GELU (hidden_activation "gelu_pytorch_tanh");
//  - soft-capping of the attention scores and of the final logits;
//  - sliding-window attention on the even layers;
//  - scores scaled by query_pre_attn_scalar^-1/2.
// Both formats use the rotate_half rotary layout (llama.cpp: NEOX rope, Q/K not permuted).
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"

namespace impq::model {
namespace {

// A positive number whose explicit null means "off" (0): Gemma2Config's soft-caps and window.
absl::StatusOr<double> PositiveOrOff(const nlohmann::json& j, const std::string& key,
                                     const std::string& path, double default_value) {
  if (j.contains(key) && j[key].is_null()) return 0.0;
  return HfPositive(j, key, path, default_value);
}

class Gemma2ArchImpl : public ModelArch {
 public:
  std::string name() const override { return "gemma2"; }
  std::vector<std::string> hf_classes() const override { return {"Gemma2ForCausalLM"}; }
  std::string gguf_arch() const override { return "gemma2"; }

  absl::StatusOr<ModelConfig> ConfigFromHf(const nlohmann::json& j,
                                           const std::string& path) const override {
    HfCommonDefaults d;  // Gemma2Config's defaults
    d.head_dim = 256;
    d.max_position = 8192;
    d.tie_word_embeddings = true;
    ASSIGN_OR_RETURN(ModelConfig c, CommonConfigFromHf(j, path, name(), d));
    // Gemma2MLP reads hidden_activation; hidden_act is a legacy field it ignores.
    if (j.contains("hidden_activation") && !j["hidden_activation"].is_null() &&
        j["hidden_activation"] != "gelu_pytorch_tanh") {
      return absl::UnimplementedError(absl::StrCat(
          path, ": hidden_activation ", j["hidden_activation"].dump(),
          " is not supported (only \"gelu_pytorch_tanh\")"));
    }
    RETURN_IF_ERROR(RefuseHfRopeScaling(j, path));
    ASSIGN_OR_RETURN(double qpas, HfPositive(j, "query_pre_attn_scalar", path, 256.0));
    ASSIGN_OR_RETURN(double attn_cap, PositiveOrOff(j, "attn_logit_softcapping", path, 50.0));
    ASSIGN_OR_RETURN(double final_cap, PositiveOrOff(j, "final_logit_softcapping", path, 30.0));
    if (j.contains("sliding_window") && j["sliding_window"].is_null()) {
      c.sliding_window = 0;
    } else {
      ASSIGN_OR_RETURN(c.sliding_window, HfInt(j, "sliding_window", path, 4096));
    }
    c.query_pre_attn_scalar = static_cast<float>(qpas);
    c.attn_logit_softcap = static_cast<float>(attn_cap);
    c.final_logit_softcap = static_cast<float>(final_cap);
    c.norm_weight_offset = 1.0f;
    SetCommonQuirks(c);
    RETURN_IF_ERROR(CheckConfig(c, path));
    return c;
  }

  absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) const override {
    ASSIGN_OR_RETURN(ModelConfig c,
                     CommonConfigFromGguf(g, gguf_arch(), GgufTensorName(TensorRole::kEmbedding, 0),
                                          GgufTensorName(TensorRole::kOutput, 0)));
    c.arch = name();
    const std::string k = gguf_arch() + ".";
    // llama.cpp's defaults when the keys are absent.
    ASSIGN_OR_RETURN(double attn_cap, GgufPositive(g, k + "attn_logit_softcapping", 50.0));
    ASSIGN_OR_RETURN(double final_cap, GgufPositive(g, k + "final_logit_softcapping", 30.0));
    ASSIGN_OR_RETURN(c.sliding_window, GgufInt(g, k + "attention.sliding_window", 4096));
    c.attn_logit_softcap = static_cast<float>(attn_cap);
    c.final_logit_softcap = static_cast<float>(final_cap);
    // GGUF has no query_pre_attn_scalar. llama.cpp (llama-model.cpp, LLM_ARCH_GEMMA2) derives
    // it from the model size: hidden/heads for the 27B model (46 layers), head_dim otherwise,
    // which matches the published configs (27B: 4608/32 = 144; 2B, 9B: 256 = head_dim).
    if (c.n_layers == 46) c.query_pre_attn_scalar = static_cast<float>(c.dim / c.n_heads);
    c.norm_weight_offset = 0.0f;  // the file stores 1 + w
    SetCommonQuirks(c);
    RETURN_IF_ERROR(CheckConfig(c, g.path()));
    return c;
  }

  std::string HfTensorName(TensorRole role, int l) const override {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    switch (role) {
      case TensorRole::kPostAttnNorm: return p + "post_attention_layernorm.weight";
      case TensorRole::kFfnNorm: return p + "pre_feedforward_layernorm.weight";
      case TensorRole::kPostFfnNorm: return p + "post_feedforward_layernorm.weight";
      default: return LlamaHfTensorName(role, l);
    }
  }
  std::string GgufTensorName(TensorRole role, int l) const override {
    const std::string p = absl::StrCat("blk.", l, ".");
    switch (role) {
      case TensorRole::kPostAttnNorm: return p + "post_attention_norm.weight";
      case TensorRole::kPostFfnNorm: return p + "post_ffw_norm.weight";
      default: return LlamaGgufTensorName(role, l);
    }
  }

 private:
  static void SetCommonQuirks(ModelConfig& c) {
    c.rope_style = RopeStyle::kHalf;
    c.post_norms = true;
    c.scale_embeddings = true;
    c.ffn_activation = FfnActivation::kGeluTanh;
  }
};

}  // namespace

const ModelArch& Gemma2Arch() {
  static const Gemma2ArchImpl kArch;
  return kArch;
}

}  // namespace impq::model
