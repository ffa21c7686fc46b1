#include "worker/model/model.h"

#include <cmath>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/rng.h"

namespace impq::model {

const char* LinearKindName(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ: return "attn_q";
    case LinearKind::kK: return "attn_k";
    case LinearKind::kV: return "attn_v";
    case LinearKind::kO: return "attn_o";
    case LinearKind::kGate: return "ffn_gate";
    case LinearKind::kUp: return "ffn_up";
    case LinearKind::kDown: return "ffn_down";
  }
  return "?";
}

int64_t ModelConfig::LinearRows(LinearKind kind) const {
  switch (kind) {
    case LinearKind::kQ: return q_dim();
    case LinearKind::kK:
    case LinearKind::kV: return kv_dim();
    case LinearKind::kO: return dim;
    case LinearKind::kGate:
    case LinearKind::kUp: return hidden_dim;
    case LinearKind::kDown: return dim;
  }
  return 0;
}

int64_t ModelConfig::LinearCols(LinearKind kind) const {
  switch (kind) {
    case LinearKind::kQ:
    case LinearKind::kK:
    case LinearKind::kV:
    case LinearKind::kGate:
    case LinearKind::kUp: return dim;
    case LinearKind::kO: return q_dim();
    case LinearKind::kDown: return hidden_dim;
  }
  return 0;
}

float ModelConfig::AttentionScale() const {
  const float s = query_pre_attn_scalar > 0 ? query_pre_attn_scalar : static_cast<float>(head_dim);
  return 1.0f / std::sqrt(s);
}

absl::Status ModelConfig::Validate() const {
  auto in_range = [](const char* field, int64_t v) -> absl::Status {
    if (v <= 0 || v > kMaxConfigSize) {
      return absl::InvalidArgumentError(absl::StrCat(field, " must be in [1, ", kMaxConfigSize,
                                                     "], got ", v));
    }
    return absl::OkStatus();
  };
  for (auto [field, v] : {std::pair{"dim", dim}, {"hidden_dim", hidden_dim},
                          {"n_layers", n_layers}, {"n_heads", n_heads},
                          {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim},
                          {"vocab_size", vocab_size}, {"seq_len", seq_len}}) {
    if (absl::Status s = in_range(field, v); !s.ok()) return s;
  }
  // Products in 64 bits: q_dim() and kv_dim() are ints, used as tensor dimensions.
  if (absl::Status s = in_range("q_dim (n_heads * head_dim)", int64_t{n_heads} * head_dim);
      !s.ok())
    return s;
  if (absl::Status s = in_range("kv_dim (n_kv_heads * head_dim)", int64_t{n_kv_heads} * head_dim);
      !s.ok())
    return s;
  if (n_heads % n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("n_heads (", n_heads,
                                                   ") must be a multiple of n_kv_heads (",
                                                   n_kv_heads, ")"));
  }
  if (head_dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("head_dim must be even for rotary embeddings, got ", head_dim));
  }
  if (!(norm_eps > 0) || !(rope_theta > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("norm_eps and rope_theta must be > 0, got ", norm_eps, " and ", rope_theta));
  }
  if (rope_scaling.factor != 0) {
    const RopeScaling& r = rope_scaling;
    if (!(r.factor > 0) || !(r.low_freq_factor > 0) || !(r.high_freq_factor > r.low_freq_factor) ||
        r.original_max_position <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "rope_scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
          "original_max_position > 0, got factor ", r.factor, ", low_freq_factor ",
          r.low_freq_factor, ", high_freq_factor ", r.high_freq_factor,
          ", original_max_position ", r.original_max_position));
    }
  }
  if (!rope_freq_factors.empty()) {
    if (static_cast<int>(rope_freq_factors.size()) != head_dim / 2) {
      return absl::InvalidArgumentError(absl::StrCat("rope_freq_factors has ",
                                                     rope_freq_factors.size(),
                                                     " values, expected head_dim/2 = ",
                                                     head_dim / 2));
    }
    for (float f : rope_freq_factors) {
      if (!(f > 0) || !std::isfinite(f)) {
        return absl::InvalidArgumentError(
            absl::StrCat("rope_freq_factors must be finite and > 0, got ", f));
      }
    }
  }
  for (auto [field, v] : {std::pair{"attn_logit_softcap", attn_logit_softcap},
                          {"final_logit_softcap", final_logit_softcap},
                          {"query_pre_attn_scalar", query_pre_attn_scalar}}) {
    if (!(v >= 0) || !std::isfinite(v)) {
      return absl::InvalidArgumentError(absl::StrCat(field, " must be >= 0 (0 = off), got ", v));
    }
  }
  if (sliding_window < 0 || sliding_window > kMaxConfigSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("sliding_window must be in [0, ", kMaxConfigSize, "] (0 = off), got ",
                     sliding_window));
  }
  if (!std::isfinite(norm_weight_offset)) {
    return absl::InvalidArgumentError("norm_weight_offset must be finite");
  }
  return absl::OkStatus();
}

std::string ModelConfig::ToString() const {
  return absl::StrCat(arch, " dim=", dim, " hidden=", hidden_dim, " layers=", n_layers,
                      " heads=", n_heads, " kv_heads=", n_kv_heads, " head_dim=", head_dim,
                      " vocab=", vocab_size, " seq_len=", seq_len,
                      tied_embeddings ? " tied" : " untied",
                      rope_scaling.factor > 0
                          ? absl::StrCat(" rope_scaling=llama3(", rope_scaling.factor, ")")
                          : "",
                      rope_freq_factors.empty() ? "" : " rope_freq_factors",
                      qk_norm ? " qk_norm" : "", post_norms ? " post_norms" : "",
                      norm_weight_offset != 0 ? absl::StrCat(" norm_offset=", norm_weight_offset)
                                              : "",
                      scale_embeddings ? " scaled_embeddings" : "",
                      ffn_activation == FfnActivation::kGeluTanh ? " geglu" : "",
                      attn_logit_softcap > 0 ? absl::StrCat(" attn_softcap=", attn_logit_softcap)
                                             : "",
                      final_logit_softcap > 0
                          ? absl::StrCat(" final_softcap=", final_logit_softcap)
                          : "",
                      sliding_window > 0 ? absl::StrCat(" sliding_window=", sliding_window) : "",
                      query_pre_attn_scalar > 0
                          ? absl::StrCat(" query_pre_attn_scalar=", query_pre_attn_scalar)
                          : "");
}

namespace {

absl::Status CheckShape(const Tensor& t, const std::string& what, std::vector<int64_t> want) {
  if (t.empty()) return absl::InvalidArgumentError(absl::StrCat("tensor ", what, " is missing"));
  if (t.shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat("tensor ", what, " has shape ", t.ShapeString(),
                                                   ", expected [", absl::StrJoin(want, ", "),
                                                   "]"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status Model::Validate() const {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  const ModelConfig& c = config;
  if (static_cast<int>(layers.size()) != c.n_layers) {
    return absl::InvalidArgumentError(
        absl::StrCat("model has ", layers.size(), " layers, config says ", c.n_layers));
  }
  if (absl::Status s = CheckShape(embedding, "token_embedding", {c.vocab_size, c.dim}); !s.ok())
    return s;
  if (absl::Status s = CheckShape(final_norm, "final_norm", {c.dim}); !s.ok()) return s;
  if (absl::Status s = CheckShape(output, "output", {c.vocab_size, c.dim}); !s.ok()) return s;
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = layers[l];
    std::string p = absl::StrCat("layers.", l, ".");
    if (absl::Status s = CheckShape(lw.attn_norm, p + "attn_norm", {c.dim}); !s.ok()) return s;
    if (absl::Status s = CheckShape(lw.ffn_norm, p + "ffn_norm", {c.dim}); !s.ok()) return s;
    for (auto [t, name, want, on] :
         {std::tuple{&lw.q_norm, "q_norm", c.head_dim, c.qk_norm},
          {&lw.k_norm, "k_norm", c.head_dim, c.qk_norm},
          {&lw.post_attn_norm, "post_attn_norm", c.dim, c.post_norms},
          {&lw.post_ffn_norm, "post_ffn_norm", c.dim, c.post_norms}}) {
      if (on) {
        if (absl::Status s = CheckShape(*t, p + name, {want}); !s.ok()) return s;
      } else if (!t->empty()) {
        return absl::InvalidArgumentError(absl::StrCat("tensor ", p, name,
                                                       " is present but the config does not "
                                                       "use it"));
      }
    }
    for (int k = 0; k < kNumLinear; ++k) {
      auto kind = static_cast<LinearKind>(k);
      if (absl::Status s = CheckShape(lw.linear[k], p + LinearKindName(kind),
                                      {c.LinearRows(kind), c.LinearCols(kind)});
          !s.ok())
        return s;
    }
  }
  return absl::OkStatus();
}

int64_t Model::LinearParameterCount() const {
  int64_t n = 0;
  for (const auto& lw : layers) {
    for (const auto& t : lw.linear) n += t.numel();
  }
  return n;
}

namespace {

Tensor RandomTensor(const std::string& name, std::vector<int64_t> shape, uint64_t seed,
                    float center, float stddev) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  Rng rng(seed);
  // Uniform with the requested standard deviation: fast for 100M-parameter shapes and
  // statistically adequate for speed measurements and numeric tests.
  const double half_width = stddev * std::sqrt(3.0);
  for (auto& x : v) x = static_cast<float>(center + half_width * (2.0 * rng.Uniform() - 1.0));
  return Tensor::Owned(name, std::move(shape), std::move(v));
}

}  // namespace

Model MakeRandomModel(const ModelConfig& config, uint64_t seed) {
  Model m;
  m.config = config;
  m.source = absl::StrCat("random(seed=", seed, ")");
  const ModelConfig& c = config;
  uint64_t stream = 0;
  auto next_seed = [&] { return DeriveSeed(seed, stream++); };
  // Norm multipliers are (offset + w): center w so that the multiplier is near 1.
  const float norm_center = 1.0f - c.norm_weight_offset;
  m.embedding = RandomTensor("token_embedding", {c.vocab_size, c.dim}, next_seed(), 0.0f, 0.02f);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    std::string p = absl::StrCat("layers.", l, ".");
    lw.attn_norm = RandomTensor(p + "attn_norm", {c.dim}, next_seed(), norm_center, 0.1f);
    lw.ffn_norm = RandomTensor(p + "ffn_norm", {c.dim}, next_seed(), norm_center, 0.1f);
    for (int k = 0; k < kNumLinear; ++k) {
      auto kind = static_cast<LinearKind>(k);
      lw.linear[k] = RandomTensor(p + LinearKindName(kind),
                                  {c.LinearRows(kind), c.LinearCols(kind)}, next_seed(), 0.0f,
                                  0.02f);
    }
    m.layers.push_back(std::move(lw));
  }
  m.final_norm = RandomTensor("final_norm", {c.dim}, next_seed(), norm_center, 0.1f);
  if (c.tied_embeddings) {
    m.output = m.embedding.WithName("output");
  } else {
    m.output = RandomTensor("output", {c.vocab_size, c.dim}, next_seed(), 0.0f, 0.02f);
  }
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights& lw = m.layers[l];
    const std::string p = absl::StrCat("layers.", l, ".");
    if (c.qk_norm) {
      // Spread wider than the other norms so that the per-head norms visibly matter.
      lw.q_norm = RandomTensor(p + "q_norm", {c.head_dim}, next_seed(), 1.0f, 0.3f);
      lw.k_norm = RandomTensor(p + "k_norm", {c.head_dim}, next_seed(), 1.0f, 0.3f);
    }
    if (c.post_norms) {
      lw.post_attn_norm =
          RandomTensor(p + "post_attn_norm", {c.dim}, next_seed(), norm_center, 0.1f);
      lw.post_ffn_norm =
          RandomTensor(p + "post_ffn_norm", {c.dim}, next_seed(), norm_center, 0.1f);
    }
  }
  return m;
}

}  // namespace impq::model
