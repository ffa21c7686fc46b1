#include "solver/interactions.h"

#include <cmath>

#include "gtest/gtest.h"
#include "common/rng.h"
#include "solver/coalition_evaluator.h"
#include "solver/spqe.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

TEST(CovarianceInteractionsTest, HandComputedExample) {
  // Marginals of 2 players over 3 permutations: means φ = (2, 1);
  // C = [[1, -0.5], [-0.5, 1]] (divisor M − 1 = 2).
  const std::vector<std::vector<double>> m = {{1.0, 1.5}, {2.0, 1.0}, {3.0, 0.5}};
  InteractionInput input{.num_players = 2, .marginals = m, .observations = {}};
  auto obj = CovarianceInteractionEstimator(0.5).Estimate(input);
  ASSERT_TRUE(obj.ok()) << obj.status();
  EXPECT_EQ(obj->estimator, "covariance");
  // Player 1's marginals (1.5, 1.0, 0.5): var 0.25; cov with player 0: −0.5.
  EXPECT_DOUBLE_EQ(obj->K(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(obj->K(1, 1), 0.25);
  EXPECT_DOUBLE_EQ(obj->K(0, 1), -0.25);  // (1 − α)·C_01
  EXPECT_DOUBLE_EQ(obj->K(1, 0), -0.25);
  EXPECT_DOUBLE_EQ(obj->linear[0], 2.0 + 0.25);  // φ_0 − K_01
  EXPECT_DOUBLE_EQ(obj->linear[1], 1.0 + 0.25);
  EXPECT_DOUBLE_EQ(obj->constant, 0.0);
  // α = 1 keeps only the diagonal, so a = φ.
  auto diag = CovarianceInteractionEstimator(1.0).Estimate(input);
  ASSERT_TRUE(diag.ok());
  EXPECT_DOUBLE_EQ(diag->K(0, 1), 0.0);
  EXPECT_DOUBLE_EQ(diag->linear[0], 2.0);
}

TEST(CovarianceInteractionsTest, RejectsTooFewMarginalsAndBadAlpha) {
  const std::vector<std::vector<double>> one = {{1.0, 2.0}};
  InteractionInput input{.num_players = 2, .marginals = one, .observations = {}};
  EXPECT_EQ(CovarianceInteractionEstimator().Estimate(input).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::vector<std::vector<double>> two = {{1.0, 2.0}, {2.0, 1.0}};
  input.marginals = two;
  EXPECT_EQ(CovarianceInteractionEstimator(1.5).Estimate(input).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SurrogateInteractionsTest, RecoversQuadraticGameExactly) {
  // SPQE walks of a quadratic game, then an unregularised fit: the model is exact, so least
  // squares returns the true coefficients up to rounding (losses ~3 carry ~1e-16 relative
  // error, amplified by the conditioning of the 56-column design: 1e-9 is generous).
  const int n = 10;
  const testing::QuadraticGame game = testing::RandomQuadraticGame(n, 21);
  FunctionEvaluator eval(game);
  SpqeOptions options;
  options.num_players = n;
  options.max_permutations = 60;
  options.seed = 4;
  auto spqe = RunSpqe(eval, options);
  ASSERT_TRUE(spqe.ok());
  auto obj = SurrogateInteractionEstimator(0.0).Estimate(InputFromSpqe(*spqe, n));
  ASSERT_TRUE(obj.ok()) << obj.status();
  EXPECT_EQ(obj->estimator, "surrogate");
  EXPECT_NEAR(obj->constant, game.c, 1e-9);
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(obj->linear[i], game.a[i], 1e-9);
    EXPECT_EQ(obj->K(i, i), 0.0);
    for (int j = i + 1; j < n; ++j) {
      EXPECT_NEAR(2.0 * obj->K(i, j), game.b[i * n + j], 1e-9) << i << "," << j;
    }
  }
  // The objective predicts the game anywhere.
  Rng rng(5);
  for (int t = 0; t < 20; ++t) {
    Coalition q = CoalitionFromMask(rng.Below(1u << n), n);
    EXPECT_NEAR(obj->Evaluate(q), game(q), 1e-9);
  }
  // The default (tiny, scale-relative) ridge moves the fit only slightly.
  auto ridged = SurrogateInteractionEstimator().Estimate(InputFromSpqe(*spqe, n));
  ASSERT_TRUE(ridged.ok());
  for (int i = 0; i < n; ++i) EXPECT_NEAR(ridged->linear[i], game.a[i], 1e-3);
}

TEST(SurrogateInteractionsTest, UnderdeterminedNeedsRidge) {
  const int n = 6;
  const testing::QuadraticGame game = testing::RandomQuadraticGame(n, 2);
  std::vector<Observation> obs;
  for (uint64_t mask : {0u, 1u, 3u, 7u}) {
    Coalition q = CoalitionFromMask(mask, n);
    obs.push_back({q, game(q)});
  }
  InteractionInput input{.num_players = n, .marginals = {}, .observations = obs};
  EXPECT_EQ(SurrogateInteractionEstimator(0.0).Estimate(input).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(SurrogateInteractionEstimator(1e-3).Estimate(input).ok());
  InteractionInput empty{.num_players = n, .marginals = {}, .observations = {}};
  EXPECT_EQ(SurrogateInteractionEstimator().Estimate(empty).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace impq::solver
