#include "worker/model/format_writers.h"

#include <cmath>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"

namespace impq::model::testing {

uint16_t FloatToF16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  const int32_t fexp = static_cast<int32_t>((x >> 23) & 0xff);
  uint32_t mant = x & 0x7fffff;
  if (fexp == 0xff) return static_cast<uint16_t>(sign | 0x7c00 | (mant ? 0x200 : 0));
  const int32_t exp = fexp - 127 + 15;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;  // a carry rounds up the exponent
  return static_cast<uint16_t>(sign | half);
}

uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

std::string EncodeFloats(std::span<const float> values, const std::string& dtype) {
  std::string out;
  if (dtype == "F32") {
    out.resize(values.size() * 4);
    std::memcpy(out.data(), values.data(), out.size());
    return out;
  }
  out.reserve(values.size() * 2);
  for (float v : values) {
    const uint16_t h = dtype == "F16" ? FloatToF16(v) : FloatToBf16(v);
    out.push_back(static_cast<char>(h & 0xff));
    out.push_back(static_cast<char>(h >> 8));
  }
  return out;
}

std::vector<float> PermuteToHalf(std::span<const float> w, int heads, int head_dim, int64_t cols) {
  std::vector<float> out(w.size());
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < head_dim / 2; ++i) {
      for (int j = 0; j < 2; ++j) {
        const int64_t src = static_cast<int64_t>(h) * head_dim + 2 * i + j;
        const int64_t dst = static_cast<int64_t>(h) * head_dim + j * (head_dim / 2) + i;
        std::memcpy(&out[dst * cols], &w[src * cols], sizeof(float) * cols);
      }
    }
  }
  return out;
}

void AppendU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string SafetensorsBytes(const std::string& header_json, const std::string& data) {
  std::string out;
  AppendU64(out, header_json.size());
  return out + header_json + data;
}

std::string BuildSafetensors(const std::vector<StTensor>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const StTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype}, {"shape", t.shape},
                 {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');  // as the Python writer pads
  return SafetensorsBytes(header, data);
}

namespace {

// (file name, tensor) of every weight of `m` in the HF layout of its architecture
// (transformers' modeling_llama / modeling_qwen3 / modeling_gemma2 parameter names).
std::vector<StTensor> HfTensors(const Model& m, const std::string& dtype) {
  const ModelConfig& c = m.config;
  const bool permute = c.rope_style == RopeStyle::kInterleaved;
  std::vector<StTensor> out;
  auto add = [&](const std::string& name, const Tensor& t, std::vector<float> permuted = {}) {
    std::span<const float> v = permuted.empty() ? t.values() : std::span<const float>(permuted);
    out.push_back({name, dtype, t.shape(), EncodeFloats(v, dtype)});
  };
  add("model.embed_tokens.weight", m.embedding);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = m.layers[l];
    const std::string p = absl::StrCat("model.layers.", l, ".");
    add(p + "input_layernorm.weight", lw.attn_norm);
    if (c.arch == "gemma2") {
      add(p + "post_attention_layernorm.weight", lw.post_attn_norm);
      add(p + "pre_feedforward_layernorm.weight", lw.ffn_norm);
      add(p + "post_feedforward_layernorm.weight", lw.post_ffn_norm);
    } else {
      add(p + "post_attention_layernorm.weight", lw.ffn_norm);
    }
    if (c.arch == "qwen3") {
      add(p + "self_attn.q_norm.weight", lw.q_norm);
      add(p + "self_attn.k_norm.weight", lw.k_norm);
    }
    if (permute) {
      add(p + "self_attn.q_proj.weight", lw[LinearKind::kQ],
          PermuteToHalf(lw[LinearKind::kQ].values(), c.n_heads, c.head_dim, c.dim));
      add(p + "self_attn.k_proj.weight", lw[LinearKind::kK],
          PermuteToHalf(lw[LinearKind::kK].values(), c.n_kv_heads, c.head_dim, c.dim));
    } else {
      add(p + "self_attn.q_proj.weight", lw[LinearKind::kQ]);
      add(p + "self_attn.k_proj.weight", lw[LinearKind::kK]);
    }
    add(p + "self_attn.v_proj.weight", lw[LinearKind::kV]);
    add(p + "self_attn.o_proj.weight", lw[LinearKind::kO]);
    add(p + "mlp.gate_proj.weight", lw[LinearKind::kGate]);
    add(p + "mlp.up_proj.weight", lw[LinearKind::kUp]);
    add(p + "mlp.down_proj.weight", lw[LinearKind::kDown]);
  }
  add("model.norm.weight", m.final_norm);
  if (!c.tied_embeddings) add("lm_head.weight", m.output);
  return out;
}

nlohmann::json OrNull(float v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json HfConfig(const ModelConfig& c) {
  nlohmann::json config = {
      {"hidden_size", c.dim}, {"intermediate_size", c.hidden_dim},
      {"num_hidden_layers", c.n_layers}, {"num_attention_heads", c.n_heads},
      {"num_key_value_heads", c.n_kv_heads}, {"head_dim", c.head_dim},
      {"vocab_size", c.vocab_size}, {"max_position_embeddings", c.seq_len},
      {"rms_norm_eps", c.norm_eps}, {"rope_theta", c.rope_theta},
      {"tie_word_embeddings", c.tied_embeddings}};
  if (c.arch == "qwen3") {
    config["architectures"] = {"Qwen3ForCausalLM"};
    config["model_type"] = "qwen3";
    config["hidden_act"] = "silu";
    config["use_sliding_window"] = false;
  } else if (c.arch == "gemma2") {
    config["architectures"] = {"Gemma2ForCausalLM"};
    config["model_type"] = "gemma2";
    config["hidden_activation"] = "gelu_pytorch_tanh";
    config["query_pre_attn_scalar"] =
        c.query_pre_attn_scalar > 0 ? c.query_pre_attn_scalar : static_cast<float>(c.head_dim);
    config["attn_logit_softcapping"] = OrNull(c.attn_logit_softcap);
    config["final_logit_softcapping"] = OrNull(c.final_logit_softcap);
    config["sliding_window"] =
        c.sliding_window > 0 ? nlohmann::json(c.sliding_window) : nlohmann::json(nullptr);
  } else {
    config["architectures"] = {"LlamaForCausalLM"};
    config["model_type"] = "llama";
    config["hidden_act"] = "silu";
    if (c.rope_scaling.factor > 0) {
      config["rope_scaling"] = {{"rope_type", "llama3"},
                                {"factor", c.rope_scaling.factor},
                                {"low_freq_factor", c.rope_scaling.low_freq_factor},
                                {"high_freq_factor", c.rope_scaling.high_freq_factor},
                                {"original_max_position_embeddings",
                                 c.rope_scaling.original_max_position}};
    }
  }
  return config;
}

}  // namespace

absl::Status WriteHfModel(const Model& m, const std::string& dir, const std::string& dtype,
                          int shards) {
  const ModelConfig& c = m.config;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (absl::Status s = WriteFileAtomically(dir + "/config.json", HfConfig(c).dump(2)); !s.ok()) {
    return s;
  }
  std::vector<StTensor> tensors = HfTensors(m, dtype);
  if (shards <= 1) return WriteFileAtomically(dir + "/model.safetensors", BuildSafetensors(tensors));
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  const size_t per = (tensors.size() + shards - 1) / shards;
  for (int s = 0; s < shards; ++s) {
    const std::string file = absl::StrCat("model-", s + 1, "-of-", shards, ".safetensors");
    std::vector<StTensor> part;
    for (size_t i = s * per; i < std::min(tensors.size(), (s + 1) * per); ++i) {
      index["weight_map"][tensors[i].name] = file;
      part.push_back(tensors[i]);
    }
    if (absl::Status st = WriteFileAtomically(dir + "/" + file, BuildSafetensors(part)); !st.ok()) {
      return st;
    }
  }
  return WriteFileAtomically(dir + "/model.safetensors.index.json", index.dump(2));
}

namespace {
void Key(std::string& kv, const std::string& key, uint32_t type) {
  AppendU64(kv, key.size());
  kv += key;
  AppendU32(kv, type);
}
}  // namespace

void GgufBuilder::U32(const std::string& key, uint32_t v) {
  Key(kv_, key, 4);
  AppendU32(kv_, v);
  ++n_kv_;
}
void GgufBuilder::F32(const std::string& key, float v) {
  Key(kv_, key, 6);
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  AppendU32(kv_, bits);
  ++n_kv_;
}
void GgufBuilder::Bool(const std::string& key, bool v) {
  Key(kv_, key, 7);
  kv_.push_back(v ? 1 : 0);
  ++n_kv_;
}
void GgufBuilder::Str(const std::string& key, const std::string& v) {
  Key(kv_, key, 8);
  AppendU64(kv_, v.size());
  kv_ += v;
  ++n_kv_;
}
void GgufBuilder::StrArray(const std::string& key, const std::vector<std::string>& v) {
  Key(kv_, key, 9);
  AppendU32(kv_, 8);
  AppendU64(kv_, v.size());
  for (const auto& s : v) {
    AppendU64(kv_, s.size());
    kv_ += s;
  }
  ++n_kv_;
}
void GgufBuilder::F32Array(const std::string& key, const std::vector<float>& v) {
  Key(kv_, key, 9);
  AppendU32(kv_, 6);
  AppendU64(kv_, v.size());
  for (float f : v) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    AppendU32(kv_, bits);
  }
  ++n_kv_;
}
void GgufBuilder::I32Array(const std::string& key, const std::vector<int32_t>& v) {
  Key(kv_, key, 9);
  AppendU32(kv_, 5);
  AppendU64(kv_, v.size());
  for (int32_t x : v) AppendU32(kv_, static_cast<uint32_t>(x));
  ++n_kv_;
}
void GgufBuilder::Tensor(const std::string& name, const std::vector<int64_t>& shape,
                         uint32_t ggml_type, const std::string& bytes) {
  tensors_.push_back({name, shape, ggml_type, bytes});
}

std::string GgufBuilder::Build(uint32_t version, uint32_t alignment) const {
  std::string out = "GGUF";
  AppendU32(out, version);
  AppendU64(out, tensors_.size());
  AppendU64(out, n_kv_ + (alignment != 32 ? 1 : 0));
  out += kv_;
  if (alignment != 32) {
    Key(out, "general.alignment", 4);
    AppendU32(out, alignment);
  }
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const T& t : tensors_) {
    AppendU64(out, t.name.size());
    out += t.name;
    AppendU32(out, static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) AppendU64(out, *it);
    AppendU32(out, t.type);
    AppendU64(out, offset);
    offsets.push_back(offset);
    offset += (t.bytes.size() + alignment - 1) / alignment * alignment;
  }
  out.resize((out.size() + alignment - 1) / alignment * alignment, '\0');
  const size_t data = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(data + offsets[i], '\0');
    out += tensors_[i].bytes;
  }
  return out;
}

std::vector<float> Llama3RopeFreqFactors(const ModelConfig& c) {
  // llama.cpp convert_hf_to_gguf.py (LlamaModel.generate_extra_tensors): the divisor of each
  // rotary frequency under the llama3 rule, written as the tensor rope_freqs.weight.
  const RopeScaling& r = c.rope_scaling;
  const double low_wavelen = r.original_max_position / static_cast<double>(r.low_freq_factor);
  const double high_wavelen = r.original_max_position / static_cast<double>(r.high_freq_factor);
  std::vector<float> out;
  for (int i = 0; i < c.head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim);
    const double wavelen = 2 * 3.14159265358979323846 / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(r.factor);
    } else {
      const double smooth = (r.original_max_position / wavelen - r.low_freq_factor) /
                            (r.high_freq_factor - r.low_freq_factor);
      out.push_back(static_cast<float>(1.0 / ((1 - smooth) / r.factor + smooth)));
    }
  }
  return out;
}

GgufBuilder GgufModelBuilder(const Model& m, uint32_t ggml_type, bool duplicate_tied_head) {
  const ModelConfig& c = m.config;
  const std::string dtype = ggml_type == 0 ? "F32" : ggml_type == 1 ? "F16" : "BF16";
  const std::string arch = c.arch;  // llama.cpp's names: "llama", "qwen3", "gemma2"
  const std::string k = arch + ".";
  GgufBuilder b;
  b.Str("general.architecture", arch);
  b.Str("general.name", "impq-test");
  b.U32(k + "context_length", c.seq_len);
  b.U32(k + "embedding_length", c.dim);
  b.U32(k + "feed_forward_length", c.hidden_dim);
  b.U32(k + "block_count", c.n_layers);
  b.U32(k + "attention.head_count", c.n_heads);
  b.U32(k + "attention.head_count_kv", c.n_kv_heads);
  b.U32(k + "rope.dimension_count", c.head_dim);
  if (c.arch != "llama" || c.head_dim * c.n_heads != c.dim) {
    b.U32(k + "attention.key_length", c.head_dim);
    b.U32(k + "attention.value_length", c.head_dim);
  }
  b.F32(k + "attention.layer_norm_rms_epsilon", c.norm_eps);
  b.F32(k + "rope.freq_base", c.rope_theta);
  b.U32(k + "vocab_size", c.vocab_size);
  if (c.arch == "gemma2") {
    b.U32(k + "attention.sliding_window", static_cast<uint32_t>(c.sliding_window));
    b.F32(k + "attn_logit_softcapping", c.attn_logit_softcap);
    b.F32(k + "final_logit_softcapping", c.final_logit_softcap);
  }
  auto add = [&](const std::string& name, const model::Tensor& t) {
    b.Tensor(name, t.shape(), ggml_type, EncodeFloats(t.values(), dtype));
  };
  // Gemma-2's converter stores the norm multipliers 1 + w (Gemma2Model.modify_tensors).
  auto add_norm = [&](const std::string& name, const model::Tensor& t) {
    if (c.norm_weight_offset == 0.0f) return add(name, t);
    std::vector<float> v(t.values().begin(), t.values().end());
    for (float& x : v) x = c.norm_weight_offset + x;
    b.Tensor(name, t.shape(), ggml_type, EncodeFloats(v, dtype));
  };
  add("token_embd.weight", m.embedding);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = m.layers[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    add_norm(p + "attn_norm.weight", lw.attn_norm);
    add_norm(p + "ffn_norm.weight", lw.ffn_norm);
    if (c.arch == "gemma2") {
      add_norm(p + "post_attention_norm.weight", lw.post_attn_norm);
      add_norm(p + "post_ffw_norm.weight", lw.post_ffn_norm);
    }
    if (c.arch == "qwen3") {
      add(p + "attn_q_norm.weight", lw.q_norm);
      add(p + "attn_k_norm.weight", lw.k_norm);
    }
    add(p + "attn_q.weight", lw[LinearKind::kQ]);
    add(p + "attn_k.weight", lw[LinearKind::kK]);
    add(p + "attn_v.weight", lw[LinearKind::kV]);
    add(p + "attn_output.weight", lw[LinearKind::kO]);
    add(p + "ffn_gate.weight", lw[LinearKind::kGate]);
    add(p + "ffn_up.weight", lw[LinearKind::kUp]);
    add(p + "ffn_down.weight", lw[LinearKind::kDown]);
  }
  add_norm("output_norm.weight", m.final_norm);
  if (!c.tied_embeddings || duplicate_tied_head) add("output.weight", m.output);
  if (c.rope_scaling.factor > 0) {
    const std::vector<float> f = Llama3RopeFreqFactors(c);
    b.Tensor("rope_freqs.weight", {static_cast<int64_t>(f.size())}, 0,
             EncodeFloats(f, "F32"));
  }
  return b;
}

absl::Status WriteGgufModel(const Model& m, const std::string& path, uint32_t ggml_type,
                            bool duplicate_tied_head) {
  return WriteFileAtomically(path, GgufModelBuilder(m, ggml_type, duplicate_tied_head).Build());
}

}  // namespace impq::model::testing
