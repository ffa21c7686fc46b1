// QuantizedModel, CollectCalibration and the three backends at model scale.
//
// Random models (MakeRandomModel) check the bookkeeping (pointer swaps, byte accounting, error
// paths); the real stories260K weights and TinyStories text of ../shared/data check the
// properties that define each backend, layer by layer, and the perplexity of whole models.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "common/rng.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/eval/eval_set.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/hqq.h"
#include "worker/quant/quantized_model.h"

namespace impq::quant {
namespace {

using model::LinearKind;
using model::kNumLinear;
using ::testing::HasSubstr;

// A small Llama with the stories260K proportions, including a hidden size (44) that group
// size 16 does not divide, so ragged tail groups are part of every check.
model::ModelConfig SmallConfig() {
  model::ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 44;
  c.n_layers = 3;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 8;
  c.vocab_size = 64;
  c.seq_len = 32;
  return c;
}

std::unique_ptr<QuantizedModel> MustBuild(const model::Model& m, const std::string& backend,
                                          int group_size, PlayerGranularity g,
                                          const CalibrationSet* calib) {
  auto q = MakeQuantizer(backend);
  EXPECT_TRUE(q.ok()) << q.status();
  QuantConfig cfg;
  cfg.group_size = group_size;
  auto qm = QuantizedModel::Build(m, **q, cfg, g, calib);
  EXPECT_TRUE(qm.ok()) << qm.status();
  return qm.ok() ? *std::move(qm) : nullptr;
}

// ---------------------------------------------------------------------------------------------
// Bookkeeping on random models.

TEST(QuantizedModelTest, BuildQuantizesEachModuleOnceAtEachWidth) {
  const auto m = model::MakeRandomModel(SmallConfig(), 1);
  const int64_t before = QuantizeCallCount();
  auto qm = MustBuild(m, "rtn", 16, PlayerGranularity::kModule, nullptr);
  ASSERT_NE(qm, nullptr);
  EXPECT_EQ(QuantizeCallCount() - before, 2 * SmallConfig().n_layers * kNumLinear);
}

TEST(QuantizedModelTest, ApplyIsAPointerSwapWithNoQuantizerCalls) {
  const auto m = model::MakeRandomModel(SmallConfig(), 2);
  for (PlayerGranularity g : {PlayerGranularity::kBlock, PlayerGranularity::kModule}) {
    auto qm = MustBuild(m, "hqq", 16, g, nullptr);
    ASSERT_NE(qm, nullptr);
    ASSERT_EQ(qm->num_players(),
              g == PlayerGranularity::kBlock ? 3 : 3 * kNumLinear);
    const int64_t before = QuantizeCallCount();
    Rng rng(7);
    const int kWidths[] = {2, 4, 16, 32};
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<int> bits(qm->num_players());
      for (int& b : bits) b = kWidths[rng.Below(4)];
      auto w = qm->Apply(bits);
      ASSERT_TRUE(w.ok()) << w.status();
      ASSERT_EQ(w->linear.size(), m.layers.size());
      // Every module points at its player's width: the 2-bit or 4-bit dequantized copy, or
      // the model's own weights at 16/32.
      std::map<std::pair<int, int>, int> width_of;
      for (int p = 0; p < qm->num_players(); ++p) {
        for (const LinearRef& r : qm->players()[p].linears) {
          width_of[{r.layer, static_cast<int>(r.kind)}] = bits[p];
        }
      }
      ASSERT_EQ(width_of.size(), m.layers.size() * kNumLinear);  // every module, once
      for (int l = 0; l < static_cast<int>(m.layers.size()); ++l) {
        for (int k = 0; k < kNumLinear; ++k) {
          const auto kind = static_cast<LinearKind>(k);
          const int b = width_of[{l, k}];
          const float* expected =
              b > 4 ? m.layers[l][kind].data() : qm->Dequantized(l, kind, b).data();
          ASSERT_EQ(w->Get(l, kind), expected) << "layer " << l << " kind " << k << " bits " << b;
        }
      }
    }
    // One 2-bit player, the rest 4-bit: exactly that player's modules at 2 bits.
    std::vector<int> bits(qm->num_players(), 4);
    bits[1] = 2;
    auto w = qm->Apply(bits);
    ASSERT_TRUE(w.ok()) << w.status();
    for (int p = 0; p < qm->num_players(); ++p) {
      for (const LinearRef& r : qm->players()[p].linears) {
        EXPECT_EQ(w->Get(r.layer, r.kind), qm->Dequantized(r.layer, r.kind, p == 1 ? 2 : 4).data());
      }
    }
    const auto fp = qm->Uniform(16);
    const auto own = forward::WeightSet::FromModel(m);
    EXPECT_EQ(fp.linear, own.linear);
    EXPECT_EQ(QuantizeCallCount(), before) << "Apply/Uniform must not quantize";
  }
}

TEST(QuantizedModelTest, AnyWidthSetIsPreparedOnceAndApplied) {
  const auto m = model::MakeRandomModel(SmallConfig(), 12);
  auto q = MakeQuantizer("rtn");
  ASSERT_TRUE(q.ok());
  QuantConfig cfg;
  cfg.group_size = 16;
  const int64_t before = QuantizeCallCount();
  const std::vector<int> widths = {8, 3, 2, 4};  // any order; kept ascending
  auto qm = QuantizedModel::Build(m, **q, cfg, PlayerGranularity::kModule, nullptr, nullptr,
                                  widths);
  ASSERT_TRUE(qm.ok()) << qm.status();
  EXPECT_EQ(QuantizeCallCount() - before, 4 * SmallConfig().n_layers * kNumLinear);
  EXPECT_EQ((*qm)->widths(), (std::vector<int>{2, 3, 4, 8}));
  EXPECT_TRUE((*qm)->HasWidth(3));
  EXPECT_FALSE((*qm)->HasWidth(16));
  Rng rng(13);
  const int kAll[] = {2, 3, 4, 8, 16, 32};
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<int> bits((*qm)->num_players());
    for (int& b : bits) b = kAll[rng.Below(6)];
    auto w = (*qm)->Apply(bits);
    ASSERT_TRUE(w.ok()) << w.status();
    int64_t bytes = 0;
    for (int p = 0; p < (*qm)->num_players(); ++p) {
      const LinearRef& r = (*qm)->players()[p].linears[0];
      const int b = bits[p];
      // 8 bits is a quantized width, not full precision: only 16 and 32 use the model's own.
      const float* expected = b >= 16 ? m.layers[r.layer][r.kind].data()
                                      : (*qm)->Dequantized(r.layer, r.kind, b).data();
      ASSERT_EQ(w->Get(r.layer, r.kind), expected) << "player " << p << " bits " << b;
      const auto storage = StorageBytes(m.config.LinearRows(r.kind), m.config.LinearCols(r.kind),
                                        b, 16);
      bytes += b >= 16 ? (*qm)->PlayerWeights(p) * 4 : *storage;
      if (b < 16) {
        EXPECT_EQ((*qm)->Packed(r.layer, r.kind, b).bits, b);
        EXPECT_EQ((*qm)->PlayerBytes(p, b), *storage);
      }
    }
    auto total = (*qm)->AssignmentBytes(bits);
    ASSERT_TRUE(total.ok());
    EXPECT_EQ(*total, bytes);
  }
  // A width the model was not quantized at is an error naming the model's widths.
  auto only3 = QuantizedModel::Build(m, **q, cfg, PlayerGranularity::kBlock, nullptr, nullptr,
                                     std::vector<int>{3});
  ASSERT_TRUE(only3.ok()) << only3.status();
  auto w = (*only3)->Apply(std::vector<int>{3, 2, 16});
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(), HasSubstr("block1"));
  EXPECT_THAT(w.status().message(), HasSubstr("expected one of 3 "));
}

TEST(QuantizedModelErrorsTest, BadWidthSetsAreRejectedBeforeAnyWork) {
  const auto m = model::MakeRandomModel(SmallConfig(), 14);
  auto q = MakeQuantizer("rtn");
  ASSERT_TRUE(q.ok());
  QuantConfig cfg;
  cfg.group_size = 16;
  const int64_t before = QuantizeCallCount();
  const std::pair<std::vector<int>, const char*> cases[] = {
      {{}, "no quantization widths"},
      {{2, 5}, "width 5 is not supported"},
      {{4, 16}, "width 16 is not supported"},
      {{4, 2, 4}, "width 4 is given twice"}};
  for (const auto& [widths, needle] : cases) {
    auto qm = QuantizedModel::Build(m, **q, cfg, PlayerGranularity::kBlock, nullptr, nullptr,
                                    widths);
    ASSERT_FALSE(qm.ok()) << needle;
    EXPECT_EQ(qm.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(qm.status().message(), HasSubstr(needle));
  }
  EXPECT_EQ(QuantizeCallCount(), before);
}

TEST(QuantizedModelTest, ModulePlayersAreNumberedLayerTimesSevenPlusKind) {
  const auto players = MakePlayers(SmallConfig(), PlayerGranularity::kModule);
  ASSERT_EQ(players.size(), 3u * kNumLinear);
  for (int l = 0; l < 3; ++l) {
    for (int k = 0; k < kNumLinear; ++k) {
      const Player& p = players[l * kNumLinear + k];
      ASSERT_EQ(p.linears.size(), 1u);
      EXPECT_EQ(p.linears[0].layer, l);
      EXPECT_EQ(static_cast<int>(p.linears[0].kind), k);
    }
  }
  EXPECT_EQ(players[9].name, "layers.1.attn_v");
  const auto blocks = MakePlayers(SmallConfig(), PlayerGranularity::kBlock);
  ASSERT_EQ(blocks.size(), 3u);
  EXPECT_EQ(blocks[2].name, "block2");
  EXPECT_EQ(blocks[2].linears.size(), static_cast<size_t>(kNumLinear));
}

TEST(QuantizedModelTest, PlayerBytesEqualStorageBytesOfTheModules) {
  const auto m = model::MakeRandomModel(SmallConfig(), 3);
  for (int g : {16, 64}) {  // 16 leaves a ragged group on the 44-wide down projection
    auto mod = MustBuild(m, "rtn", g, PlayerGranularity::kModule, nullptr);
    auto blk = MustBuild(m, "rtn", g, PlayerGranularity::kBlock, nullptr);
    ASSERT_NE(mod, nullptr);
    ASSERT_NE(blk, nullptr);
    for (int bits : {2, 4}) {
      int64_t all = 0;
      for (int l = 0; l < 3; ++l) {
        int64_t block_sum = 0;
        for (int k = 0; k < kNumLinear; ++k) {
          const auto kind = static_cast<LinearKind>(k);
          const auto expected = StorageBytes(m.config.LinearRows(kind), m.config.LinearCols(kind),
                                             bits, g);
          ASSERT_TRUE(expected.ok()) << expected.status();
          EXPECT_EQ(mod->PlayerBytes(l * kNumLinear + k, bits), *expected)
              << "layer " << l << " kind " << k << " bits " << bits << " G " << g;
          EXPECT_EQ(mod->Packed(l, kind, bits).ByteSize(), *expected);
          block_sum += *expected;
        }
        EXPECT_EQ(blk->PlayerBytes(l, bits), block_sum) << "block " << l;
        all += block_sum;
      }
      auto total = blk->AssignmentBytes(std::vector<int>(3, bits));
      ASSERT_TRUE(total.ok());
      EXPECT_EQ(*total, all);
    }
    // Full precision players count their f32 storage.
    for (int l = 0; l < 3; ++l) {
      EXPECT_EQ(blk->PlayerBytes(l, 16), blk->PlayerWeights(l) * 4);
      EXPECT_EQ(blk->PlayerFloatBytes(l), blk->PlayerWeights(l) * 4);
    }
    int64_t weights = 0;
    for (int p = 0; p < blk->num_players(); ++p) weights += blk->PlayerWeights(p);
    EXPECT_EQ(weights, m.LinearParameterCount());
    auto mixed = blk->AssignmentBytes(std::vector<int>{2, 32, 4});
    ASSERT_TRUE(mixed.ok());
    EXPECT_EQ(*mixed, blk->PlayerBytes(0, 2) + blk->PlayerFloatBytes(1) + blk->PlayerBytes(2, 4));
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input.

TEST(QuantizedModelErrorsTest, BadGroupSizeNamesTheField) {
  const auto m = model::MakeRandomModel(SmallConfig(), 4);
  auto q = MakeQuantizer("rtn");
  ASSERT_TRUE(q.ok());
  for (int g : {0, -8}) {
    QuantConfig cfg;
    cfg.group_size = g;
    auto qm = QuantizedModel::Build(m, **q, cfg, PlayerGranularity::kBlock, nullptr);
    ASSERT_FALSE(qm.ok());
    EXPECT_EQ(qm.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(qm.status().message(), HasSubstr("group_size"));
    EXPECT_THAT(qm.status().message(), HasSubstr(std::to_string(g)));
  }
}

TEST(QuantizedModelErrorsTest, UnsupportedWidthsAreRejected) {
  const auto m = model::MakeRandomModel(SmallConfig(), 5);
  auto qm = MustBuild(m, "rtn", 16, PlayerGranularity::kBlock, nullptr);
  ASSERT_NE(qm, nullptr);
  for (int b : {3, 0, 8, 5, -2}) {  // 3 and 8: widths this model was not quantized at
    auto w = qm->Apply(std::vector<int>{4, b, 4});
    ASSERT_FALSE(w.ok()) << b;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(w.status().message(), HasSubstr("block1"));
    EXPECT_THAT(w.status().message(), HasSubstr("width " + std::to_string(b)));
    EXPECT_FALSE(qm->AssignmentBytes(std::vector<int>{4, b, 4}).ok());
  }
  // The quantizers themselves reject 5 bits, naming the value.
  for (const char* backend : {"rtn", "hqq"}) {
    auto q = MakeQuantizer(backend);
    ASSERT_TRUE(q.ok());
    QuantConfig cfg;
    cfg.bits = 5;
    const auto& w = m.layers[0][LinearKind::kQ];
    auto p = (*q)->Quantize(w.data(), w.dim(0), w.dim(1), cfg, nullptr);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(p.status().message(), HasSubstr("bits = 5"));
  }
}

TEST(QuantizedModelErrorsTest, WrongAssignmentLengthIsRejected) {
  const auto m = model::MakeRandomModel(SmallConfig(), 6);
  auto qm = MustBuild(m, "rtn", 16, PlayerGranularity::kModule, nullptr);
  ASSERT_NE(qm, nullptr);
  for (size_t n : {0u, 3u, 20u, 22u}) {
    auto w = qm->Apply(std::vector<int>(n, 4));
    ASSERT_FALSE(w.ok()) << n;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(w.status().message(),
                HasSubstr("assignment has " + std::to_string(n) + " entries, the model has 21"));
    EXPECT_THAT(w.status().message(), HasSubstr("module"));
  }
}

TEST(QuantizedModelErrorsTest, NonFiniteWeightNamesTheTensor) {
  auto m = model::MakeRandomModel(SmallConfig(), 8);
  const float kBad[] = {std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity()};
  for (float bad : kBad) {
    model::Model broken = m;
    const model::Tensor& t = broken.layers[1].linear[static_cast<int>(LinearKind::kUp)];
    std::vector<float> v(t.values().begin(), t.values().end());
    v[2 * t.dim(1) + 5] = bad;  // row 2, column 5
    broken.layers[1].linear[static_cast<int>(LinearKind::kUp)] =
        model::Tensor::Owned(t.name(), t.shape(), std::move(v));
    for (const char* backend : {"rtn", "hqq"}) {
      auto q = MakeQuantizer(backend);
      ASSERT_TRUE(q.ok());
      QuantConfig cfg;
      cfg.group_size = 16;
      auto qm = QuantizedModel::Build(broken, **q, cfg, PlayerGranularity::kBlock, nullptr);
      ASSERT_FALSE(qm.ok()) << backend;
      EXPECT_EQ(qm.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(qm.status().message(), HasSubstr(t.name()));
      EXPECT_THAT(qm.status().message(), HasSubstr("row 2 column 5"));
    }
  }
}

TEST(QuantizedModelErrorsTest, GptqWithoutCalibrationIsRejectedBeforeAnyWork) {
  const auto m = model::MakeRandomModel(SmallConfig(), 9);
  auto q = MakeQuantizer("gptq");
  ASSERT_TRUE(q.ok());
  QuantConfig cfg;
  cfg.group_size = 16;
  const int64_t before = QuantizeCallCount();
  auto qm = QuantizedModel::Build(m, **q, cfg, PlayerGranularity::kBlock, nullptr);
  ASSERT_FALSE(qm.ok());
  EXPECT_EQ(qm.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(qm.status().message(), HasSubstr("GPTQ needs calibration activations (--calib)"));
  EXPECT_EQ(QuantizeCallCount(), before);
}

TEST(QuantizedModelErrorsTest, CollectCalibrationRejectsBadInput) {
  const auto m = model::MakeRandomModel(SmallConfig(), 10);
  forward::LlamaForward fwd(m);
  eval::EvalSet set;
  set.sequences.push_back({{1, 5, 9}, 0});
  EXPECT_THAT(CollectCalibration(fwd, set, 0).status().message(), HasSubstr("threads"));
  set.sequences.push_back({{1, 64, 3}, 0});  // 64 == vocab_size
  auto bad_token = CollectCalibration(fwd, set, 1);
  ASSERT_FALSE(bad_token.ok());
  EXPECT_THAT(bad_token.status().message(), HasSubstr("sequence 1 position 1 has token id 64"));
  set.sequences[1].tokens.assign(33, 1);  // seq_len is 32
  EXPECT_THAT(CollectCalibration(fwd, set, 1).status().message(), HasSubstr("33 tokens"));
}

// ---------------------------------------------------------------------------------------------
// The real stories260K weights and TinyStories text.

class SharedModelTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto lm = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"),
                                           SharedDataPath("tok512.bin"));
    ASSERT_TRUE(lm.ok()) << lm.status() << " (is ../shared/data present?)";
    loaded_ = new model::LoadedModel(std::move(*lm));
    fwd_ = new forward::LlamaForward(loaded_->model);
    auto text = ReadFileToString(SharedDataPath("tinystories_v2_valid_100.txt"));
    ASSERT_TRUE(text.ok()) << text.status();
    auto set = eval::BuildEvalSet(*loaded_->tokenizer, *text, eval::EvalMode::kDocument, 512,
                                  512, "tinystories_v2_valid_100.txt");
    ASSERT_TRUE(set.ok()) << set.status();
    eval_set_ = new eval::EvalSet(std::move(*set));
    // Calibration: the first 20 stories (the GPTQ checks below measure on these activations).
    calib_set_ = new eval::EvalSet(*eval_set_);
    calib_set_->sequences.resize(20);
    auto calib = CollectCalibration(*fwd_, *calib_set_, 2);
    ASSERT_TRUE(calib.ok()) << calib.status();
    calib_ = new CalibrationSet(std::move(*calib));
  }
  static void TearDownTestSuite() {
    delete calib_;
    delete calib_set_;
    delete eval_set_;
    delete fwd_;
    delete loaded_;
  }
  void SetUp() override {
    if (calib_ == nullptr) GTEST_SKIP() << "shared data not loaded";
  }
  const model::Model& model() const { return loaded_->model; }

  static model::LoadedModel* loaded_;
  static forward::LlamaForward* fwd_;
  static eval::EvalSet* eval_set_;
  static eval::EvalSet* calib_set_;
  static CalibrationSet* calib_;
};
model::LoadedModel* SharedModelTest::loaded_ = nullptr;
forward::LlamaForward* SharedModelTest::fwd_ = nullptr;
eval::EvalSet* SharedModelTest::eval_set_ = nullptr;
eval::EvalSet* SharedModelTest::calib_set_ = nullptr;
CalibrationSet* SharedModelTest::calib_ = nullptr;

double SquaredError(const float* a, const float* b, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return s;
}

// tr(dW H dW^T) with dW = W - W_hat and H = 2/N sum x x^T (the undamped calibration Hessian):
// equals 2/N * ||X W^T - X W_hat^T||_F^2, the output error GPTQ minimises, on the same X.
double HessianOutputError(const float* w, const float* w_hat, int64_t rows, int64_t cols,
                          const std::vector<double>& h) {
  double total = 0;
  std::vector<double> d(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      d[c] = static_cast<double>(w[r * cols + c]) - static_cast<double>(w_hat[r * cols + c]);
    }
    for (int64_t i = 0; i < cols; ++i) {
      double hi = 0;
      for (int64_t j = 0; j < cols; ++j) hi += h[i * cols + j] * d[j];
      total += d[i] * hi;
    }
  }
  return total;
}

TEST_F(SharedModelTest, CalibrationIsBitIdenticalAtOneAndTwoThreads) {
  auto one = CollectCalibration(*fwd_, *calib_set_, 1);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->tokens(), calib_->tokens());
  int64_t expected_tokens = 0;
  for (const auto& s : calib_set_->sequences) expected_tokens += s.tokens.size();
  EXPECT_EQ(one->tokens(), expected_tokens);
  for (int l = 0; l < model().config.n_layers; ++l) {
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      const CalibrationStats* a = one->Get(l, kind);
      const CalibrationStats* b = calib_->Get(l, kind);
      ASSERT_NE(a, nullptr);
      ASSERT_NE(b, nullptr);
      EXPECT_EQ(a->in_features(), model().config.LinearCols(kind));
      EXPECT_EQ(a->num_samples(), expected_tokens);
      EXPECT_EQ(a->num_samples(), b->num_samples());
      // Bit for bit: compare as exact doubles, no tolerance.
      EXPECT_TRUE(a->Hessian() == b->Hessian()) << "layer " << l << " kind " << k;
    }
  }
}

// 4-bit error < 2-bit error for every module and backend; HQQ's lp error <= RTN's; GPTQ's
// calibration output error <= RTN's. Every comparison is of two errors of the same tensor, so
// no tolerance is involved: the properties hold exactly or the backend is wrong.
TEST_F(SharedModelTest, PerModuleErrorPropertiesOnRealWeights) {
  for (int g : {32, 64}) {
    auto rtn = MustBuild(model(), "rtn", g, PlayerGranularity::kModule, nullptr);
    auto hqq = MustBuild(model(), "hqq", g, PlayerGranularity::kModule, nullptr);
    auto gptq = MustBuild(model(), "gptq", g, PlayerGranularity::kModule, calib_);
    ASSERT_NE(rtn, nullptr);
    ASSERT_NE(hqq, nullptr);
    ASSERT_NE(gptq, nullptr);
    const double p = HqqOptions().lp_norm;
    std::map<std::string, double> total_sq;  // reported as test properties, not checked
    for (int l = 0; l < model().config.n_layers; ++l) {
      for (int k = 0; k < kNumLinear; ++k) {
        const auto kind = static_cast<LinearKind>(k);
        const model::Tensor& w = model().layers[l][kind];
        const int64_t n = w.numel();
        const std::string where = w.name() + " G=" + std::to_string(g);
        for (const QuantizedModel* qm : {rtn.get(), hqq.get(), gptq.get()}) {
          const double e2 = SquaredError(w.data(), qm->Dequantized(l, kind, 2).data(), n);
          const double e4 = SquaredError(w.data(), qm->Dequantized(l, kind, 4).data(), n);
          EXPECT_LT(e4, e2) << qm->backend() << " " << where;
          total_sq[qm->backend() + "_g" + std::to_string(g) + "_sq_err_2"] += e2;
          total_sq[qm->backend() + "_g" + std::to_string(g) + "_sq_err_4"] += e4;
        }
        const std::vector<double> h = calib_->Get(l, kind)->Hessian();
        for (int bits : {2, 4}) {
          const double lp_rtn = LpError(w.data(), rtn->Dequantized(l, kind, bits).data(), n, p);
          const double lp_hqq = LpError(w.data(), hqq->Dequantized(l, kind, bits).data(), n, p);
          EXPECT_LE(lp_hqq, lp_rtn) << where << " bits " << bits;
          const double out_rtn = HessianOutputError(
              w.data(), rtn->Dequantized(l, kind, bits).data(), w.dim(0), w.dim(1), h);
          const double out_gptq = HessianOutputError(
              w.data(), gptq->Dequantized(l, kind, bits).data(), w.dim(0), w.dim(1), h);
          EXPECT_LE(out_gptq, out_rtn) << where << " bits " << bits;
        }
      }
    }
    for (const auto& [key, value] : total_sq) RecordProperty(key, std::to_string(value));
  }
}

// The fake quantization of shared/data/README.md's sanity table: per group of 32 input
// columns, scale = (max - min) / (2^b - 1), a float zero at min (no rounding of the zero),
// w_hat = min + scale * round((w - min) / scale).
std::vector<std::vector<float>> ReadmeFakeQuant(const model::Model& m, int bits, int g) {
  std::vector<std::vector<float>> out;
  const int max_code = (1 << bits) - 1;
  for (const auto& layer : m.layers) {
    for (int k = 0; k < kNumLinear; ++k) {
      const model::Tensor& w = layer.linear[k];
      const int64_t rows = w.dim(0), cols = w.dim(1);
      std::vector<float> wh(w.values().begin(), w.values().end());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c0 = 0; c0 < cols; c0 += g) {
          const int64_t c1 = std::min(cols, c0 + g);
          float* x = wh.data() + r * cols;
          const float lo = *std::min_element(x + c0, x + c1);
          const float hi = *std::max_element(x + c0, x + c1);
          const double s = (static_cast<double>(hi) - lo) / max_code;
          if (s == 0) continue;
          for (int64_t c = c0; c < c1; ++c) {
            const double q = std::clamp(std::nearbyint((x[c] - lo) / s), 0.0, double(max_code));
            x[c] = static_cast<float>(lo + q * s);
          }
        }
      }
      out.push_back(std::move(wh));
    }
  }
  return out;
}

TEST_F(SharedModelTest, PerplexityOrderAndReadmeCrossCheck) {
  eval::Evaluator ev(*fwd_, 2);
  auto fp = ev.Nll(forward::WeightSet::FromModel(model()), *eval_set_);
  ASSERT_TRUE(fp.ok()) << fp.status();
  EXPECT_EQ(fp->tokens, 35351);
  EXPECT_NEAR(fp->ppl, 3.7421, 0.0005);

  // 1. The evaluation of swapped-in weights reproduces the README's fake-quant figures when
  //    given the README's own quantizer. The README prints 4 significant digits; allow the
  //    last printed digit +-1 (fp32 rounding of a different but equivalent implementation
  //    moves only the 5th digit, as the fp32 figure 3.7421 shows).
  for (auto [bits, ref_ppl, tol] : {std::tuple{4, 4.046, 0.001}, std::tuple{2, 261.4, 0.1}}) {
    const auto fake = ReadmeFakeQuant(model(), bits, 32);
    forward::WeightSet ws = forward::WeightSet::FromModel(model());
    for (int l = 0; l < model().config.n_layers; ++l) {
      for (int k = 0; k < kNumLinear; ++k) ws.linear[l][k] = fake[l * kNumLinear + k].data();
    }
    auto r = ev.Nll(ws, *eval_set_);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_NEAR(r->ppl, ref_ppl, tol) << "README fake quant, " << bits << " bits";
    RecordProperty("readme_fake_quant_ppl_" + std::to_string(bits), std::to_string(r->ppl));
  }

  // 2. Every backend: fp < all-4-bit < all-2-bit.
  for (const char* backend : {"rtn", "hqq", "gptq"}) {
    auto qm = MustBuild(model(), backend, 64, PlayerGranularity::kBlock, calib_);
    ASSERT_NE(qm, nullptr);
    auto q4 = ev.Nll(qm->Uniform(4), *eval_set_);
    auto q2 = ev.Nll(qm->Uniform(2), *eval_set_);
    ASSERT_TRUE(q4.ok() && q2.ok());
    RecordProperty(std::string(backend) + "_g64_ppl_4", std::to_string(q4->ppl));
    RecordProperty(std::string(backend) + "_g64_ppl_2", std::to_string(q2->ppl));
    EXPECT_LT(fp->nll, q4->nll) << backend;
    EXPECT_LT(q4->nll, q2->nll) << backend;
  }

  // 3. Every width, every backend: fp < 8 < 4 < 3 < 2 bits in NLL. At 8 bits the step is
  //    15/255 of the 4-bit step, so the rounding noise variance is ~1/289 of it and, the loss
  //    being smooth at the fp weights, so is the NLL cost to second order: we require less
  //    than 1/20 of the 4-bit cost (a 14x margin for the first-order term noise leaves).
  //    On the first 30 stories (~10k tokens), to keep the test short.
  eval::EvalSet head = *eval_set_;
  head.sequences.resize(30);
  auto fp_head = ev.Nll(forward::WeightSet::FromModel(model()), head);
  ASSERT_TRUE(fp_head.ok()) << fp_head.status();
  for (const char* backend : {"rtn", "hqq", "gptq"}) {
    auto q = MakeQuantizer(backend);
    ASSERT_TRUE(q.ok());
    QuantConfig cfg;
    cfg.group_size = 64;
    auto qm = QuantizedModel::Build(model(), **q, cfg, PlayerGranularity::kBlock, calib_,
                                    nullptr, std::vector<int>{2, 3, 4, 8});
    ASSERT_TRUE(qm.ok()) << qm.status();
    std::map<int, double> nll;
    for (int bits : {2, 3, 4, 8}) {
      auto r = ev.Nll((*qm)->Uniform(bits), head);
      ASSERT_TRUE(r.ok()) << r.status();
      nll[bits] = r->nll;
      RecordProperty(std::string(backend) + "_g64_ppl_w" + std::to_string(bits),
                     std::to_string(r->ppl));
    }
    EXPECT_LT(fp_head->nll, nll[8]) << backend;
    EXPECT_LT(nll[8], nll[4]) << backend;
    EXPECT_LT(nll[4], nll[3]) << backend;
    EXPECT_LT(nll[3], nll[2]) << backend;
    EXPECT_LT(nll[8] - fp_head->nll, (nll[4] - fp_head->nll) / 20) << backend;
  }

  // 4. Our RTN at group 32 against the README's 4.046. The one difference from the README's
  //    quantizer is the integer zero point (rtn.h): the grid is shifted by less than half a
  //    step, so the rounding noise has the same size but another realisation. See kRtnBand.
  auto rtn32 = MustBuild(model(), "rtn", 32, PlayerGranularity::kBlock, nullptr);
  ASSERT_NE(rtn32, nullptr);
  auto r4 = ev.Nll(rtn32->Uniform(4), *eval_set_);
  ASSERT_TRUE(r4.ok());
  const double readme_excess = std::log(4.046 / 3.742);  // 4-bit NLL cost in the README
  const double our_excess = r4->nll - fp->nll;
  RecordProperty("rtn_g32_ppl_4", std::to_string(r4->ppl));
  // kRtnBand: the 4-bit NLL cost (0.078 nats/token in the README) is a sum of the effects of
  // rounding noise of variance ~s^2/12 on every weight. Shifting the grid by a sub-step offset
  // keeps that variance, so the expected cost is the same and only its realisation changes;
  // we accept our cost within +-25% of the README's (i.e. PPL about 3.97 .. 4.12).
  EXPECT_NEAR(our_excess, readme_excess, 0.25 * readme_excess)
      << "RTN G=32 all-4-bit PPL " << r4->ppl << " vs README 4.046";
}

}  // namespace
}  // namespace impq::quant
