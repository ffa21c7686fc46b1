// The Llama architecture (LlamaForCausalLM; GGUF "llama"): Llama 1/2/3 and llama2.c models.
//
// Hugging Face checkpoints store Q and K permuted for the rotate_half rotary convention
// (convert_llama_weights_to_hf.py), so their models use RopeStyle::kHalf; llama.cpp's
// convert_hf_to_gguf.py undoes that permutation, so GGUF "llama" models use the Meta
// interleaved-pair convention (llama.cpp's "normal" rope), RopeStyle::kInterleaved.
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "worker/model/model_arch.h"

namespace impq::model {
namespace {

class LlamaArchImpl : public ModelArch {
 public:
  std::string name() const override { return "llama"; }
  std::vector<std::string> hf_classes() const override { return {"LlamaForCausalLM"}; }
  std::string gguf_arch() const override { return "llama"; }

  absl::StatusOr<ModelConfig> ConfigFromHf(const nlohmann::json& j,
                                           const std::string& path) const override {
    ModelConfig c;
    c.arch = name();
    ASSIGN_OR_RETURN(c.dim, HfInt(j, "hidden_size", path, std::nullopt));
    ASSIGN_OR_RETURN(c.hidden_dim, HfInt(j, "intermediate_size", path, std::nullopt));
    ASSIGN_OR_RETURN(c.n_layers, HfInt(j, "num_hidden_layers", path, std::nullopt));
    ASSIGN_OR_RETURN(c.n_heads, HfInt(j, "num_attention_heads", path, std::nullopt));
    ASSIGN_OR_RETURN(c.n_kv_heads, HfInt(j, "num_key_value_heads", path, c.n_heads));
    if (!j.contains("head_dim") && c.dim % c.n_heads != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": hidden_size ", c.dim,
                                                     " is not a multiple of num_attention_heads ",
                                                     c.n_heads, " and head_dim is not given"));
    }
    ASSIGN_OR_RETURN(c.head_dim, HfInt(j, "head_dim", path, c.dim / c.n_heads));
    ASSIGN_OR_RETURN(c.vocab_size, HfInt(j, "vocab_size", path, std::nullopt));
    // LlamaConfig's defaults for the optional fields.
    ASSIGN_OR_RETURN(c.seq_len, HfInt(j, "max_position_embeddings", path, 2048));
    ASSIGN_OR_RETURN(double eps, HfPositive(j, "rms_norm_eps", path, 1e-6));
    ASSIGN_OR_RETURN(double theta, HfPositive(j, "rope_theta", path, 10000.0));
    c.norm_eps = static_cast<float>(eps);
    c.rope_theta = static_cast<float>(theta);
    ASSIGN_OR_RETURN(c.tied_embeddings, HfBool(j, "tie_word_embeddings", path, false));
    c.rope_style = RopeStyle::kHalf;

    // Features of LlamaConfig the forward pass does not compute: refuse rather than be wrong.
    if (j.contains("hidden_act") && j["hidden_act"] != "silu") {
      return absl::UnimplementedError(absl::StrCat(path, ": hidden_act ", j["hidden_act"].dump(),
                                                   " is not supported (only \"silu\")"));
    }
    for (const char* bias : {"attention_bias", "mlp_bias"}) {
      ASSIGN_OR_RETURN(bool on, HfBool(j, bias, path, false));
      if (on) {
        return absl::UnimplementedError(absl::StrCat(path, ": ", bias,
                                                     " = true is not supported (no biases)"));
      }
    }
    if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
      const nlohmann::json& rs = j["rope_scaling"];
      std::string type = "?";
      if (rs.is_object()) {
        if (rs.contains("rope_type") && rs["rope_type"].is_string()) type = rs["rope_type"];
        else if (rs.contains("type") && rs["type"].is_string()) type = rs["type"];
      }
      if (type != "default") {
        return absl::UnimplementedError(absl::StrCat(
            path, ": rope_scaling type \"", type, "\" is not supported yet (",
            type == "llama3" ? "the Llama-3 frequency rule is part of issue 7's architecture work"
                             : "only unscaled rotary embeddings are",
            ")"));
      }
    }
    RETURN_IF_ERROR(Check(c, path));
    return c;
  }

  absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& g) const override {
    ModelConfig c;
    c.arch = name();
    const std::string k = gguf_arch() + ".";
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
    if (const GgufValue* v = g.Find(k + "vocab_size")) {
      (void)v;
      ASSIGN_OR_RETURN(c.vocab_size, GgufInt(g, k + "vocab_size", std::nullopt));
    } else if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
               tokens != nullptr && tokens->type == GgufType::kArray && tokens->count > 0) {
      c.vocab_size = static_cast<int>(std::min<uint64_t>(tokens->count, 1 << 30));
    } else if (const GgufTensorInfo* e = g.FindTensor(GgufTensorName(TensorRole::kEmbedding, 0));
               e != nullptr && e->shape.size() == 2) {
      c.vocab_size = static_cast<int>(std::min<int64_t>(e->shape[0], 1 << 30));
    }
    if (const GgufValue* v = g.Find(k + "rope.scaling.type");
        v != nullptr && !(v->type == GgufType::kString && v->str == "none")) {
      return absl::UnimplementedError(absl::StrCat(g.path(), ": ", k, "rope.scaling.type \"",
                                                   v->str, "\" is not supported yet"));
    }
    if (g.FindTensor("rope_freqs.weight") != nullptr) {
      return absl::UnimplementedError(absl::StrCat(
          g.path(), ": tensor rope_freqs.weight (Llama-3 rope scaling) is not supported yet"));
    }
    // llama.cpp ties the head when output.weight is absent; converters that write the tied
    // head twice (convert-llama2c-to-ggml) store identical bytes, which is tied too.
    const std::string emb = GgufTensorName(TensorRole::kEmbedding, 0);
    const std::string out = GgufTensorName(TensorRole::kOutput, 0);
    c.tied_embeddings = g.FindTensor(out) == nullptr || g.SameData(emb, out);
    c.rope_style = RopeStyle::kInterleaved;
    RETURN_IF_ERROR(Check(c, g.path()));
    return c;
  }

  std::string HfTensorName(TensorRole role, int l) const override {
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
    }
    return "?";
  }

  std::string GgufTensorName(TensorRole role, int l) const override {
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
    }
    return "?";
  }

 private:
  static absl::Status Check(const ModelConfig& c, const std::string& path) {
    if (absl::Status s = c.Validate(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
    }
    return absl::OkStatus();
  }
};

}  // namespace

const ModelArch& LlamaArch() {
  static const LlamaArchImpl kArch;
  return kArch;
}

}  // namespace impq::model
