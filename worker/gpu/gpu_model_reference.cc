#include "worker/gpu/gpu_model_reference.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/rope.h"
#include "worker/gpu/gpu_reference.h"

namespace impq::gpu {
namespace {

using model::LinearKind;

std::vector<float> Multiplier(const model::Tensor& w, float offset) {
  std::vector<float> v(w.values().begin(), w.values().end());
  // As LlamaForward::NormMultiplier: (offset + w) in float32, only when the offset is set.
  if (offset != 0.0f) {
    for (float& x : v) x = offset + x;
  }
  return v;
}

// out[i] = float(x[i] / sqrt(mean(x²) + eps) · w[i]), reductions in double. out may alias x.
void RmsNorm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(n) + static_cast<double>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(x[i] * inv * w[i]);
}

// y[r, o] = float(Σ_i a[r, i] · w[o, i]) (double accumulation), or, with accumulate,
// y[r, o] = float(y[r, o] + that): cuBLAS's beta = 1 with an f32 accumulator.
void Gemm(const float* a, int64_t rows, int64_t in, const float* w, int64_t out, float* y,
          bool accumulate) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * in;
    for (int64_t o = 0; o < out; ++o) {
      const float* wo = w + o * in;
      double s = 0.0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(ar[i]) * wo[i];
      const float f = static_cast<float>(s);
      y[r * out + o] = accumulate ? y[r * out + o] + f : f;
    }
  }
}

double Softcap(double x, double cap) { return cap * std::tanh(x / cap); }

}  // namespace

GpuModelTables MakeGpuModelTables(const model::Model& m, int positions) {
  const model::ModelConfig& c = m.config;
  const float off = c.norm_weight_offset;
  GpuModelTables t;
  for (const model::LayerWeights& lw : m.layers) {
    GpuModelTables::Layer l;
    l.attn = Multiplier(lw.attn_norm, off);
    l.ffn = Multiplier(lw.ffn_norm, off);
    if (!lw.q_norm.empty()) l.q = Multiplier(lw.q_norm, 0.0f);
    if (!lw.k_norm.empty()) l.k = Multiplier(lw.k_norm, 0.0f);
    if (!lw.post_attn_norm.empty()) l.post_attn = Multiplier(lw.post_attn_norm, off);
    if (!lw.post_ffn_norm.empty()) l.post_ffn = Multiplier(lw.post_ffn_norm, off);
    t.layers.push_back(std::move(l));
  }
  t.final_norm = Multiplier(m.final_norm, off);
  const int half = c.head_dim / 2;
  const std::vector<double> inv_freq = forward::RopeInvFrequencies(c);
  t.rope_cos.resize(static_cast<size_t>(positions) * half);
  t.rope_sin.resize(t.rope_cos.size());
  for (int pos = 0; pos < positions; ++pos) {
    for (int i = 0; i < half; ++i) {
      const double angle = pos * inv_freq[i];
      t.rope_cos[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::cos(angle));
      t.rope_sin[static_cast<size_t>(pos) * half + i] = static_cast<float>(std::sin(angle));
    }
  }
  t.embed_scale =
      c.scale_embeddings ? static_cast<float>(std::sqrt(static_cast<double>(c.dim))) : 1.0f;
  return t;
}

float GpuModelReference::R(float x) const { return options_.bf16 ? RoundBf16(x) : x; }

GpuModelReference::GpuModelReference(const model::Model& m) : GpuModelReference(m, Options()) {}

namespace {

int ReferencePositions(const model::Model& m, int positions) {
  if (positions > 0) return std::min(positions, m.config.seq_len);
  return static_cast<int>(
      std::min<int64_t>(m.config.seq_len, forward::LlamaForward::kRopeTablePositions));
}

}  // namespace

GpuModelReference::GpuModelReference(const model::Model& m, Options options)
    : model_(m), options_(options),
      tables_(MakeGpuModelTables(m, ReferencePositions(m, options.positions))) {
  output_.assign(m.output.values().begin(), m.output.values().end());
  for (float& x : output_) x = R(x);
}

std::vector<float> GpuModelReference::Hidden(std::span<const int> tokens,
                                             const forward::WeightSet& w) const {
  const model::ModelConfig& c = model_.config;
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t D = c.dim, qd = c.q_dim(), kvd = c.kv_dim(), H = c.hidden_dim;
  const int64_t hd = c.head_dim, half = hd / 2;
  const int group = c.n_heads / c.n_kv_heads;
  const bool interleaved = c.rope_style == model::RopeStyle::kInterleaved;
  const double scale = c.AttentionScale();  // the f32 value the plugin receives

  std::vector<float> x(static_cast<size_t>(T * D));
  for (int64_t t = 0; t < T; ++t) {
    const float* e = model_.embedding.data() + static_cast<int64_t>(tokens[t]) * D;
    for (int64_t i = 0; i < D; ++i) x[t * D + i] = e[i] * tables_.embed_scale;
  }
  std::vector<float> n(static_cast<size_t>(T * D)), q(T * qd), k(T * kvd), v(T * kvd), att(T * qd),
      proj(T * D), g(T * H), u(T * H);
  std::vector<float> wr;  // one module's weights, rounded
  auto weights = [&](int layer, LinearKind kind) -> const float* {
    const int64_t count = c.LinearRows(kind) * c.LinearCols(kind);
    const float* src = w.Get(layer, kind);
    wr.assign(src, src + count);
    for (float& f : wr) f = R(f);
    return wr.data();
  };
  // x += out, or x += rmsnorm(out) · post (Gemma-2), in f32.
  auto join = [&](const std::vector<float>& post, int64_t layer_out_rows) {
    for (int64_t t = 0; t < layer_out_rows; ++t) {
      float* pr = proj.data() + t * D;
      if (!post.empty()) RmsNorm(pr, post.data(), D, c.norm_eps, pr);
      for (int64_t i = 0; i < D; ++i) x[t * D + i] += pr[i];
    }
  };
  std::vector<double> score(static_cast<size_t>(T));
  std::vector<float> prob(static_cast<size_t>(T));
  for (int l = 0; l < c.n_layers; ++l) {
    const GpuModelTables::Layer& nw = tables_.layers[l];
    // ---- attention ----
    for (int64_t t = 0; t < T; ++t) {
      RmsNorm(x.data() + t * D, nw.attn.data(), D, c.norm_eps, n.data() + t * D);
      for (int64_t i = 0; i < D; ++i) n[t * D + i] = R(n[t * D + i]);
    }
    Gemm(n.data(), T, D, weights(l, LinearKind::kQ), qd, q.data(), false);
    Gemm(n.data(), T, D, weights(l, LinearKind::kK), kvd, k.data(), false);
    Gemm(n.data(), T, D, weights(l, LinearKind::kV), kvd, v.data(), false);
    auto prepare = [&](float* vec, const std::vector<float>& head_norm, int64_t t) {
      if (!head_norm.empty()) RmsNorm(vec, head_norm.data(), hd, c.norm_eps, vec);
      const float* cs = tables_.rope_cos.data() + t * half;
      const float* sn = tables_.rope_sin.data() + t * half;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t ia = interleaved ? 2 * i : i;
        const int64_t ib = interleaved ? 2 * i + 1 : i + half;
        const double a = vec[ia], b = vec[ib];
        vec[ia] = R(static_cast<float>(a * cs[i] - b * sn[i]));
        vec[ib] = R(static_cast<float>(a * sn[i] + b * cs[i]));
      }
    };
    for (int64_t t = 0; t < T; ++t) {
      for (int h = 0; h < c.n_heads; ++h) prepare(q.data() + t * qd + h * hd, nw.q, t);
      for (int h = 0; h < c.n_kv_heads; ++h) prepare(k.data() + t * kvd + h * hd, nw.k, t);
    }
    for (float& f : v) f = R(f);
    const int64_t window = c.LayerUsesSlidingWindow(l) ? c.sliding_window : 0;
    for (int h = 0; h < c.n_heads; ++h) {
      const int64_t kv = h / group;
      for (int64_t t = 0; t < T; ++t) {
        // Key j is visible from query t iff j <= t and, with a window w, t - w < j.
        const int64_t first = window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
        double mx = -INFINITY;
        for (int64_t j = first; j <= t; ++j) {
          double dot = 0.0;
          for (int64_t i = 0; i < hd; ++i) {
            dot += static_cast<double>(q[t * qd + h * hd + i]) * k[j * kvd + kv * hd + i];
          }
          double s = static_cast<float>(scale * dot);  // cuBLAS alpha = scale, f32 output
          if (c.attn_logit_softcap > 0) s = static_cast<float>(Softcap(s, c.attn_logit_softcap));
          score[j] = s;
          mx = std::max(mx, s);
        }
        double sum = 0.0;
        for (int64_t j = first; j <= t; ++j) sum += std::exp(score[j] - mx);
        for (int64_t j = first; j <= t; ++j) {
          prob[j] = R(static_cast<float>(std::exp(score[j] - mx) / sum));
        }
        for (int64_t i = 0; i < hd; ++i) {
          double o = 0.0;
          for (int64_t j = first; j <= t; ++j) {
            o += static_cast<double>(prob[j]) * v[j * kvd + kv * hd + i];
          }
          att[t * qd + h * hd + i] = R(static_cast<float>(o));
        }
      }
    }
    Gemm(att.data(), T, qd, weights(l, LinearKind::kO), D, proj.data(), false);
    join(nw.post_attn, T);
    // ---- feed-forward ----
    for (int64_t t = 0; t < T; ++t) {
      RmsNorm(x.data() + t * D, nw.ffn.data(), D, c.norm_eps, n.data() + t * D);
      for (int64_t i = 0; i < D; ++i) n[t * D + i] = R(n[t * D + i]);
    }
    Gemm(n.data(), T, D, weights(l, LinearKind::kGate), H, g.data(), false);
    Gemm(n.data(), T, D, weights(l, LinearKind::kUp), H, u.data(), false);
    for (int64_t i = 0; i < T * H; ++i) {
      const double a = g[i];
      double act;
      if (c.ffn_activation == model::FfnActivation::kGeluTanh) {
        const double kA = std::sqrt(2.0 / 3.14159265358979323846);
        act = 0.5 * a * (1.0 + std::tanh(kA * (a + 0.044715 * a * a * a)));
      } else {
        act = a / (1.0 + std::exp(-a));
      }
      g[i] = R(static_cast<float>(act * u[i]));
    }
    Gemm(g.data(), T, H, weights(l, LinearKind::kDown), D, proj.data(), false);
    join(nw.post_ffn, T);
  }
  return x;
}

std::vector<float> GpuModelReference::Logits(std::span<const int> tokens,
                                             const forward::WeightSet& weights) const {
  const model::ModelConfig& c = model_.config;
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t D = c.dim, V = c.vocab_size;
  std::vector<float> x = Hidden(tokens, weights);
  for (int64_t t = 0; t < T; ++t) {
    float* row = x.data() + t * D;
    RmsNorm(row, tables_.final_norm.data(), D, c.norm_eps, row);
    for (int64_t i = 0; i < D; ++i) row[i] = R(row[i]);
  }
  std::vector<float> logits(static_cast<size_t>(T * V));
  Gemm(x.data(), T, D, output_.data(), V, logits.data(), false);
  if (c.final_logit_softcap > 0) {
    for (float& z : logits) z = static_cast<float>(Softcap(z, c.final_logit_softcap));
  }
  return logits;
}

double GpuModelReference::SequenceNll(const eval::EvalSequence& seq,
                                      const forward::WeightSet& weights,
                                      double* max_abs_logit) const {
  const int64_t V = model_.config.vocab_size;
  const std::vector<float> logits = Logits(seq.tokens, weights);
  double sum = 0.0, max_abs = 0.0;
  const auto end = static_cast<int64_t>(seq.tokens.size()) - 1;
  for (int64_t p = seq.score_begin; p < end; ++p) {
    const float* row = logits.data() + p * V;
    double mx = row[0];
    for (int64_t j = 0; j < V; ++j) {
      mx = std::max(mx, static_cast<double>(row[j]));
      max_abs = std::max(max_abs, std::abs(static_cast<double>(row[j])));
    }
    double s = 0.0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(row[j] - mx);
    sum += mx + std::log(s) - row[seq.tokens[static_cast<size_t>(p + 1)]];
  }
  if (max_abs_logit != nullptr) *max_abs_logit = max_abs;
  return sum;
}

absl::StatusOr<std::vector<double>> GpuModelReference::SequenceNlls(
    const eval::EvalSet& set, const forward::WeightSet& weights) const {
  RETURN_IF_ERROR(eval::ValidateEvalSet(model_.config, set, "GpuModelReference evaluation set"));
  for (size_t s = 0; s < set.sequences.size(); ++s) {
    if (static_cast<int64_t>(set.sequences[s].tokens.size()) > positions()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "GpuModelReference evaluation set: sequence ", s, " has ",
          set.sequences[s].tokens.size(), " tokens; the reference was made for ", positions(),
          " (Options::positions)"));
    }
  }
  std::vector<double> sums;
  sums.reserve(set.sequences.size());
  for (const eval::EvalSequence& seq : set.sequences) sums.push_back(SequenceNll(seq, weights));
  return sums;
}

}  // namespace impq::gpu
