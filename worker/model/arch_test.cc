// The architectures beyond Llama-2: Llama-3 (llama3 rope scaling), Qwen-3 (q/k norms) and
// Gemma-2 (scaled embeddings, (1 + w) norms, post-norms, GeGLU, soft-capping, sliding window,
// query_pre_attn_scalar). For each: a tiny random model against the double-precision scalar
// reference, every quirk switched on and off, and the same weights written as safetensors and
// as GGUF.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/rng.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/forward/llama_forward.h"
#include "worker/forward/llama_forward_ref.h"
#include "worker/forward/rope.h"
#include "worker/model/format_writers.h"
#include "worker/model/loader.h"
#include "worker/model/model_reader.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr double kU = 0x1p-24;  // float32 unit roundoff
constexpr uint32_t kGgmlF32 = 0;

class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : path_(TempFilePath(name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& f) const { return path_ + "/" + f; }

 private:
  std::string path_;
};

std::vector<int> RandomTokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.Below(static_cast<uint64_t>(vocab)));
  return t;
}

std::vector<float> FastLogits(const Model& m, const std::vector<int>& tokens) {
  forward::LlamaForward fwd(m);
  forward::Workspace ws;
  return fwd.AllLogits(tokens, forward::WeightSet::FromModel(m), ws, nullptr);
}

// forward_test.cc's derived bound (Higham γ_K per K-long float32 reduction, Σ|ab| bounded by
// the largest logit), with the sequential reductions of the longest block: norm, q/k/v, q/k
// norms, scores, softmax, att·v, o, post-norm, norm, gate/up, down, post-norm = 13 per block,
// plus the embedding scale, the final norm and the head. The soft-caps and the GELU have
// derivatives of at most ~1.13 and do not grow errors beyond that.
double LogitTolerance(const ModelConfig& c, int64_t T, const std::vector<double>& ref) {
  return forward::LogitErrorBound(c, T, ref, 13.0 * c.n_layers + 3);
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}
double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]));
  return worst;
}
bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) == 0;
}

// The fast path agrees with the reference within the derived bound; returns the reference.
std::vector<double> ExpectMatchesReference(const Model& m, const std::vector<int>& tokens,
                                           const std::string& what) {
  EXPECT_TRUE(m.Validate().ok()) << what << ": " << m.Validate();
  const auto fast = FastLogits(m, tokens);
  const auto ref = forward::LlamaForwardRef(m, tokens);
  const double tol = LogitTolerance(m.config, static_cast<int64_t>(tokens.size()), ref);
  EXPECT_LE(MaxAbsDiff(fast, ref), tol) << what << " (" << m.config.ToString() << ")";
  return ref;
}

Tensor Scaled(const Tensor& t, float f) {
  std::vector<float> v(t.values().begin(), t.values().end());
  for (float& x : v) x *= f;
  return Tensor::Owned(t.name(), t.shape(), std::move(v));
}

// MakeRandomModel with larger q/k projections and embeddings, so that attention is peaked
// (scores of order 1, not 0.01) and logits of order 1: a quirk that changes which positions
// attend, or the logits' scale, then changes the output far beyond rounding.
Model SharpRandomModel(const ModelConfig& c, uint64_t seed) {
  Model m = MakeRandomModel(c, seed);
  for (auto& lw : m.layers) {
    for (LinearKind k : {LinearKind::kQ, LinearKind::kK}) {
      lw.linear[static_cast<int>(k)] = Scaled(lw[k], 8.0f);
    }
  }
  m.embedding = Scaled(m.embedding, 5.0f);
  m.output = c.tied_embeddings ? m.embedding.WithName("output") : Scaled(m.output, 5.0f);
  return m;
}

ModelConfig BaseConfig(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
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

// ---------------------------------------------------------------- Llama-3

ModelConfig Llama3Config(bool tied) {
  ModelConfig c = BaseConfig("llama");
  c.rope_theta = 10000.0f;
  c.tied_embeddings = tied;
  // Wavelengths 2π·10000^(i/8): 6.3 (< 32/4: kept), 19.9 (between: interpolated), 62.8 and
  // up (> 32/1: divided by 8). Every branch of the rule is used.
  c.rope_scaling = {8.0f, 1.0f, 4.0f, 32};
  return c;
}

TEST(Llama3Test, RopeFrequenciesFollowTheLlama3Rule) {
  const ModelConfig c = Llama3Config(true);
  ModelConfig plain = c;
  plain.rope_scaling = {};
  const auto f = forward::RopeInvFrequencies(c), f0 = forward::RopeInvFrequencies(plain);
  ASSERT_EQ(f.size(), 8u);
  EXPECT_EQ(f[0], f0[0]);                       // high frequency: kept
  for (int i = 2; i < 8; ++i) EXPECT_DOUBLE_EQ(f[i], f0[i] / 8) << i;  // low: slowed 8×
  // Medium band, by hand: λ = 2π·10000^(1/8), s = (32/λ - 1)/(4 - 1), f·((1 - s)/8 + s).
  const double lambda = 2 * M_PI * std::pow(10000.0, 1.0 / 8);
  const double s = (32 / lambda - 1) / 3;
  EXPECT_NEAR(f[1], f0[1] * ((1 - s) / 8 + s), 1e-15);
  EXPECT_GT(s, 0);
  EXPECT_LT(s, 1);
  // GGUF's divisors give the same frequencies up to their float32 rounding.
  ModelConfig gguf = plain;
  gguf.rope_freq_factors = testing::Llama3RopeFreqFactors(c);
  const auto fg = forward::RopeInvFrequencies(gguf);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(fg[i], f[i], f[i] * 2 * kU) << i;
}

TEST(Llama3Test, MatchesReferenceAndScalingChangesTheOutput) {
  const auto tokens = RandomTokens(60, 70, 1);
  for (bool tied : {true, false}) {
    const Model m = SharpRandomModel(Llama3Config(tied), tied ? 21 : 22);
    const auto ref = ExpectMatchesReference(m, tokens, "llama3");
    const double tol = LogitTolerance(m.config, 60, ref);
    // Off: different. factor 1 is the identity rule: the same function.
    Model off = m;
    off.config.rope_scaling = {};
    const auto ref_off = ExpectMatchesReference(off, tokens, "llama3 off");
    EXPECT_GT(MaxAbsDiff(ref, ref_off), 10 * tol);
    Model one = m;
    one.config.rope_scaling.factor = 1.0f;
    EXPECT_LE(MaxAbsDiff(FastLogits(one, tokens), ref_off), tol);
  }
}

TEST(Llama3Test, SafetensorsAndGgufGiveTheSameModel) {
  ScratchDir dir("arch_llama3");
  const auto tokens = RandomTokens(50, 70, 2);
  for (bool tied : {true, false}) {
    const Model m = SharpRandomModel(Llama3Config(tied), tied ? 23 : 24);  // interleaved
    const std::string hf = dir / absl::StrCat("hf", tied), gg = dir / absl::StrCat(tied, ".gguf");
    ASSERT_TRUE(testing::WriteHfModel(m, hf, "F32").ok());
    ASSERT_TRUE(testing::WriteGgufModel(m, gg, kGgmlF32).ok());
    auto h = LoadModel(hf);
    auto g = LoadModel(gg);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(h->config.rope_scaling.factor, 8.0f);
    EXPECT_EQ(h->config.rope_scaling.original_max_position, 32);
    EXPECT_EQ(h->config.tied_embeddings, tied);
    EXPECT_EQ(g->config.tied_embeddings, tied);
    EXPECT_EQ(g->config.rope_freq_factors, testing::Llama3RopeFreqFactors(m.config));
    const auto ref = ExpectMatchesReference(m, tokens, "written");
    ExpectMatchesReference(*h, tokens, "safetensors");
    ExpectMatchesReference(*g, tokens, "gguf");
    // Each within the bound of the (same-function) reference of the written model.
    const double tol = LogitTolerance(m.config, 50, ref);
    EXPECT_LE(MaxAbsDiff(FastLogits(*h, tokens), ref), tol);
    EXPECT_LE(MaxAbsDiff(FastLogits(*g, tokens), ref), tol);
  }
}

TEST(Llama3Test, ConfigErrors) {
  ScratchDir dir("arch_llama3_cfg");
  const Model m = SharpRandomModel(Llama3Config(true), 25);
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "m", "F32").ok());
  const std::string path = dir / "m/config.json";
  const auto config = nlohmann::json::parse(*ReadFileToString(path));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    edit(c);
    EXPECT_TRUE(WriteFileAtomically(path, c.dump()).ok());
    auto r = LoadModel(dir / "m");
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  EXPECT_EQ(with([](nlohmann::json&) {}), "OK");
  EXPECT_THAT(with([](nlohmann::json& c) { c["rope_scaling"]["high_freq_factor"] = 0.5; }),
              HasSubstr("must exceed low_freq_factor"));
  EXPECT_THAT(with([](nlohmann::json& c) { c["rope_scaling"]["factor"] = -1; }),
              HasSubstr("\"factor\" = -1"));
  EXPECT_EQ(with([](nlohmann::json& c) { c["rope_scaling"] = {{"rope_type", "default"}}; }), "OK");
}

// ---------------------------------------------------------------- Qwen-3

ModelConfig Qwen3Config(bool tied) {
  ModelConfig c = BaseConfig("qwen3");
  c.head_dim = 12;  // q_dim 72 != dim 48
  c.rope_style = RopeStyle::kHalf;
  c.rope_theta = 1000000.0f;
  c.qk_norm = true;
  c.tied_embeddings = tied;
  return c;
}

TEST(Qwen3Test, MatchesReferenceAndQkNormMatters) {
  const auto tokens = RandomTokens(70, 70, 3);
  const Model m = SharpRandomModel(Qwen3Config(false), 31);
  EXPECT_EQ(m.layers[0].q_norm.shape(), std::vector<int64_t>{12});
  const auto ref = ExpectMatchesReference(m, tokens, "qwen3");
  const double tol = LogitTolerance(m.config, 70, ref);
  // Off: a different function.
  Model off = m;
  off.config.qk_norm = false;
  for (auto& lw : off.layers) lw.q_norm = lw.k_norm = Tensor();
  EXPECT_GT(MaxAbsDiff(ref, ExpectMatchesReference(off, tokens, "qk_norm off")), 10 * tol);
  // On, q and k are normalized per head: scaling Wq and Wk by 4 changes nothing (beyond eps).
  Model scaled = m;
  for (auto& lw : scaled.layers) {
    for (LinearKind k : {LinearKind::kQ, LinearKind::kK}) {
      lw.linear[static_cast<int>(k)] = Scaled(lw[k], 4.0f);
    }
  }
  EXPECT_LE(MaxAbsDiff(FastLogits(scaled, tokens), ref), 10 * tol);
}

TEST(Qwen3Test, SafetensorsAndGgufGiveBitIdenticalLogits) {
  ScratchDir dir("arch_qwen3");
  const auto tokens = RandomTokens(40, 70, 4);
  for (bool tied : {true, false}) {
    const Model m = SharpRandomModel(Qwen3Config(tied), tied ? 32 : 33);
    const std::string hf = dir / absl::StrCat("hf", tied), gg = dir / absl::StrCat(tied, ".gguf");
    ASSERT_TRUE(testing::WriteHfModel(m, hf, "F32").ok());
    ASSERT_TRUE(testing::WriteGgufModel(m, gg, kGgmlF32).ok());
    auto h = LoadModel(hf);
    auto g = LoadModel(gg);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(h->config.ToString(), m.config.ToString());
    EXPECT_EQ(g->config.ToString(), m.config.ToString());
    EXPECT_EQ(h->config.rope_style, RopeStyle::kHalf);
    EXPECT_EQ(g->config.rope_style, RopeStyle::kHalf);
    const auto want = FastLogits(m, tokens);
    EXPECT_TRUE(SameBits(want, FastLogits(*h, tokens)));
    EXPECT_TRUE(SameBits(want, FastLogits(*g, tokens)));
    ExpectMatchesReference(*g, tokens, "qwen3 gguf");
  }
}

TEST(Qwen3Test, ConfigDefaultsAndErrors) {
  ScratchDir dir("arch_qwen3_cfg");
  const Model m = SharpRandomModel(Qwen3Config(true), 34);
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "m", "F32").ok());
  const std::string path = dir / "m/config.json";
  const auto config = nlohmann::json::parse(*ReadFileToString(path));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    edit(c);
    EXPECT_TRUE(WriteFileAtomically(path, c.dump()).ok());
    auto r = LoadModel(dir / "m");
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  EXPECT_EQ(with([](nlohmann::json&) {}), "OK");
  // Qwen3Config's head_dim default is 128, not hidden/heads: the q_proj shape then disagrees.
  EXPECT_THAT(with([](nlohmann::json& c) { c.erase("head_dim"); }),
              HasSubstr("expected [128]"));
  EXPECT_THAT(with([](nlohmann::json& c) { c["use_sliding_window"] = true; }),
              HasSubstr("use_sliding_window"));
  EXPECT_THAT(with([](nlohmann::json& c) { c["attention_bias"] = true; }),
              HasSubstr("attention_bias"));
  EXPECT_THAT(with([](nlohmann::json& c) { c["rope_scaling"] = {{"rope_type", "yarn"}}; }),
              HasSubstr("\"yarn\""));
}

// ---------------------------------------------------------------- Gemma-2

ModelConfig Gemma2Config() {
  ModelConfig c = BaseConfig("gemma2");
  c.rope_style = RopeStyle::kHalf;
  c.tied_embeddings = true;
  c.norm_weight_offset = 1.0f;
  c.post_norms = true;
  c.scale_embeddings = true;
  c.ffn_activation = FfnActivation::kGeluTanh;
  // Caps small enough to bite on SharpRandomModel's values (scores and logits of order 1).
  c.attn_logit_softcap = 1.0f;
  c.final_logit_softcap = 0.5f;
  c.sliding_window = 5;
  c.query_pre_attn_scalar = 20.0f;
  return c;
}

TEST(Gemma2Test, MatchesReferenceWithEveryQuirkOnAndEachSwitchedOff) {
  const auto tokens = RandomTokens(40, 70, 5);
  const Model m = SharpRandomModel(Gemma2Config(), 41);
  const auto ref = ExpectMatchesReference(m, tokens, "gemma2");
  const double tol = LogitTolerance(m.config, 40, ref);
  // The final soft-cap bounds every logit.
  for (double x : ref) EXPECT_LT(std::abs(x), 0.5);
  struct Off {
    const char* what;
    std::function<void(Model&)> edit;
  };
  const Off offs[] = {
      {"scale_embeddings", [](Model& x) { x.config.scale_embeddings = false; }},
      {"norm offset", [](Model& x) { x.config.norm_weight_offset = 0; }},
      {"post norms",
       [](Model& x) {
         x.config.post_norms = false;
         for (auto& lw : x.layers) lw.post_attn_norm = lw.post_ffn_norm = Tensor();
       }},
      {"geglu", [](Model& x) { x.config.ffn_activation = FfnActivation::kSilu; }},
      {"attn softcap", [](Model& x) { x.config.attn_logit_softcap = 0; }},
      {"final softcap", [](Model& x) { x.config.final_logit_softcap = 0; }},
      {"sliding window", [](Model& x) { x.config.sliding_window = 0; }},
      {"query_pre_attn_scalar", [](Model& x) { x.config.query_pre_attn_scalar = 0; }},
  };
  for (const Off& o : offs) {
    Model x = m;
    o.edit(x);
    const auto ref_off = ExpectMatchesReference(x, tokens, o.what);
    EXPECT_GT(MaxAbsDiff(ref, ref_off), 10 * tol) << o.what << " switched off changes nothing";
  }
}

TEST(Gemma2Test, QuirksReduceToTheirNeutralSettings) {
  const auto tokens = RandomTokens(40, 70, 6);
  const Model m = SharpRandomModel(Gemma2Config(), 42);
  auto variant = [&](const std::function<void(ModelConfig&)>& edit) {
    Model x = m;
    edit(x.config);
    return FastLogits(x, tokens);
  };
  const auto ref = forward::LlamaForwardRef(m, tokens);
  const double tol = LogitTolerance(m.config, 40, ref);
  // Soft-capping off == a huge cap (cap·tanh(x/cap) = x·(1 - x²/(3cap²) ...): within the bound.
  {
    const auto off = variant([](ModelConfig& c) { c.attn_logit_softcap = c.final_logit_softcap = 0; });
    const auto huge = variant([](ModelConfig& c) { c.attn_logit_softcap = c.final_logit_softcap = 1e6f; });
    double worst = 0;
    for (size_t i = 0; i < off.size(); ++i) worst = std::max(worst, double(std::abs(off[i] - huge[i])));
    EXPECT_LE(worst, tol);
  }
  // A window of at least T positions == no window: bit for bit.
  EXPECT_TRUE(SameBits(variant([](ModelConfig& c) { c.sliding_window = 40; }),
                       variant([](ModelConfig& c) { c.sliding_window = 0; })));
  EXPECT_TRUE(SameBits(variant([](ModelConfig& c) { c.sliding_window = 1000; }),
                       variant([](ModelConfig& c) { c.sliding_window = 0; })));
  EXPECT_FALSE(SameBits(variant([](ModelConfig& c) { c.sliding_window = 39; }),
                        variant([](ModelConfig& c) { c.sliding_window = 0; })));
  // query_pre_attn_scalar = head_dim == the default scale: bit for bit.
  EXPECT_TRUE(SameBits(variant([](ModelConfig& c) { c.query_pre_attn_scalar = 16; }),
                       variant([](ModelConfig& c) { c.query_pre_attn_scalar = 0; })));
  // (1 + w) with offset 1 == weights 1 + w with offset 0: bit for bit (as GGUF stores them).
  Model folded = m;
  folded.config.norm_weight_offset = 0;
  auto fold = [](Tensor& t) {
    std::vector<float> v(t.values().begin(), t.values().end());
    for (float& x : v) x = 1.0f + x;
    t = Tensor::Owned(t.name(), t.shape(), std::move(v));
  };
  for (auto& lw : folded.layers) {
    for (Tensor* t : {&lw.attn_norm, &lw.ffn_norm, &lw.post_attn_norm, &lw.post_ffn_norm}) fold(*t);
  }
  fold(folded.final_norm);
  EXPECT_TRUE(SameBits(FastLogits(m, tokens), FastLogits(folded, tokens)));
}

TEST(Gemma2Test, SlidingWindowOnlyOnEvenLayers) {
  // One layer (even): a window of 1 makes every position see only itself, so the logits of a
  // position do not depend on earlier tokens.
  ModelConfig c = Gemma2Config();
  c.n_layers = 1;
  c.sliding_window = 1;
  const Model m = MakeRandomModel(c, 43);
  const std::vector<int> a = {5, 9, 13, 7}, b = {6, 2, 13, 7};
  const auto la = forward::LlamaForwardRef(m, a), lb = forward::LlamaForwardRef(m, b);
  const auto fa = FastLogits(m, a), fb = FastLogits(m, b);
  for (int j = 0; j < 70; ++j) {
    EXPECT_DOUBLE_EQ(la[2 * 70 + j], lb[2 * 70 + j]);
    EXPECT_EQ(fa[2 * 70 + j], fb[2 * 70 + j]);
  }
  // Two layers: the odd one attends globally, so earlier tokens matter again.
  c.n_layers = 2;
  const Model m2 = MakeRandomModel(c, 44);
  const auto ra = forward::LlamaForwardRef(m2, a), rb = forward::LlamaForwardRef(m2, b);
  double worst = 0;
  for (int j = 0; j < 70; ++j) worst = std::max(worst, std::abs(ra[2 * 70 + j] - rb[2 * 70 + j]));
  EXPECT_GT(worst, 1e-6);
  EXPECT_TRUE(c.LayerUsesSlidingWindow(0));
  EXPECT_FALSE(c.LayerUsesSlidingWindow(1));
  EXPECT_TRUE(c.LayerUsesSlidingWindow(2));
}

TEST(Gemma2Test, SafetensorsAndGgufGiveBitIdenticalLogits) {
  ScratchDir dir("arch_gemma2");
  ModelConfig c = Gemma2Config();
  c.query_pre_attn_scalar = 0;  // GGUF carries none: llama.cpp uses head_dim (but for 27B)
  const Model m = SharpRandomModel(c, 45);
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "hf", "F32").ok());
  ASSERT_TRUE(testing::WriteGgufModel(m, dir / "m.gguf", kGgmlF32).ok());
  auto h = LoadModel(dir / "hf");
  auto g = LoadModel(dir / "m.gguf");
  ASSERT_TRUE(h.ok()) << h.status();
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(h->config.norm_weight_offset, 1.0f);
  EXPECT_EQ(g->config.norm_weight_offset, 0.0f);
  EXPECT_EQ(h->config.attn_logit_softcap, c.attn_logit_softcap);
  EXPECT_EQ(g->config.final_logit_softcap, c.final_logit_softcap);
  EXPECT_EQ(g->config.sliding_window, 5);
  EXPECT_EQ(h->config.query_pre_attn_scalar, 16.0f);
  const auto tokens = RandomTokens(40, 70, 7);
  const auto want = FastLogits(m, tokens);
  EXPECT_TRUE(SameBits(want, FastLogits(*h, tokens)));
  EXPECT_TRUE(SameBits(want, FastLogits(*g, tokens)));
  ExpectMatchesReference(*h, tokens, "gemma2 safetensors");
  ExpectMatchesReference(*g, tokens, "gemma2 gguf");
}

TEST(Gemma2Test, ConfigDefaultsAndErrors) {
  ScratchDir dir("arch_gemma2_cfg");
  const Model m = SharpRandomModel(Gemma2Config(), 46);
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "m", "F32").ok());
  const std::string path = dir / "m/config.json";
  const auto config = nlohmann::json::parse(*ReadFileToString(path));
  auto load = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    edit(c);
    EXPECT_TRUE(WriteFileAtomically(path, c.dump()).ok());
    return LoadModel(dir / "m");
  };
  {
    auto r = load([](nlohmann::json& c) {
      c.erase("attn_logit_softcapping");
      c.erase("final_logit_softcapping");
      c.erase("sliding_window");
      c.erase("query_pre_attn_scalar");
    });
    ASSERT_TRUE(r.ok()) << r.status();  // Gemma2Config's defaults
    EXPECT_EQ(r->config.attn_logit_softcap, 50.0f);
    EXPECT_EQ(r->config.final_logit_softcap, 30.0f);
    EXPECT_EQ(r->config.sliding_window, 4096);
    EXPECT_EQ(r->config.query_pre_attn_scalar, 256.0f);
  }
  {
    auto r = load([](nlohmann::json& c) {
      c["attn_logit_softcapping"] = nullptr;
      c["final_logit_softcapping"] = nullptr;
    });
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->config.attn_logit_softcap, 0.0f);
    EXPECT_EQ(r->config.final_logit_softcap, 0.0f);
  }
  EXPECT_THAT(std::string(load([](nlohmann::json& c) { c["hidden_activation"] = "relu"; })
                              .status().message()),
              HasSubstr("hidden_activation \"relu\""));
  EXPECT_THAT(std::string(load([](nlohmann::json& c) { c["query_pre_attn_scalar"] = 0; })
                              .status().message()),
              HasSubstr("query_pre_attn_scalar"));
}

// ---------------------------------------------------------------- reference files

// ../shared/data/reference/ may hold logits of small models from an independent
// implementation: <name>/ (a model directory or .gguf) with <name>.tokens.json ([ids]) and
// <name>.logits.f32 (T·V float32). Skips cleanly when the directory is absent.
TEST(ReferenceFilesTest, LogitsMatchWhenPresent) {
  const std::string dir = SharedDataPath("reference");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) GTEST_SKIP() << dir << " does not exist";
  int compared = 0;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string p = e.path().string();
    if (!absl::EndsWith(p, ".tokens.json")) continue;
    const std::string stem = p.substr(0, p.size() - std::string(".tokens.json").size());
    std::string model_path = fs::exists(stem + ".gguf") ? stem + ".gguf" : stem;
    if (!fs::exists(model_path) || !fs::exists(stem + ".logits.f32")) continue;
    auto m = LoadModel(model_path);
    ASSERT_TRUE(m.ok()) << m.status();
    const auto tokens = nlohmann::json::parse(*ReadFileToString(p)).get<std::vector<int>>();
    auto bytes = ReadFileToString(stem + ".logits.f32");
    ASSERT_TRUE(bytes.ok());
    const size_t n = tokens.size() * m->config.vocab_size;
    ASSERT_EQ(bytes->size(), n * 4) << stem;
    std::vector<float> want(n);
    std::memcpy(want.data(), bytes->data(), n * 4);
    const auto got = FastLogits(*m, tokens);
    // An independent float32 implementation: compare relative to the logit scale, with the
    // same derived bound doubled (both sides err).
    std::vector<double> wd(want.begin(), want.end());
    EXPECT_LE(MaxAbsDiff(got, wd), 2 * LogitTolerance(m->config, tokens.size(), wd)) << stem;
    ++compared;
  }
  RecordProperty("compared", compared);
}

}  // namespace
}  // namespace impq::model
