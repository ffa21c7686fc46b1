#include "worker/engine/local_evaluator.h"

#include <cmath>
#include <memory>
#include <vector>

#include "common/rng.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/test_paths.h"
#include "gtest/gtest.h"
#include "solver/exact_shapley.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "worker/engine/stories_fixture.h"
#include "worker/eval/evaluator.h"
#include "worker/model/loader.h"
#include "worker/quant/quantizer.h"

namespace impq::engine {
namespace {

using solver::Coalition;

// The shared stories260K model, RTN at group 64, on the first 8 stories (ctx 128) of the
// shared calibration text: small enough for milliseconds per evaluation, real enough to have
// real interactions.
class RealModel {
 public:
  static RealModel& Get() {
    static RealModel* m = new RealModel();
    return *m;
  }
  const model::Model& model() const { return stories_.model(); }
  const forward::LlamaForward& fwd() const { return stories_.fwd(); }
  const eval::EvalSet& set() const { return stories_.set(); }
  const quant::QuantizedModel& Quantized(quant::PlayerGranularity g) const {
    return g == quant::PlayerGranularity::kBlock ? *block_ : *module_;
  }

 private:
  RealModel()
      : stories_(128, 8),
        block_(stories_.Quantize(quant::PlayerGranularity::kBlock)),
        module_(stories_.Quantize(quant::PlayerGranularity::kModule)) {}
  fixtures::StoriesFixture stories_;
  std::unique_ptr<quant::QuantizedModel> block_, module_;
};

std::unique_ptr<LocalEvaluator> MakeEvaluator(quant::PlayerGranularity g, int threads,
                                              int64_t cache_bytes, int cache_slots = 1) {
  RealModel& m = RealModel::Get();
  LocalEvaluatorOptions o;
  o.threads = threads;
  o.max_cache_bytes = cache_bytes;
  o.cache_slots = cache_slots;
  auto ev = LocalEvaluator::Create(m.Quantized(g), m.fwd(), m.set(), o);
  IMPQ_CHECK(ev.ok()) << ev.status();
  return std::move(*ev);
}

// Two SPQE walks back to back (the order SPQE sends them), then a few random coalitions.
std::vector<Coalition> WalkAndRandomCoalitions(int n) {
  solver::SeededPermutationSampler sampler(n, /*seed=*/7, /*antithetic=*/true);
  std::vector<Coalition> out;
  for (int k = 0; k < 2; ++k) {
    for (auto& q : solver::WalkCoalitions(sampler.Get(k))) out.push_back(std::move(q));
  }
  Rng rng(11);
  for (int k = 0; k < 6; ++k) {
    Coalition q(n);
    for (auto& x : q) x = static_cast<uint8_t>(rng.Below(2));
    out.push_back(std::move(q));
  }
  return out;
}

TEST(LocalEvaluatorTest, PrefixReuseIsBitIdenticalToFullEvaluation) {
  RealModel& m = RealModel::Get();
  const auto g = quant::PlayerGranularity::kModule;
  const int n = m.Quantized(g).num_players();
  ASSERT_EQ(n, 35);
  const std::vector<Coalition> qs = WalkAndRandomCoalitions(n);

  auto full = MakeEvaluator(g, 1, /*cache_bytes=*/0);
  auto reuse1 = MakeEvaluator(g, 1, int64_t{1} << 30);
  auto reuse2 = MakeEvaluator(g, 2, int64_t{1} << 30);
  auto f = full->Evaluate(qs);
  auto r1 = reuse1->Evaluate(qs);
  auto r2 = reuse2->Evaluate(qs);
  ASSERT_TRUE(f.ok() && r1.ok() && r2.ok());

  // The independent path: Evaluator::Nll on QuantizedModel::Apply, one assignment at a time.
  eval::Evaluator direct(m.fwd(), 1);
  for (size_t k = 0; k < qs.size(); ++k) {
    std::vector<int> bits;
    for (uint8_t x : qs[k]) bits.push_back(x ? 2 : 4);
    auto w = m.Quantized(g).Apply(bits);
    ASSERT_TRUE(w.ok());
    auto nll = direct.Nll(*w, m.set());
    ASSERT_TRUE(nll.ok());
    // Exact equality: the same float operations in the same order, states copied exactly.
    EXPECT_EQ((*f)[k], nll->nll) << "coalition " << k;
    EXPECT_EQ((*r1)[k], nll->nll) << "coalition " << k;
    EXPECT_EQ((*r2)[k], nll->nll) << "coalition " << k;
  }
  const int64_t full_blocks = static_cast<int64_t>(qs.size()) * 8 * 5;
  EXPECT_EQ(full->stats().block_evals_full, full_blocks);
  EXPECT_EQ(full->stats().block_evals_done, full_blocks);
  EXPECT_EQ(full->stats().cached_sequences, 0);
  EXPECT_EQ(reuse1->stats().block_evals_full, full_blocks);
  EXPECT_EQ(reuse1->stats().cached_sequences, 8);
  // Along walks most steps change a block after the first: reuse must save work.
  EXPECT_GT(reuse1->stats().SavedFraction(), 0.2);
  EXPECT_EQ(reuse1->stats().block_evals_done, reuse2->stats().block_evals_done);
  EXPECT_EQ(reuse1->stats().sublayer_evals_done, reuse2->stats().sublayer_evals_done);
  EXPECT_EQ(full->stats().sublayer_evals_done, 2 * full_blocks);
  EXPECT_EQ(reuse1->stats().sublayer_evals_full, 2 * full_blocks);
  // Feed-forward restarts skip attention sublayers that block-granular reuse would rerun.
  EXPECT_GT(reuse1->stats().SublayerSavedFraction(), reuse1->stats().SavedFraction());
  EXPECT_GT(reuse1->stats().FlopSavedFraction(), 0.0);
  EXPECT_DOUBLE_EQ(full->stats().FlopSavedFraction(), 0.0);
}

// Exact restart points: a change in an attention module of block l reruns from block l's
// attention sublayer, a change in a feed-forward module from block l's feed-forward sublayer.
TEST(LocalEvaluatorTest, RestartsAtTheFirstChangedSublayer) {
  RealModel& m = RealModel::Get();
  const auto g = quant::PlayerGranularity::kModule;
  const int n = m.Quantized(g).num_players();
  const int L = m.fwd().config().n_layers;
  const int64_t S = 8;  // sequences in the test set
  auto ev = MakeEvaluator(g, 1, int64_t{1} << 30);
  Coalition base(static_cast<size_t>(n), 0);
  ASSERT_TRUE(ev->Evaluate(std::vector<Coalition>{base}).ok());
  int64_t done = ev->stats().sublayer_evals_done;
  ASSERT_EQ(done, S * 2 * L);
  struct Case {
    int layer;
    model::LinearKind kind;
    int64_t sublayers;  // expected per sequence
  };
  const Case cases[] = {{L - 1, model::LinearKind::kDown, 1},
                        {L - 1, model::LinearKind::kQ, 2},
                        {1, model::LinearKind::kUp, 2 * (L - 1) - 1},
                        {0, model::LinearKind::kO, 2 * L},
                        {0, model::LinearKind::kGate, 2 * L - 1}};
  Coalition q = base;
  for (const Case& c : cases) {
    q[static_cast<size_t>(c.layer * model::kNumLinear + static_cast<int>(c.kind))] ^= 1;
    auto r = ev->Evaluate(std::vector<Coalition>{q});
    ASSERT_TRUE(r.ok());
    const int64_t ran = ev->stats().sublayer_evals_done - done;
    done = ev->stats().sublayer_evals_done;
    EXPECT_EQ(ran, S * c.sublayers) << model::LinearKindName(c.kind) << " of block " << c.layer;
  }
}

TEST(LocalEvaluatorTest, ResultsDoNotDependOnBatchingOrCacheCap) {
  RealModel& m = RealModel::Get();
  const auto g = quant::PlayerGranularity::kModule;
  const int n = m.Quantized(g).num_players();
  const std::vector<Coalition> qs = WalkAndRandomCoalitions(n);
  auto batched = MakeEvaluator(g, 2, int64_t{1} << 30);
  auto all = batched->Evaluate(qs);
  ASSERT_TRUE(all.ok());
  // A cap that admits only some sequences (the first ones whose states fit).
  const int64_t per_token = 4 * 2 * 5 * 64;  // f32 · 2 stages per block · L · dim
  const int64_t cap = per_token * static_cast<int64_t>(m.set().sequences[0].tokens.size() +
                                                       m.set().sequences[1].tokens.size());
  auto capped = MakeEvaluator(g, 2, cap);
  EXPECT_EQ(capped->stats().cached_sequences, 2);
  EXPECT_EQ(capped->stats().cache_bytes, cap);
  // Reverse order, one coalition per call.
  for (size_t k = qs.size(); k-- > 0;) {
    auto one = capped->Evaluate(std::span<const Coalition>(&qs[k], 1));
    ASSERT_TRUE(one.ok());
    EXPECT_EQ((*one)[0], (*all)[k]) << "coalition " << k;
  }
}

// Two slots: a local search's pattern (an incumbent, its neighbours one at a time, a move, the
// new incumbent's neighbours) gives bit for bit the losses of full evaluations, runs exactly
// the sublayers from the first one a neighbour changes against the incumbent, and does less
// work than one slot, which restarts against the previous neighbour.
TEST(LocalEvaluatorTest, TwoSlotsKeepTheIncumbentAsABase) {
  RealModel& m = RealModel::Get();
  const auto g = quant::PlayerGranularity::kModule;
  const int n = m.Quantized(g).num_players();
  const int L = m.fwd().config().n_layers;
  const int64_t S = 8;
  auto stage = [](int player) {
    const int kind = player % model::kNumLinear;
    return 2 * (player / model::kNumLinear) + (kind >= static_cast<int>(model::LinearKind::kGate));
  };
  Rng rng(17);
  Coalition incumbent(static_cast<size_t>(n), 0);
  for (int i = 0; i < n; ++i) incumbent[i] = rng.Uniform() < 0.5;
  // Neighbours flip one early and one late player; one of them becomes the next incumbent.
  std::vector<Coalition> sequence = {incumbent};
  std::vector<int64_t> expected_sublayers = {2 * L};
  Coalition inc = incumbent;
  for (int round = 0; round < 2; ++round) {
    for (int k = 0; k < 6; ++k) {
      Coalition q = inc;
      const int a = 7 + 3 * k + round, b = n - 1 - k;
      q[a] ^= 1;
      q[b] ^= 1;
      sequence.push_back(q);
      expected_sublayers.push_back(2 * L - std::min(stage(a), stage(b)));
    }
    inc = sequence.back();  // the move: the last neighbour, still in a slot
  }
  auto one = MakeEvaluator(g, 1, int64_t{1} << 30, 1);
  auto two = MakeEvaluator(g, 1, int64_t{1} << 30, 2);
  auto full = MakeEvaluator(g, 1, 0);
  int64_t done = 0;
  for (size_t k = 0; k < sequence.size(); ++k) {
    auto a = one->Evaluate(std::span<const Coalition>(&sequence[k], 1));
    auto b = two->Evaluate(std::span<const Coalition>(&sequence[k], 1));
    auto f = full->Evaluate(std::span<const Coalition>(&sequence[k], 1));
    ASSERT_TRUE(a.ok() && b.ok() && f.ok());
    EXPECT_EQ((*b)[0], (*f)[0]) << "coalition " << k;
    EXPECT_EQ((*a)[0], (*f)[0]) << "coalition " << k;
    const int64_t ran = two->stats().sublayer_evals_done - done;
    done = two->stats().sublayer_evals_done;
    EXPECT_EQ(ran, S * expected_sublayers[k]) << "coalition " << k;
  }
  EXPECT_LT(two->stats().sublayer_evals_done, one->stats().sublayer_evals_done);
  EXPECT_EQ(two->stats().cache_bytes, 2 * one->stats().cache_bytes);
  LocalEvaluatorOptions bad;
  bad.cache_slots = 3;
  EXPECT_EQ(LocalEvaluator::Create(m.Quantized(g), m.fwd(), m.set(), bad).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LocalEvaluatorTest, RejectsMalformedCoalitions) {
  auto ev = MakeEvaluator(quant::PlayerGranularity::kBlock, 1, 0);
  std::vector<Coalition> bad = {Coalition{0, 1, 0}};
  auto r = ev->Evaluate(bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  bad = {Coalition{0, 1, 0, 2, 0}};
  EXPECT_EQ(ev->Evaluate(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ev->stats().coalitions, 0);
}

// The real model's game at block granularity (5 players, 32 coalitions) enumerated exactly;
// SPQE with antithetic pairs must converge to the exact Shapley values.
TEST(LocalEvaluatorTest, SpqeConvergesToExactShapleyOnTheRealBlockGame) {
  const auto g = quant::PlayerGranularity::kBlock;
  auto ev = MakeEvaluator(g, 2, int64_t{1} << 30);
  auto table = solver::TabulateGame(*ev, 5);
  ASSERT_TRUE(table.ok());
  const std::vector<double> exact = solver::ShapleyFromTable(*table, 5);

  solver::SpqeOptions o;
  o.num_players = 5;
  o.max_permutations = 400;
  o.antithetic = true;
  o.seed = 3;
  auto r = solver::RunSpqe(*ev, o);
  ASSERT_TRUE(r.ok());
  double sum = 0;
  for (int i = 0; i < 5; ++i) {
    sum += r->estimate.phi[i];
    // Tolerance from the reported SE: a 4σ band (two-sided normal tail 6e-5 per player). The
    // 1e-12 term covers the case SE = 0 (every sampled pair average equal to φ).
    EXPECT_LE(std::abs(r->estimate.phi[i] - exact[i]),
              4 * r->estimate.standard_error[i] + 1e-12)
        << "player " << i << " exact " << exact[i] << " estimate " << r->estimate.phi[i]
        << " SE " << r->estimate.standard_error[i];
    // And the SE is small against the value itself: the estimate has converged.
    EXPECT_LT(r->estimate.standard_error[i], 0.05 * std::abs(exact[i])) << "player " << i;
  }
  // Efficiency: every walk telescopes to v(N) − v(∅), so the estimates sum to it.
  const double total = (*table)[31] - (*table)[0];
  EXPECT_NEAR(sum, total, 1e-12 * 5 * std::abs(total) + 1e-15);
  // Only 32 distinct coalitions exist: SPQE's cache served the rest.
  EXPECT_LE(r->coalitions_evaluated, 32);
}

// More than two widths: the evaluator takes the ladder's step coalitions (width_ladder.h);
// along two ladder walks (prefix reuse on) every loss equals the full evaluation at the
// coalition's bits, and a coalition that is not closed is refused by name.
TEST(LocalEvaluatorTest, LadderWalksEqualFullEvaluationsAtTheirBits) {
  RealModel& m = RealModel::Get();
  const std::vector<int> widths = {2, 3, 4, 8};
  fixtures::StoriesFixture stories(64, 3);
  const auto qm = stories.Quantize(quant::PlayerGranularity::kBlock, widths);
  LocalEvaluatorOptions o;
  o.widths = widths;
  auto ev = LocalEvaluator::Create(*qm, stories.fwd(), stories.set(), o);
  ASSERT_TRUE(ev.ok()) << ev.status();
  const solver::WidthLadder& ladder = (*ev)->ladder();
  EXPECT_EQ((*ev)->num_steps(), qm->num_players() * 3);
  solver::LadderPermutationSampler sampler(ladder, 5, /*antithetic=*/true);
  std::vector<Coalition> walk;
  for (int k = 0; k < 2; ++k) {
    for (auto& q : solver::WalkCoalitions(sampler.Get(k))) walk.push_back(std::move(q));
  }
  auto losses = (*ev)->Evaluate(walk);
  ASSERT_TRUE(losses.ok()) << losses.status();
  eval::Evaluator full(stories.fwd(), 1);
  for (size_t t = 0; t < walk.size(); t += 5) {
    auto bits = ladder.BitsOf(walk[t]);
    ASSERT_TRUE(bits.ok());
    auto w = qm->Apply(*bits);
    ASSERT_TRUE(w.ok());
    auto nll = full.Nll(*w, stories.set());
    ASSERT_TRUE(nll.ok());
    EXPECT_EQ((*losses)[t], nll->nll) << "step " << t;
  }
  EXPECT_GT((*losses).back(), (*losses).front());  // all 2-bit vs all 8-bit
  Coalition open(static_cast<size_t>(ladder.num_steps()), 0);
  open[1] = 1;  // player 0's second step without its first
  auto refused = (*ev)->Evaluate(std::span(&open, 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("not closed"), std::string::npos);
  // A width the model does not have is refused at creation.
  o.widths = {2, 3, 5};
  EXPECT_FALSE(LocalEvaluator::Create(*qm, stories.fwd(), stories.set(), o).ok());
  (void)m;
}

}  // namespace
}  // namespace impq::engine
