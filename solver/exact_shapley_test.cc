#include "solver/exact_shapley.h"

#include <cmath>

#include "gtest/gtest.h"
#include "solver/coalition_evaluator.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

TEST(ExactShapleyTest, QuadraticGameClosedForm) {
  const testing::QuadraticGame game = testing::RandomQuadraticGame(9, 5);
  FunctionEvaluator eval(game);
  auto table = TabulateGame(eval, 9);
  ASSERT_TRUE(table.ok()) << table.status();
  const std::vector<double> phi = ShapleyFromTable(*table, 9);
  const std::vector<double> want = game.Shapley();
  const std::vector<double> inter = InteractionIndexFromTable(*table, 9);
  for (int i = 0; i < 9; ++i) {
    EXPECT_NEAR(phi[i], want[i], 1e-12);
    for (int j = 0; j < 9; ++j) {
      EXPECT_NEAR(inter[i * 9 + j], i == j ? 0.0 : game.b[i * 9 + j], 1e-12);
    }
  }
}

TEST(ExactShapleyTest, EfficiencyOnRandomGame) {
  const int n = 8;
  testing::RandomGame game{testing::RandomQuadraticGame(n, 9), 77};
  FunctionEvaluator eval(game);
  auto table = TabulateGame(eval, n);
  ASSERT_TRUE(table.ok());
  const std::vector<double> phi = ShapleyFromTable(*table, n);
  double sum = 0.0;
  for (double p : phi) sum += p;
  EXPECT_NEAR(sum, (*table)[(1u << n) - 1] - (*table)[0], 1e-12);
}

TEST(ExactShapleyTest, RejectsTooManyPlayers) {
  FunctionEvaluator eval([](const Coalition&) { return 0.0; });
  EXPECT_EQ(TabulateGame(eval, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TabulateGame(eval, kMaxExactPlayers + 1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace impq::solver
