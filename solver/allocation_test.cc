#include <cmath>
#include <string>

#include "gtest/gtest.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

// Objective values agree up to rounding of sums of ~n² terms of size ≤ scale: 1e-9·scale is
// both the solver's pruning tolerance and far above the rounding error (~n²·1e-16·scale).
double Tolerance(const QuadraticObjective& o) {
  double scale = 0.0;
  for (int i = 0; i < o.num_players; ++i) {
    scale += std::fabs(o.linear[i] + o.K(i, i));
    for (int j = i + 1; j < o.num_players; ++j) scale += 2.0 * std::fabs(o.K(i, j));
  }
  return 2e-9 * scale + 1e-12;
}

QuadraticObjective Instance(int family, int n, uint64_t seed) {
  return family == 0 ? testing::RandomCovarianceObjective(n, seed)
                     : testing::RandomIndefiniteObjective(n, seed);
}

TEST(BudgetTest, InterpolatesBetweenExactFootprints) {
  const PlayerBytes bytes{{10, 20, 31}, {20, 40, 61}};  // all2 61, all4 121
  EXPECT_EQ(*BudgetForAverageBits(bytes, 2.0), 61);
  EXPECT_EQ(*BudgetForAverageBits(bytes, 4.0), 121);
  EXPECT_EQ(*BudgetForAverageBits(bytes, 3.0), 91);
  EXPECT_EQ(*BudgetForAverageBits(bytes, 2.5), 76);  // 61 + floor(15.0)
}

TEST(BudgetTest, InfeasibleBudgetsNameTheValue) {
  const PlayerBytes bytes{{10, 20}, {20, 40}};
  for (double bits : {1.99, 4.01, -3.0, std::nan("")}) {
    auto budget = BudgetForAverageBits(bytes, bits);
    ASSERT_EQ(budget.status().code(), absl::StatusCode::kInvalidArgument) << bits;
    EXPECT_NE(std::string(budget.status().message()).find("average_bits"), std::string::npos);
  }
  EXPECT_NE(std::string(BudgetForAverageBits(bytes, 1.5).status().message()).find("1.5"),
            std::string::npos);
  const QuadraticObjective obj = testing::RandomCovarianceObjective(2, 1);
  auto problem = MakeAllocationProblem(obj, bytes, 29);
  ASSERT_EQ(problem.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(problem.status().message()).find("29"), std::string::npos);
  EXPECT_TRUE(MakeAllocationProblem(obj, bytes, 30).ok());
  const PlayerBytes bad{{30, 20}, {20, 40}};  // 2-bit larger than 4-bit
  EXPECT_FALSE(BudgetForAverageBits(bad, 3.0).ok());
}

TEST(ExactSolverTest, AgreesWithBruteForce) {
  auto exact = NewExactSolver();
  auto brute = NewBruteForceSolver();
  int instances = 0;
  for (int family : {0, 1}) {
    for (int n = 1; n <= 20; ++n) {
      const int seeds = n <= 12 ? 12 : (n <= 16 ? 4 : 1);
      for (int seed = 0; seed < seeds; ++seed) {
        const QuadraticObjective obj = Instance(family, n, 1000 * n + seed);
        const PlayerBytes bytes = testing::RandomPlayerBytes(n, 77 + seed);
        const std::vector<double> all_bits = {2.0, 2.3, 2.75, 3.2, 3.8, 4.0};
        const std::vector<double> few_bits = {2.4, 3.1};
        for (double bits : n <= 16 ? all_bits : few_bits) {
          auto problem = MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, bits));
          ASSERT_TRUE(problem.ok());
          auto want = brute->Solve(*problem);
          auto got = exact->Solve(*problem);
          ASSERT_TRUE(want.ok() && got.ok());
          const double tol = Tolerance(obj);
          SCOPED_TRACE(::testing::Message() << "family " << family << " n " << n << " seed "
                                          << seed << " bits " << bits);
          EXPECT_TRUE(got->proven_optimal);
          EXPECT_TRUE(problem->Feasible(got->assignment));
          EXPECT_LE(got->memory_bytes, problem->budget_bytes);
          EXPECT_NEAR(got->objective, want->objective, tol);
          EXPECT_LE(got->lower_bound, want->objective + tol);
          EXPECT_GE(got->lower_bound, got->objective - tol);
          ++instances;
        }
      }
    }
  }
  EXPECT_GT(instances, 1000);
}

TEST(ExactSolverTest, CertifiesPaperSizedInstances) {
  auto exact = NewExactSolver();
  for (int seed = 0; seed < 4; ++seed) {
    const QuadraticObjective obj = testing::RandomCovarianceObjective(42, seed);
    const PlayerBytes bytes = testing::RandomPlayerBytes(42, seed + 100);
    for (double bits : {2.5, 3.0, 3.5}) {
      auto problem = MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, bits));
      ASSERT_TRUE(problem.ok());
      auto r = exact->Solve(*problem);
      ASSERT_TRUE(r.ok());
      EXPECT_TRUE(r->proven_optimal) << "seed " << seed << " bits " << bits;
      EXPECT_GE(r->lower_bound, r->objective - Tolerance(obj));
      EXPECT_TRUE(problem->Feasible(r->assignment));
      EXPECT_EQ(r->solver, "exact_bnb");
    }
  }
}

TEST(ExactSolverTest, NodeLimitGivesValidBoundWithoutCertificate) {
  ExactSolverOptions options;
  options.max_nodes = 1;
  auto exact = NewExactSolver(options);
  auto full = NewExactSolver();
  const QuadraticObjective obj = testing::RandomIndefiniteObjective(30, 3);
  const PlayerBytes bytes = testing::RandomPlayerBytes(30, 4);
  auto problem = *MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, 2.6));
  auto limited = exact->Solve(problem);
  auto best = full->Solve(problem);
  ASSERT_TRUE(limited.ok() && best.ok());
  ASSERT_TRUE(best->proven_optimal);
  EXPECT_FALSE(limited->proven_optimal);
  EXPECT_LE(limited->lower_bound, best->objective + Tolerance(obj));
  EXPECT_GE(limited->objective, best->objective - Tolerance(obj));
}

TEST(HeuristicSolverTest, WithinReportedGapOfOptimum) {
  auto exact = NewExactSolver();
  auto heuristic = NewHeuristicSolver();
  for (int family : {0, 1}) {
    for (int n : {8, 16, 30}) {
      for (int seed = 0; seed < 3; ++seed) {
        const QuadraticObjective obj = Instance(family, n, 500 + seed);
        const PlayerBytes bytes = testing::RandomPlayerBytes(n, seed);
        for (double bits : {2.25, 3.0, 3.75}) {
          auto problem = *MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, bits));
          auto h = heuristic->Solve(problem);
          auto e = exact->Solve(problem);
          ASSERT_TRUE(h.ok() && e.ok());
          ASSERT_TRUE(e->proven_optimal);
          const double tol = Tolerance(obj);
          EXPECT_TRUE(problem.Feasible(h->assignment));
          EXPECT_GE(h->objective, e->objective - tol);
          EXPECT_LE(h->lower_bound, e->objective + tol);
          EXPECT_LE(h->objective - e->objective, h->gap() + tol);
          EXPECT_GE(h->gap(), -tol);
        }
      }
    }
  }
}

TEST(AllocationSolverTest, DeterministicAndSweepIsMonotone) {
  const QuadraticObjective obj = testing::RandomCovarianceObjective(24, 9);
  const PlayerBytes bytes = testing::RandomPlayerBytes(24, 9);
  const std::vector<double> bits = {2.0, 2.25, 2.5, 3.0, 3.5, 4.0};
  for (const auto& solver : {NewExactSolver(), NewHeuristicSolver()}) {
    auto a = SweepAverageBits(*solver, obj, bytes, bits);
    auto b = SweepAverageBits(*solver, obj, bytes, bits);
    ASSERT_TRUE(a.ok() && b.ok());
    for (size_t k = 0; k < bits.size(); ++k) {
      EXPECT_EQ((*a)[k].assignment, (*b)[k].assignment);
      EXPECT_EQ((*a)[k].objective, (*b)[k].objective);
      EXPECT_EQ((*a)[k].nodes, (*b)[k].nodes);
    }
    if (solver->name() == "exact_bnb") {
      // A larger budget only enlarges the feasible set: the optimum cannot get worse.
      for (size_t k = 1; k < bits.size(); ++k) {
        EXPECT_LE((*a)[k].objective, (*a)[k - 1].objective + Tolerance(obj));
      }
      EXPECT_EQ(CoalitionSize((*a)[0].assignment), 24);  // 2 bits: everything dropped
    }
  }
  EXPECT_EQ(SweepAverageBits(*NewExactSolver(), obj, bytes, std::vector<double>{4.5})
                .status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BruteForceSolverTest, RefusesLargeInstances) {
  const QuadraticObjective obj = testing::RandomCovarianceObjective(27, 1);
  const PlayerBytes bytes = testing::RandomPlayerBytes(27, 1);
  auto problem = *MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, 3.0));
  EXPECT_EQ(NewBruteForceSolver()->Solve(problem).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace impq::solver
