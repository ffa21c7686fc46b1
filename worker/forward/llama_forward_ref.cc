#include "worker/forward/llama_forward_ref.h"

#include <cmath>

namespace impq::forward {
namespace {

using Vec = std::vector<double>;

Vec RmsNorm(const Vec& x, const float* w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv * w[i];
  return out;
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

void Rope(Vec& v, size_t offset, int head_dim, int pos, double theta, bool interleaved) {
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(theta, (2.0 * i) / head_dim);
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
  std::vector<Vec> x(T, Vec(D));
  for (size_t t = 0; t < T; ++t) {
    for (size_t i = 0; i < D; ++i) x[t][i] = m.embedding.data()[tokens[t] * D + i];
  }
  for (int l = 0; l < c.n_layers; ++l) {
    const auto& lw = m.layers[l];
    std::vector<Vec> q(T), k(T), v(T);
    for (size_t t = 0; t < T; ++t) {
      Vec n = RmsNorm(x[t], lw.attn_norm.data(), c.norm_eps);
      q[t] = Linear(W(l, model::LinearKind::kQ), c.q_dim(), n);
      k[t] = Linear(W(l, model::LinearKind::kK), c.kv_dim(), n);
      v[t] = Linear(W(l, model::LinearKind::kV), c.kv_dim(), n);
      for (int h = 0; h < c.n_heads; ++h) Rope(q[t], h * hd, c.head_dim, static_cast<int>(t), c.rope_theta, interleaved);
      for (int h = 0; h < c.n_kv_heads; ++h) Rope(k[t], h * hd, c.head_dim, static_cast<int>(t), c.rope_theta, interleaved);
    }
    for (size_t t = 0; t < T; ++t) {
      Vec att(c.q_dim(), 0.0);
      for (int h = 0; h < c.n_heads; ++h) {
        const size_t g = static_cast<size_t>(h / (c.n_heads / c.n_kv_heads));
        Vec score(t + 1);
        double mx = -1e300;
        for (size_t s = 0; s <= t; ++s) {
          double dot = 0;
          for (size_t i = 0; i < hd; ++i) dot += q[t][h * hd + i] * k[s][g * hd + i];
          score[s] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, score[s]);
        }
        double sum = 0;
        for (double& sc : score) sum += (sc = std::exp(sc - mx));
        for (size_t s = 0; s <= t; ++s) {
          for (size_t i = 0; i < hd; ++i) att[h * hd + i] += score[s] / sum * v[s][g * hd + i];
        }
      }
      Vec o = Linear(W(l, model::LinearKind::kO), D, att);
      for (size_t i = 0; i < D; ++i) x[t][i] += o[i];
    }
    for (size_t t = 0; t < T; ++t) {
      Vec n = RmsNorm(x[t], lw.ffn_norm.data(), c.norm_eps);
      Vec g = Linear(W(l, model::LinearKind::kGate), c.hidden_dim, n);
      Vec u = Linear(W(l, model::LinearKind::kUp), c.hidden_dim, n);
      for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
      Vec d = Linear(W(l, model::LinearKind::kDown), D, g);
      for (size_t i = 0; i < D; ++i) x[t][i] += d[i];
    }
  }
  std::vector<double> logits(T * V);
  for (size_t t = 0; t < T; ++t) {
    Vec n = RmsNorm(x[t], m.final_norm.data(), c.norm_eps);
    Vec lg = Linear(m.output.data(), V, n);
    for (size_t j = 0; j < V; ++j) logits[t * V + j] = lg[j];
  }
  return logits;
}

}  // namespace impq::forward
