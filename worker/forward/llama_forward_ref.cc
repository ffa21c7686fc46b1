#include "worker/forward/llama_forward_ref.h"

#include <algorithm>
#include <cmath>

namespace impq::forward {
namespace {

using Vec = std::vector<double>;

// x / rms(x) · (offset + w): offset 0 for Llama and Qwen, 1 for Gemma's Hugging Face weights
// (Gemma2RMSNorm: output * (1.0 + self.weight)).
Vec RmsNorm(const Vec& x, const float* w, double eps, double offset = 0.0) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv * (offset + w[i]);
  return out;
}

// Qwen3RMSNorm over each head_dim slice of `v`, in place.
void HeadNorm(Vec& v, size_t head_dim, const float* w, double eps) {
  for (size_t off = 0; off < v.size(); off += head_dim) {
    Vec head(v.begin() + off, v.begin() + off + head_dim);
    head = RmsNorm(head, w, eps);
    for (size_t i = 0; i < head_dim; ++i) v[off + i] = head[i];
  }
}

double Softcap(double x, double cap) { return cap * std::tanh(x / cap); }

// Inverse frequency i of the rotary embedding: theta^(-2i/d), then Meta's llama3 rule
// (Llama 3.1 reference code, apply_scaling): with wavelength λ = 2π/f, λ < L/high keeps f,
// λ > L/low gives f/factor, and in between f·((1 - s)/factor + s) with
// s = (L/λ - low)/(high - low), L = original_max_position; then GGUF's divisors.
double InvFreq(const model::ModelConfig& c, int i) {
  double f = 1.0 / std::pow(static_cast<double>(c.rope_theta), (2.0 * i) / c.head_dim);
  const model::RopeScaling& r = c.rope_scaling;
  if (r.factor > 0) {
    const double lambda = 2.0 * 3.14159265358979323846 / f;
    const double L = r.original_max_position;
    if (lambda > L / r.low_freq_factor) {
      f = f / r.factor;
    } else if (lambda >= L / r.high_freq_factor) {
      const double s = (L / lambda - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
      f = f * ((1.0 - s) / r.factor + s);
    }
  }
  if (!c.rope_freq_factors.empty()) f /= c.rope_freq_factors[i];
  return f;
}

// out[o] = Σ_i w[o, i] x[i]
Vec Linear(const float* w, size_t out_dim, const Vec& x) {
  Vec out(out_dim, 0.0);
  for (size_t o = 0; o < out_dim; ++o) {
    double s = 0;
    for (size_t i = 0; i < x.size(); ++i) s += static_cast<double>(w[o * x.size() + i]) * x[i];
    out[o] = s;
  }
  return out;
}

void Rope(Vec& v, size_t offset, const model::ModelConfig& cfg, int pos, bool interleaved) {
  const int head_dim = cfg.head_dim;
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = InvFreq(cfg, i);
    const double c = std::cos(pos * freq), s = std::sin(pos * freq);
    const size_t a = offset + (interleaved ? 2 * i : i);
    const size_t b = offset + (interleaved ? 2 * i + 1 : i + head_dim / 2);
    const double x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

}  // namespace

std::vector<double> LlamaForwardRef(const model::Model& m, const std::vector<int>& tokens,
                                    const std::vector<std::vector<const float*>>* linear) {
  const auto& c = m.config;
  const size_t T = tokens.size(), D = c.dim, V = c.vocab_size, hd = c.head_dim;
  const bool interleaved = c.rope_style == model::RopeStyle::kInterleaved;
  auto W = [&](int l, model::LinearKind k) {
    return linear ? (*linear)[l][static_cast<int>(k)] : m.layers[l][k].data();
  };
  const double off = c.norm_weight_offset;
  // Gemma: hidden_states * hidden_size**0.5.
  const double emb_scale = c.scale_embeddings ? std::sqrt(static_cast<double>(D)) : 1.0;
  // Gemma: query_pre_attn_scalar**-0.5; everyone else head_dim**-0.5.
  const double att_scale =
      1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? static_cast<double>(c.query_pre_attn_scalar)
                                                  : static_cast<double>(hd));
  std::vector<Vec> x(T, Vec(D));
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < D; ++i) x[t][i] = m.embedding.data()[tokens[t] * D + i] * emb_scale;
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& lw = m.layers[l];
    // Gemma2: even layers look back over at most sliding_window positions (themselves included).
    const size_t window = (c.sliding_window > 0 && l % 2 == 0) ? c.sliding_window : 0;
    std::vector<Vec> q(T), k(T), v(T);
    for (size_t t = 0; t < T; ++t) {
      Vec n = RmsNorm(x[t], lw.attn_norm.data(), c.norm_eps, off);
      q[t] = Linear(W(l, model::LinearKind::kQ), c.q_dim(), n);
      k[t] = Linear(W(l, model::LinearKind::kK), c.kv_dim(), n);
      v[t] = Linear(W(l, model::LinearKind::kV), c.kv_dim(), n);
      if (c.qk_norm) {  // Qwen3: q_norm / k_norm before the rotary embedding
        HeadNorm(q[t], hd, lw.q_norm.data(), c.norm_eps);
        HeadNorm(k[t], hd, lw.k_norm.data(), c.norm_eps);
      }
      for (int h = 0; h < c.n_heads; ++h) Rope(q[t], h * hd, c, static_cast<int>(t), interleaved);
      for (int h = 0; h < c.n_kv_heads; ++h) Rope(k[t], h * hd, c, static_cast<int>(t), interleaved);
    }
    for (size_t t = 0; t < T; ++t) {
      Vec att(c.q_dim(), 0.0);
      const size_t first = (window > 0 && t + 1 > window) ? t + 1 - window : 0;
      for (int h = 0; h < c.n_heads; ++h) {
        const size_t g = static_cast<size_t>(h / (c.n_heads / c.n_kv_heads));
        Vec score(t + 1, 0.0);
        double mx = -1e300;
        for (size_t s = first; s <= t; ++s) {
          double dot = 0;
          for (size_t i = 0; i < hd; ++i) dot += q[t][h * hd + i] * k[s][g * hd + i];
          score[s] = dot * att_scale;
          if (c.attn_logit_softcap > 0) score[s] = Softcap(score[s], c.attn_logit_softcap);
          mx = std::max(mx, score[s]);
        }
        double sum = 0;
        for (size_t s = first; s <= t; ++s) sum += (score[s] = std::exp(score[s] - mx));
        for (size_t s = first; s <= t; ++s) {
          for (size_t i = 0; i < hd; ++i) att[h * hd + i] += score[s] / sum * v[s][g * hd + i];
        }
      }
      Vec o = Linear(W(l, model::LinearKind::kO), D, att);
      if (c.post_norms) o = RmsNorm(o, lw.post_attn_norm.data(), c.norm_eps, off);
      for (size_t i = 0; i < D; ++i) x[t][i] += o[i];
    }
    for (size_t t = 0; t < T; ++t) {
      Vec n = RmsNorm(x[t], lw.ffn_norm.data(), c.norm_eps, off);
      Vec g = Linear(W(l, model::LinearKind::kGate), c.hidden_dim, n);
      Vec u = Linear(W(l, model::LinearKind::kUp), c.hidden_dim, n);
      for (size_t i = 0; i < g.size(); ++i) {
        if (c.ffn_activation == model::FfnActivation::kGeluTanh) {
          // gelu_pytorch_tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
          const double a = std::sqrt(2.0 / 3.14159265358979323846);
          g[i] = 0.5 * g[i] * (1.0 + std::tanh(a * (g[i] + 0.044715 * g[i] * g[i] * g[i]))) * u[i];
        } else {
          g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        }
      }
      Vec d = Linear(W(l, model::LinearKind::kDown), D, g);
      if (c.post_norms) d = RmsNorm(d, lw.post_ffn_norm.data(), c.norm_eps, off);
      for (size_t i = 0; i < D; ++i) x[t][i] += d[i];
    }
  }
  std::vector<double> logits(T * V);
  for (size_t t = 0; t < T; ++t) {
    Vec n = RmsNorm(x[t], m.final_norm.data(), c.norm_eps, off);
    Vec lg = Linear(m.output.data(), V, n);
    for (size_t j = 0; j < V; ++j) {
      logits[t * V + j] =
          c.final_logit_softcap > 0 ? Softcap(lg[j], c.final_logit_softcap) : lg[j];
    }
  }
  return logits;
}

double LogitErrorBound(const model::ModelConfig& c, int64_t T, const std::vector<double>& ref,
                       double sequential_ops) {
  double max_abs = 0;
  for (double x : ref) max_abs = std::max(max_abs, std::abs(x));
  const double k_max = std::max<double>({static_cast<double>(c.dim), static_cast<double>(c.hidden_dim),
                                         static_cast<double>(c.q_dim()), static_cast<double>(T)});
  return sequential_ops * k_max * 0x1p-24 * std::max(1.0, max_abs);
}

}  // namespace impq::forward
