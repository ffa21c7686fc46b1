#include "worker/model/fingerprint.h"

#include <cstdint>
#include <cstring>

#include "absl/strings/str_format.h"

namespace impq::model {
namespace {

void HashTensor(const Tensor& t, Fnv1a64& h) {
  h.Int(static_cast<int64_t>(t.shape().size()));
  for (int64_t d : t.shape()) h.Int(d);
  if (!t.empty()) h.Floats(t.data(), t.numel());
}

// Q/K [heads * head_dim, cols] in the interleaved layout: within a head, interleaved row
// 2i + j is rotate_half row j * head_dim / 2 + i (the permutation HF's converter applies).
void HashRotary(const Tensor& t, int heads, int head_dim, RopeStyle style, Fnv1a64& h) {
  if (style == RopeStyle::kInterleaved) {
    HashTensor(t, h);
    return;
  }
  h.Int(static_cast<int64_t>(t.shape().size()));
  for (int64_t d : t.shape()) h.Int(d);
  const int64_t cols = t.dim(1);
  const int half = head_dim / 2;
  for (int head = 0; head < heads; ++head) {
    for (int i = 0; i < half; ++i) {
      for (int j = 0; j < 2; ++j) {
        const int64_t src = static_cast<int64_t>(head) * head_dim + j * half + i;
        h.Floats(t.data() + src * cols, cols);
      }
    }
  }
}

}  // namespace

std::string WeightsFingerprint(const Model& m) {
  const ModelConfig& c = m.config;
  Fnv1a64 h;
  h.Str(c.arch);
  for (int64_t v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim,
                    c.vocab_size}) {
    h.Int(v);
  }
  HashTensor(m.embedding, h);
  for (const LayerWeights& l : m.layers) {
    for (const Tensor* t : {&l.attn_norm, &l.ffn_norm, &l.q_norm, &l.k_norm, &l.post_attn_norm,
                            &l.post_ffn_norm}) {
      HashTensor(*t, h);
    }
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      if (kind == LinearKind::kQ) {
        HashRotary(l[kind], c.n_heads, c.head_dim, c.rope_style, h);
      } else if (kind == LinearKind::kK) {
        HashRotary(l[kind], c.n_kv_heads, c.head_dim, c.rope_style, h);
      } else {
        HashTensor(l[kind], h);
      }
    }
  }
  HashTensor(m.final_norm, h);
  if (!c.tied_embeddings) HashTensor(m.output, h);
  return absl::StrFormat("fnv1a64:%016x", h.value());
}

}  // namespace impq::model
