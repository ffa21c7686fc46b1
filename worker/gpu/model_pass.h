// The orchestration of the plugin's model_evaluate, as host-compilable templates: which
// sequences run together, from which block, which rows go through which kernel, where the
// prefix cache is read and written, and how per-row NLLs become per-sequence sums.
//
// Shared by the CUDA plugin (cuda/model.cu: Ops = the CUDA launchers of cuda/kernels.cuh on
// device pointers) and by a CPU emulation in gpu_model_test.cc (Ops = the scalar kernel
// references of gpu_reference.h on host vectors), so every index, offset and restart decision
// of the GPU path is exercised by the CPU tests; only the kernels themselves differ.
//
// Layout of an evaluation set (model_set_eval): sequences s = 0..n-1 of T_s tokens
// concatenated (offsets), rows p in [score_begin_s, T_s - 1) scored; scored rows are numbered
// compactly in sequence order (scored_offset). Sequences are grouped once into batches of
// consecutive sequences of at most row_budget rows (a sequence never splits). Within an
// evaluation, consecutive sequences of a batch with the same restart block run together (a
// "run"): when every sequence restarts at the same block the runs are the batches, so every
// GEMM has the shape it has in a full evaluation.
//
// One run [s0, s1) from block `start` (Ops calls in this order, all on one stream):
//   start == 0: Embed(tokens of the run) -> x; else Copy(cache_s[start-1] -> x rows of s)
//   for l = start .. L-1:
//     l > start: Copy(x rows of s -> cache_s[l-1]) for every cached s
//     RmsNorm(x, attn) -> xb (bf16); Gemm q, k, v (f32)
//     per sequence: Rope(q), Rope(k) (head norm with qk_norm) -> qh, kh; ToHeadMajor(v) -> vh;
//                   Attention -> att rows of s (bf16)
//     post_norms ? Gemm(att, Wo) -> proj, RmsNormAdd(proj, post_attn) -> x
//                : Gemm(att, Wo, beta = 1) -> x
//     RmsNorm(x, ffn) -> xb; Gemm gate -> g, up -> u; Glu -> hb (bf16)
//     post_norms ? Gemm(hb, Wdown) -> proj, RmsNormAdd(proj, post_ffn) -> x
//                : Gemm(hb, Wdown, beta = 1) -> x
//   per sequence: RmsNorm(scored rows of x, final) -> hn (compact)
//   per chunk of head_rows compact rows: Gemm(hn, output) -> logits; Nll -> nll[compact row]
// Cache slot of sequence s: [L-1, T_s, dim] f32, slot l-1 = input of block l (block 0's input
// is the embedding, recomputed).
//
// Header-only, no CUDA dependency (plain C++; nvcc and g++ both compile it).
#ifndef IMPQ_WORKER_GPU_MODEL_PASS_H_
#define IMPQ_WORKER_GPU_MODEL_PASS_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "worker/gpu/gpu_api.h"

namespace impq::gpu::pass {

inline constexpr int kNumLinear = 7;  // = model::kNumLinear, order model::LinearKind
inline constexpr const char* kLinearNames[kNumLinear] = {"attn_q",   "attn_k", "attn_v",  "attn_o",
                                                         "ffn_gate", "ffn_up", "ffn_down"};
// By IMPQ_GPU_VARIANT_* value.
inline constexpr const char* kVariantNames[IMPQ_GPU_NUM_VARIANTS] = {"2-bit", "4-bit", "full",
                                                                     "3-bit", "8-bit"};
// Rows per batch: GEMMs of 8192 x dim x out run near cuBLAS's peak on H100/A100.
inline constexpr int64_t kMaxBatchRows = 8192;
// Bytes of the f32 logits of one head chunk.
inline constexpr int64_t kLogitBytes = int64_t{512} << 20;

// The model's shape and switches (ImpqGpuModelDesc without the arrays).
struct Shape {
  int dim = 0, hidden = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int vocab = 0, seq_len = 0;
  float eps = 0, embed_scale = 1, attn_scale = 1, attn_softcap = 0, final_softcap = 0;
  int rope_style = 0, qk_norm = 0, post_norms = 0, activation = 0, sliding_window = 0;
  int64_t q_dim() const { return static_cast<int64_t>(n_heads) * head_dim; }
  int64_t kv_dim() const { return static_cast<int64_t>(n_kv_heads) * head_dim; }
  // [out, in] of linear module `kind` (model::LinearKind order).
  int64_t LinearRows(int kind) const {
    switch (kind) {
      case 0:
        return q_dim();
      case 1:
      case 2:
        return kv_dim();
      case 4:
      case 5:
        return hidden;
      default:
        return dim;  // o, down
    }
  }
  int64_t LinearCols(int kind) const {
    return kind == 3 ? q_dim() : kind == 6 ? static_cast<int64_t>(hidden) : dim;
  }
  // Sliding window of `layer` (Gemma-2: even layers), 0 = none.
  int Window(int layer) const { return sliding_window > 0 && layer % 2 == 0 ? sliding_window : 0; }
};

struct Batch {
  int64_t first = 0, last = 0;  // sequences [first, last)
};

// The evaluation set's geometry (host). Built by MakeLayout.
struct Layout {
  int64_t n_seqs = 0, max_T = 0, total_rows = 0, total_scored = 0;
  std::vector<int64_t> offsets;        // [n + 1]
  std::vector<int64_t> score_begin;    // [n]
  std::vector<int64_t> scored_offset;  // [n + 1]
  std::vector<Batch> batches;
  int64_t row_budget = 0;  // rows of the scratch buffers
  int64_t head_rows = 0;   // rows of the logits buffer
  int64_t SeqLen(int64_t s) const { return offsets[s + 1] - offsets[s]; }
  int64_t Scored(int64_t s) const { return scored_offset[s + 1] - scored_offset[s]; }
};

// "" when the set is valid for a model of `shape`, else the message (model_set_eval's EINVAL):
// n >= 1, offsets[0] = 0, 2 <= T_s <= seq_len, 0 <= score_begin_s <= T_s - 2, tokens in vocab.
inline std::string CheckEvalSet(const Shape& shape, const int32_t* tokens, const int64_t* offsets,
                                int64_t n, const int64_t* score_begin) {
  char buf[512];
  auto fail = [&](auto... args) {
    std::snprintf(buf, sizeof(buf), args...);
    return std::string(buf);
  };
  if (n < 1) return fail("n_seqs = %lld; expected >= 1", static_cast<long long>(n));
  if (tokens == nullptr || offsets == nullptr || score_begin == nullptr) {
    return fail("%s is null", tokens == nullptr    ? "tokens"
                              : offsets == nullptr ? "offsets"
                                                   : "score_begin");
  }
  if (offsets[0] != 0)
    return fail("offsets[0] = %lld; expected 0", static_cast<long long>(offsets[0]));
  for (int64_t s = 0; s < n; ++s) {
    const int64_t T = offsets[s + 1] - offsets[s];
    if (T < 2 || T > shape.seq_len) {
      return fail("sequence %lld has %lld tokens; expected 2..%d (seq_len)",
                  static_cast<long long>(s), static_cast<long long>(T), shape.seq_len);
    }
    if (score_begin[s] < 0 || score_begin[s] > T - 2) {
      return fail(
          "score_begin[%lld] = %lld; expected 0..%lld (the sequence has %lld tokens and "
          "must score at least one)",
          static_cast<long long>(s), static_cast<long long>(score_begin[s]),
          static_cast<long long>(T - 2), static_cast<long long>(T));
    }
  }
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t i = offsets[s]; i < offsets[s + 1]; ++i) {
      if (tokens[i] < 0 || tokens[i] >= shape.vocab) {
        return fail(
            "tokens[%lld] (sequence %lld, position %lld) = %d; expected 0..%d "
            "(vocab_size - 1)",
            static_cast<long long>(i), static_cast<long long>(s),
            static_cast<long long>(i - offsets[s]), tokens[i], shape.vocab - 1);
      }
    }
  }
  return "";
}

// Rows of the head's logits chunk: as many as kLogitBytes of f32 logits hold, at most `rows`,
// a multiple of 64 when above 64.
inline int64_t HeadRows(int64_t rows, int vocab) {
  int64_t hr =
      std::max<int64_t>(1, std::min(rows, kLogitBytes / (static_cast<int64_t>(vocab) * 4)));
  if (hr > 64) hr -= hr % 64;
  return hr;
}

// The geometry of a checked set (CheckEvalSet == "") with scratch for `row_budget` rows.
// REQUIRES: row_budget >= the longest sequence.
inline Layout MakeLayout(const int64_t* offsets, int64_t n, const int64_t* score_begin,
                         int64_t row_budget, int vocab) {
  Layout lay;
  lay.n_seqs = n;
  lay.offsets.assign(offsets, offsets + n + 1);
  lay.score_begin.assign(score_begin, score_begin + n);
  lay.scored_offset.assign(static_cast<size_t>(n) + 1, 0);
  for (int64_t s = 0; s < n; ++s) {
    const int64_t T = offsets[s + 1] - offsets[s];
    lay.max_T = std::max(lay.max_T, T);
    lay.scored_offset[s + 1] = lay.scored_offset[s] + (T - 1 - score_begin[s]);
  }
  lay.total_rows = offsets[n];
  lay.total_scored = lay.scored_offset[n];
  lay.row_budget = row_budget;
  lay.head_rows = HeadRows(row_budget, vocab);
  for (int64_t s = 0; s < n; ++s) {
    if (lay.batches.empty() || offsets[s + 1] - offsets[lay.batches.back().first] > row_budget) {
      lay.batches.push_back(Batch{s, s + 1});
    } else {
      lay.batches.back().last = s + 1;
    }
  }
  return lay;
}

// The first row budget to try: every row up to kMaxBatchRows, never below the longest sequence.
inline int64_t InitialRowBudget(const Layout& lay) {
  return std::max(lay.max_T, std::min(kMaxBatchRows, lay.total_rows));
}

// Bytes of the prefix cache of a sequence of T tokens.
inline int64_t CacheBytes(int64_t T, const Shape& shape) {
  return static_cast<int64_t>(shape.n_layers - 1) * T * shape.dim *
         static_cast<int64_t>(sizeof(float));
}

// Prefix-cache bookkeeping of one sequence (host).
struct SeqCache {
  bool enabled = false;           // admitted: states allocated (none needed when L == 1)
  bool valid = false;             // states and last_sum belong to `variants`
  std::vector<uint8_t> variants;  // [L * 7]
  double last_sum = 0.0;
};

// "" when every entry of variants[L * 7] names a variant that `is_set(index, variant)`; else
// the message (model_evaluate's EINVAL).
template <class IsSet>
std::string CheckVariants(const Shape& shape, const uint8_t* variants, IsSet is_set) {
  char buf[256];
  for (int i = 0; i < shape.n_layers * kNumLinear; ++i) {
    const int layer = i / kNumLinear, kind = i % kNumLinear;
    if (variants[i] >= IMPQ_GPU_NUM_VARIANTS) {
      std::snprintf(buf, sizeof(buf), "variants[%d] (layer %d %s) = %d; expected 0..%d", i, layer,
                    kLinearNames[kind], variants[i], IMPQ_GPU_NUM_VARIANTS - 1);
      return buf;
    }
    if (!is_set(i, variants[i])) {
      std::snprintf(buf, sizeof(buf), "variants[%d]: the %s variant of layer %d %s was never set",
                    i, kVariantNames[variants[i]], layer, kLinearNames[kind]);
      return buf;
    }
  }
  return "";
}

// The block each sequence restarts at: 0 without a valid cache entry, else the first block
// whose 7 variants differ from the cached ones, L when none does (the cached sum stands).
inline std::vector<int> RestartBlocks(const Shape& shape, const std::vector<SeqCache>& cache,
                                      const uint8_t* variants) {
  const int L = shape.n_layers;
  std::vector<int> start(cache.size(), 0);
  for (size_t s = 0; s < cache.size(); ++s) {
    const SeqCache& c = cache[s];
    if (!c.enabled || !c.valid) continue;
    int first = L;
    for (int l = 0; l < L && first == L; ++l) {
      if (std::memcmp(c.variants.data() + l * kNumLinear, variants + l * kNumLinear, kNumLinear) !=
          0) {
        first = l;
      }
    }
    start[s] = first;
  }
  return start;
}

// Pointers the pass reads (device pointers on the GPU, host on the CPU). B: bf16 element type.
template <class B>
struct Weights {
  struct Norms {
    const float *attn = nullptr, *ffn = nullptr, *q = nullptr, *k = nullptr;
    const float *post_attn = nullptr, *post_ffn = nullptr;
  };
  const float* embedding = nullptr;  // [vocab, dim]
  const B* output = nullptr;         // [vocab, dim]
  const float* final_norm = nullptr;
  const float *rope_cos = nullptr, *rope_sin = nullptr;             // [seq_len, head_dim/2]
  std::vector<Norms> norms;                                         // [L]
  std::vector<std::array<const B*, IMPQ_GPU_NUM_VARIANTS>> linear;  // [L * 7][variant]
};

// Buffers the pass writes, sized for layout.row_budget rows (hn: row_budget rows; qh/kh/vh:
// max_T rows; logits: head_rows rows).
template <class B>
struct Scratch {
  float *x = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *proj = nullptr;
  float *g = nullptr, *u = nullptr, *logits = nullptr;
  B *xb = nullptr, *att = nullptr, *hb = nullptr, *qh = nullptr, *kh = nullptr, *vh = nullptr;
  B* hn = nullptr;
  void* attn_ws = nullptr;
  const int32_t* tokens = nullptr;   // [total_rows]
  const int32_t* targets = nullptr;  // [total_scored]
  float* nll = nullptr;              // [total_scored]
  std::vector<float*> states;        // [n]: the cache slots, null when not cached
};

// The pass over one evaluation. Ops provides (each returns IMPQ_GPU_OK or a code, having
// filled its own error message):
//   using Bf16 = B;
//   Embed(table, dim, tokens, rows, scale, x)             RmsNorm(x, rows, dim, mult, eps, out)
//   RmsNormAdd(in, rows, dim, mult, eps, x)               Gemm(x, rows, in, w, out, beta, y)
//   Rope(x, T, heads, hd, head_mult, eps, cos, sin, style, out)
//   ToHeadMajor(x, T, heads, hd, out)                     Glu(gate, up, n, activation, out)
//   Attention(q, k, v, T, H, Hkv, hd, scale, softcap, window, ws, out, layer, seq)
//   Nll(logits, rows, vocab, targets, softcap, nll)       Copy(dst, src, n_floats)
// with the semantics of cuda/kernels.cuh.
template <class Ops>
class Pass {
 public:
  using B = typename Ops::Bf16;
  Pass(Ops& ops, const Shape& shape, const Layout& lay, const Weights<B>& w, const Scratch<B>& sc)
      : ops_(ops), sh_(shape), lay_(lay), w_(w), sc_(sc) {}

  // Runs every sequence with start[s] < L from block start[s] (see the file comment); per-row
  // NLLs land in scratch.nll. `cached[s]`: write sequence s's cache slots.
  int Run(const uint8_t* variants, const std::vector<int>& start, const std::vector<bool>& cached) {
    const int L = sh_.n_layers;
    for (const Batch& b : lay_.batches) {
      int64_t s = b.first;
      while (s < b.last) {
        if (start[s] >= L) {
          ++s;
          continue;
        }
        int64_t e = s + 1;
        while (e < b.last && start[e] == start[s]) ++e;
        if (int rc = RunRange(variants, s, e, start[s], cached); rc != IMPQ_GPU_OK) return rc;
        s = e;
      }
    }
    return IMPQ_GPU_OK;
  }

 private:
  const B* Weight(const uint8_t* variants, int layer, int kind) const {
    const size_t i = static_cast<size_t>(layer) * kNumLinear + kind;
    return w_.linear[i][variants[i]];
  }
  int64_t RowOf(int64_t s, int64_t s0) const { return lay_.offsets[s] - lay_.offsets[s0]; }

  int RunRange(const uint8_t* variants, int64_t s0, int64_t s1, int start,
               const std::vector<bool>& cached) {
    const int64_t D = sh_.dim;
    int rc = IMPQ_GPU_OK;
    if (start == 0) {
      rc = ops_.Embed(w_.embedding, sh_.dim, sc_.tokens + lay_.offsets[s0],
                      lay_.offsets[s1] - lay_.offsets[s0], sh_.embed_scale, sc_.x);
      if (rc != IMPQ_GPU_OK) return rc;
    } else {
      for (int64_t s = s0; s < s1; ++s) {
        const int64_t T = lay_.SeqLen(s);
        rc = ops_.Copy(sc_.x + RowOf(s, s0) * D, sc_.states[s] + (start - 1) * T * D, T * D);
        if (rc != IMPQ_GPU_OK) return rc;
      }
    }
    for (int l = start; l < sh_.n_layers; ++l) {
      if (l > start) {
        for (int64_t s = s0; s < s1; ++s) {
          if (!cached[s]) continue;
          const int64_t T = lay_.SeqLen(s);
          rc = ops_.Copy(sc_.states[s] + (l - 1) * T * D, sc_.x + RowOf(s, s0) * D, T * D);
          if (rc != IMPQ_GPU_OK) return rc;
        }
      }
      if ((rc = RunBlock(variants, l, s0, s1)) != IMPQ_GPU_OK) return rc;
    }
    return RunHead(s0, s1);
  }

  int RunBlock(const uint8_t* variants, int layer, int64_t s0, int64_t s1) {
    const int64_t rows = lay_.offsets[s1] - lay_.offsets[s0];
    const int64_t D = sh_.dim, qd = sh_.q_dim(), kvd = sh_.kv_dim(), H = sh_.hidden;
    const typename Weights<B>::Norms& nw = w_.norms[layer];
    int rc;
#define IMPQ_PASS_TRY(expr)                      \
  do {                                           \
    if ((rc = (expr)) != IMPQ_GPU_OK) return rc; \
  } while (0)
    // Attention sub-block.
    IMPQ_PASS_TRY(ops_.RmsNorm(sc_.x, rows, sh_.dim, nw.attn, sh_.eps, sc_.xb));
    IMPQ_PASS_TRY(ops_.Gemm(sc_.xb, rows, D, Weight(variants, layer, 0), qd, 0.0f, sc_.q));
    IMPQ_PASS_TRY(ops_.Gemm(sc_.xb, rows, D, Weight(variants, layer, 1), kvd, 0.0f, sc_.k));
    IMPQ_PASS_TRY(ops_.Gemm(sc_.xb, rows, D, Weight(variants, layer, 2), kvd, 0.0f, sc_.v));
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = RowOf(s, s0), T = lay_.SeqLen(s);
      IMPQ_PASS_TRY(ops_.Rope(sc_.q + r0 * qd, T, sh_.n_heads, sh_.head_dim,
                              sh_.qk_norm ? nw.q : nullptr, sh_.eps, w_.rope_cos, w_.rope_sin,
                              sh_.rope_style, sc_.qh));
      IMPQ_PASS_TRY(ops_.Rope(sc_.k + r0 * kvd, T, sh_.n_kv_heads, sh_.head_dim,
                              sh_.qk_norm ? nw.k : nullptr, sh_.eps, w_.rope_cos, w_.rope_sin,
                              sh_.rope_style, sc_.kh));
      IMPQ_PASS_TRY(ops_.ToHeadMajor(sc_.v + r0 * kvd, T, sh_.n_kv_heads, sh_.head_dim, sc_.vh));
      IMPQ_PASS_TRY(ops_.Attention(sc_.qh, sc_.kh, sc_.vh, T, sh_.n_heads, sh_.n_kv_heads,
                                   sh_.head_dim, sh_.attn_scale, sh_.attn_softcap,
                                   sh_.Window(layer), sc_.attn_ws, sc_.att + r0 * qd, layer, s));
    }
    if (sh_.post_norms) {
      IMPQ_PASS_TRY(ops_.Gemm(sc_.att, rows, qd, Weight(variants, layer, 3), D, 0.0f, sc_.proj));
      IMPQ_PASS_TRY(ops_.RmsNormAdd(sc_.proj, rows, sh_.dim, nw.post_attn, sh_.eps, sc_.x));
    } else {
      // The residual add is the GEMM's beta = 1.
      IMPQ_PASS_TRY(ops_.Gemm(sc_.att, rows, qd, Weight(variants, layer, 3), D, 1.0f, sc_.x));
    }
    // Feed-forward sub-block.
    IMPQ_PASS_TRY(ops_.RmsNorm(sc_.x, rows, sh_.dim, nw.ffn, sh_.eps, sc_.xb));
    IMPQ_PASS_TRY(ops_.Gemm(sc_.xb, rows, D, Weight(variants, layer, 4), H, 0.0f, sc_.g));
    IMPQ_PASS_TRY(ops_.Gemm(sc_.xb, rows, D, Weight(variants, layer, 5), H, 0.0f, sc_.u));
    IMPQ_PASS_TRY(ops_.Glu(sc_.g, sc_.u, rows * H, sh_.activation, sc_.hb));
    if (sh_.post_norms) {
      IMPQ_PASS_TRY(ops_.Gemm(sc_.hb, rows, H, Weight(variants, layer, 6), D, 0.0f, sc_.proj));
      IMPQ_PASS_TRY(ops_.RmsNormAdd(sc_.proj, rows, sh_.dim, nw.post_ffn, sh_.eps, sc_.x));
    } else {
      IMPQ_PASS_TRY(ops_.Gemm(sc_.hb, rows, H, Weight(variants, layer, 6), D, 1.0f, sc_.x));
    }
    return IMPQ_GPU_OK;
  }

  // Final norm of the scored rows (compacted into hn), the head in chunks, the NLL per row.
  int RunHead(int64_t s0, int64_t s1) {
    const int64_t D = sh_.dim;
    int rc;
    int64_t c = 0;
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = RowOf(s, s0) + lay_.score_begin[s];
      const int64_t n = lay_.Scored(s);
      IMPQ_PASS_TRY(
          ops_.RmsNorm(sc_.x + r0 * D, n, sh_.dim, w_.final_norm, sh_.eps, sc_.hn + c * D));
      c += n;
    }
    const int32_t* targets = sc_.targets + lay_.scored_offset[s0];
    float* nll = sc_.nll + lay_.scored_offset[s0];
    for (int64_t c0 = 0; c0 < c; c0 += lay_.head_rows) {
      const int64_t n = std::min(lay_.head_rows, c - c0);
      IMPQ_PASS_TRY(ops_.Gemm(sc_.hn + c0 * D, n, D, w_.output, sh_.vocab, 0.0f, sc_.logits));
      IMPQ_PASS_TRY(ops_.Nll(sc_.logits, n, sh_.vocab, targets + c0, sh_.final_softcap, nll + c0));
    }
#undef IMPQ_PASS_TRY
    return IMPQ_GPU_OK;
  }

  Ops& ops_;
  const Shape& sh_;
  const Layout& lay_;
  const Weights<B>& w_;
  const Scratch<B>& sc_;
};

// The compact targets of a checked set: target of scored row p of sequence s is token p + 1.
inline std::vector<int32_t> Targets(const Layout& lay, const int32_t* tokens) {
  std::vector<int32_t> t(static_cast<size_t>(lay.total_scored));
  for (int64_t s = 0; s < lay.n_seqs; ++s) {
    std::memcpy(t.data() + lay.scored_offset[s], tokens + lay.offsets[s] + lay.score_begin[s] + 1,
                static_cast<size_t>(lay.Scored(s)) * sizeof(int32_t));
  }
  return t;
}

// After a successful Run: per-sequence sums (f64, row by row) of the rows run, the cached sums
// of the others; cache entries of the sequences run take `variants`. Returns the number of
// block evaluations run.
inline int64_t Finish(const Shape& shape, const Layout& lay, const std::vector<int>& start,
                      const float* nll_host, const uint8_t* variants, std::vector<SeqCache>& cache,
                      double* seq_nll) {
  const int L = shape.n_layers;
  int64_t blocks = 0;
  for (int64_t s = 0; s < lay.n_seqs; ++s) {
    SeqCache& c = cache[s];
    if (start[s] >= L) {
      seq_nll[s] = c.last_sum;
      continue;
    }
    double sum = 0.0;
    for (int64_t r = lay.scored_offset[s]; r < lay.scored_offset[s + 1]; ++r) sum += nll_host[r];
    seq_nll[s] = sum;
    blocks += L - start[s];
    if (c.enabled) {
      c.variants.assign(variants, variants + static_cast<size_t>(L) * kNumLinear);
      c.last_sum = sum;
      c.valid = true;
    }
  }
  return blocks;
}

}  // namespace impq::gpu::pass

#endif  // IMPQ_WORKER_GPU_MODEL_PASS_H_
