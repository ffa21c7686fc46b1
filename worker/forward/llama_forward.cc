#include "worker/forward/llama_forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/logging.h"
#include "worker/forward/attention_kernel.h"
#include "worker/forward/kernels.h"
#include "worker/forward/matmul.h"
#include "worker/forward/rope.h"

namespace impq::forward {

using model::LinearKind;

void Workspace::Reserve(const model::ModelConfig& c, int64_t tokens) {
  if (tokens <= capacity) return;
  const auto T = static_cast<size_t>(tokens);
  x.resize(T * c.dim);
  xb.resize(T * c.dim);
  q.resize(T * c.q_dim());
  k.resize(T * c.kv_dim());
  v.resize(T * c.kv_dim());
  att.resize(T * c.q_dim());
  proj.resize(T * c.dim);
  h1.resize(T * c.hidden_dim);
  h3.resize(T * c.hidden_dim);
  kt.resize(static_cast<size_t>(SmallHeadKeyStride(tokens) * c.kv_dim()));
  vt.resize(kt.size());
  scores.resize(static_cast<size_t>(c.n_heads) * LlamaForward::kAttnRows * T);
  logits.resize(static_cast<size_t>(LlamaForward::kLogitRows) * c.vocab_size);
  capacity = tokens;
}

const float* LlamaForward::NormMultiplier(const model::Tensor& w) {
  if (w.empty()) return nullptr;
  const float offset = model_.config.norm_weight_offset;
  if (offset == 0.0f) return w.data();
  std::vector<float>& v = offset_norms_.emplace_back(w.values().begin(), w.values().end());
  for (float& x : v) x = offset + x;
  return v.data();
}

LlamaForward::LlamaForward(const model::Model& model) : model_(model) {
  const auto& c = model.config;
  // Reserve so that the pointers NormMultiplier hands out stay valid.
  offset_norms_.reserve(static_cast<size_t>(c.n_layers) * 6 + 1);
  for (const model::LayerWeights& lw : model.layers) {
    LayerNorms n;
    n.attn = NormMultiplier(lw.attn_norm);
    n.ffn = NormMultiplier(lw.ffn_norm);
    // Qwen-3's q/k norms are plain (w) RMSNorms; only Gemma-2 uses an offset, and it has none.
    n.q = lw.q_norm.empty() ? nullptr : lw.q_norm.data();
    n.k = lw.k_norm.empty() ? nullptr : lw.k_norm.data();
    n.post_attn = NormMultiplier(lw.post_attn_norm);
    n.post_ffn = NormMultiplier(lw.post_ffn_norm);
    norms_.push_back(n);
  }
  final_norm_ = NormMultiplier(model.final_norm);

  const size_t half = static_cast<size_t>(c.head_dim / 2);
  rope_inv_freq_ = RopeInvFrequencies(c);
  rope_rows_ = std::min<int64_t>(c.seq_len, kRopeTablePositions);
  rope_cos_.resize(static_cast<size_t>(rope_rows_) * half);
  rope_sin_.resize(rope_cos_.size());
  for (int64_t pos = 0; pos < rope_rows_; ++pos) {
    RopeRow(pos, rope_cos_.data() + pos * half, rope_sin_.data() + pos * half);
  }
}

void LlamaForward::RopeRow(int64_t pos, float* cos, float* sin) const {
  for (size_t i = 0; i < rope_inv_freq_.size(); ++i) {
    const double angle = static_cast<double>(pos) * rope_inv_freq_[i];
    cos[i] = static_cast<float>(std::cos(angle));
    sin[i] = static_cast<float>(std::sin(angle));
  }
}

void LlamaForward::Embed(std::span<const int> tokens, Workspace& ws) const {
  const auto& c = config();
  ws.Reserve(c, static_cast<int64_t>(tokens.size()));
  const float* emb = model_.embedding.data();
  for (size_t t = 0; t < tokens.size(); ++t) {
    IMPQ_CHECK(tokens[t] >= 0 && tokens[t] < c.vocab_size) << "token " << tokens[t];
    std::memcpy(ws.x.data() + t * c.dim, emb + static_cast<int64_t>(tokens[t]) * c.dim,
                sizeof(float) * c.dim);
  }
  if (c.scale_embeddings) {
    // HF Gemma-2 multiplies by sqrt(hidden_size) rounded to the activations' dtype.
    const float s = static_cast<float>(std::sqrt(static_cast<double>(c.dim)));
    for (size_t i = 0; i < tokens.size() * c.dim; ++i) ws.x[i] *= s;
  }
}

void LlamaForward::Attention(int layer, int64_t T, Workspace& ws, ThreadPool* pool) const {
  const auto& c = config();
  const int64_t hd = c.head_dim, qd = c.q_dim(), kvd = c.kv_dim();
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = c.AttentionScale();
  const float softcap = c.attn_logit_softcap;
  const int64_t window = c.LayerUsesSlidingWindow(layer) ? c.sliding_window : 0;
  if (hd <= kSmallHeadDim) {
    // Keys and values transposed per kv head ([kv head][d][ld]) so that the row kernel reads
    // them contiguously along the keys; ld leaves room for its last, partial block of 16 keys
    // (zeros past T).
    const int64_t ld = SmallHeadKeyStride(T);
    for (int64_t i = 0; i < kvd; ++i) {
      float* kr = ws.kt.data() + i * ld;
      float* vr = ws.vt.data() + i * ld;
      for (int64_t t = 0; t < T; ++t) {
        kr[t] = ws.k[t * kvd + i];
        vr[t] = ws.v[t * kvd + i];
      }
      std::fill(kr + T, kr + ld, 0.0f);
      std::fill(vr + T, vr + ld, 0.0f);
    }
    auto small_head = [&](size_t h) {
      const int64_t g = static_cast<int64_t>(h) / group;
      CausalAttentionHead(ws.q.data() + h * hd, qd, ws.kt.data() + g * hd * ld,
                          ws.vt.data() + g * hd * ld, ld, T, hd, scale, softcap, window,
                          ws.att.data() + h * hd, qd, ws.scores.data() + h * kAttnRows * T);
    };
    if (pool != nullptr) {
      pool->ParallelFor(static_cast<size_t>(c.n_heads), small_head);
    } else {
      for (int h = 0; h < c.n_heads; ++h) small_head(static_cast<size_t>(h));
    }
    return;
  }
  auto head = [&](size_t h) {
    const int64_t g = static_cast<int64_t>(h) / group;
    float* s = ws.scores.data() + h * kAttnRows * T;
    for (int64_t r0 = 0; r0 < T; r0 += kAttnRows) {
      const int64_t rows = std::min(kAttnRows, T - r0);
      const int64_t keys = r0 + rows;  // causal: rows r0..r0+rows-1 see keys 0..r0+rows-1
      MatMulNT(rows, keys, hd, scale, ws.q.data() + r0 * qd + h * hd, qd,
               ws.k.data() + g * hd, kvd, s, keys);
      for (int64_t r = 0; r < rows; ++r) {
        float* row = s + r * keys;
        const int64_t pos = r0 + r;  // this query's position: keys 0..pos are causal
        if (softcap > 0) SoftcapRow(row, pos + 1, softcap);
        // Sliding window: keys j <= pos - window are invisible; they get weight exactly 0.
        const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
        SoftmaxPrefixRow(row + first, pos + 1 - first, keys - first);
        std::fill(row, row + first, 0.0f);
      }
      MatMulNN(rows, hd, keys, s, keys, ws.v.data() + g * hd, kvd,
               ws.att.data() + r0 * qd + h * hd, qd);
    }
  };
  if (pool != nullptr) {
    pool->ParallelFor(static_cast<size_t>(c.n_heads), head);
  } else {
    for (int h = 0; h < c.n_heads; ++h) head(static_cast<size_t>(h));
  }
}

void LlamaForward::RunBlock(int layer, const WeightSet& w, int64_t T, Workspace& ws,
                            ThreadPool* pool, LinearInputObserver* observer) const {
  RunAttentionSublayer(layer, w, T, ws, pool, observer);
  RunFfnSublayer(layer, w, T, ws, pool, observer);
}

void LlamaForward::RunAttentionSublayer(int layer, const WeightSet& w, int64_t T, Workspace& ws,
                                        ThreadPool* pool, LinearInputObserver* observer) const {
  const auto& c = config();
  const LayerNorms& nw = norms_[layer];
  const int64_t D = c.dim, qd = c.q_dim(), kvd = c.kv_dim();
  const int64_t hd = c.head_dim, half = hd / 2;
  const bool interleaved = c.rope_style == model::RopeStyle::kInterleaved;

  // Attention sub-block.
  for (int64_t t = 0; t < T; ++t) {
    RmsNormRow(ws.x.data() + t * D, nw.attn, D, c.norm_eps, ws.xb.data() + t * D);
  }
  if (observer) observer->OnLinearInput(layer, LinearKind::kQ, ws.xb.data(), T, D);
  MatMulWt(ws.xb.data(), D, T, D, w.Get(layer, LinearKind::kQ), qd, ws.q.data(), qd, pool);
  MatMulWt(ws.xb.data(), D, T, D, w.Get(layer, LinearKind::kK), kvd, ws.k.data(), kvd, pool);
  MatMulWt(ws.xb.data(), D, T, D, w.Get(layer, LinearKind::kV), kvd, ws.v.data(), kvd, pool);
  if (c.qk_norm) {
    for (int64_t t = 0; t < T; ++t) {
      for (int h = 0; h < c.n_heads; ++h) {
        float* v = ws.q.data() + t * qd + h * hd;
        RmsNormRow(v, nw.q, hd, c.norm_eps, v);
      }
      for (int h = 0; h < c.n_kv_heads; ++h) {
        float* v = ws.k.data() + t * kvd + h * hd;
        RmsNormRow(v, nw.k, hd, c.norm_eps, v);
      }
    }
  }
  std::vector<float> far_cos, far_sin;  // a position beyond the table (kRopeTablePositions)
  for (int64_t t = 0; t < T; ++t) {
    const float* cs;
    const float* sn;
    if (t < rope_rows_) {
      cs = rope_cos_.data() + t * half;
      sn = rope_sin_.data() + t * half;
    } else {
      far_cos.resize(static_cast<size_t>(half));
      far_sin.resize(static_cast<size_t>(half));
      RopeRow(t, far_cos.data(), far_sin.data());
      cs = far_cos.data();
      sn = far_sin.data();
    }
    for (int h = 0; h < c.n_heads; ++h) RopeHead(ws.q.data() + t * qd + h * hd, hd, cs, sn, interleaved);
    for (int h = 0; h < c.n_kv_heads; ++h) RopeHead(ws.k.data() + t * kvd + h * hd, hd, cs, sn, interleaved);
  }
  Attention(layer, T, ws, pool);
  if (observer) observer->OnLinearInput(layer, LinearKind::kO, ws.att.data(), T, qd);
  MatMulWt(ws.att.data(), qd, T, qd, w.Get(layer, LinearKind::kO), D, ws.proj.data(), D, pool);
  if (nw.post_attn != nullptr) {
    for (int64_t t = 0; t < T; ++t) {
      float* row = ws.proj.data() + t * D;
      RmsNormRow(row, nw.post_attn, D, c.norm_eps, row);
    }
  }
  for (int64_t i = 0; i < T * D; ++i) ws.x[i] += ws.proj[i];
}

// Feed-forward sub-block (SwiGLU, or GeGLU for Gemma-2).
void LlamaForward::RunFfnSublayer(int layer, const WeightSet& w, int64_t T, Workspace& ws,
                                  ThreadPool* pool, LinearInputObserver* observer) const {
  const auto& c = config();
  const LayerNorms& nw = norms_[layer];
  const int64_t D = c.dim, H = c.hidden_dim;
  for (int64_t t = 0; t < T; ++t) {
    RmsNormRow(ws.x.data() + t * D, nw.ffn, D, c.norm_eps, ws.xb.data() + t * D);
  }
  if (observer) observer->OnLinearInput(layer, LinearKind::kGate, ws.xb.data(), T, D);
  MatMulWt(ws.xb.data(), D, T, D, w.Get(layer, LinearKind::kGate), H, ws.h1.data(), H, pool);
  MatMulWt(ws.xb.data(), D, T, D, w.Get(layer, LinearKind::kUp), H, ws.h3.data(), H, pool);
  if (c.ffn_activation == model::FfnActivation::kGeluTanh) {
    GeluTanhMul(ws.h1.data(), ws.h3.data(), T * H);
  } else {
    SiluMul(ws.h1.data(), ws.h3.data(), T * H);
  }
  if (observer) observer->OnLinearInput(layer, LinearKind::kDown, ws.h1.data(), T, H);
  MatMulWt(ws.h1.data(), H, T, H, w.Get(layer, LinearKind::kDown), D, ws.proj.data(), D, pool);
  if (nw.post_ffn != nullptr) {
    for (int64_t t = 0; t < T; ++t) {
      float* row = ws.proj.data() + t * D;
      RmsNormRow(row, nw.post_ffn, D, c.norm_eps, row);
    }
  }
  for (int64_t i = 0; i < T * D; ++i) ws.x[i] += ws.proj[i];
}

std::vector<float> LlamaForward::AllLogits(std::span<const int> tokens, const WeightSet& weights,
                                           Workspace& ws, ThreadPool* pool) const {
  RunBlocks(tokens, weights, ws, pool);
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t V = config().vocab_size;
  std::vector<float> out(static_cast<size_t>(T * V));
  for (int64_t r0 = 0; r0 < T; r0 += kLogitRows) {
    const int64_t rows = std::min(kLogitRows, T - r0);
    Logits(r0, rows, ws, pool);
    std::memcpy(out.data() + r0 * V, ws.logits.data(), sizeof(float) * static_cast<size_t>(rows * V));
  }
  return out;
}

void LlamaForward::RunBlocks(std::span<const int> tokens, const WeightSet& weights,
                             Workspace& ws, ThreadPool* pool,
                             LinearInputObserver* observer) const {
  Embed(tokens, ws);
  const auto T = static_cast<int64_t>(tokens.size());
  for (int l = 0; l < config().n_layers; ++l) RunBlock(l, weights, T, ws, pool, observer);
}

void LlamaForward::Logits(int64_t row_begin, int64_t rows, Workspace& ws,
                              ThreadPool* pool) const {
  const auto& c = config();
  const int64_t D = c.dim;
  for (int64_t r = row_begin; r < row_begin + rows; ++r) {
    RmsNormRow(ws.x.data() + r * D, final_norm_, D, c.norm_eps, ws.xb.data() + r * D);
  }
  MatMulWt(ws.xb.data() + row_begin * D, D, rows, D, model_.output.data(), c.vocab_size,
           ws.logits.data(), c.vocab_size, pool);
  if (c.final_logit_softcap > 0) SoftcapRow(ws.logits.data(), rows * c.vocab_size, c.final_logit_softcap);
}

}  // namespace impq::forward
