// The whole-model loss on the GPU (GpuEvaluator over the plugin's model_* entry points) and its
// CPU mirrors.
//
// CPU tests (run everywhere):
//   - GpuModelReference against the f32 CPU engine (forward::LlamaForward, eval::Evaluator) on
//     the shared stories260K model and small random Llama-3 / Qwen-3 / Gemma-2 models;
//   - the plugin's own orchestration (model_pass.h, the code cuda/model.cu runs) executed with
//     the kernels' scalar references (gpu_reference.h) instead of CUDA: against
//     GpuModelReference, across batch and head-chunk sizes, and with prefix reuse along walks.
// GPU tests (GTEST_SKIP without a device): the plugin against the reference, against the CPU
// LocalEvaluator, prefix reuse against full evaluations, and the argument checks.
//
// Tolerances, derived from unit roundoffs (u32 = 2^-24 for f32, ub = 2^-8 for bf16's 8-bit
// significand) with forward_test's model of error growth (forward::LogitErrorBound: every
// K-long reduction on the longest path adds at most K·u·Σ|ab|, Σ|ab| bounded by the largest
// logit, errors pass through the residual stream with a gain of about one; the longest path has
// 13 reductions per block (norm, q/k/v, q/k norms, scores, softmax, att·v, o, post-norm, norm,
// gate/up, down, post-norm) plus 3 (embedding scale, final norm, head)):
//   B32(T) = LogitErrorBound(c, T, max|logit|, 13·L + 3)                 f32 accumulation
//   Bbf(T) = (13·L + 3) · (2·ub + K·u32) · max(1, max|logit|)             + both operands of
//            every product rounded to bf16 (relative error <= 2·ub + ub² per product)
// and |Δ nll| <= 2·max|Δ logit| per token (logsumexp and the target logit are each 1-Lipschitz
// in the max norm of the logits).
//   reference (bf16 off) vs LlamaForward, logits:  2·B32 (each side within B32 of exact)
//   reference (bf16 on)  vs LlamaForward, logits:  Bbf, a worst case (observed ~1/40 of it);
//       NLL per token: 2 · the measured largest logit difference over the scored rows
//   plugin pass with kernel references vs reference, NLL per token of a sequence: 2·B32
//       (same rounding points, f32-level differences: FastExp, f32 scaling in the norms)
//   GPU vs reference, NLL per token of a sequence: 2·B32. Both round the same f32 values at
//       the same points; they differ by the GPU's f32 accumulation order (B32) and by the bf16
//       roundings that difference flips. A flip moves a value by one bf16 ulp but happens with
//       probability ~ (difference / ulp), so in expectation it adds no more than the f32
//       difference itself; a per-sequence mean over >= 20 scored tokens is what is compared.
//   GPU vs LocalEvaluator (f32), mean NLL: 2·B32 + |reference - LocalEvaluator| (triangle
//       inequality through the reference, whose gap to the f32 engine is computed in the test)
//   prefix reuse vs full evaluation: bit-identical on the CPU pass (the reference kernels
//       compute each row independently); on the GPU bit-identical when every sequence is cached
//       (every GEMM then has its full-evaluation shape, and cuBLAS on a fixed stream and
//       workspace and the plugin's kernels are deterministic), 2·B32 per token when only some
//       are (a batch then splits into runs with other GEMM shapes).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/logging.h"
#include "common/rng.h"
#include "common/scoped_env.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/gpu/testdata/fake_plugin_path.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"
#include "worker/engine/local_evaluator.h"
#include "worker/engine/stories_fixture.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/llama_forward_ref.h"
#include "worker/gpu/gpu_evaluator.h"
#include "worker/gpu/gpu_model_reference.h"
#include "worker/gpu/gpu_reference.h"
#include "worker/gpu/gpu_runtime.h"
#include "worker/gpu/model_pass.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"
#include "worker/quant/quantizer.h"

namespace impq::gpu {
namespace {

using model::FfnActivation;
using model::LinearKind;
using model::Model;
using model::ModelConfig;
using ::testing::HasSubstr;

constexpr double kU32 = 0x1p-24;  // f32 unit roundoff
constexpr double kUBf = 0x1p-8;   // bf16 unit roundoff (8-bit significand)

double Ops(const ModelConfig& c) { return 13.0 * c.n_layers + 3.0; }

double BoundF32(const ModelConfig& c, int64_t T, double max_abs_logit) {
  return forward::LogitErrorBound(c, T, std::vector<double>{max_abs_logit}, Ops(c));
}

double BoundBf16(const ModelConfig& c, int64_t T, double max_abs_logit) {
  const double k = std::max<double>({static_cast<double>(c.dim), static_cast<double>(c.hidden_dim),
                                     static_cast<double>(c.q_dim()), static_cast<double>(T)});
  return Ops(c) * (2.0 * kUBf + k * kU32) * std::max(1.0, max_abs_logit);
}

double MaxAbs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  }
  return m;
}

std::vector<int> RandomTokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(static_cast<size_t>(n));
  for (int& x : t) x = static_cast<int>(rng.Below(static_cast<uint64_t>(vocab)));
  return t;
}

model::Tensor Scaled(const model::Tensor& t, float f) {
  std::vector<float> v(t.values().begin(), t.values().end());
  for (float& x : v) x *= f;
  return model::Tensor::Owned(t.name(), t.shape(), std::move(v));
}

// arch_test's SharpRandomModel: larger q/k and embeddings, so attention is peaked and logits
// are of order 1, and a mis-mirrored quirk changes the output far beyond rounding.
Model SharpRandomModel(const ModelConfig& c, uint64_t seed) {
  Model m = model::MakeRandomModel(c, seed);
  for (auto& lw : m.layers) {
    for (LinearKind k : {LinearKind::kQ, LinearKind::kK}) {
      lw.linear[static_cast<int>(k)] = Scaled(lw[k], 8.0f);
    }
  }
  m.embedding = Scaled(m.embedding, 5.0f);
  m.output = c.tied_embeddings ? m.embedding.WithName("output") : Scaled(m.output, 5.0f);
  return m;
}

ModelConfig BaseConfig() {
  ModelConfig c;
  c.dim = 48;
  c.hidden_dim = 100;
  c.n_layers = 3;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 70;
  c.seq_len = 96;
  c.norm_eps = 1e-6f;
  return c;
}

ModelConfig LlamaConfig() {
  ModelConfig c = BaseConfig();
  c.rope_theta = 500000.0f;
  c.rope_scaling.factor = 8.0f;  // Llama-3's rule
  c.rope_scaling.original_max_position = 64;
  c.tied_embeddings = false;
  return c;
}

ModelConfig Qwen3Config() {
  ModelConfig c = BaseConfig();
  c.arch = "qwen3";
  c.head_dim = 12;  // q_dim 72 != dim 48
  c.rope_style = model::RopeStyle::kHalf;
  c.rope_theta = 1000000.0f;
  c.qk_norm = true;
  c.tied_embeddings = false;
  return c;
}

ModelConfig Gemma2Config() {
  ModelConfig c = BaseConfig();
  c.arch = "gemma2";
  c.rope_style = model::RopeStyle::kHalf;
  c.norm_weight_offset = 1.0f;
  c.post_norms = true;
  c.scale_embeddings = true;
  c.ffn_activation = FfnActivation::kGeluTanh;
  c.attn_logit_softcap = 1.0f;
  c.final_logit_softcap = 0.5f;
  c.sliding_window = 5;
  c.query_pre_attn_scalar = 20.0f;
  return c;
}

// An EvalSet of the given sequences, scoring from score_begin[i].
eval::EvalSet MakeSet(const std::vector<std::vector<int>>& seqs,
                      const std::vector<int64_t>& score_begin) {
  eval::EvalSet set;
  for (size_t i = 0; i < seqs.size(); ++i) {
    eval::EvalSequence s;
    s.tokens = seqs[i];
    s.score_begin = score_begin[i];
    set.scored_tokens += s.scored();
    set.processed_tokens += static_cast<int64_t>(s.tokens.size());
    set.sequences.push_back(std::move(s));
  }
  set.ctx = 0;
  return set;
}

// Sequences of different lengths (a ragged batch), some scoring only their second half.
eval::EvalSet RandomSet(const ModelConfig& c, uint64_t seed) {
  std::vector<std::vector<int>> seqs;
  const int lengths[] = {c.seq_len, 40, 67, 23, c.seq_len - 1};
  const int64_t begins[] = {0, 20, 0, 5, 0};
  for (int i = 0; i < 5; ++i) seqs.push_back(RandomTokens(lengths[i], c.vocab_size, seed + i));
  return MakeSet(seqs, std::vector<int64_t>(std::begin(begins), std::end(begins)));
}

// The shared stories260K model, RTN at group 64 with module players, on the first 8 stories
// (ctx 128) of the shared calibration text: as engine_test's RealModel.
class Stories {
 public:
  static Stories& Get() {
    static Stories* s = new Stories();
    return *s;
  }
  const Model& model() const { return stories_.model(); }
  const forward::LlamaForward& fwd() const { return stories_.fwd(); }
  const eval::EvalSet& set() const { return stories_.set(); }
  const quant::QuantizedModel& qmodel() const { return *qmodel_; }
  // The same at every width of block_format.h, {2, 3, 4, 8}.
  const quant::QuantizedModel& qmodel_all_widths() const { return *qmodel_all_; }
  const model::Tokenizer& tokenizer() const { return stories_.tokenizer(); }

 private:
  Stories()
      : stories_(128, 8),
        qmodel_(stories_.Quantize(quant::PlayerGranularity::kModule)),
        qmodel_all_(stories_.Quantize(quant::PlayerGranularity::kModule, kAllWidths)) {}
  static constexpr int kAllWidths[] = {2, 3, 4, 8};
  engine::fixtures::StoriesFixture stories_;
  std::unique_ptr<quant::QuantizedModel> qmodel_;
  std::unique_ptr<quant::QuantizedModel> qmodel_all_;
};

std::unique_ptr<quant::QuantizedModel> Quantize(
    const Model& m, std::span<const int> widths = quant::QuantizedModel::kDefaultWidths) {
  auto rtn = quant::MakeQuantizer("rtn");
  IMPQ_CHECK(rtn.ok());
  quant::QuantConfig cfg;
  cfg.group_size = 32;  // a ragged last group on the 100- and 72-column modules
  auto q = quant::QuantizedModel::Build(m, **rtn, cfg, quant::PlayerGranularity::kModule, nullptr,
                                        nullptr, widths);
  IMPQ_CHECK(q.ok()) << q.status();
  return *std::move(q);
}

// A seeded assignment of 2 and 4 bits over the players.
std::vector<int> MixedBits(int n, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> bits(static_cast<size_t>(n));
  for (int& b : bits) b = rng.Below(2) == 0 ? 2 : 4;
  return bits;
}

// A seeded assignment of the widths 2, 3, 4 and 8 over the players (each width used when
// n >= 4: the first four players take one each).
std::vector<int> MixedWidths(int n, uint64_t seed) {
  constexpr int kWidths[] = {2, 3, 4, 8};
  Rng rng(seed);
  std::vector<int> bits(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) bits[i] = i < 4 ? kWidths[i] : kWidths[rng.Below(4)];
  return bits;
}

// The widths' ladder walk number k (solver/width_ladder.h: every player from 8 down to 2 bits,
// one rung per step), as bits per player for each of its n·3 + 1 coalitions.
std::vector<std::vector<int>> LadderWalkBits(int n, uint64_t seed, uint64_t k) {
  auto ladder = solver::WidthLadder::Create(n, {2, 3, 4, 8});
  IMPQ_CHECK(ladder.ok()) << ladder.status();
  std::vector<std::vector<int>> out;
  const solver::LadderPermutationSampler sampler(*ladder, seed, false);
  for (const solver::Coalition& q : solver::WalkCoalitions(sampler.Get(k))) {
    auto bits = ladder->BitsOf(q);
    IMPQ_CHECK(bits.ok()) << bits.status();
    out.push_back(*std::move(bits));
  }
  return out;
}

// ============================================================ the plugin's pass on the CPU

// The kernels of cuda/kernels.cuh as model_pass.h's Ops, computed by their scalar references
// (gpu_reference.h) on host memory: bf16 values are uint16_t bits.
struct CpuOps {
  using Bf16 = uint16_t;
  int vocab;
  int Embed(const float* table, int dim, const int32_t* tokens, int64_t rows, float scale,
            float* x) const {
    EmbedRef(table, vocab, dim, tokens, rows, scale, x);
    return IMPQ_GPU_OK;
  }
  int RmsNorm(const float* x, int64_t rows, int dim, const float* mult, float eps,
              uint16_t* out) const {
    RmsNormRef(x, rows, dim, mult, eps, nullptr, out);
    return IMPQ_GPU_OK;
  }
  int RmsNormAdd(const float* in, int64_t rows, int dim, const float* mult, float eps,
                 float* x) const {
    RmsNormAddRef(in, rows, dim, mult, eps, x);
    return IMPQ_GPU_OK;
  }
  int Gemm(const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w, int64_t out, float beta,
           float* y) const {
    GemmRef(x, rows, in, w, out, beta, y);
    return IMPQ_GPU_OK;
  }
  int Rope(const float* x, int64_t T, int heads, int hd, const float* head_mult, float eps,
           const float* cos, const float* sin, int style, uint16_t* out) const {
    RopeRef(x, T, heads, hd, head_mult, eps, cos, sin, style, nullptr, out);
    return IMPQ_GPU_OK;
  }
  int ToHeadMajor(const float* x, int64_t T, int heads, int hd, uint16_t* out) const {
    ToHeadMajorRef(x, T, heads, hd, nullptr, out);
    return IMPQ_GPU_OK;
  }
  int Glu(const float* gate, const float* up, int64_t n, int activation, uint16_t* out) const {
    GluRef(gate, up, n, activation, nullptr, out);
    return IMPQ_GPU_OK;
  }
  int Attention(const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t T, int H, int Hkv,
                int hd, float scale, float softcap, int window, void* /*ws*/, uint16_t* out,
                int /*layer*/, int64_t /*seq*/) const {
    AttentionRef(q, k, v, T, H, Hkv, hd, scale, softcap, window, out);
    return IMPQ_GPU_OK;
  }
  int Nll(const float* logits, int64_t rows, int v, const int32_t* targets, float softcap,
          float* nll) const {
    NllRef(logits, rows, v, targets, softcap, nll);
    return IMPQ_GPU_OK;
  }
  int Copy(float* dst, const float* src, int64_t n) const {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return IMPQ_GPU_OK;
  }
};

// The plugin's resident model with host memory and CpuOps: the same pass (model_pass.h) as
// cuda/model.cu, so batching, restarts, cache slots and head chunks run here exactly as on
// the device. The cache admits sequences in order while max_cache_bytes holds (the plugin
// also caps by free device memory).
class CpuPluginModel {
 public:
  // row_budget 0: the plugin's default; head_rows 0: the plugin's default.
  CpuPluginModel(const quant::QuantizedModel& q, const eval::EvalSet& set, int64_t max_cache_bytes,
                 int64_t row_budget = 0, int64_t head_rows = 0)
      : q_(q) {
    const Model& m = q.model();
    const ModelConfig& c = m.config;
    size_t longest = 2;  // as GpuEvaluator: the tables and checks follow the set
    for (const eval::EvalSequence& seq : set.sequences) {
      longest = std::max(longest, seq.tokens.size());
    }
    tables_ = MakeGpuModelTables(m, static_cast<int>(longest));
    sh_.dim = c.dim;
    sh_.hidden = c.hidden_dim;
    sh_.n_layers = c.n_layers;
    sh_.n_heads = c.n_heads;
    sh_.n_kv_heads = c.n_kv_heads;
    sh_.head_dim = c.head_dim;
    sh_.vocab = c.vocab_size;
    sh_.seq_len = static_cast<int>(longest);
    sh_.eps = c.norm_eps;
    sh_.embed_scale = tables_.embed_scale;
    sh_.attn_scale = c.AttentionScale();
    sh_.attn_softcap = c.attn_logit_softcap;
    sh_.final_softcap = c.final_logit_softcap;
    sh_.rope_style = c.rope_style == model::RopeStyle::kInterleaved ? IMPQ_GPU_ROPE_INTERLEAVED
                                                                    : IMPQ_GPU_ROPE_HALF;
    sh_.qk_norm = c.qk_norm;
    sh_.post_norms = c.post_norms;
    sh_.activation =
        c.ffn_activation == FfnActivation::kGeluTanh ? IMPQ_GPU_ACT_GELU_TANH : IMPQ_GPU_ACT_SILU;
    sh_.sliding_window = c.sliding_window;
    auto bits_of = [](const float* f, size_t n) {
      std::vector<uint16_t> b(n);
      for (size_t i = 0; i < n; ++i) b[i] = F32ToBf16Bits(f[i]);
      return b;
    };
    output_ = bits_of(m.output.data(), m.output.values().size());
    for (int l = 0; l < c.n_layers; ++l) {
      for (int k = 0; k < model::kNumLinear; ++k) {
        const auto kind = static_cast<LinearKind>(k);
        std::array<std::vector<uint16_t>, IMPQ_GPU_NUM_VARIANTS> v;
        for (int bits : q.widths()) {  // as GpuEvaluator uploads them (model_set_linear_packed)
          const quant::PackedTensor& p = q.Packed(l, kind, bits);
          auto& dst = v[impq_gpu_variant_of_bits(bits)];
          dst.resize(static_cast<size_t>(p.rows * p.cols));
          DequantizeRef(bits, p.rows, p.cols, p.group_size, p.codes.data(), p.scales.data(),
                        p.zeros.data(), nullptr, dst.data());
        }
        v[IMPQ_GPU_VARIANT_FULL] =
            bits_of(m.layers[l][kind].data(), m.layers[l][kind].values().size());
        linear_.push_back(std::move(v));
      }
    }
    for (const auto& seq : set.sequences) {
      tokens_.insert(tokens_.end(), seq.tokens.begin(), seq.tokens.end());
      offsets_.push_back(static_cast<int64_t>(tokens_.size()));
      begin_.push_back(seq.score_begin);
    }
    const auto n = static_cast<int64_t>(set.sequences.size());
    IMPQ_CHECK(pass::CheckEvalSet(sh_, tokens_.data(), offsets_.data(), n, begin_.data()).empty());
    lay_ = pass::MakeLayout(offsets_.data(), n, begin_.data(), 1, sh_.vocab);
    lay_ = pass::MakeLayout(offsets_.data(), n, begin_.data(),
                            row_budget > 0 ? row_budget : pass::InitialRowBudget(lay_), sh_.vocab);
    if (head_rows > 0) lay_.head_rows = head_rows;
    targets_ = pass::Targets(lay_, tokens_.data());
    cache_.assign(static_cast<size_t>(n), pass::SeqCache());
    states_.resize(static_cast<size_t>(n));
    int64_t used = 0;
    for (int64_t s = 0; s < n && max_cache_bytes > 0; ++s) {
      const int64_t bytes = pass::CacheBytes(lay_.SeqLen(s), sh_);
      if (used + bytes > max_cache_bytes) break;
      states_[s].resize(static_cast<size_t>(bytes / 4));
      cache_[s].enabled = true;
      used += bytes;
      ++cached_;
    }
    const int64_t R = lay_.row_budget, T = lay_.max_T;
    const int64_t D = sh_.dim, qd = sh_.q_dim(), kvd = sh_.kv_dim(), H = sh_.hidden;
    const std::pair<std::vector<float>*, int64_t> f32[] = {{&x_, R * D},
                                                           {&q_buf_, R * qd},
                                                           {&k_, R * kvd},
                                                           {&v_, R * kvd},
                                                           {&proj_, R * D},
                                                           {&g_, R * H},
                                                           {&u_, R * H},
                                                           {&logits_, lay_.head_rows * sh_.vocab},
                                                           {&nll_, lay_.total_scored}};
    for (const auto& [buf, size] : f32) {
      buf->assign(static_cast<size_t>(size), std::nanf(""));  // stale reads show up as NaN
    }
    const std::pair<std::vector<uint16_t>*, int64_t> b16[] = {
        {&xb_, R * D},   {&att_, R * qd}, {&hb_, R * H}, {&qh_, T * qd},
        {&kh_, T * kvd}, {&vh_, T * kvd}, {&hn_, R * D}};
    for (const auto& [buf, size] : b16) {
      buf->assign(static_cast<size_t>(size), 0x7fc0);  // bf16 NaN
    }
  }

  // Per-sequence NLL sums of variants[layer * 7 + kind].
  std::vector<double> Evaluate(const std::vector<uint8_t>& variants) {
    const std::string bad = pass::CheckVariants(
        sh_, variants.data(), [&](int i, int v) { return !linear_[i][v].empty(); });
    IMPQ_CHECK(bad.empty()) << bad;
    pass::Weights<uint16_t> w;
    w.embedding = q_.model().embedding.data();
    w.output = output_.data();
    w.final_norm = tables_.final_norm.data();
    w.rope_cos = tables_.rope_cos.data();
    w.rope_sin = tables_.rope_sin.data();
    auto ptr = [](const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); };
    for (const auto& l : tables_.layers) {
      w.norms.push_back(
          {ptr(l.attn), ptr(l.ffn), ptr(l.q), ptr(l.k), ptr(l.post_attn), ptr(l.post_ffn)});
    }
    for (const auto& v : linear_) {
      std::array<const uint16_t*, IMPQ_GPU_NUM_VARIANTS> p{};
      for (int k = 0; k < IMPQ_GPU_NUM_VARIANTS; ++k) p[k] = v[k].empty() ? nullptr : v[k].data();
      w.linear.push_back(p);
    }
    pass::Scratch<uint16_t> sc;
    sc.x = x_.data();
    sc.q = q_buf_.data();
    sc.k = k_.data();
    sc.v = v_.data();
    sc.proj = proj_.data();
    sc.g = g_.data();
    sc.u = u_.data();
    sc.logits = logits_.data();
    sc.xb = xb_.data();
    sc.att = att_.data();
    sc.hb = hb_.data();
    sc.qh = qh_.data();
    sc.kh = kh_.data();
    sc.vh = vh_.data();
    sc.hn = hn_.data();
    sc.tokens = tokens_.data();
    sc.targets = targets_.data();
    sc.nll = nll_.data();
    for (auto& st : states_) sc.states.push_back(st.empty() ? nullptr : st.data());
    const std::vector<int> start = pass::RestartBlocks(sh_, cache_, variants.data());
    std::vector<bool> cached(cache_.size());
    for (size_t s = 0; s < cache_.size(); ++s) {
      cached[s] = cache_[s].enabled;
      if (start[s] < sh_.n_layers) cache_[s].valid = false;
    }
    CpuOps ops{sh_.vocab};
    pass::Pass<CpuOps> run(ops, sh_, lay_, w, sc);
    IMPQ_CHECK(run.Run(variants.data(), start, cached) == IMPQ_GPU_OK);
    std::vector<double> sums(cache_.size());
    blocks_done_ +=
        pass::Finish(sh_, lay_, start, nll_.data(), variants.data(), cache_, sums.data());
    blocks_full_ += lay_.n_seqs * sh_.n_layers;
    return sums;
  }

  const pass::Layout& layout() const { return lay_; }
  int64_t cached() const { return cached_; }
  int64_t blocks_done() const { return blocks_done_; }
  int64_t blocks_full() const { return blocks_full_; }

 private:
  const quant::QuantizedModel& q_;
  GpuModelTables tables_;
  pass::Shape sh_;
  pass::Layout lay_;
  std::vector<uint16_t> output_;
  std::vector<std::array<std::vector<uint16_t>, IMPQ_GPU_NUM_VARIANTS>> linear_;
  std::vector<int32_t> tokens_, targets_;
  std::vector<int64_t> offsets_ = {0}, begin_;
  std::vector<pass::SeqCache> cache_;
  std::vector<std::vector<float>> states_;
  std::vector<float> x_, q_buf_, k_, v_, proj_, g_, u_, logits_, nll_;
  std::vector<uint16_t> xb_, att_, hb_, qh_, kh_, vh_, hn_;
  int64_t cached_ = 0, blocks_done_ = 0, blocks_full_ = 0;
};

// variants[layer * 7 + kind] with player i at bits[i] (2, 3, 4, 8, or 16/32 = full), written
// out from gpu_api.h's numbers (the test's own statement of GpuEvaluator's VariantTable).
std::vector<uint8_t> VariantsOf(const quant::QuantizedModel& q, const std::vector<int>& bits) {
  const ModelConfig& c = q.model().config;
  std::vector<uint8_t> v(static_cast<size_t>(c.n_layers) * model::kNumLinear,
                         IMPQ_GPU_VARIANT_4BIT);
  for (int i = 0; i < q.num_players(); ++i) {
    const uint8_t variant = bits[i] == 2   ? IMPQ_GPU_VARIANT_2BIT
                            : bits[i] == 3 ? IMPQ_GPU_VARIANT_3BIT
                            : bits[i] == 4 ? IMPQ_GPU_VARIANT_4BIT
                            : bits[i] == 8 ? IMPQ_GPU_VARIANT_8BIT
                                           : IMPQ_GPU_VARIANT_FULL;
    for (const quant::LinearRef& r : q.players()[i].linears) {
      v[static_cast<size_t>(r.layer) * model::kNumLinear + static_cast<int>(r.kind)] = variant;
    }
  }
  return v;
}

// ============================================================ CPU: the reference itself

// With the bf16 roundings off, the reference is the f32 engine's function: this checks that
// every architecture switch (and GpuModelTables' norm multipliers and rope tables) is mirrored.
void ExpectF32ModeMatchesEngine(const Model& m, const forward::WeightSet& w,
                                const std::vector<int>& tokens, const std::string& what) {
  GpuModelReference ref(m, GpuModelReference::Options{.bf16 = false});
  const std::vector<float> got = ref.Logits(tokens, w);
  forward::LlamaForward fwd(m);
  forward::Workspace ws;
  const std::vector<float> want = fwd.AllLogits(tokens, w, ws, nullptr);
  ASSERT_EQ(got.size(), want.size());
  const double tol = 2 * BoundF32(m.config, static_cast<int64_t>(tokens.size()), MaxAbs(want));
  const double diff = MaxAbsDiff(got, want);
  EXPECT_LE(diff, tol) << what;
  ::testing::Test::RecordProperty(what + "_max_abs_diff", std::to_string(diff));
}

TEST(GpuModelReferenceTest, F32ModeMatchesLlamaForwardOnStories260K) {
  const Stories& s = Stories::Get();
  const std::vector<int> tokens =
      s.tokenizer().Encode("Once upon a time, there was a big dog named Max.", true);
  ExpectF32ModeMatchesEngine(s.model(), forward::WeightSet::FromModel(s.model()), tokens,
                             "stories260K fp32");
  const auto w = s.qmodel().Apply(MixedBits(s.qmodel().num_players(), 1));
  ASSERT_TRUE(w.ok()) << w.status();
  ExpectF32ModeMatchesEngine(s.model(), *w, s.set().sequences[0].tokens, "stories260K mixed");
}

TEST(GpuModelReferenceTest, F32ModeMatchesLlamaForwardOnEveryArchitecture) {
  for (const auto& [name, config] :
       {std::pair{"llama3", LlamaConfig()}, std::pair{"qwen3", Qwen3Config()},
        std::pair{"gemma2", Gemma2Config()}}) {
    const Model m = SharpRandomModel(config, 7);
    ASSERT_TRUE(m.Validate().ok()) << name;
    ExpectF32ModeMatchesEngine(m, forward::WeightSet::FromModel(m),
                               RandomTokens(config.seq_len, config.vocab_size, 3), name);
  }
}

// A mis-mirrored switch is caught: the f32-mode comparison fails by far more than its
// tolerance when the reference runs a model whose config differs in one quirk.
TEST(GpuModelReferenceTest, F32ModeComparisonDetectsAMissingQuirk) {
  const Model m = SharpRandomModel(Gemma2Config(), 8);
  const std::vector<int> tokens = RandomTokens(40, m.config.vocab_size, 4);
  forward::LlamaForward fwd(m);
  forward::Workspace ws;
  const auto w = forward::WeightSet::FromModel(m);
  const std::vector<float> want = fwd.AllLogits(tokens, w, ws, nullptr);
  const double tol = 2 * BoundF32(m.config, 40, MaxAbs(want));
  for (const auto& edit : std::vector<std::function<void(ModelConfig&)>>{
           [](ModelConfig& c) { c.sliding_window = 0; },
           [](ModelConfig& c) { c.attn_logit_softcap = 0; },
           [](ModelConfig& c) { c.norm_weight_offset = 0; },
           [](ModelConfig& c) { c.scale_embeddings = false; }}) {
    Model other = SharpRandomModel(Gemma2Config(), 8);
    edit(other.config);
    GpuModelReference ref(other, GpuModelReference::Options{.bf16 = false});
    EXPECT_GT(MaxAbsDiff(ref.Logits(tokens, w), want), 10 * tol);
  }
}

// With bf16 on (the GPU's numerics), the reference stays within the bf16 bound of the f32
// engine on logits, its NLL moves by at most twice the largest logit change (logsumexp and the
// target logit are 1-Lipschitz in the max norm: this checks the NLL's rows and targets), and
// the roundings do happen.
TEST(GpuModelReferenceTest, Bf16WithinDerivedBoundOfF32Engine) {
  const Stories& s = Stories::Get();
  const ModelConfig& c = s.model().config;
  const int64_t V = c.vocab_size;
  GpuModelReference ref(s.model());
  GpuModelReference ref32(s.model(), GpuModelReference::Options{.bf16 = false});
  eval::Evaluator ev(s.fwd(), 1);
  for (int bits : {4, 32}) {
    const forward::WeightSet w = s.qmodel().Uniform(bits);
    auto nll32 = ev.Nll(w, s.set());
    ASSERT_TRUE(nll32.ok()) << nll32.status();
    auto sums = ref.SequenceNlls(s.set(), w);
    ASSERT_TRUE(sums.ok()) << sums.status();
    ASSERT_EQ(sums->size(), s.set().sequences.size());
    double worst_ratio = 0, total = 0;
    for (size_t i = 0; i < sums->size(); ++i) {
      const eval::EvalSequence& seq = s.set().sequences[i];
      const auto T = static_cast<int64_t>(seq.tokens.size());
      forward::Workspace ws;
      const std::vector<float> want = s.fwd().AllLogits(seq.tokens, w, ws, nullptr);
      const std::vector<float> got = ref.Logits(seq.tokens, w);
      const double bound = BoundBf16(c, T, MaxAbs(want));
      const double diff = MaxAbsDiff(got, want);
      EXPECT_LE(diff, bound) << "sequence " << i << " at " << bits << " bits";
      worst_ratio = std::max(worst_ratio, diff / bound);
      // The largest logit change over the scored rows bounds the NLL change of every row.
      double scored_diff = 0;
      for (int64_t j = seq.score_begin * V; j < (T - 1) * V; ++j) {
        scored_diff = std::max(scored_diff, std::abs(static_cast<double>(got[j]) - want[j]));
      }
      EXPECT_LE(std::abs((*sums)[i] - nll32->sequence_nll_sums[i]) / seq.scored(),
                2 * scored_diff + 1e-12)
          << "sequence " << i << " at " << bits << " bits";
      if (i == 0) {
        // The roundings are real: bf16 differs from f32 by more than f32 accumulation explains.
        EXPECT_GT(MaxAbsDiff(got, ref32.Logits(seq.tokens, w)), 2 * BoundF32(c, T, MaxAbs(want)));
      }
      total += (*sums)[i];
    }
    ::testing::Test::RecordProperty("bf16_logit_diff_of_bound_" + std::to_string(bits),
                                    std::to_string(worst_ratio));
    ::testing::Test::RecordProperty(
        "bf16_mean_nll_diff_" + std::to_string(bits),
        std::to_string(total / static_cast<double>(s.set().scored_tokens) - nll32->nll));
  }
}

TEST(GpuModelReferenceTest, SequenceNllsChecksTheSet) {
  const Stories& s = Stories::Get();
  GpuModelReference ref(s.model());
  eval::EvalSet bad = MakeSet({{1, 2, 700}}, {0});
  auto r = ref.SequenceNlls(bad, s.qmodel().Uniform(4));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("700"));
}

// The context length a model file claims is untrusted: the GPU path's tables follow what will
// be evaluated. A config claiming 2^30 positions makes tables of the set's longest sequence
// (the plugin description) or of LlamaForward's bound (the reference), and the reference
// refuses a sequence longer than it was made for.
TEST(GpuModelReferenceTest, TablesFollowTheSequencesNotTheClaimedContext) {
  ModelConfig c = BaseConfig();
  c.seq_len = 1 << 30;
  const Model m = model::MakeRandomModel(c, 3);
  const int half = c.head_dim / 2;
  const std::unique_ptr<const GpuModelDescription> desc = MakeGpuModelDescription(m, 40);
  EXPECT_EQ(desc->desc.seq_len, 40);
  EXPECT_EQ(desc->tables.rope_cos.size(), static_cast<size_t>(40 * half));
  GpuModelReference ref(m);
  EXPECT_EQ(ref.positions(), forward::LlamaForward::kRopeTablePositions);
  GpuModelReference::Options short_ref;
  short_ref.positions = 8;
  GpuModelReference small(m, short_ref);
  EXPECT_EQ(small.positions(), 8);
  // The same rows as the long tables (row 5 of both).
  const GpuModelTables t8 = MakeGpuModelTables(m, 8), t40 = MakeGpuModelTables(m, 40);
  for (int i = 0; i < half; ++i) {
    EXPECT_EQ(t8.rope_cos[5 * half + i], t40.rope_cos[5 * half + i]);
    EXPECT_EQ(t8.rope_sin[5 * half + i], t40.rope_sin[5 * half + i]);
  }
  std::vector<int> tokens(12);
  for (int i = 0; i < 12; ++i) tokens[i] = i % c.vocab_size;
  auto r = small.SequenceNlls(MakeSet({tokens}, {0}), forward::WeightSet::FromModel(m));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("made for 8"));
}

// ============================================================ CPU: the plugin's pass

// The pass with the kernel references (CpuPluginModel) against GpuModelReference for `bits`:
// every sequence's NLL within twice the f32 bound; returns the largest |difference| / bound.
double ExpectPassNearReference(const quant::QuantizedModel& q, const eval::EvalSet& set,
                               const std::vector<int>& bits, const std::string& what) {
  CpuPluginModel emu(q, set, 0);
  const std::vector<double> got = emu.Evaluate(VariantsOf(q, bits));
  GpuModelReference ref(q.model());
  auto w = q.Apply(bits);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return 0;
  double worst = 0;
  for (size_t i = 0; i < set.sequences.size(); ++i) {
    const eval::EvalSequence& seq = set.sequences[i];
    double max_abs = 0;
    const double want = ref.SequenceNll(seq, *w, &max_abs);
    const double tol =
        2 * BoundF32(q.model().config, static_cast<int64_t>(seq.tokens.size()), max_abs);
    EXPECT_LE(std::abs(got[i] - want) / seq.scored(), tol)
        << what << ": sequence " << i << " pass " << got[i] << " reference " << want;
    worst = std::max(worst, std::abs(got[i] - want) / seq.scored() / tol);
  }
  return worst;
}

// The pass of cuda/model.cu run with the kernel references equals the whole-model reference:
// the plugin's rounding points, rows, targets and head agree with GpuModelReference's.
TEST(PluginPassOnCpuTest, MatchesReferenceOnStoriesAndEveryArchitecture) {
  double worst = 0;  // largest |difference| / tolerance
  auto check = [&worst](const quant::QuantizedModel& q, const eval::EvalSet& set,
                        const std::vector<int>& bits, const std::string& what) {
    worst = std::max(worst, ExpectPassNearReference(q, set, bits, what));
  };
  const Stories& s = Stories::Get();
  const int n = s.qmodel().num_players();
  check(s.qmodel(), s.set(), MixedBits(n, 2), "stories260K mixed");
  check(s.qmodel(), s.set(), std::vector<int>(n, 32), "stories260K full");
  for (const auto& [name, config] :
       {std::pair{"llama3", LlamaConfig()}, std::pair{"qwen3", Qwen3Config()},
        std::pair{"gemma2", Gemma2Config()}}) {
    const Model m = SharpRandomModel(config, 17);
    const auto q = Quantize(m);
    check(*q, RandomSet(config, 100), MixedBits(q->num_players(), 6), name);
  }
  ::testing::Test::RecordProperty("worst_diff_of_tolerance", std::to_string(worst));
}

// Rows of a sequence never depend on the other rows of its batch in the reference kernels, so
// batches and head chunks of any size give bit-identical sums: a wrong row offset, scored range
// or target index would not.
TEST(PluginPassOnCpuTest, BatchesAndHeadChunksDoNotChangeTheSums) {
  const Model m = SharpRandomModel(Gemma2Config(), 19);
  const auto q = Quantize(m);
  const eval::EvalSet set = RandomSet(m.config, 200);
  const std::vector<uint8_t> v = VariantsOf(*q, MixedBits(q->num_players(), 4));
  CpuPluginModel one(*q, set, 0);
  EXPECT_EQ(one.layout().batches.size(), 1u);
  const std::vector<double> want = one.Evaluate(v);
  CpuPluginModel many(*q, set, 0, /*row_budget=*/m.config.seq_len, /*head_rows=*/7);
  EXPECT_GE(many.layout().batches.size(), 3u);
  EXPECT_EQ(many.Evaluate(v), want);
  CpuPluginModel some(*q, set, 0, /*row_budget=*/m.config.seq_len + 70, /*head_rows=*/64);
  EXPECT_EQ(some.Evaluate(v), want);
}

// Prefix reuse along permutation walks gives the sums of full evaluations, with every sequence
// cached, with some (then batches split into runs restarting at different blocks), and with
// none; and it runs exactly the blocks from the changed player's layer on.
TEST(PluginPassOnCpuTest, PrefixReuseAlongWalksMatchesFullEvaluations) {
  const Model m = SharpRandomModel(LlamaConfig(), 23);
  const auto qm = Quantize(m);
  const quant::QuantizedModel& q = *qm;
  const eval::EvalSet set = RandomSet(m.config, 300);
  const int n = q.num_players(), L = m.config.n_layers;
  std::vector<solver::Permutation> perms;
  std::vector<std::vector<uint8_t>> steps;
  for (uint64_t k = 0; k < 2; ++k) {
    perms.push_back(solver::SeededPermutationSampler(n, 3, false).Get(k));
    for (const auto& c : solver::WalkCoalitions(perms.back())) {
      std::vector<int> bits(n);
      for (int i = 0; i < n; ++i) bits[i] = c[i] ? 2 : 4;
      steps.push_back(VariantsOf(q, bits));
    }
  }
  // RandomSet's first three sequences hold 96 + 40 + 67 tokens: a budget for exactly those,
  // and batches of up to 150 rows (96 40 | 67 23 | 95) whose second one mixes cached and
  // uncached sequences, which then run from different blocks.
  const pass::Shape shape{.dim = m.config.dim, .n_layers = L};
  const int64_t three = pass::CacheBytes(96 + 40 + 67, shape);
  CpuPluginModel full(q, set, 0);
  CpuPluginModel all(q, set, int64_t{1} << 30);
  CpuPluginModel some(q, set, three, /*row_budget=*/150);
  ASSERT_EQ(all.cached(), static_cast<int64_t>(set.sequences.size()));
  ASSERT_EQ(some.cached(), 3);
  ASSERT_EQ(some.layout().batches.size(), 3u);
  for (size_t k = 0; k < steps.size(); ++k) {
    const std::vector<double> want = full.Evaluate(steps[k]);
    for (double x : want) ASSERT_TRUE(std::isfinite(x)) << "step " << k;
    EXPECT_EQ(all.Evaluate(steps[k]), want) << "step " << k;
    EXPECT_EQ(some.Evaluate(steps[k]), want) << "step " << k;
  }
  // Blocks run: a walk starts at all 4-bit, which differs from the previous walk's last
  // coalition (all 2-bit) in block 0; step t then changes player perm[t-1], i.e. layer
  // perm[t-1] / 7 (module players), so cached sequences run L - that layer blocks.
  auto expected_blocks = [&](int64_t cached) {
    const auto S = static_cast<int64_t>(set.sequences.size());
    int64_t blocks = 0;
    for (const auto& perm : perms) {
      blocks += S * L;
      for (int p : perm) blocks += cached * (L - p / 7) + (S - cached) * L;
    }
    return blocks;
  };
  EXPECT_EQ(full.blocks_done(), expected_blocks(0));
  EXPECT_EQ(all.blocks_done(), expected_blocks(all.cached()));
  EXPECT_EQ(some.blocks_done(), expected_blocks(some.cached()));
  EXPECT_EQ(all.blocks_full(), full.blocks_done());
  // The same coalition again: nothing runs, the cached sums come back.
  const int64_t before = all.blocks_done();
  EXPECT_EQ(all.Evaluate(steps.back()), full.Evaluate(steps.back()));
  EXPECT_EQ(all.blocks_done(), before);
}

// Width sets (2, 3, 4, 8 bits): the pass with the kernel references against the reference for
// an assignment that uses every width, and along a ladder walk (every player from 8 to 2 bits)
// prefix reuse gives the sums of full evaluations; GpuEvaluator's variant table is the
// test's own (VariantsOf) at every step.
TEST(PluginPassOnCpuTest, WidthSetsMatchReferenceAndReuseAlongLadderWalks) {
  const Model m = SharpRandomModel(LlamaConfig(), 29);
  const auto qm = Quantize(m, std::vector<int>{2, 3, 4, 8});
  const quant::QuantizedModel& q = *qm;
  const eval::EvalSet set = RandomSet(m.config, 400);
  const int n = q.num_players();
  const std::vector<int> held = {2, 3, 4, 8};

  ExpectPassNearReference(q, set, MixedWidths(n, 8), "every width");

  CpuPluginModel full(q, set, 0);
  CpuPluginModel all(q, set, int64_t{1} << 30);
  const std::vector<std::vector<int>> walk = LadderWalkBits(n, 5, 0);
  ASSERT_EQ(walk.size(), static_cast<size_t>(3 * n + 1));
  EXPECT_EQ(walk.front(), std::vector<int>(n, 8));
  EXPECT_EQ(walk.back(), std::vector<int>(n, 2));
  for (size_t k = 0; k < walk.size(); ++k) {
    const std::vector<uint8_t> v = VariantsOf(q, walk[k]);
    auto table = VariantTable(q, walk[k], held, /*full=*/false);
    ASSERT_TRUE(table.ok()) << table.status();
    ASSERT_EQ(*table, v) << "step " << k;
    const std::vector<double> want = full.Evaluate(v);
    for (double x : want) ASSERT_TRUE(std::isfinite(x)) << "step " << k;
    EXPECT_EQ(all.Evaluate(v), want) << "step " << k;
  }
  EXPECT_LT(all.blocks_done(), full.blocks_done());
}

// GpuEvaluator's assignment -> variant table, on the CPU: every player's modules, the widths
// held, full precision only when uploaded, errors naming the player.
TEST(GpuEvaluatorLogicTest, VariantTableMapsEveryWidthAndNamesWhatIsMissing) {
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel_all_widths();
  const int n = q.num_players();
  const std::vector<int> all = {2, 3, 4, 8}, binary = {2, 4};
  const std::vector<int> mixed = MixedWidths(n, 3);
  auto v = VariantTable(q, mixed, all, false);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, VariantsOf(q, mixed));
  for (int bits : all) {
    auto u = VariantTable(q, std::vector<int>(n, bits), all, false);
    ASSERT_TRUE(u.ok()) << u.status();
    EXPECT_EQ(*u, std::vector<uint8_t>(u->size(), static_cast<uint8_t>(
                                                      impq_gpu_variant_of_bits(bits))));
  }
  auto full = VariantTable(q, std::vector<int>(n, 32), binary, true);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(*full, std::vector<uint8_t>(full->size(), IMPQ_GPU_VARIANT_FULL));

  auto not_held = VariantTable(q, mixed, binary, false);  // player 1 at 3 bits
  EXPECT_EQ(not_held.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_held.status().message(), HasSubstr("player 1 at 3 bits"));
  EXPECT_THAT(not_held.status().message(), HasSubstr("[2, 4]"));
  auto no_full = VariantTable(q, std::vector<int>(n, 16), all, false);
  EXPECT_EQ(no_full.status().code(), absl::StatusCode::kFailedPrecondition);
  auto short_bits = VariantTable(q, std::vector<int>(n - 1, 4), all, false);
  EXPECT_EQ(short_bits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_bits.status().message(), HasSubstr("players"));
}

// A worker whose libimpq_cuda.so predates 3/8 bits (the version-1 fake plugin, through the real
// dlopen seam): a width-set evaluator is refused by name before anything reaches the plugin;
// the binary game's widths pass that check (and then meet the fake's missing device).
TEST(GpuEvaluatorLogicTest, OlderPluginRefusesWidthSetsByName) {
  const std::string path = FakePluginV1Path();
  if (path.empty() || !std::ifstream(path).good()) {
    GTEST_SKIP() << "fake version-1 plugin not built";
  }
  ScopedEnv plugin("IMPQ_CUDA_PLUGIN", path);
  absl::StatusOr<std::unique_ptr<GpuRuntime>> rt = GpuRuntime::Load();
  ASSERT_TRUE(rt.ok()) << rt.status();
  ASSERT_EQ((*rt)->api_version(), 1);
  const Stories& s = Stories::Get();
  GpuEvaluatorOptions o;
  o.widths = {2, 3, 4, 8};
  auto ev = GpuEvaluator::Create(rt->get(), 0, s.qmodel_all_widths(), s.set(), o);
  ASSERT_FALSE(ev.ok());
  EXPECT_EQ(ev.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ev.status().message(), HasSubstr("API version 1"));
  EXPECT_THAT(ev.status().message(), HasSubstr("need API version 2 for [3, 8]"));
  EXPECT_THAT(ev.status().message(), HasSubstr(path));
  o.widths = {2, 4};
  auto binary = GpuEvaluator::Create(rt->get(), 0, s.qmodel_all_widths(), s.set(), o);
  ASSERT_FALSE(binary.ok());
  EXPECT_EQ(binary.status().code(), absl::StatusCode::kUnavailable) << binary.status();
  EXPECT_THAT(binary.status().message(), HasSubstr("model_create"));
  // Widths the quantized model did not prepare, and no ladder at all.
  o.widths = {3, 4};
  EXPECT_EQ(GpuEvaluator::Create(rt->get(), 0, s.qmodel(), s.set(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.widths = {4};
  EXPECT_EQ(GpuEvaluator::Create(rt->get(), 0, s.qmodel(), s.set(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PluginPassOnCpuTest, ChecksTheSetAndTheVariants) {
  pass::Shape sh;
  sh.n_layers = 2;
  sh.vocab = 10;
  sh.seq_len = 6;
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 10, 1};
  const std::vector<int64_t> offsets = {0, 4, 7};
  std::vector<int64_t> begin = {0, 0};
  EXPECT_THAT(pass::CheckEvalSet(sh, tokens.data(), offsets.data(), 2, begin.data()),
              HasSubstr("tokens[5] (sequence 1, position 1) = 10"));
  const std::vector<int32_t> ok = {1, 2, 3, 4, 5, 9, 1};
  EXPECT_EQ(pass::CheckEvalSet(sh, ok.data(), offsets.data(), 2, begin.data()), "");
  begin = {3, 0};
  EXPECT_THAT(pass::CheckEvalSet(sh, ok.data(), offsets.data(), 2, begin.data()),
              HasSubstr("score_begin[0] = 3; expected 0..2"));
  begin = {0, 0};
  const std::vector<int64_t> too_long = {0, 7};
  EXPECT_THAT(pass::CheckEvalSet(sh, ok.data(), too_long.data(), 1, begin.data()),
              HasSubstr("expected 2..6 (seq_len)"));
  const std::vector<int64_t> too_short = {0, 1};
  EXPECT_THAT(pass::CheckEvalSet(sh, ok.data(), too_short.data(), 1, begin.data()),
              HasSubstr("sequence 0 has 1 tokens"));
  EXPECT_THAT(pass::CheckEvalSet(sh, ok.data(), offsets.data(), 0, begin.data()),
              HasSubstr("n_seqs = 0"));

  std::vector<uint8_t> v(14, IMPQ_GPU_VARIANT_4BIT);
  auto all_but_full = [](int, int variant) { return variant != IMPQ_GPU_VARIANT_FULL; };
  EXPECT_EQ(pass::CheckVariants(sh, v.data(), all_but_full), "");
  v[9] = IMPQ_GPU_VARIANT_FULL;
  EXPECT_THAT(pass::CheckVariants(sh, v.data(), all_but_full),
              HasSubstr("the full variant of layer 1 attn_v was never set"));
  v[9] = IMPQ_GPU_VARIANT_3BIT;
  auto no_3bit = [](int, int variant) { return variant != IMPQ_GPU_VARIANT_3BIT; };
  EXPECT_THAT(pass::CheckVariants(sh, v.data(), no_3bit),
              HasSubstr("the 3-bit variant of layer 1 attn_v was never set"));
  v[9] = IMPQ_GPU_VARIANT_8BIT;
  EXPECT_EQ(pass::CheckVariants(sh, v.data(), no_3bit), "");
  v[9] = IMPQ_GPU_NUM_VARIANTS;
  EXPECT_THAT(pass::CheckVariants(sh, v.data(), all_but_full),
              HasSubstr("variants[9] (layer 1 attn_v) = 5; expected 0..4"));

  // Batches: consecutive sequences up to the row budget, never splitting one.
  const std::vector<int64_t> offs = {0, 5, 9, 14, 16};
  const std::vector<int64_t> b0(4, 0);
  const pass::Layout lay = pass::MakeLayout(offs.data(), 4, b0.data(), 9, 1000);
  ASSERT_EQ(lay.batches.size(), 2u);  // rows 0..9 | 9..16
  EXPECT_EQ(lay.batches[0].first, 0);
  EXPECT_EQ(lay.batches[0].last, 2);
  EXPECT_EQ(lay.batches[1].first, 2);
  EXPECT_EQ(lay.batches[1].last, 4);
  EXPECT_EQ(lay.total_scored, 12);
  EXPECT_EQ(lay.scored_offset[3], 4 + 3 + 4);
  // Random lengths and budgets: the batches partition the sequences in order, each within the
  // budget, each as long as the budget allows (greedy).
  Rng rng(31);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t count = 1 + static_cast<int64_t>(rng.Below(12));
    std::vector<int64_t> o = {0}, sb(static_cast<size_t>(count), 0);
    int64_t longest = 0;
    for (int64_t i = 0; i < count; ++i) {
      const int64_t T = 2 + static_cast<int64_t>(rng.Below(40));
      longest = std::max(longest, T);
      o.push_back(o.back() + T);
    }
    const int64_t budget = longest + static_cast<int64_t>(rng.Below(80));
    const pass::Layout l = pass::MakeLayout(o.data(), count, sb.data(), budget, 100);
    int64_t next = 0;
    for (size_t b = 0; b < l.batches.size(); ++b) {
      const pass::Batch& bt = l.batches[b];
      ASSERT_EQ(bt.first, next);
      ASSERT_LT(bt.first, bt.last);
      EXPECT_LE(o[bt.last] - o[bt.first], budget) << "trial " << trial;
      if (bt.last < count) {
        EXPECT_GT(o[bt.last + 1] - o[bt.first], budget) << "trial " << trial;
      }
      next = bt.last;
    }
    EXPECT_EQ(next, count);
  }
  EXPECT_EQ(pass::HeadRows(8192, 128256), 1024);
  EXPECT_EQ(pass::HeadRows(50, 512), 50);
}

// ============================================================ GPU

#define SKIP_WITHOUT_GPU(rt)           \
  std::string why_;                    \
  GpuRuntime* rt = TestRuntime(&why_); \
  if (rt == nullptr) GTEST_SKIP() << why_

std::unique_ptr<GpuEvaluator> MakeGpuEvaluator(GpuRuntime* rt, const quant::QuantizedModel& q,
                                               const eval::EvalSet& set, int64_t cache_bytes,
                                               bool full = false,
                                               std::vector<int> widths = {2, 4}) {
  GpuEvaluatorOptions o;
  o.max_cache_bytes = cache_bytes;
  o.upload_full = full;
  o.widths = std::move(widths);
  auto ev = GpuEvaluator::Create(rt, 0, q, set, o);
  IMPQ_CHECK(ev.ok()) << ev.status();
  return *std::move(ev);
}

// The GPU's mean NLL of each assignment `bits[k]` (got[k]) against the f32 CPU engine's
// (want[k]): |gpu - cpu| <= |gpu - ref| + |ref - cpu|, the first within 2·B32 per token
// (checked per sequence by ExpectMatchesReference), the second computed here on the CPU.
void ExpectGpuNearCpu(const Stories& s, const quant::QuantizedModel& q,
                      const std::vector<std::vector<int>>& bits, const std::vector<double>& got,
                      const std::vector<double>& want) {
  ASSERT_EQ(got.size(), bits.size());
  ASSERT_EQ(want.size(), bits.size());
  GpuModelReference ref(s.model());
  for (size_t k = 0; k < bits.size(); ++k) {
    const auto w = q.Apply(bits[k]);
    ASSERT_TRUE(w.ok());
    double ref_sum = 0, tol = 0;
    for (const auto& seq : s.set().sequences) {
      double max_abs = 0;
      ref_sum += ref.SequenceNll(seq, *w, &max_abs);
      tol = std::max(
          tol, 2 * BoundF32(s.model().config, static_cast<int64_t>(seq.tokens.size()), max_abs));
    }
    const double ref_mean = ref_sum / static_cast<double>(s.set().scored_tokens);
    EXPECT_LE(std::abs(got[k] - want[k]), tol + std::abs(ref_mean - want[k]))
        << "coalition " << k << ": gpu " << got[k] << " cpu " << want[k] << " reference "
        << ref_mean;
  }
}

// Per-sequence GPU sums against the reference: 2·B32 per scored token.
void ExpectMatchesReference(GpuEvaluator& gpu, const quant::QuantizedModel& q,
                            const eval::EvalSet& set, const std::vector<int>& bits,
                            const std::string& what) {
  auto got = gpu.SequenceSums(bits);
  ASSERT_TRUE(got.ok()) << what << ": " << got.status();
  GpuModelReference ref(q.model());
  auto w = q.Apply(bits);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(got->size(), set.sequences.size());
  for (size_t i = 0; i < set.sequences.size(); ++i) {
    const eval::EvalSequence& seq = set.sequences[i];
    double max_abs = 0;
    const double want = ref.SequenceNll(seq, *w, &max_abs);
    const double tol =
        2 * BoundF32(q.model().config, static_cast<int64_t>(seq.tokens.size()), max_abs);
    EXPECT_LE(std::abs((*got)[i] - want) / seq.scored(), tol)
        << what << ": sequence " << i << " gpu " << (*got)[i] << " reference " << want;
  }
}

TEST(GpuModelTest, Stories260KMatchesReferenceAndCpuEngine) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel();
  const int n = q.num_players();
  auto gpu = MakeGpuEvaluator(rt, q, s.set(), int64_t{1} << 30, /*full=*/true);
  ExpectMatchesReference(*gpu, q, s.set(), std::vector<int>(n, 4), "all 4-bit");
  ExpectMatchesReference(*gpu, q, s.set(), std::vector<int>(n, 2), "all 2-bit");
  ExpectMatchesReference(*gpu, q, s.set(), MixedBits(n, 5), "mixed");
  ExpectMatchesReference(*gpu, q, s.set(), std::vector<int>(n, 32), "full precision");

  // Against the f32 CPU engine: the bf16 contract's own bound on the mean NLL.
  engine::LocalEvaluatorOptions lo;
  lo.max_cache_bytes = 0;
  auto cpu = engine::LocalEvaluator::Create(q, s.fwd(), s.set(), lo);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  std::vector<solver::Coalition> coalitions = {solver::Coalition(n, 0), solver::Coalition(n, 1)};
  Rng rng(9);
  solver::Coalition mixed(n);
  for (auto& x : mixed) x = static_cast<uint8_t>(rng.Below(2));
  coalitions.push_back(mixed);
  auto want = (*cpu)->Evaluate(coalitions);
  auto got = gpu->Evaluate(coalitions);
  ASSERT_TRUE(want.ok() && got.ok()) << want.status() << " / " << got.status();
  std::vector<std::vector<int>> bits;
  for (const solver::Coalition& c : coalitions) {
    bits.emplace_back(n);
    for (int i = 0; i < n; ++i) bits.back()[i] = c[i] ? 2 : 4;
  }
  ExpectGpuNearCpu(s, q, bits, *got, *want);
}

TEST(GpuModelTest, EveryArchitectureMatchesReference) {
  SKIP_WITHOUT_GPU(rt);
  // Both attention implementations (head_dim 16: the fused kernel supports it; Qwen-3's 12
  // falls back to the composite either way).
  for (const char* attention : {"cublas", "fused"}) {
    SCOPED_TRACE(attention);
    ScopedEnv env("IMPQ_GPU_ATTENTION", attention);
    for (const auto& [name, config] :
         {std::pair{"llama3", LlamaConfig()}, std::pair{"qwen3", Qwen3Config()},
          std::pair{"gemma2", Gemma2Config()}}) {
      const Model m = SharpRandomModel(config, 17);
      const auto q = Quantize(m);
      const eval::EvalSet set = RandomSet(config, 100);
      auto gpu = MakeGpuEvaluator(rt, *q, set, int64_t{1} << 30);
      const int n = q->num_players();
      ExpectMatchesReference(*gpu, *q, set, std::vector<int>(n, 4), std::string(name) + " 4-bit");
      ExpectMatchesReference(*gpu, *q, set, MixedBits(n, 6), std::string(name) + " mixed");
    }
  }
}

// Along a permutation walk, prefix reuse gives the losses of full evaluations.
TEST(GpuModelTest, PrefixReuseMatchesFullEvaluations) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel();
  const int n = q.num_players();
  std::vector<solver::Coalition> walk;
  for (uint64_t k = 0; k < 2; ++k) {
    for (auto& c : solver::WalkCoalitions(solver::SeededPermutationSampler(n, 3, false).Get(k))) {
      walk.push_back(std::move(c));
    }
  }
  auto full = MakeGpuEvaluator(rt, q, s.set(), 0);
  auto want = full->Evaluate(walk);
  ASSERT_TRUE(want.ok()) << want.status();
  auto full_stats = full->stats();
  ASSERT_TRUE(full_stats.ok());
  EXPECT_EQ(full_stats->block_evals_done, full_stats->block_evals_full);
  EXPECT_EQ(full_stats->cached_sequences, 0);

  // Every sequence cached: bit-identical.
  auto reuse = MakeGpuEvaluator(rt, q, s.set(), int64_t{1} << 30);
  auto got = reuse->Evaluate(walk);
  ASSERT_TRUE(got.ok()) << got.status();
  for (size_t k = 0; k < walk.size(); ++k) EXPECT_EQ((*got)[k], (*want)[k]) << "step " << k;
  auto st = reuse->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->cached_sequences, static_cast<int64_t>(s.set().sequences.size()));
  EXPECT_EQ(st->block_evals_full, full_stats->block_evals_full);
  // A walk step that changes block l runs blocks l..L-1: with 7 players per block, at least a
  // third of the block work is saved (the LocalEvaluator saves the same fraction).
  EXPECT_GT(st->SavedFraction(), 0.3) << st->block_evals_done << " of " << st->block_evals_full;
  // Re-evaluating the same coalition runs no block at all.
  const int64_t before = st->block_evals_done;
  auto again = reuse->Evaluate(std::span<const solver::Coalition>(&walk.back(), 1));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0], (*want)[walk.size() - 1]);
  EXPECT_EQ(reuse->stats()->block_evals_done, before);

  // Only the first three sequences cached: the batch then runs as two runs restarting at
  // different blocks, whose GEMMs have other shapes than in the full evaluation, so the sums
  // agree within 2·B32 per token (max|logit| from the reference at the walk's end points, all
  // 4-bit and all 2-bit).
  const ModelConfig& c = s.model().config;
  pass::Shape shape;
  shape.dim = c.dim;
  shape.n_layers = c.n_layers;
  int64_t three = 0, max_T = 0;
  for (int i = 0; i < 3; ++i) {
    three += pass::CacheBytes(static_cast<int64_t>(s.set().sequences[i].tokens.size()), shape);
  }
  auto partial = MakeGpuEvaluator(rt, q, s.set(), three);
  auto got2 = partial->Evaluate(walk);
  ASSERT_TRUE(got2.ok()) << got2.status();
  auto pst = partial->stats();
  ASSERT_TRUE(pst.ok());
  EXPECT_EQ(pst->cached_sequences, 3);
  GpuModelReference ref(s.model());
  double max_abs = 0;
  for (int bits : {2, 4}) {
    for (const auto& seq : s.set().sequences) {
      double m = 0;
      ref.SequenceNll(seq, q.Uniform(bits), &m);
      max_abs = std::max(max_abs, m);
      max_T = std::max<int64_t>(max_T, static_cast<int64_t>(seq.tokens.size()));
    }
  }
  const double tol = 2 * BoundF32(c, max_T, max_abs);
  for (size_t k = 0; k < walk.size(); ++k) {
    EXPECT_NEAR((*got2)[k], (*want)[k], tol) << "step " << k;
  }
}

// $IMPQ_GPU_PROFILE=1 at model creation: the model times its operations and prints one table
// row per operation when it is destroyed; the losses do not change.
TEST(GpuModelTest, ProfilePrintsEveryOperationAndChangesNothing) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel();
  const std::vector<int> bits = MixedBits(q.num_players(), 3);
  auto plain = MakeGpuEvaluator(rt, q, s.set(), 0);
  auto want = plain->NllOfBits(bits);
  ASSERT_TRUE(want.ok()) << want.status();
  std::string table;
  {
    ScopedEnv env("IMPQ_GPU_PROFILE", "1");
    auto profiled = MakeGpuEvaluator(rt, q, s.set(), 0);
    auto got = profiled->NllOfBits(bits);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, *want);
    ::testing::internal::CaptureStderr();
    profiled.reset();  // destroys the model: prints the table
    table = ::testing::internal::GetCapturedStderr();
  }
  EXPECT_THAT(table, ::testing::ContainsRegex("impq gpu profile: [1-9][0-9]* evaluations"));
  for (const char* op : {"| embed |", "| rmsnorm |", "| gemm out=", "| rope |", "| attention |",
                         "| glu |", "| nll |"}) {
    EXPECT_THAT(table, HasSubstr(op));
  }
}

// Width sets on the device (API version 2): every width against the reference, the ladder
// game's losses against the CPU LocalEvaluator playing the same game (same bound as the binary
// game above), and prefix reuse along a ladder walk bit-identical to full evaluations.
TEST(GpuModelTest, WidthSetsMatchReferenceCpuEngineAndFullEvaluations) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel_all_widths();
  const int n = q.num_players();
  const std::vector<int> widths = {2, 3, 4, 8};
  auto gpu = MakeGpuEvaluator(rt, q, s.set(), int64_t{1} << 30, /*full=*/false, widths);
  EXPECT_EQ(gpu->num_steps(), 3 * n);
  for (int bits : widths) {
    ExpectMatchesReference(*gpu, q, s.set(), std::vector<int>(n, bits),
                           "all " + std::to_string(bits) + "-bit");
  }
  ExpectMatchesReference(*gpu, q, s.set(), MixedWidths(n, 5), "mixed widths");

  // The ladder game against the CPU engine's (closed coalitions over 3·n steps).
  engine::LocalEvaluatorOptions lo;
  lo.max_cache_bytes = 0;
  lo.widths = widths;
  auto cpu = engine::LocalEvaluator::Create(q, s.fwd(), s.set(), lo);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  const solver::WidthLadder& ladder = gpu->ladder();
  std::vector<solver::Coalition> coalitions;
  for (const std::vector<int>& bits : {std::vector<int>(n, 8), std::vector<int>(n, 3),
                                       MixedWidths(n, 6)}) {
    auto c = ladder.CoalitionOfBits(bits);
    ASSERT_TRUE(c.ok()) << c.status();
    coalitions.push_back(*c);
  }
  auto want = (*cpu)->Evaluate(coalitions);
  auto got = gpu->Evaluate(coalitions);
  ASSERT_TRUE(want.ok() && got.ok()) << want.status() << " / " << got.status();
  std::vector<std::vector<int>> bits;
  for (const solver::Coalition& c : coalitions) {
    auto b = ladder.BitsOf(c);
    ASSERT_TRUE(b.ok()) << b.status();
    bits.push_back(*std::move(b));
  }
  ExpectGpuNearCpu(s, q, bits, *got, *want);

  // A ladder walk: every sequence cached gives the full evaluations' losses bit for bit.
  std::vector<solver::Coalition> walk =
      solver::WalkCoalitions(solver::LadderPermutationSampler(ladder, 3, false).Get(0));
  auto none = MakeGpuEvaluator(rt, q, s.set(), 0, false, widths);
  auto full_losses = none->Evaluate(walk);
  ASSERT_TRUE(full_losses.ok()) << full_losses.status();
  auto reuse = MakeGpuEvaluator(rt, q, s.set(), int64_t{1} << 30, false, widths);
  auto reuse_losses = reuse->Evaluate(walk);
  ASSERT_TRUE(reuse_losses.ok()) << reuse_losses.status();
  for (size_t k = 0; k < walk.size(); ++k) {
    EXPECT_EQ((*reuse_losses)[k], (*full_losses)[k]) << "step " << k;
  }
  auto st = reuse->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_GT(st->SavedFraction(), 0.3) << st->block_evals_done << " of " << st->block_evals_full;
  // Not closed: player 0's second step without its first.
  solver::Coalition open(static_cast<size_t>(3 * n), 0);
  open[1] = 1;
  EXPECT_EQ(gpu->Evaluate(std::vector<solver::Coalition>{open}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// model_set_linear_rtn_widths (what gpu_bench uses) keeps, at every width, the variants that
// uploading the CPU RtnQuantizer's packed tensors gives: the losses are bit-identical.
TEST(GpuModelTest, RtnWidthsOnTheDeviceEqualTheCpuQuantizersTensors) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel_all_widths();
  const Model& m = s.model();
  const ModelConfig& c = m.config;
  const ImpqGpuApi& api = rt->api();
  ASSERT_NE(api.model_set_linear_rtn_widths, nullptr);
  const std::unique_ptr<const GpuModelDescription> desc = MakeGpuModelDescription(m, c.seq_len);
  ImpqGpuError err{};
  ImpqGpuModel *a = nullptr, *b = nullptr;
  ASSERT_EQ(api.model_create(0, &desc->desc, &a, &err), IMPQ_GPU_OK) << err.message;
  std::unique_ptr<ImpqGpuModel, void (*)(ImpqGpuModel*)> guard_a(a, api.model_destroy);
  ASSERT_EQ(api.model_create(0, &desc->desc, &b, &err), IMPQ_GPU_OK) << err.message;
  std::unique_ptr<ImpqGpuModel, void (*)(ImpqGpuModel*)> guard_b(b, api.model_destroy);
  const unsigned mask = IMPQ_GPU_WIDTH_MASK(2) | IMPQ_GPU_WIDTH_MASK(3) | IMPQ_GPU_WIDTH_MASK(4) |
                        IMPQ_GPU_WIDTH_MASK(8);
  for (int l = 0; l < c.n_layers; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      for (int bits : {2, 3, 4, 8}) {
        const quant::PackedTensor& p = q.Packed(l, kind, bits);
        ASSERT_EQ(api.model_set_linear_packed(a, l, k, bits, p.group_size, p.codes.data(),
                                              p.scales.data(), p.zeros.data(), &err),
                  IMPQ_GPU_OK)
            << err.message;
      }
      ASSERT_EQ(api.model_set_linear_rtn_widths(b, l, k, m.layers[l][kind].data(), q.group_size(),
                                                mask, 0, &err),
                IMPQ_GPU_OK)
          << err.message;
    }
  }
  EXPECT_EQ(api.model_set_linear_rtn_widths(b, 0, 0, m.layers[0][LinearKind::kQ].data(), 64,
                                            IMPQ_GPU_WIDTH_MASK(5), 0, &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("widths_mask = 0x20"));
  std::vector<int32_t> tokens;
  std::vector<int64_t> offsets = {0}, begin;
  for (const auto& seq : s.set().sequences) {
    tokens.insert(tokens.end(), seq.tokens.begin(), seq.tokens.end());
    offsets.push_back(static_cast<int64_t>(tokens.size()));
    begin.push_back(seq.score_begin);
  }
  const auto n_seqs = static_cast<int64_t>(s.set().sequences.size());
  for (ImpqGpuModel* model : {a, b}) {
    ASSERT_EQ(api.model_set_eval(model, tokens.data(), offsets.data(), n_seqs, begin.data(), 0,
                                 &err),
              IMPQ_GPU_OK)
        << err.message;
  }
  const int n = q.num_players();
  for (const std::vector<int>& bits : {std::vector<int>(n, 2), std::vector<int>(n, 3),
                                       std::vector<int>(n, 8), MixedWidths(n, 9)}) {
    const std::vector<uint8_t> v = VariantsOf(q, bits);
    std::vector<double> sa(static_cast<size_t>(n_seqs)), sb(sa.size());
    ASSERT_EQ(api.model_evaluate(a, v.data(), sa.data(), &err), IMPQ_GPU_OK) << err.message;
    ASSERT_EQ(api.model_evaluate(b, v.data(), sb.data(), &err), IMPQ_GPU_OK) << err.message;
    EXPECT_EQ(0, std::memcmp(sa.data(), sb.data(), sa.size() * sizeof(double)));
  }
}

TEST(GpuModelTest, RejectsBadArguments) {
  SKIP_WITHOUT_GPU(rt);
  const Stories& s = Stories::Get();
  const quant::QuantizedModel& q = s.qmodel();
  const ModelConfig& c = s.model().config;
  auto gpu = MakeGpuEvaluator(rt, q, s.set(), int64_t{1} << 30);
  const size_t nv = static_cast<size_t>(c.n_layers) * 7;

  std::vector<uint8_t> v(nv, IMPQ_GPU_VARIANT_4BIT);
  v[9] = 7;
  auto r = gpu->SequenceSumsOfVariants(v);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("variants[9]"));
  v[9] = IMPQ_GPU_VARIANT_FULL;  // never uploaded (upload_full = false)
  r = gpu->SequenceSumsOfVariants(v);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("never set"));
  EXPECT_EQ(gpu->NllOfBits(std::vector<int>(q.num_players(), 16)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(gpu->Evaluate(std::vector<solver::Coalition>{solver::Coalition(3, 0)}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(gpu->device_failed());
  // Still usable after rejected calls.
  EXPECT_TRUE(gpu->NllOfBits(std::vector<int>(q.num_players(), 4)).ok());

  // The plugin's own checks, below the host-side validation.
  const ImpqGpuApi& api = rt->api();
  const std::unique_ptr<const GpuModelDescription> desc =
      MakeGpuModelDescription(s.model(), s.model().config.seq_len);
  const ImpqGpuModelDesc& d = desc->desc;
  ImpqGpuError err{};
  ImpqGpuModel* m = nullptr;
  ImpqGpuModelDesc bad = d;
  bad.n_kv_heads = 5;
  EXPECT_EQ(api.model_create(0, &bad, &m, &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("n_kv_heads"));
  EXPECT_EQ(api.model_create(99, &d, &m, &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("device"));
  ASSERT_EQ(api.model_create(0, &d, &m, &err), IMPQ_GPU_OK) << err.message;
  std::unique_ptr<ImpqGpuModel, void (*)(ImpqGpuModel*)> guard(m, api.model_destroy);

  const quant::PackedTensor& p = q.Packed(0, LinearKind::kQ, 2);
  EXPECT_EQ(api.model_set_linear_packed(m, c.n_layers, 0, 2, 64, p.codes.data(), p.scales.data(),
                                        p.zeros.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("layer"));
  EXPECT_EQ(api.model_set_linear_packed(m, 0, 7, 2, 64, p.codes.data(), p.scales.data(),
                                        p.zeros.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("kind"));
  EXPECT_EQ(api.model_set_linear_packed(m, 0, 0, 5, 64, p.codes.data(), p.scales.data(),
                                        p.zeros.data(), &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("bits = 5; expected 2, 3, 4 or 8"));

  std::vector<uint8_t> all4(nv, IMPQ_GPU_VARIANT_4BIT);
  std::vector<double> sums(2);
  EXPECT_EQ(api.model_evaluate(m, all4.data(), sums.data(), &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("model_set_eval"));

  const std::vector<int32_t> toks = {1, 5, 9, 2, 3, 4, c.vocab_size, 6};
  const std::vector<int64_t> offsets = {0, 3, 8};
  std::vector<int64_t> begin = {0, 0};
  EXPECT_EQ(api.model_set_eval(m, toks.data(), offsets.data(), 2, begin.data(), 0, &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("sequence 1, position 3"));
  const std::vector<int32_t> ok_toks = {1, 5, 9, 2, 3, 4, 5, 6};
  begin = {2, 0};  // sequence 0 has 3 tokens: score_begin must be <= 1
  EXPECT_EQ(api.model_set_eval(m, ok_toks.data(), offsets.data(), 2, begin.data(), 0, &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("score_begin[0]"));
  const std::vector<int64_t> long_offsets = {0, c.seq_len + 1};
  std::vector<int32_t> long_toks(static_cast<size_t>(c.seq_len + 1), 1);
  EXPECT_EQ(api.model_set_eval(m, long_toks.data(), long_offsets.data(), 1, begin.data(), 0, &err),
            IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("seq_len"));
  begin = {0, 0};
  ASSERT_EQ(api.model_set_eval(m, ok_toks.data(), offsets.data(), 2, begin.data(), 0, &err),
            IMPQ_GPU_OK)
      << err.message;
  EXPECT_EQ(api.model_evaluate(m, all4.data(), sums.data(), &err), IMPQ_GPU_EINVAL);
  EXPECT_THAT(err.message, HasSubstr("never set"));
}

}  // namespace
}  // namespace impq::gpu
