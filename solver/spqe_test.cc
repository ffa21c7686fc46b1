#include "solver/spqe.h"

#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "solver/coalition_evaluator.h"
#include "solver/exact_shapley.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

SpqeOptions Opts(int n, int64_t permutations, uint64_t seed, bool antithetic = false) {
  SpqeOptions o;
  o.num_players = n;
  o.max_permutations = permutations;
  o.seed = seed;
  o.antithetic = antithetic;
  return o;
}

std::vector<double> ExactPhi(const std::function<double(const Coalition&)>& game, int n) {
  FunctionEvaluator eval(game);
  return ShapleyFromTable(*TabulateGame(eval, n), n);
}

TEST(SpqeTest, WalkAndMarginals) {
  const Permutation perm = {2, 0, 1};
  const std::vector<Coalition> walk = WalkCoalitions(perm);
  ASSERT_EQ(walk.size(), 4u);
  EXPECT_EQ(CoalitionToString(walk[0]), "000");
  EXPECT_EQ(CoalitionToString(walk[1]), "001");
  EXPECT_EQ(CoalitionToString(walk[2]), "101");
  EXPECT_EQ(CoalitionToString(walk[3]), "111");
  const std::vector<double> losses = {1.0, 1.5, 2.25, 4.0};
  auto m = MarginalsFromWalk(perm, losses);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, (std::vector<double>{0.75, 1.75, 0.5}));
  EXPECT_EQ(MarginalsFromWalk(perm, std::vector<double>{1.0, 2.0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(MarginalsFromWalk({0, 0, 1}, losses).ok());
}

TEST(SpqeTest, AdditiveGameIsExactFromOnePermutationPair) {
  const std::vector<double> a = {0.1, 0.7, 0.3, 0.05, 1.2};
  FunctionEvaluator eval([&](const Coalition& q) {
    double v = 3.0;
    for (size_t i = 0; i < q.size(); ++i) v += q[i] * a[i];
    return v;
  });
  SpqeOptions options = Opts(5, 2, 1);
  auto r = RunSpqe(eval, options);
  ASSERT_TRUE(r.ok()) << r.status();
  for (int i = 0; i < 5; ++i) {
    EXPECT_NEAR(r->estimate.phi[i], a[i], 1e-14);
    EXPECT_NEAR(r->estimate.standard_error[i], 0.0, 1e-14);
  }
}

// Antithetic pairs make quadratic games exact. For v(S) = c + Σ_{i∈S} a_i + Σ_{{i,j}⊆S} b_ij,
// the marginal of i in π is a_i + Σ_{j before i in π} b_ij. In reverse(π) the players before
// i are exactly those after i in π, so the two marginals sum to 2a_i + Σ_{j≠i} b_ij = 2φ_i —
// the same for every π. Hence every pair average equals φ_i, φ̂ is exact and the pair-based SE
// is 0 (up to rounding: losses ~3, so differences carry ~1e-15 absolute error).
TEST(SpqeTest, AntitheticPairsAreExactOnQuadraticGames) {
  for (uint64_t seed = 0; seed < 5; ++seed) {
    const testing::QuadraticGame game = testing::RandomQuadraticGame(10, seed, 0.5);
    FunctionEvaluator eval(game);
    SpqeOptions options = Opts(10, 6, seed, /*antithetic=*/true);
    auto r = RunSpqe(eval, options);
    ASSERT_TRUE(r.ok()) << r.status();
    const std::vector<double> phi = game.Shapley();
    for (int i = 0; i < 10; ++i) {
      EXPECT_NEAR(r->estimate.phi[i], phi[i], 1e-12);
      EXPECT_LT(r->estimate.standard_error[i], 1e-12);
    }
    // Without pairing the same game has a genuinely positive SE.
    options.antithetic = false;
    auto plain = RunSpqe(eval, options);
    ASSERT_TRUE(plain.ok());
    EXPECT_GT(plain->estimate.MaxStandardError(), 1e-3);
  }
}

TEST(SpqeTest, ConvergesToExactShapleyValues) {
  // The error of the mean of M i.i.d. marginals is ≈ N(0, SE²); 4·SE bounds each of the 8
  // players' errors except with probability ~6e-5 each, and the SE itself must be small.
  const int n = 8;
  for (uint64_t seed : {1u, 2u}) {
    testing::RandomGame game{testing::RandomQuadraticGame(n, seed), seed + 100};
    const std::vector<double> exact = ExactPhi(game, n);
    FunctionEvaluator eval(game);
    SpqeOptions options = Opts(n, 4000, seed);
    auto r = RunSpqe(eval, options);
    ASSERT_TRUE(r.ok());
    for (int i = 0; i < n; ++i) {
      EXPECT_LE(std::fabs(r->estimate.phi[i] - exact[i]), 4.0 * r->estimate.standard_error[i])
          << "player " << i;
      EXPECT_LT(r->estimate.standard_error[i], 0.03);
    }
  }
}

TEST(SpqeTest, StandardErrorsCoverAtNominalRate) {
  // 200 independent runs × 6 players; nominal coverage of φ̂ ± 1.96·SE is 95%, a little less
  // with M = 40 (t with 39 df: 94.3%). The 1200 events are correlated within a run, so the
  // pooled rate has sd ≲ 0.7% · sqrt(6) ≈ 1.6%: the bounds [0.90, 0.99] are ≥ 2.7 sd away from
  // 94.3%, and catch both an SE too small (under-coverage) and one too large (over-coverage).
  const int n = 6;
  testing::RandomGame game{testing::RandomQuadraticGame(n, 3), 55};
  const std::vector<double> exact = ExactPhi(game, n);
  for (bool antithetic : {false, true}) {
    int covered = 0, total = 0;
    for (uint64_t seed = 0; seed < 200; ++seed) {
      FunctionEvaluator eval(game);
      SpqeOptions options = Opts(n, antithetic ? 80 : 40, 1000 + seed, antithetic);
      auto r = RunSpqe(eval, options);
      ASSERT_TRUE(r.ok());
      for (int i = 0; i < n; ++i) {
        covered += std::fabs(r->estimate.phi[i] - exact[i]) <= 1.96 * r->estimate.standard_error[i];
        ++total;
      }
    }
    const double rate = static_cast<double>(covered) / total;
    RecordProperty(antithetic ? "coverage_antithetic" : "coverage_plain", std::to_string(rate));
    EXPECT_GE(rate, 0.90) << "antithetic=" << antithetic;
    EXPECT_LE(rate, 0.99) << "antithetic=" << antithetic;
  }
}

TEST(SpqeTest, CacheEvaluatesEachCoalitionOnce) {
  const int n = 5;
  const testing::QuadraticGame game = testing::RandomQuadraticGame(n, 4);
  FunctionEvaluator eval(game);
  SpqeOptions options = Opts(n, 100, 9);
  options.permutations_per_batch = 7;
  auto r = RunSpqe(eval, options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->coalitions_requested, 100 * (n + 1));
  EXPECT_EQ(r->coalitions_evaluated, eval.num_coalitions());
  EXPECT_EQ(r->coalitions_evaluated, static_cast<int64_t>(r->observations.size()));
  EXPECT_LE(r->coalitions_evaluated, 32);  // only 2^5 coalitions exist
  EXPECT_EQ(r->cache_hits, r->coalitions_requested - r->coalitions_evaluated);
  EXPECT_LE(eval.num_calls(), 15);  // at most one call per batch of 7; none once all are known
  for (const Observation& o : r->observations) EXPECT_EQ(o.loss, game(o.coalition));
}

TEST(SpqeTest, StopsEarlyOnStandardError) {
  const testing::QuadraticGame game = testing::RandomQuadraticGame(6, 1);
  FunctionEvaluator eval(game);
  SpqeOptions options = Opts(6, 1000, 2, /*antithetic=*/true);
  options.permutations_per_batch = 4;
  options.min_permutations = 8;
  options.se_threshold = 1e-9;
  auto r = RunSpqe(eval, options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stop_reason, SpqeStopReason::kStandardError);
  EXPECT_EQ(r->estimate.num_permutations, 8);
}

TEST(SpqeTest, StopsOnCallbackAndReportsProgress) {
  const testing::QuadraticGame game = testing::RandomQuadraticGame(6, 1);
  FunctionEvaluator eval(game);
  std::vector<int64_t> seen;
  SpqeOptions options = Opts(6, 100, 2);
  options.permutations_per_batch = 5;
  options.progress_callback = [&](const SpqeProgress& p) { seen.push_back(p.permutations_done); };
  options.stop_callback = [](const SpqeProgress& p) { return p.permutations_done >= 15; };
  auto r = RunSpqe(eval, options);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stop_reason, SpqeStopReason::kCallback);
  EXPECT_EQ(seen, (std::vector<int64_t>{5, 10, 15}));
  EXPECT_EQ(r->marginals.size(), 15u);
}

TEST(SpqeTest, DeterministicAndIndependentOfBatching) {
  testing::RandomGame game{testing::RandomQuadraticGame(7, 6), 8};
  std::vector<SpqeResult> runs;
  for (int64_t batch : {1, 7, 64, 64}) {
    FunctionEvaluator eval(game);
    SpqeOptions options = Opts(7, 30, 123, /*antithetic=*/true);
    options.permutations_per_batch = batch;
    auto r = RunSpqe(eval, options);
    ASSERT_TRUE(r.ok());
    runs.push_back(*std::move(r));
  }
  for (const SpqeResult& r : runs) {
    EXPECT_EQ(r.permutations, runs[0].permutations);
    EXPECT_EQ(r.marginals, runs[0].marginals);
    EXPECT_EQ(r.estimate.phi, runs[0].estimate.phi);
    EXPECT_EQ(r.estimate.standard_error, runs[0].estimate.standard_error);
  }
  // Same batching: identical observation order too.
  ASSERT_EQ(runs[2].observations.size(), runs[3].observations.size());
  for (size_t k = 0; k < runs[2].observations.size(); ++k) {
    EXPECT_EQ(runs[2].observations[k].coalition, runs[3].observations[k].coalition);
  }
}

TEST(SpqeTest, RejectsBadOptionsAndPropagatesEvaluatorErrors) {
  FunctionEvaluator ok([](const Coalition&) { return 1.0; });
  EXPECT_EQ(RunSpqe(ok, Opts(4, 3, 0, /*antithetic=*/true)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(RunSpqe(ok, Opts(0, 3, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  FunctionEvaluator bad([](const Coalition& q) { return CoalitionSize(q) == 2 ? NAN : 1.0; });
  EXPECT_EQ(RunSpqe(bad, Opts(4, 2, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AggregateMarginalsTest, PairAveragesAreTheSamples) {
  // Pairs (1, 3) and (2, 6): pair means 2 and 4 → φ = 3, SE = sd{2,4}/sqrt(2) = 1.
  const std::vector<std::vector<double>> m = {{1.0}, {3.0}, {2.0}, {6.0}};
  auto paired = AggregateMarginals(m, true);
  ASSERT_TRUE(paired.ok());
  EXPECT_DOUBLE_EQ(paired->phi[0], 3.0);
  EXPECT_DOUBLE_EQ(paired->standard_error[0], 1.0);
  EXPECT_EQ(paired->num_samples, 2);
  EXPECT_FALSE(AggregateMarginals(std::vector<std::vector<double>>{{1.0}}, true).ok());
}

}  // namespace
}  // namespace impq::solver
