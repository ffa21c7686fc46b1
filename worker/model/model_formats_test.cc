// Real model formats: the shared stories260K in its four forms, random models written in both
// formats, sharding, tokenizers, and corrupt files.
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/rng.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/eval/eval_set.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/llama_forward_ref.h"
#include "worker/model/format_writers.h"
#include "worker/model/gguf_file.h"
#include "worker/model/gguf_tokenizer.h"
#include "worker/model/half.h"
#include "worker/model/llama2c_tokenizer.h"
#include "worker/model/loader.h"
#include "worker/model/model_reader.h"
#include "worker/model/safetensors_file.h"
#include "worker/model/sentencepiece_tokenizer.h"
#include "worker/model/tokenizer.h"

namespace impq::model {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::BuildSafetensors;
using testing::EncodeFloats;
using testing::GgufBuilder;
using testing::SafetensorsBytes;
using testing::StTensor;

constexpr double kU = 0x1p-24;    // float32 unit roundoff
constexpr double kRefPpl = 3.7421;  // shared/data/README.md, document mode

// A fresh scratch directory, removed at the end of the test.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& name) : path_(TempFilePath(name)) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& f) const { return path_ + "/" + f; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<float> Logits(const Model& m, const std::vector<int>& tokens) {
  forward::LlamaForward fwd(m);
  forward::Workspace ws;
  return fwd.AllLogits(tokens, forward::WeightSet::FromModel(m), ws, nullptr);
}

// Interleaved and rotate_half layouts compute the same function; in float32 they differ only
// in the order q·k sums over a head and what follows from it. Each float32 run is within the
// forward pass's derived bound of the double reference (forward_test.cc's LogitTolerance: a
// K-long float32 reduction errs by at most K·u·Σ|ab| (Higham γ_K), 10 sequential reductions
// per block plus the head, Σ|ab| bounded by the largest logit), so two runs differ by at most
// twice that bound.
double TwoRunTolerance(const ModelConfig& c, int64_t T, const std::vector<double>& ref) {
  return 2 * forward::LogitErrorBound(c, T, ref, 10.0 * c.n_layers + 2);
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * a.numel()) == 0;
}

// Q/K of an HF model, permuted back to the interleaved layout, equal `want` bit for bit.
void ExpectSameWeights(const Model& interleaved, const Model& hf, bool bf16_rounded) {
  const ModelConfig& c = interleaved.config;
  auto expect = [&](const Tensor& want, std::vector<float> got_values, const std::string& what) {
    std::vector<float> w(want.values().begin(), want.values().end());
    if (bf16_rounded) {
      for (float& x : w) x = Bf16ToFloat(testing::FloatToBf16(x));
    }
    ASSERT_EQ(w.size(), got_values.size()) << what;
    EXPECT_EQ(0, std::memcmp(w.data(), got_values.data(), sizeof(float) * w.size())) << what;
  };
  auto vals = [](const Tensor& t) { return std::vector<float>(t.values().begin(), t.values().end()); };
  expect(interleaved.embedding, vals(hf.embedding), "embedding");
  expect(interleaved.final_norm, vals(hf.final_norm), "final_norm");
  expect(interleaved.output, vals(hf.output), "output");
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& a = interleaved.layers[l];
    const LayerWeights& b = hf.layers[l];
    expect(a.attn_norm, vals(b.attn_norm), "attn_norm");
    expect(a.ffn_norm, vals(b.ffn_norm), "ffn_norm");
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      std::vector<float> want(a.linear[k].values().begin(), a.linear[k].values().end());
      if (kind == LinearKind::kQ) want = testing::PermuteToHalf(want, c.n_heads, c.head_dim, c.dim);
      if (kind == LinearKind::kK) want = testing::PermuteToHalf(want, c.n_kv_heads, c.head_dim, c.dim);
      Tensor wt = Tensor::Owned("w", a.linear[k].shape(), std::move(want));
      expect(wt, vals(b.linear[k]), absl::StrCat("layer ", l, " ", LinearKindName(kind)));
    }
  }
}

struct PplResult {
  double ppl = 0;
  int64_t tokens = 0;
};

PplResult DocumentPpl(const LoadedModel& lm) {
  auto text = ReadFileToString(SharedDataPath("tinystories_v2_valid_100.txt"));
  EXPECT_TRUE(text.ok()) << text.status();
  const int64_t ctx = lm.model.config.seq_len;
  auto set = eval::BuildEvalSet(*lm.tokenizer, *text, eval::EvalMode::kDocument, ctx, ctx,
                                "tinystories_v2_valid_100.txt");
  EXPECT_TRUE(set.ok()) << set.status();
  if (!set.ok()) return {};
  forward::LlamaForward fwd(lm.model);
  eval::Evaluator evaluator(fwd, 2);
  auto r = evaluator.Nll(forward::WeightSet::FromModel(lm.model), *set);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? PplResult{r->ppl, r->tokens} : PplResult{};
}

LoadedModel MustLoad(const std::string& model, const std::string& tokenizer = "") {
  auto lm = LoadModelAndTokenizer(model, tokenizer);
  EXPECT_TRUE(lm.ok()) << lm.status();
  return lm.ok() ? std::move(*lm) : LoadedModel{};
}

const std::vector<int> kPrompt = {1, 403, 407, 261, 378, 267, 360, 284, 261, 471, 259, 292};

// ---------------------------------------------------------------- shared stories260K

TEST(SharedStories260KTest, AllFourFormsGiveTheReferencePerplexity) {
  struct Form {
    const char* name;
    std::string model, tokenizer;
    double rel_tol;
  };
  const Form forms[] = {
      {"llama2c", SharedDataPath("stories260K.bin"), SharedDataPath("tok512.bin"), 0.005},
      {"gguf", SharedDataPath("stories260K.gguf"), "", 0.005},
      {"safetensors-f32", SharedDataPath("stories260K-hf"), "", 0.005},
      {"safetensors-bf16", SharedDataPath("stories260K-hf-bf16"), "", 0.01},
  };
  for (const Form& f : forms) {
    LoadedModel lm = MustLoad(f.model, f.tokenizer);
    if (lm.tokenizer == nullptr) continue;
    const PplResult r = DocumentPpl(lm);
    ::testing::Test::RecordProperty(absl::StrCat("ppl_", f.name), absl::StrCat(r.ppl));
    ::testing::Test::RecordProperty(absl::StrCat("tokens_", f.name), absl::StrCat(r.tokens));
    std::printf("  %-17s PPL %.5f over %lld scored tokens (tokenizer %s)\n", f.name, r.ppl,
                static_cast<long long>(r.tokens), lm.tokenizer_path.c_str());
    EXPECT_NEAR(r.ppl, kRefPpl, kRefPpl * f.rel_tol) << f.name;
  }
}

TEST(SharedStories260KTest, GgufWeightsAndLogitsEqualTheLlama2cCheckpointBitForBit) {
  auto bin = LoadModel(SharedDataPath("stories260K.bin"));
  auto gguf = LoadModel(SharedDataPath("stories260K.gguf"));
  ASSERT_TRUE(bin.ok()) << bin.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ(bin->config.ToString(), gguf->config.ToString());
  EXPECT_TRUE(gguf->config.tied_embeddings) << "output.weight duplicates token_embd.weight";
  EXPECT_EQ(gguf->config.rope_style, RopeStyle::kInterleaved);
  EXPECT_TRUE(SameBits(bin->embedding, gguf->embedding));
  for (int l = 0; l < bin->config.n_layers; ++l) {
    for (int k = 0; k < kNumLinear; ++k) {
      EXPECT_TRUE(SameBits(bin->layers[l].linear[k], gguf->layers[l].linear[k])) << l << " " << k;
    }
  }
  const auto a = Logits(*bin, kPrompt), b = Logits(*gguf, kPrompt);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size()));
}

TEST(SharedStories260KTest, SafetensorsWeightsArePermutedAndLogitsMatchWithinDerivedBound) {
  auto bin = LoadModel(SharedDataPath("stories260K.bin"));
  auto hf = LoadModel(SharedDataPath("stories260K-hf"));
  auto hf_file = LoadModel(SharedDataPath("stories260K-hf/model.safetensors"));
  auto bf16 = LoadModel(SharedDataPath("stories260K-hf-bf16"));
  ASSERT_TRUE(bin.ok()) << bin.status();
  ASSERT_TRUE(hf.ok()) << hf.status();
  ASSERT_TRUE(hf_file.ok()) << hf_file.status();
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_EQ(hf->config.rope_style, RopeStyle::kHalf);
  EXPECT_TRUE(hf->config.tied_embeddings);
  EXPECT_EQ(hf->config.seq_len, 512);
  ExpectSameWeights(*bin, *hf, /*bf16_rounded=*/false);
  ExpectSameWeights(*bin, *bf16, /*bf16_rounded=*/true);

  const auto a = Logits(*bin, kPrompt), b = Logits(*hf, kPrompt), f = Logits(*hf_file, kPrompt);
  EXPECT_EQ(0, std::memcmp(b.data(), f.data(), sizeof(float) * b.size()));
  const auto ref = forward::LlamaForwardRef(*bin, kPrompt);
  const auto ref_hf = forward::LlamaForwardRef(*hf, kPrompt);
  const double tol = TwoRunTolerance(bin->config, static_cast<int64_t>(kPrompt.size()), ref);
  double worst = 0, worst_ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::abs(a[i] - b[i])));
    worst_ref = std::max(worst_ref, std::abs(ref[i] - ref_hf[i]));
  }
  std::printf("  max |bin - hf| logit difference %.3g (bound %.3g); double references %.3g\n",
              worst, tol, worst_ref);
  EXPECT_LE(worst, tol);
  // In double precision the two layouts agree to rounding of doubles (README: 2e-14).
  EXPECT_LE(worst_ref, 1e-9);
}

// ---------------------------------------------------------------- random models

ModelConfig TinyConfig(bool tied) {
  ModelConfig c;
  c.dim = 48;
  c.hidden_dim = 100;
  c.n_layers = 2;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 70;
  c.seq_len = 64;
  c.norm_eps = 1e-6f;
  c.rope_theta = 500000.0f;
  c.tied_embeddings = tied;
  return c;
}

std::vector<int> RandomTokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.Below(static_cast<uint64_t>(vocab)));
  return t;
}

TEST(RandomModelFormatsTest, GgufAndSafetensorsOfTheSameWeightsGiveTheSameLogits) {
  ScratchDir dir("formats_random");
  for (bool tied : {true, false}) {
    const Model m = MakeRandomModel(TinyConfig(tied), tied ? 7 : 8);
    const std::string gguf_path = dir / (tied ? "tied.gguf" : "untied.gguf");
    const std::string hf_dir = dir / (tied ? "hf_tied" : "hf_untied");
    ASSERT_TRUE(testing::WriteGgufModel(m, gguf_path, kGgmlF32).ok());
    ASSERT_TRUE(testing::WriteHfModel(m, hf_dir, "F32").ok());
    auto g = LoadModel(gguf_path);
    auto h = LoadModel(hf_dir);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(g->config.ToString(), m.config.ToString());
    EXPECT_EQ(h->config.ToString(), m.config.ToString());
    EXPECT_EQ(g->config.norm_eps, m.config.norm_eps);
    EXPECT_EQ(h->config.rope_theta, m.config.rope_theta);
    ExpectSameWeights(m, *h, false);

    const auto tokens = RandomTokens(40, m.config.vocab_size, 3);
    const auto want = Logits(m, tokens), got_g = Logits(*g, tokens), got_h = Logits(*h, tokens);
    // GGUF keeps the interleaved layout: bit for bit.
    EXPECT_EQ(0, std::memcmp(want.data(), got_g.data(), sizeof(float) * want.size()));
    const auto ref = forward::LlamaForwardRef(m, tokens);
    const double tol = TwoRunTolerance(m.config, 40, ref);
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::abs(got_g[i] - got_h[i])));
    }
    EXPECT_LE(worst, tol) << "tied=" << tied;
  }
}

TEST(RandomModelFormatsTest, HalfPrecisionTensorsConvertExactly) {
  ScratchDir dir("formats_half");
  const Model m = MakeRandomModel(TinyConfig(false), 9);
  for (const char* dtype : {"F16", "BF16"}) {
    const bool bf16 = std::string(dtype) == "BF16";
    const std::string gguf_path = dir / absl::StrCat(dtype, ".gguf");
    ASSERT_TRUE(testing::WriteGgufModel(m, gguf_path, bf16 ? kGgmlBF16 : kGgmlF16).ok());
    ASSERT_TRUE(testing::WriteHfModel(m, dir / dtype, dtype).ok());
    auto g = LoadModel(gguf_path);
    auto h = LoadModel(dir / dtype);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_TRUE(h.ok()) << h.status();
    auto round = [&](float x) {
      return bf16 ? Bf16ToFloat(testing::FloatToBf16(x)) : F16ToFloat(testing::FloatToF16(x));
    };
    for (int k = 0; k < kNumLinear; ++k) {
      const Tensor& src = m.layers[1].linear[k];
      const Tensor& got = g->layers[1].linear[k];
      for (int64_t i = 0; i < src.numel(); ++i) {
        ASSERT_EQ(round(src.data()[i]), got.data()[i]) << dtype << " kind " << k << " at " << i;
      }
    }
    // Same rounded weights in both formats: the GGUF and HF models agree as the F32 ones do.
    const auto tokens = RandomTokens(20, m.config.vocab_size, 4);
    const auto a = Logits(*g, tokens), b = Logits(*h, tokens);
    const double tol = TwoRunTolerance(m.config, 20, forward::LlamaForwardRef(*g, tokens));
    for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << dtype;
  }
  // Edge values of the F16 decoder: subnormals, the largest normal, infinities, signed zero.
  EXPECT_EQ(F16ToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToFloat(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(F16ToFloat(0x7bff), 65504.0f);
  EXPECT_TRUE(std::isinf(F16ToFloat(0xfc00)) && F16ToFloat(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(F16ToFloat(0x7e00)));
  EXPECT_TRUE(std::signbit(F16ToFloat(0x8000)));
}

TEST(RandomModelFormatsTest, ShardedSafetensorsEqualsSingleFile) {
  ScratchDir dir("formats_sharded");
  const Model m = MakeRandomModel(TinyConfig(false), 10);
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "single", "F32").ok());
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "sharded", "F32", 3).ok());
  ASSERT_TRUE(fs::exists(dir / "sharded/model-3-of-3.safetensors"));
  auto single = LoadModel(dir / "single");
  ASSERT_TRUE(single.ok()) << single.status();
  for (const std::string& ref : {dir / "sharded", dir / "sharded/model.safetensors.index.json",
                                dir / "sharded/model-2-of-3.safetensors"}) {
    auto sharded = LoadModel(ref);
    ASSERT_TRUE(sharded.ok()) << ref << ": " << sharded.status();
    const auto tokens = RandomTokens(16, m.config.vocab_size, 5);
    const auto a = Logits(*single, tokens), b = Logits(*sharded, tokens);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size())) << ref;
  }
  // An index naming a missing shard, or a shard that lacks the tensor, is an error.
  const std::string index_path = dir / "sharded/model.safetensors.index.json";
  auto index = nlohmann::json::parse(*ReadFileToString(index_path));
  index["weight_map"]["model.norm.weight"] = "model-1-of-3.safetensors";
  WriteBytes(index_path, index.dump());
  auto wrong = LoadModel(dir / "sharded");
  EXPECT_THAT(wrong.status().message(),
              AllOf(HasSubstr("model.norm.weight"), HasSubstr("does not hold it")));
  index["weight_map"]["model.norm.weight"] = "model-9-of-3.safetensors";
  WriteBytes(index_path, index.dump());
  EXPECT_EQ(LoadModel(dir / "sharded").status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------- corrupt safetensors

std::string StError(const std::string& bytes) {
  ScratchDir dir("formats_st_corrupt");
  WriteBytes(dir / "x.safetensors", bytes);
  auto f = SafetensorsFile::Open(dir / "x.safetensors");
  return f.ok() ? "OK" : std::string(f.status().message());
}

std::string F32Bytes(int n) { return std::string(static_cast<size_t>(n) * 4, '\0'); }

TEST(SafetensorsCorruptTest, ClearErrors) {
  EXPECT_THAT(StError("\x10\x00\x00"), HasSubstr("truncated safetensors header"));
  {
    std::string b;
    testing::AppendU64(b, 1000);
    EXPECT_THAT(StError(b + "{}"), AllOf(HasSubstr("header length 1000"),
                                        HasSubstr("beyond the file")));
    std::string huge;
    testing::AppendU64(huge, ~uint64_t{0});
    EXPECT_THAT(StError(huge + "{}"), HasSubstr("beyond the file"));
  }
  EXPECT_THAT(StError(SafetensorsBytes("{\"a\": ", "")), HasSubstr("not valid JSON"));
  EXPECT_THAT(StError(SafetensorsBytes("[1, 2]", "")), HasSubstr("must be a JSON object"));
  EXPECT_THAT(
      StError(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                               F32Bytes(2))),
      AllOf(HasSubstr("tensor w"), HasSubstr("outside the data section [0, 8]")));
  EXPECT_THAT(
      StError(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})",
                               F32Bytes(2))),
      HasSubstr("begin > end"));
  EXPECT_THAT(StError(SafetensorsBytes(
                  R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  F32Bytes(3))),
              AllOf(HasSubstr("tensors a"), HasSubstr("and b"), HasSubstr("overlap")));
  EXPECT_THAT(
      StError(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
                               F32Bytes(2))),
      AllOf(HasSubstr("tensor w"), HasSubstr("needs 12 bytes"), HasSubstr("give 8")));
  EXPECT_THAT(
      StError(SafetensorsBytes(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})",
                               F32Bytes(2))),
      AllOf(HasSubstr("tensor w"), HasSubstr("unknown dtype \"Q4\"")));
  EXPECT_THAT(
      StError(SafetensorsBytes(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
                               F32Bytes(2))),
      HasSubstr("non-negative"));
  EXPECT_THAT(StError(SafetensorsBytes(
                  R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
                  F32Bytes(2))),
              HasSubstr("needs"));
  // A valid file whose tensor has an integer dtype opens, and reading it is an error.
  ScratchDir dir("formats_st_int");
  WriteBytes(dir / "i.safetensors",
             BuildSafetensors({StTensor{"ids", "I64", {2}, std::string(16, '\0')}}));
  auto f = SafetensorsFile::Open(dir / "i.safetensors");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->ReadTensor("ids").status().message(),
              AllOf(HasSubstr("tensor ids"), HasSubstr("I64")));
  EXPECT_EQ((*f)->ReadTensor("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsCorruptTest, ModelLevelErrors) {
  ScratchDir dir("formats_st_model");
  const Model m = MakeRandomModel(TinyConfig(false), 11);
  const std::string d = dir / "m";
  ASSERT_TRUE(testing::WriteHfModel(m, d, "F32").ok());
  const std::string config_path = d + "/config.json";
  const auto config = nlohmann::json::parse(*ReadFileToString(config_path));
  auto with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json c = config;
    edit(c);
    WriteBytes(config_path, c.dump());
    auto r = LoadModel(d);
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  EXPECT_EQ(with([](nlohmann::json&) {}), "OK");
  EXPECT_THAT(with([](nlohmann::json& c) { c["architectures"] = {"MambaForCausalLM"}; }),
              AllOf(HasSubstr("MambaForCausalLM"), HasSubstr("supported: LlamaForCausalLM")));
  EXPECT_THAT(with([](nlohmann::json& c) {
                c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
              }),
              AllOf(HasSubstr("rope_scaling"), HasSubstr("\"low_freq_factor\" is missing")));
  EXPECT_THAT(with([](nlohmann::json& c) {
                c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 8.0}};
              }),
              AllOf(HasSubstr("\"yarn\""), HasSubstr("not supported")));
  EXPECT_THAT(with([](nlohmann::json& c) { c.erase("hidden_size"); }),
              HasSubstr("\"hidden_size\" is missing"));
  EXPECT_THAT(with([](nlohmann::json& c) { c["num_key_value_heads"] = 4; }),
              HasSubstr("multiple of n_kv_heads"));
  // Tied in config.json but the file's embedding disagrees with the config's shape.
  EXPECT_THAT(with([](nlohmann::json& c) { c["vocab_size"] = 71; }),
              AllOf(HasSubstr("model.embed_tokens.weight"), HasSubstr("[70, 48]"),
                    HasSubstr("expected [71, 48]")));
  WriteBytes(config_path, config.dump());
  // A missing tensor is named.
  auto file = SafetensorsFile::Open(d + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<StTensor> kept;
  for (const auto& [name, e] : (*file)->entries()) {
    if (name == "model.layers.1.mlp.up_proj.weight") continue;
    auto t = (*file)->ReadTensor(name);
    kept.push_back({name, "F32", e.shape, EncodeFloats(t->values(), "F32")});
  }
  WriteBytes(d + "/model.safetensors", BuildSafetensors(kept));
  EXPECT_THAT(std::string(LoadModel(d).status().message()),
              AllOf(HasSubstr("model.layers.1.mlp.up_proj.weight"), HasSubstr("missing")));
  fs::remove(config_path);
  EXPECT_THAT(std::string(LoadModel(d + "/model.safetensors").status().message()),
              HasSubstr("no config.json"));
}

// ---------------------------------------------------------------- corrupt GGUF

std::string GgufError(const std::string& bytes) {
  ScratchDir dir("formats_gguf_corrupt");
  WriteBytes(dir / "x.gguf", bytes);
  auto m = LoadModel(dir / "x.gguf");
  return m.ok() ? "OK" : std::string(m.status().message());
}

std::string TinyGguf(uint32_t ggml_type = kGgmlF32, uint32_t version = 3) {
  const Model m = MakeRandomModel(TinyConfig(true), 12);
  return testing::GgufModelBuilder(m, ggml_type, false).Build(version);
}

TEST(GgufCorruptTest, ClearErrors) {
  ASSERT_EQ(GgufError(TinyGguf()), "OK");
  ASSERT_EQ(GgufError(TinyGguf(kGgmlF32, 2)), "OK");
  ASSERT_EQ(GgufError(TinyGguf(kGgmlBF16)), "OK");
  std::string bad = TinyGguf();
  bad[3] = 'X';
  EXPECT_THAT(GgufError(bad), HasSubstr("bad GGUF magic"));
  EXPECT_THAT(GgufError(TinyGguf(kGgmlF32, 1)), HasSubstr("GGUF version 1 is not supported"));
  EXPECT_THAT(GgufError("GGUF\x03"), HasSubstr("truncated GGUF version"));
  // Truncated in the metadata: every prefix of the header is an error, never a crash.
  const std::string good = TinyGguf();
  std::unique_ptr<GgufFile> parsed;
  {
    ScratchDir dir("formats_gguf_good");
    WriteBytes(dir / "g.gguf", good);
    auto g = GgufFile::Open(dir / "g.gguf");
    ASSERT_TRUE(g.ok()) << g.status();
    parsed = std::move(*g);
  }
  EXPECT_THAT(GgufError(good.substr(0, 100)), HasSubstr("more than the 76 bytes left"));
  {
    GgufBuilder b;
    b.Str("general.architecture", "llama");
    b.Tensor("w", {2}, kGgmlF32, std::string(8, '\0'));
    b.Tensor("v", {2}, kGgmlF32, std::string(8, '\0'));
    std::string two = b.Build();
    two.resize(two.find(std::string("\x01\0\0\0\0\0\0\0v", 9)) + 9 + 2);  // in v's n_dims
    EXPECT_THAT(GgufError(two), HasSubstr("truncated GGUF tensor v n_dims at byte"));
  }
  EXPECT_THAT(GgufError(good.substr(0, parsed->data_offset() + 100)),
              AllOf(HasSubstr("tensor token_embd.weight"), HasSubstr("larger than the whole file")));
  for (size_t n = 0; n < good.size(); n += (n < 64 ? 1 : n < parsed->data_offset() ? 7 : 997)) {
    EXPECT_NE(GgufError(good.substr(0, n)), "OK") << n;
  }
  // Unsupported tensor type, named with the tensor.
  {
    const Model m = MakeRandomModel(TinyConfig(true), 12);
    GgufBuilder b = testing::GgufModelBuilder(m, kGgmlF32, false);
    b.Tensor("blk.0.attn_q.weight.q4", {48, 48}, 2, std::string(48 * 48 / 32 * 18, '\0'));
    EXPECT_EQ(GgufError(b.Build()), "OK");  // an unused quantized tensor is fine
  }
  {
    // Q4_0 for a used tensor: replace blk.1.ffn_up.weight's type in the built bytes.
    std::string q = TinyGguf();
    const std::string name = "blk.1.ffn_up.weight";
    size_t at = q.find(name);
    ASSERT_NE(at, std::string::npos);
    at += name.size() + 4 + 16;  // n_dims, two dims
    q[at] = 2;
    EXPECT_THAT(GgufError(q), AllOf(HasSubstr("blk.1.ffn_up.weight"), HasSubstr("Q4_0")));
  }
  // Unknown architecture.
  {
    GgufBuilder b;
    b.Str("general.architecture", "mamba");
    EXPECT_THAT(GgufError(b.Build()), AllOf(HasSubstr("mamba"), HasSubstr("supported: llama")));
  }
}

TEST(GgufCorruptTest, HandMadeHeaders) {
  auto header = [](uint64_t n_tensors, uint64_t n_kv) {
    std::string b = "GGUF";
    testing::AppendU32(b, 3);
    testing::AppendU64(b, n_tensors);
    testing::AppendU64(b, n_kv);
    return b;
  };
  EXPECT_THAT(GgufError(header(uint64_t{1} << 60, 0)), HasSubstr("more than the"));
  EXPECT_THAT(GgufError(header(0, ~uint64_t{0})), HasSubstr("more than the"));
  {  // a string length beyond the file
    std::string b = header(0, 1);
    testing::AppendU64(b, uint64_t{1} << 40);
    b += "general.architecture";
    EXPECT_THAT(GgufError(b), AllOf(HasSubstr("length 1099511627776"),
                                   HasSubstr("beyond the end of the file")));
  }
  {  // an array claiming more elements than the file holds
    std::string b = header(0, 1);
    testing::AppendU64(b, 3);
    b += "key";
    testing::AppendU32(b, 9);   // array
    testing::AppendU32(b, 8);   // of strings
    testing::AppendU64(b, uint64_t{1} << 61);
    EXPECT_THAT(GgufError(b), AllOf(HasSubstr("key"), HasSubstr("array of")));
  }
  {  // arrays nested without end
    std::string b = header(0, 1);
    testing::AppendU64(b, 3);
    b += "key";
    testing::AppendU32(b, 9);
    for (int i = 0; i < 10; ++i) {
      testing::AppendU32(b, 9);
      testing::AppendU64(b, 1);
    }
    EXPECT_THAT(GgufError(b), HasSubstr("nested"));
  }
  {  // an unknown value type
    std::string b = header(0, 1);
    testing::AppendU64(b, 3);
    b += "key";
    testing::AppendU32(b, 77);
    EXPECT_THAT(GgufError(b), HasSubstr("unknown value type 77"));
  }
  {  // tensor data beyond the file, and a misaligned offset
    for (uint64_t offset : {uint64_t{1} << 20, uint64_t{8}}) {
      std::string b = header(1, 0);
      testing::AppendU64(b, 1);
      b += "w";
      testing::AppendU32(b, 1);
      testing::AppendU64(b, 4);
      testing::AppendU32(b, kGgmlF32);
      testing::AppendU64(b, offset);
      b.resize(64, '\0');
      EXPECT_THAT(GgufError(b), HasSubstr(offset == 8 ? "not a multiple of the alignment"
                                                      : "beyond the end of the file"));
    }
  }
}

// ---------------------------------------------------------------- metadata bombs, NaN weights

// `bytes` of a GGUF file with the u32 value of metadata key `key` replaced by `value`.
std::string PatchGgufU32(std::string bytes, const std::string& key, uint32_t value) {
  std::string needle;
  testing::AppendU64(needle, key.size());
  needle += key;
  const size_t at = bytes.find(needle);
  EXPECT_NE(at, std::string::npos) << key;
  if (at == std::string::npos) return bytes;
  const size_t type_at = at + needle.size();
  EXPECT_EQ(bytes[type_at], 4) << key << " is not a u32";
  std::memcpy(bytes.data() + type_at + 4, &value, 4);  // little-endian host
  return bytes;
}

// `bytes` with element `index` of the F32, F16 or BF16 tensor whose data starts at byte `begin`
// set to `value`.
std::string PoisonTensor(std::string bytes, uint64_t begin, const std::string& dtype,
                         size_t index, float value) {
  if (dtype == "F32") {
    std::memcpy(bytes.data() + begin + 4 * index, &value, 4);
  } else {
    const uint16_t h = dtype == "BF16" ? testing::FloatToBf16(value) : testing::FloatToF16(value);
    std::memcpy(bytes.data() + begin + 2 * index, &h, 2);
  }
  return bytes;
}

// Peak resident memory of this process so far, in MiB.
double PeakRssMiB() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

TEST(MetadataBombTest, GgufBombsAreRefusedNamingTheKey) {
  const std::string good = *ReadFileToString(SharedDataPath("stories260K.gguf"));
  struct Case {
    std::vector<std::pair<std::string, uint32_t>> keys;
    std::vector<std::string> want;
  };
  const double rss_before = PeakRssMiB();
  for (const Case& c : std::vector<Case>{
           {{{"llama.block_count", 1u << 24}},
            {"llama.block_count (n_layers) = 16777216", "holds tensors of 5 layers",
             "no blk.5.attn_norm.weight", "claims more layers"}},
           {{{"llama.block_count", 3}},
            {"llama.block_count (n_layers) = 3", "holds tensors of 5 layers",
             "belongs to layer 4", "claims fewer layers"}},
           {{{"llama.block_count", (1u << 24) + 1}},
            {"llama.block_count = 16777217 must be in [1, 16777216]"}},
           {{{"llama.feed_forward_length", 1u << 24}},
            {"tensor blk.0.ffn_gate.weight has shape [172, 64], expected [16777216, 64]",
             "its dimension 0 is 172 where hidden_dim (llama.feed_forward_length) = 16777216"}},
           {{{"llama.embedding_length", 1u << 24}, {"llama.rope.dimension_count", 1u << 21}},
            {"tensor token_embd.weight has shape [512, 64], expected [512, 16777216]",
             "its dimension 1 is 64 where dim (llama.embedding_length) = 16777216"}},
           {{{"llama.attention.head_count_kv", 1u << 24}},
            {"kv_dim (n_kv_heads * head_dim) must be in [1, 16777216], got 134217728"}},
           {{{"llama.attention.head_count", 1u << 24}},
            {"llama.embedding_length 64 is not a multiple of llama.attention.head_count 16777216"}},
       }) {
    std::string bytes = good;
    for (const auto& [key, value] : c.keys) bytes = PatchGgufU32(bytes, key, value);
    const std::string msg = GgufError(bytes);
    EXPECT_THAT(msg, HasSubstr("x.gguf: ")) << c.keys[0].first;
    for (const std::string& w : c.want) EXPECT_THAT(msg, HasSubstr(w)) << c.keys[0].first;
  }
  // Nothing was allocated from the claims (a table of 2^24 layers alone is ~17 GB).
  EXPECT_LT(PeakRssMiB() - rss_before, 64.0);
}

TEST(MetadataBombTest, SafetensorsConfigBombsAreRefusedNamingTheField) {
  ScratchDir dir("formats_st_bombs");
  const std::string d = dir / "hf";
  fs::copy(SharedDataPath("stories260K-hf"), d);
  const std::string config_path = d + "/config.json";
  const auto config = nlohmann::json::parse(*ReadFileToString(config_path));
  auto with = [&](const std::string& field, int64_t value) {
    nlohmann::json c = config;
    c[field] = value;
    WriteBytes(config_path, c.dump());
    auto r = LoadModel(d);
    return r.ok() ? std::string("OK") : std::string(r.status().message());
  };
  const double rss_before = PeakRssMiB();
  EXPECT_THAT(with("num_hidden_layers", 1 << 24),
              AllOf(HasSubstr("model.safetensors: config.json num_hidden_layers (n_layers) = "
                              "16777216, but the file holds tensors of 5 layers"),
                    HasSubstr("no model.layers.5.input_layernorm.weight")));
  EXPECT_THAT(with("num_hidden_layers", 2),
              AllOf(HasSubstr("num_hidden_layers (n_layers) = 2"), HasSubstr("claims fewer")));
  EXPECT_THAT(with("num_hidden_layers", (1 << 24) + 1),
              HasSubstr("\"num_hidden_layers\" = 16777217 must be an integer in [1, 16777216]"));
  EXPECT_THAT(with("hidden_size", 1 << 24),
              HasSubstr("where dim (config.json hidden_size) = 16777216"));
  EXPECT_THAT(with("intermediate_size", 1 << 24),
              HasSubstr("where hidden_dim (config.json intermediate_size) = 16777216"));
  EXPECT_THAT(with("vocab_size", 1 << 24),
              HasSubstr("where vocab_size (config.json vocab_size) = 16777216"));
  EXPECT_THAT(with("head_dim", 1 << 22),
              HasSubstr("q_dim (n_heads * head_dim) must be in [1, 16777216], got 33554432"));
  EXPECT_LT(PeakRssMiB() - rss_before, 64.0);
}

// A context length of 2^24 has no tensor to contradict it: the model loads, and the forward
// pass allocates nothing from it (it used to build a 512 MiB rotary table at head_dim 8).
TEST(MetadataBombTest, HugeContextLengthAllocatesNothing) {
  ScratchDir dir("formats_ctx");
  const std::string gguf = dir / "ctx.gguf";
  WriteBytes(gguf, PatchGgufU32(*ReadFileToString(SharedDataPath("stories260K.gguf")),
                                "llama.context_length", 1u << 24));
  fs::copy(SharedDataPath("stories260K-hf"), dir / "hf");
  auto config = nlohmann::json::parse(*ReadFileToString(dir / "hf/config.json"));
  config["max_position_embeddings"] = 1 << 24;
  WriteBytes(dir / "hf/config.json", config.dump());
  const double rss_before = PeakRssMiB();
  for (const auto& [path, reference] :
       {std::pair{gguf, SharedDataPath("stories260K.gguf")},
        std::pair{dir / "hf", SharedDataPath("stories260K-hf")}}) {
    auto big = LoadModel(path);
    auto small = LoadModel(reference);
    ASSERT_TRUE(big.ok()) << big.status();
    ASSERT_TRUE(small.ok()) << small.status();
    EXPECT_EQ(big->config.seq_len, 1 << 24);
    const auto a = Logits(*big, kPrompt), b = Logits(*small, kPrompt);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * a.size())) << path;
  }
  EXPECT_LT(PeakRssMiB() - rss_before, 64.0);
}

TEST(NonFiniteWeightsTest, EveryFormatNamesTheTensor) {
  ScratchDir dir("formats_nan");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  // GGUF (F32): a NaN in a linear weight, an Inf in a norm.
  {
    const std::string bytes = *ReadFileToString(SharedDataPath("stories260K.gguf"));
    auto g = GgufFile::Open(SharedDataPath("stories260K.gguf"));
    ASSERT_TRUE(g.ok()) << g.status();
    const GgufTensorInfo* q = (*g)->FindTensor("blk.1.attn_q.weight");
    const GgufTensorInfo* n = (*g)->FindTensor("output_norm.weight");
    ASSERT_TRUE(q != nullptr && n != nullptr && q->ggml_type == kGgmlF32);
    WriteBytes(dir / "nan.gguf", PoisonTensor(PoisonTensor(bytes, q->offset, "F32", 64 * 3 + 7, nan),
                                              q->offset, "F32", 64 * 9, nan));
    EXPECT_THAT(std::string(LoadModel(dir / "nan.gguf").status().message()),
                AllOf(HasSubstr(dir / "nan.gguf"), HasSubstr("tensor blk.1.attn_q.weight holds 2 "
                                                             "non-finite values (the first, nan, "
                                                             "at [3, 7])")));
    // impq eval and the job load through LoadModelAndTokenizer: they fail with the same error.
    auto lm = LoadModelAndTokenizer(dir / "nan.gguf");
    EXPECT_THAT(std::string(lm.status().message()), HasSubstr("blk.1.attn_q.weight"));
    WriteBytes(dir / "inf.gguf", PoisonTensor(bytes, n->offset, "F32", 3, -inf));
    EXPECT_THAT(std::string(LoadModel(dir / "inf.gguf").status().message()),
                HasSubstr("tensor output_norm.weight holds 1 non-finite value (the first, -inf, "
                          "at [3])"));
  }
  // Safetensors, F32 and BF16 (the conversion keeps NaN and Inf).
  for (const std::string form : {"stories260K-hf", "stories260K-hf-bf16"}) {
    const std::string d = dir / form;
    fs::copy(SharedDataPath(form), d);
    auto f = SafetensorsFile::Open(d + "/model.safetensors");
    ASSERT_TRUE(f.ok()) << f.status();
    const SafetensorsFile::Entry e = (*f)->entries().at("model.layers.3.mlp.down_proj.weight");
    const std::string bytes = *ReadFileToString(d + "/model.safetensors");
    f->reset();
    WriteBytes(d + "/model.safetensors", PoisonTensor(bytes, e.begin, e.dtype, 172 + 2, inf));
    EXPECT_THAT(std::string(LoadModel(d).status().message()),
                HasSubstr("tensor model.layers.3.mlp.down_proj.weight holds 1 non-finite value "
                          "(the first, inf, at [1, 2])"))
        << form;
  }
}

// What a mutated file that loads goes through next, as in an evaluation: its tokenizer (when
// it has one) encodes and decodes a sentence, then one forward pass over at most 16 tokens.
// Under AddressSanitizer (scripts/asan_readers.sh) this checks that whatever the readers
// accept is safe to use, not only to load.
void TokenizeAndRun(const Model& m, const Tokenizer* tokenizer) {
  std::vector<int> tokens;
  if (tokenizer != nullptr) {
    tokens = tokenizer->Encode("Once upon a time, a little cat sat in the sun.", true);
    for (int id : tokens) {
      ASSERT_TRUE(id >= 0 && id < tokenizer->vocab_size()) << id;
      (void)tokenizer->Piece(id);
    }
    (void)tokenizer->Decode(tokens);
  } else {
    for (int i = 0; i < 16; ++i) tokens.push_back(i % m.config.vocab_size);
  }
  if (tokens.empty()) tokens.push_back(0);
  tokens.resize(std::min<size_t>({tokens.size(), 16, static_cast<size_t>(m.config.seq_len)}));
  for (int id : tokens) ASSERT_LT(id, m.config.vocab_size);  // LoadModelAndTokenizer's promise
  const std::vector<float> logits = Logits(m, tokens);
  ASSERT_EQ(logits.size(), tokens.size() * static_cast<size_t>(m.config.vocab_size));
}

// Sets 1-4 random bytes of b[0, span) and, one time in four, truncates b at a random length.
void Mutate(std::string& b, size_t span, Rng& rng) {
  const int flips = 1 + static_cast<int>(rng.Below(4));
  for (int f = 0; f < flips; ++f) {
    const size_t at = static_cast<size_t>(rng.Below(std::min(span, b.size())));
    b[at] = static_cast<char>(rng.Below(256));
  }
  if (rng.Below(4) == 0) b.resize(static_cast<size_t>(rng.Below(b.size())));
}

// Replaces 1-3 decimal digits of b[begin, end) by random digits: JSON that still parses, with
// other sizes, shapes and offsets.
void MutateDigits(std::string& b, size_t begin, size_t end, Rng& rng) {
  std::vector<size_t> digits;
  for (size_t i = begin; i < std::min(end, b.size()); ++i) {
    if (b[i] >= '0' && b[i] <= '9') digits.push_back(i);
  }
  if (digits.empty()) return;
  const int n = 1 + static_cast<int>(rng.Below(3));
  for (int k = 0; k < n; ++k) {
    b[digits[rng.Below(digits.size())]] = static_cast<char>('0' + rng.Below(10));
  }
}

// A seeded mutation loop over both formats' headers: every result is OK or an error, never a
// crash or an out-of-bounds read (run under AddressSanitizer to check the latter), and every
// model that loads runs a forward pass.
TEST(FormatFuzzTest, MutatedHeadersNeverCrash) {
  ScratchDir dir("formats_fuzz");
  const Model m = MakeRandomModel(TinyConfig(false), 13);
  const std::string gguf = testing::GgufModelBuilder(m, kGgmlF16, false).Build();
  ASSERT_TRUE(testing::WriteHfModel(m, dir / "hf", "F32").ok());
  const std::string st = *ReadFileToString(dir / "hf/model.safetensors");
  Rng rng(2024);
  int ok = 0, errors = 0;
  for (int iter = 0; iter < 300; ++iter) {
    const bool is_gguf = iter % 2 == 0;
    std::string b = is_gguf ? gguf : st;
    Mutate(b, is_gguf ? 4096 : 2048, rng);
    const std::string path = is_gguf ? dir / "f.gguf" : dir / "hf/model.safetensors";
    WriteBytes(path, b);
    auto r = LoadModel(is_gguf ? path : dir / "hf");
    (r.ok() ? ok : errors)++;
    if (r.ok()) ASSERT_NO_FATAL_FAILURE(TokenizeAndRun(*r, nullptr)) << "iteration " << iter;
  }
  std::printf("  mutations: %d loaded and ran, %d rejected\n", ok, errors);
  EXPECT_GT(errors, 0);
}

// The shared stories260K in the forms that carry or come with a tokenizer, mutated in their
// headers, their metadata (GGUF: the embedded vocabulary too), config.json and the llama2.c
// tokenizer; each that loads with its tokenizer is tokenized and run (TokenizeAndRun).
TEST(FormatFuzzTest, MutatedModelsAndTokenizersLoadTokenizeAndRun) {
  ScratchDir dir("formats_fuzz_shared");
  const std::string gguf = *ReadFileToString(SharedDataPath("stories260K.gguf"));
  size_t gguf_header = 0;
  {
    auto g = GgufFile::Open(SharedDataPath("stories260K.gguf"));
    ASSERT_TRUE(g.ok()) << g.status();
    gguf_header = (*g)->data_offset();  // metadata (vocabulary included) and tensor infos
  }
  fs::copy(SharedDataPath("stories260K-hf"), dir / "hf");
  const std::string st = *ReadFileToString(dir / "hf/model.safetensors");
  const std::string config = *ReadFileToString(dir / "hf/config.json");
  const std::string bin = *ReadFileToString(SharedDataPath("stories260K.bin"));
  const std::string tok = *ReadFileToString(SharedDataPath("tok512.bin"));
  uint64_t st_header = 0;
  for (int i = 7; i >= 0; --i) st_header = (st_header << 8) | static_cast<uint8_t>(st[i]);
  Rng rng(2025);
  int loaded[4] = {}, rejected[4] = {};
  for (int iter = 0; iter < 800; ++iter) {
    absl::StatusOr<LoadedModel> lm;
    const int kind = iter % 4;
    switch (kind) {
      case 0: {  // GGUF: model and its embedded tokenizer
        std::string b = gguf;
        Mutate(b, gguf_header, rng);
        WriteBytes(dir / "m.gguf", b);
        lm = LoadModelAndTokenizer(dir / "m.gguf");
        break;
      }
      case 1: {  // safetensors header (bytes or its numbers), with the directory's tokenizer
        std::string b = st;
        if (rng.Below(2) == 0) {
          Mutate(b, 8 + st_header, rng);
        } else {
          MutateDigits(b, 8, 8 + st_header, rng);
        }
        WriteBytes(dir / "hf/model.safetensors", b);
        lm = LoadModelAndTokenizer(dir / "hf");
        WriteBytes(dir / "hf/model.safetensors", st);
        break;
      }
      case 2: {  // config.json (bytes or its numbers)
        std::string b = config;
        if (rng.Below(2) == 0) {
          Mutate(b, b.size(), rng);
        } else {
          MutateDigits(b, 0, b.size(), rng);
        }
        WriteBytes(dir / "hf/config.json", b);
        lm = LoadModelAndTokenizer(dir / "hf");
        WriteBytes(dir / "hf/config.json", config);
        break;
      }
      default: {  // the llama2.c header or its tokenizer.bin
        std::string b = bin, t = tok;
        if (rng.Below(2) == 0) {
          Mutate(b, 28, rng);
        } else {
          Mutate(t, 4096, rng);
        }
        WriteBytes(dir / "m.bin", b);
        WriteBytes(dir / "tok.bin", t);
        lm = LoadModelAndTokenizer(dir / "m.bin", dir / "tok.bin");
        break;
      }
    }
    (lm.ok() ? loaded : rejected)[kind]++;
    if (lm.ok()) {
      ASSERT_NO_FATAL_FAILURE(TokenizeAndRun(lm->model, lm->tokenizer.get()))
          << "iteration " << iter;
    }
  }
  std::printf("  shared-file mutations (GGUF, safetensors, config.json, llama2.c): loaded, "
              "tokenized and ran %d/%d/%d/%d, rejected %d/%d/%d/%d\n",
              loaded[0], loaded[1], loaded[2], loaded[3], rejected[0], rejected[1], rejected[2],
              rejected[3]);
  for (int kind = 0; kind < 4; ++kind) {
    EXPECT_GT(loaded[kind] + rejected[kind], 0);
  }
  EXPECT_GT(loaded[0] + loaded[1] + loaded[2] + loaded[3], 0);
  EXPECT_GT(rejected[0] + rejected[1] + rejected[2] + rejected[3], 0);
}

// ---------------------------------------------------------------- tokenizers

std::vector<std::string> Documents() {
  auto text = ReadFileToString(SharedDataPath("tinystories_v2_valid_100.txt"));
  EXPECT_TRUE(text.ok());
  std::vector<std::string> out;
  for (std::string_view d : eval::SplitDocuments(*text)) out.emplace_back(d);
  return out;
}

TEST(TokenizerFormatsTest, GgufVocabularyEncodesLikeRunC) {
  auto run_c = Llama2cTokenizer::Load(SharedDataPath("tok512.bin"));
  auto gguf = GgufTokenizer::Load(SharedDataPath("stories260K.gguf"));
  ASSERT_TRUE(run_c.ok()) << run_c.status();
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  EXPECT_EQ((*gguf)->vocab_size(), 512);
  EXPECT_EQ((*gguf)->bos_id(), 1);
  EXPECT_EQ((*gguf)->eos_id(), 2);
  int same = 0;
  const auto docs = Documents();
  for (const std::string& d : docs) {
    const auto a = (*run_c)->Encode(d, true), b = (*gguf)->Encode(d, true);
    same += a == b;
    EXPECT_EQ((*gguf)->Decode(b), d);
  }
  EXPECT_EQ(same, static_cast<int>(docs.size()));
  for (const std::string t : {"", " ", "  two  spaces ", "123 4567 89", "tabs\tand\nnewlines\n",
                              "caf\xC3\xA9 \xE2\x82\xAC 5 \xF0\x9F\x98\x80", "bad \xFF\xFE utf8 \xC3"}) {
    EXPECT_EQ((*run_c)->Encode(t, true), (*gguf)->Encode(t, true)) << t;
    EXPECT_EQ((*gguf)->Decode((*gguf)->Encode(t, true)), t) << t;
  }
}

TEST(TokenizerFormatsTest, SentencePieceAgreesWithRunC) {
  auto run_c = Llama2cTokenizer::Load(SharedDataPath("tok512.bin"));
  auto spm = SentencePieceTokenizer::Load(SharedDataPath("stories260K-hf/tokenizer.model"));
  ASSERT_TRUE(run_c.ok()) << run_c.status();
  ASSERT_TRUE(spm.ok()) << spm.status();
  EXPECT_EQ((*spm)->vocab_size(), 512);
  EXPECT_EQ((*spm)->bos_id(), 1);
  EXPECT_EQ((*spm)->eos_id(), 2);
  for (int id = 3; id < 512; ++id) {  // tok512.bin spells the specials "\n<s>\n" etc.
    std::string p = (*spm)->Piece(id);
    for (size_t k; (k = p.find("\xE2\x96\x81")) != std::string::npos;) p.replace(k, 3, " ");
    ASSERT_EQ(p, (*run_c)->Piece(id)) << id;
  }
  int same_docs = 0;
  int64_t run_c_tokens = 0, spm_tokens = 0;
  const auto docs = Documents();
  for (const std::string& d : docs) {
    const auto a = (*run_c)->Encode(d, true), b = (*spm)->Encode(d, true);
    same_docs += a == b;
    run_c_tokens += static_cast<int64_t>(a.size());
    spm_tokens += static_cast<int64_t>(b.size());
    if (a == b) {
      EXPECT_EQ((*spm)->Decode(b), d);
    }
  }
  std::printf("  SentencePiece vs run.c: %d/%zu documents identical; %lld vs %lld tokens\n",
              same_docs, docs.size(), static_cast<long long>(spm_tokens),
              static_cast<long long>(run_c_tokens));
  ::testing::Test::RecordProperty("identical_documents", same_docs);
  // Both are BPE by score with byte fallback over the same pieces, but tok512.model's
  // normalizer removes extra whitespace (a run of spaces becomes one) and run.c does not: one
  // of the 100 documents has ".  And", the only difference (measured: 99/100 identical,
  // 39,344 vs 39,345 tokens before truncation).
  EXPECT_GE(same_docs, 99);
  EXPECT_EQ((*spm)->Encode("a  b", false), (*spm)->Encode("a b", false));
  EXPECT_EQ((*run_c)->Encode("123 4567", true), (*spm)->Encode("123 4567", true));
}

TEST(TokenizerFormatsTest, ModelReferencesFindTheirOwnTokenizer) {
  auto g = LoadModelAndTokenizer(SharedDataPath("stories260K.gguf"));
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->tokenizer_path, SharedDataPath("stories260K.gguf"));
  auto h = LoadModelAndTokenizer(SharedDataPath("stories260K-hf/model.safetensors"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->tokenizer_path, SharedDataPath("stories260K-hf") + "/tokenizer.model");
  auto bin = LoadModelAndTokenizer(SharedDataPath("stories260K.bin"));
  EXPECT_EQ(bin.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bin.status().message(), AllOf(HasSubstr("llama2.c"), HasSubstr("--tokenizer")));
  // An explicit tokenizer still wins, in any format.
  auto mixed = LoadModelAndTokenizer(SharedDataPath("stories260K.bin"),
                                     SharedDataPath("stories260K.gguf"));
  ASSERT_TRUE(mixed.ok()) << mixed.status();
  auto spm = LoadModelAndTokenizer(SharedDataPath("stories260K.gguf"), SharedDataPath("tok512.model"));
  ASSERT_TRUE(spm.ok()) << spm.status();
  auto not_spm = LoadTokenizer(SharedDataPath("README.md") + ".model");
  EXPECT_FALSE(not_spm.ok());
}

}  // namespace
}  // namespace impq::model
