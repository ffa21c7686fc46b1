#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "common/rng.h"
#include "common/test_paths.h"
#include "gtest/gtest.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/llama_forward_ref.h"
#include "worker/model/loader.h"

namespace impq::forward {
namespace {

constexpr double kU = 0x1p-24;  // float32 unit roundoff

model::ModelConfig SmallConfig() {
  model::ModelConfig c;
  c.dim = 96;
  c.hidden_dim = 200;  // not a multiple of the 128-column matmul chunk
  c.n_layers = 3;
  c.n_heads = 6;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.seq_len = 160;
  return c;
}

std::vector<int> RandomTokens(int n, int vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int> t(n);
  for (auto& x : t) x = static_cast<int>(rng.Below(static_cast<uint64_t>(vocab)));
  return t;
}

// All logits of the fast path for `tokens`.
std::vector<float> FastLogits(const LlamaForward& fwd, const WeightSet& w,
                              const std::vector<int>& tokens, ThreadPool* pool) {
  Workspace ws;
  return fwd.AllLogits(tokens, w, ws, pool);
}

// Tolerance for float32 logits against the double reference. A float32 dot product of length
// K has |error| <= K·u·Σ|a_i b_i| (Higham, γ_K); errors of consecutive operations add up with a
// gain of about one through the residual stream. Bounding Σ|a b| by the largest logit
// magnitude times the number of sequential K-long reductions (per block: norm, q/k/v, scores,
// softmax, att·v, o, norm, gate/up, down = 10; plus the head) gives the bound below.
double LogitTolerance(const model::ModelConfig& c, int64_t T, const std::vector<double>& ref) {
  return LogitErrorBound(c, T, ref, 10.0 * c.n_layers + 2);
}

void ExpectMatchesReference(const model::Model& m, const std::vector<int>& tokens) {
  LlamaForward fwd(m);
  const auto w = WeightSet::FromModel(m);
  const auto fast = FastLogits(fwd, w, tokens, nullptr);
  const auto ref = LlamaForwardRef(m, tokens);
  const double tol = LogitTolerance(m.config, static_cast<int64_t>(tokens.size()), ref);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(fast[i] - ref[i]));
  EXPECT_LE(worst, tol) << "largest |fast - ref| over " << ref.size() << " logits";
  // The derived bound is a worst case; the observed error should be far below it.
  ::testing::Test::RecordProperty("max_abs_error", std::to_string(worst));
  ::testing::Test::RecordProperty("tolerance", std::to_string(tol));
}

TEST(LlamaForwardTest, MatchesScalarReferenceOnRandomGqaModel) {
  const auto m = model::MakeRandomModel(SmallConfig(), 11);
  // 150 tokens: several 64-row attention blocks, a ragged last block.
  ExpectMatchesReference(m, RandomTokens(150, 300, 3));
}

TEST(LlamaForwardTest, MatchesScalarReferenceWithHalfRopeAndUntiedHead) {
  auto c = SmallConfig();
  c.rope_style = model::RopeStyle::kHalf;
  c.tied_embeddings = false;
  c.n_kv_heads = 6;  // plain multi-head attention
  c.rope_theta = 500000.0f;
  ExpectMatchesReference(model::MakeRandomModel(c, 12), RandomTokens(70, 300, 4));
}

TEST(LlamaForwardTest, MatchesScalarReferenceOnSharedStories260K) {
  auto lm = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"), SharedDataPath("tok512.bin"));
  ASSERT_TRUE(lm.ok()) << lm.status();
  ExpectMatchesReference(lm->model, lm->tokenizer->Encode("Once upon a time, there was a big dog named Max.", true));
}

// Positions past LlamaForward::kRopeTablePositions get their rotary rows computed on use, from
// the same formula as the table: the pass still matches the reference there. The model claims
// a context of 2^24 (metadata a file may hold), which no longer sizes any table.
TEST(LlamaForwardTest, PositionsBeyondTheRopeTableMatchTheReference) {
  model::ModelConfig c;
  c.dim = 16;
  c.hidden_dim = 24;
  c.n_layers = 1;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 8;
  c.vocab_size = 24;
  c.seq_len = 1 << 24;
  const int64_t T = LlamaForward::kRopeTablePositions + 40;
  const auto m = model::MakeRandomModel(c, 14);
  LlamaForward fwd(m);
  const auto tokens = RandomTokens(static_cast<int>(T), c.vocab_size, 6);
  const auto fast = FastLogits(fwd, WeightSet::FromModel(m), tokens, nullptr);
  const auto ref = LlamaForwardRef(m, tokens);
  const double tol = LogitTolerance(c, T, ref);
  double worst_in_table = 0, worst_beyond = 0;
  const size_t table_end = static_cast<size_t>(LlamaForward::kRopeTablePositions) * c.vocab_size;
  for (size_t i = 0; i < ref.size(); ++i) {
    double& worst = i < table_end ? worst_in_table : worst_beyond;
    worst = std::max(worst, std::abs(fast[i] - ref[i]));
  }
  EXPECT_LE(worst_beyond, tol);
  EXPECT_LE(worst_in_table, tol);
}

TEST(LlamaForwardTest, BitIdenticalAtAnyThreadCount) {
  const auto m = model::MakeRandomModel(SmallConfig(), 13);
  LlamaForward fwd(m);
  const auto w = WeightSet::FromModel(m);
  const auto tokens = RandomTokens(130, 300, 5);
  const auto serial = FastLogits(fwd, w, tokens, nullptr);
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    const auto par = FastLogits(fwd, w, tokens, &pool);
    EXPECT_EQ(0, std::memcmp(serial.data(), par.data(), serial.size() * sizeof(float))) << threads;
  }
}

TEST(LlamaForwardTest, GreedyDecodingReproducesKarpathysSample) {
  // shared/data/README.md: greedy decoding from BOS reproduces the documented sample.
  auto lm = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"), SharedDataPath("tok512.bin"));
  ASSERT_TRUE(lm.ok()) << lm.status();
  LlamaForward fwd(lm->model);
  const auto w = WeightSet::FromModel(lm->model);
  std::vector<int> tokens = {lm->tokenizer->bos_id()};
  Workspace ws;
  const int64_t V = lm->model.config.vocab_size;
  while (tokens.size() < 60) {
    fwd.RunBlocks(tokens, w, ws, nullptr);
    const int64_t last = static_cast<int64_t>(tokens.size()) - 1;
    fwd.Logits(last, 1, ws, nullptr);
    tokens.push_back(static_cast<int>(std::max_element(ws.logits.begin(), ws.logits.begin() + V) - ws.logits.begin()));
  }
  const std::string text = lm->tokenizer->Decode(tokens);
  EXPECT_EQ(text.rfind("Once upon a time, there was a little girl named Lily. She loved to play "
                       "outside in the park.", 0), 0u)
      << text;
}

}  // namespace
}  // namespace impq::forward
