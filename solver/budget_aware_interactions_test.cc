#include "solver/budget_aware_interactions.h"

#include <bit>
#include <cmath>
#include <functional>
#include <limits>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "solver/coalition_evaluator.h"
#include "solver/exact_shapley.h"
#include "solver/spqe.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

// Every coalition of a game small enough to enumerate, in mask order.
std::vector<Observation> AllCoalitions(const std::function<double(const Coalition&)>& game, int n) {
  std::vector<Observation> obs;
  for (uint64_t mask = 0; mask < (uint64_t{1} << n); ++mask) {
    Coalition q = CoalitionFromMask(mask, n);
    obs.push_back({q, game(q)});
  }
  return obs;
}

// Exact mean marginal of player i over coalitions S ∌ i of size k.
double ExactSizeMarginal(const std::function<double(const Coalition&)>& game, int n, int i, int k) {
  double sum = 0.0;
  int64_t count = 0;
  for (uint64_t mask = 0; mask < (uint64_t{1} << n); ++mask) {
    if ((mask >> i) & 1 || std::popcount(mask) != k) continue;
    sum += game(CoalitionFromMask(mask | (uint64_t{1} << i), n)) - game(CoalitionFromMask(mask, n));
    ++count;
  }
  return sum / static_cast<double>(count);
}

TEST(TargetCoalitionSizeTest, InterpolatesAndClamps) {
  PlayerBytes bytes{.bytes2 = {10, 20, 30, 40}, .bytes4 = {20, 40, 60, 80}};  // all2 100, all4 200
  EXPECT_DOUBLE_EQ(*TargetCoalitionSize(bytes, 200), 0.0);
  EXPECT_DOUBLE_EQ(*TargetCoalitionSize(bytes, 100), 4.0);
  EXPECT_DOUBLE_EQ(*TargetCoalitionSize(bytes, 150), 2.0);
  EXPECT_DOUBLE_EQ(*TargetCoalitionSize(bytes, 50), 4.0);   // below all-2-bit: clamped
  EXPECT_DOUBLE_EQ(*TargetCoalitionSize(bytes, 300), 0.0);  // above all-4-bit: clamped
  PlayerBytes flat{.bytes2 = {5}, .bytes4 = {5}};
  EXPECT_EQ(TargetCoalitionSize(flat, 5).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WindowSizeWeightsTest, UniformBelowTargetWithFractionalEdge) {
  EXPECT_EQ(WindowSizeWeights(5, 2.5), (std::vector<double>{1, 1, 0.5, 0, 0}));
  EXPECT_EQ(WindowSizeWeights(5, 0.2), (std::vector<double>{1, 0, 0, 0, 0}));
  EXPECT_EQ(WindowSizeWeights(3, 3.0), (std::vector<double>{1, 1, 1}));
}

TEST(WindowSizeWeightsTest, TopWindowIsTheComplement) {
  EXPECT_EQ(TopWindowSizeWeights(5, 2.5), (std::vector<double>{0, 0, 0.5, 1, 1}));
  EXPECT_EQ(TopWindowSizeWeights(5, 4.6), (std::vector<double>{0, 0, 0, 0, 1}));  // k* > n − 1
  EXPECT_EQ(TopWindowSizeWeights(3, 0.0), (std::vector<double>{1, 1, 1}));
  for (double k : {1.0, 1.25, 2.5, 3.75}) {
    const std::vector<double> low = WindowSizeWeights(5, k), top = TopWindowSizeWeights(5, k);
    for (int t = 0; t < 5; ++t) EXPECT_DOUBLE_EQ(low[t] + top[t], 1.0) << k << " at " << t;
  }
}

// With k* > n − 1 all the weight is at t = n − 1: the top window is leave-one-out from the
// all-2-bit model, v(N) − v(N \ {i}).
TEST(SemivalueEstimatorTest, TopWindowAtTheAllTwoBitEndIsLeaveOneOut) {
  const int n = 6;
  const testing::RandomGame game{testing::RandomQuadraticGame(n, 2), 5};
  const std::vector<Observation> obs = AllCoalitions(game, n);
  const InteractionInput input{.num_players = n, .marginals = {}, .observations = obs};
  auto top = NewTopWindowSemivalueEstimator(n, n - 0.5)->Estimate(input);
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->estimator, "window_top");
  const Coalition all2(n, 1);
  for (int i = 0; i < n; ++i) {
    Coalition without = all2;
    without[i] = 0;
    EXPECT_NEAR(top->linear[i], game(all2) - game(without), 1e-12) << i;
  }
}

TEST(SizedMarginalsTest, WalkGivesOneMarginalPerStep) {
  const int n = 4;
  const testing::QuadraticGame game = testing::RandomQuadraticGame(n, 3);
  const Permutation perm = {2, 0, 3, 1};
  std::vector<Observation> obs;
  for (const Coalition& q : WalkCoalitions(perm)) obs.push_back({q, game(q)});
  obs.push_back(obs.front());  // a duplicate changes nothing
  auto m = SizedMarginalsFromObservations(n, obs);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), 4u);
  for (int t = 0; t < n; ++t) {
    EXPECT_EQ((*m)[t].player, perm[t]);
    EXPECT_EQ((*m)[t].size, t);
    EXPECT_DOUBLE_EQ((*m)[t].value, obs[t + 1].loss - obs[t].loss);
  }
  EXPECT_EQ(SizedMarginalsFromObservations(65, obs).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// More players than a mask holds (a width ladder's 105 steps): one marginal per walk step.
TEST(SizedMarginalsTest, WalkOverMoreThan64Players) {
  const int n = 105;
  Permutation perm(n);
  for (int t = 0; t < n; ++t) perm[t] = (t * 37) % n;  // 37 is coprime to 105
  std::vector<Observation> obs;
  double loss = 0;
  for (const Coalition& q : WalkCoalitions(perm)) obs.push_back({q, loss += 0.5 + CoalitionSize(q)});
  auto m = SizedMarginalsFromObservations(n, obs);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->size(), static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    EXPECT_EQ((*m)[t].player, perm[t]);
    EXPECT_EQ((*m)[t].size, t);
    EXPECT_DOUBLE_EQ((*m)[t].value, obs[t + 1].loss - obs[t].loss);
  }
}

// The defining property: with all weight at one size k and every coalition observed, the
// estimate is exactly the mean marginal over coalitions of size k.
TEST(SemivalueEstimatorTest, PointMassReproducesExactSizeMarginals) {
  const int n = 7;
  const testing::RandomGame game{testing::RandomQuadraticGame(n, 8), 13};
  const std::vector<Observation> obs = AllCoalitions(game, n);
  const InteractionInput input{.num_players = n, .marginals = {}, .observations = obs};
  for (int k = 0; k < n; ++k) {
    std::vector<double> w(n, 0.0);
    w[k] = 1.0;
    auto obj = SemivalueEstimator(w, "point").Estimate(input);
    ASSERT_TRUE(obj.ok()) << obj.status();
    EXPECT_EQ(obj->estimator, "point");
    for (int i = 0; i < n; ++i) {
      // Both sides are means of the same differences, summed in different orders.
      EXPECT_NEAR(obj->linear[i], ExactSizeMarginal(game, n, i, k), 1e-12) << i << " at " << k;
      for (int j = 0; j < n; ++j) EXPECT_EQ(obj->K(i, j), 0.0);
    }
  }
}

TEST(SemivalueEstimatorTest, UniformWeightsAreShapleyAndPointMassAtZeroIsIsolated) {
  const int n = 6;
  const testing::RandomGame game{testing::RandomQuadraticGame(n, 4), 9};
  FunctionEvaluator eval(game);
  auto table = TabulateGame(eval, n);
  ASSERT_TRUE(table.ok());
  const std::vector<double> phi = ShapleyFromTable(*table, n);
  const std::vector<Observation> obs = AllCoalitions(game, n);
  const InteractionInput input{.num_players = n, .marginals = {}, .observations = obs};
  auto shapley = SemivalueEstimator(std::vector<double>(n, 1.0), "shapley").Estimate(input);
  ASSERT_TRUE(shapley.ok());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(shapley->linear[i], phi[i], 1e-12);
  // Window with k* < 1 = isolated Δ, v({i}) − v(∅), even from the singletons alone.
  std::vector<Observation> singletons = {{EmptyCoalition(n), game(EmptyCoalition(n))}};
  for (int i = 0; i < n; ++i) {
    Coalition q = EmptyCoalition(n);
    q[i] = 1;
    singletons.push_back({q, game(q)});
  }
  const InteractionInput iso{.num_players = n, .marginals = {}, .observations = singletons};
  auto window = NewWindowSemivalueEstimator(n, 0.5)->Estimate(iso);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(window->estimator, "window");
  for (int i = 0; i < n; ++i) {
    EXPECT_DOUBLE_EQ(window->linear[i], singletons[i + 1].loss - singletons[0].loss);
  }
}

// On an additive game every marginal is a_i, so any window returns a exactly, whatever walks
// were observed; the fallback to the nearest observed size is exercised by a far window.
TEST(SemivalueEstimatorTest, AdditiveGameFromWalksAndFallback) {
  const int n = 9;
  testing::QuadraticGame game = testing::RandomQuadraticGame(n, 6, /*interaction=*/0.0);
  FunctionEvaluator eval(game);
  SpqeOptions options;
  options.num_players = n;
  options.max_permutations = 2;
  options.seed = 1;
  auto spqe = RunSpqe(eval, options);
  ASSERT_TRUE(spqe.ok());
  for (double k : {0.0, 2.5, 9.0}) {
    auto obj = NewWindowSemivalueEstimator(n, k)->Estimate(InputFromSpqe(*spqe, n));
    ASSERT_TRUE(obj.ok()) << obj.status();
    for (int i = 0; i < n; ++i) EXPECT_NEAR(obj->linear[i], game.a[i], 1e-12) << k;
  }
  // No marginal at all for some player: FailedPrecondition naming it.
  std::vector<Observation> two = {{EmptyCoalition(n), 1.0}};
  Coalition q = EmptyCoalition(n);
  q[0] = 1;
  two.push_back({q, 2.0});
  const InteractionInput sparse{.num_players = n, .marginals = {}, .observations = two};
  EXPECT_EQ(NewWindowSemivalueEstimator(n, 3)->Estimate(sparse).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SemivalueEstimator(std::vector<double>(n, 0.0), "z").Estimate(sparse).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SemivalueEstimator({1.0}, "short").Estimate(sparse).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LocalSurrogateEstimatorTest, ExactOnQuadraticGameForAnyBandwidth) {
  const int n = 8;
  const testing::QuadraticGame game = testing::RandomQuadraticGame(n, 17);
  FunctionEvaluator eval(game);
  SpqeOptions options;
  options.num_players = n;
  options.max_permutations = 60;
  options.seed = 2;
  auto spqe = RunSpqe(eval, options);
  ASSERT_TRUE(spqe.ok());
  for (double bandwidth : {1.5, 3.0, 100.0}) {
    auto obj = LocalSurrogateEstimator(2.0, bandwidth, 0.0).Estimate(InputFromSpqe(*spqe, n));
    ASSERT_TRUE(obj.ok()) << obj.status();
    EXPECT_EQ(obj->estimator, "local_surrogate");
    // An exact model: weighted least squares returns it whatever the (positive) weights, up
    // to rounding amplified by the conditioning (weights down to e^-8 at bandwidth 1.5).
    EXPECT_NEAR(obj->constant, game.c, 1e-7) << bandwidth;
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(obj->linear[i], game.a[i], 1e-7) << bandwidth;
      for (int j = i + 1; j < n; ++j) EXPECT_NEAR(2.0 * obj->K(i, j), game.b[i * n + j], 1e-7);
    }
  }
}

TEST(LocalSurrogateEstimatorTest, InfiniteBandwidthIsTheGlobalSurrogate) {
  const int n = 7;
  const testing::RandomGame game{testing::RandomQuadraticGame(n, 5), 3};
  FunctionEvaluator eval(game);
  SpqeOptions options;
  options.num_players = n;
  options.max_permutations = 12;
  options.seed = 7;
  auto spqe = RunSpqe(eval, options);
  ASSERT_TRUE(spqe.ok());
  const InteractionInput input = InputFromSpqe(*spqe, n);
  auto local = LocalSurrogateEstimator(3.0, std::numeric_limits<double>::infinity(), 1e-3)
                   .Estimate(input);
  auto global = SurrogateInteractionEstimator(1e-3).Estimate(input);
  ASSERT_TRUE(local.ok() && global.ok());
  EXPECT_EQ(local->linear, global->linear);  // identical arithmetic, bit for bit
  EXPECT_EQ(local->quadratic, global->quadratic);
  EXPECT_EQ(LocalSurrogateEstimator(3.0, 0.0).Estimate(input).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace impq::solver
