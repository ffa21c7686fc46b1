// The multiple-choice allocation (multi_choice.h): the exact branch and bound against brute
// force on small instances, against the binary solver on {2, 4}, and its errors.
#include "solver/multi_choice.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
#include "solver/multi_choice_test_games.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

using ::testing::HasSubstr;

// Objective values agree up to the rounding of sums of ~(n·m)² terms of size <= scale; 1e-9
// of the scale is the solver's pruning tolerance and far above that rounding (~1e-14).
double Tolerance(const MultiChoiceProblem& p) {
  double scale = std::fabs(p.constant);
  for (double a : p.linear) scale += std::fabs(a);
  for (double k : p.quadratic) scale += 0.5 * std::fabs(k);
  return 2e-9 * scale + 1e-12;
}

MultiChoiceProblem Instance(int family, int n, const std::vector<int>& widths, uint64_t seed) {
  switch (family) {
    case 0:
      return testing::RandomCovarianceMultiChoice(n, widths, seed);
    case 1:
      return testing::RandomIndefiniteMultiChoice(n, widths, seed);
    case 2:
      return testing::RandomIndefiniteMultiChoice(n, widths, seed, /*scaled=*/false);
    case 3:
      return testing::RandomSurrogateLadderMultiChoice(n, widths, seed);
    case 4:
      return testing::RandomCovarianceLadderMultiChoice(n, widths, seed);
    default:  // interactions ~60% of the linear terms
      return testing::RandomSurrogateLadderMultiChoice(n, widths, seed, /*interaction=*/0.3);
  }
}
constexpr int kFamilies = 6;

constexpr MultiChoiceBounding kBoundings[] = {
    MultiChoiceBounding::kAuto, MultiChoiceBounding::kPairwise, MultiChoiceBounding::kRelaxation};

TEST(MultiChoiceTest, ExactMatchesBruteForceOnSmallInstances) {
  const std::vector<std::vector<int>> width_sets = {{2, 3, 4}, {2, 3, 4, 8}, {2, 4, 8}};
  int instances = 0, tight_unique = 0;
  for (int family = 0; family < kFamilies; ++family) {
    for (int n : {1, 2, 4, 7}) {
      for (const auto& widths : width_sets) {
        for (uint64_t seed = 1; seed <= 3; ++seed) {
          MultiChoiceProblem p = Instance(family, n, widths, 100 * n + seed);
          const int64_t lo = p.MinFootprint(), hi = testing::MaxFootprint(p);
          // Tight (exactly the smallest footprint), in between, and loose (everything fits).
          for (double frac : {0.0, 0.05, 0.3, 0.6, 0.9, 1.0}) {
            p.budget_bytes = lo + static_cast<int64_t>(frac * static_cast<double>(hi - lo));
            auto brute = SolveMultiChoiceBruteForce(p);
            ASSERT_TRUE(brute.ok()) << brute.status();
            for (MultiChoiceBounding bounding : kBoundings) {
              MultiChoiceSolverOptions options;
              options.bounding = bounding;
              auto exact = SolveMultiChoiceExact(p, options);
              ASSERT_TRUE(exact.ok()) << exact.status();
              SCOPED_TRACE(::testing::Message()
                           << "family " << family << " n " << n << " m " << widths.size()
                           << " seed " << seed << " frac " << frac << " bounding "
                           << static_cast<int>(bounding));
              const double tol = Tolerance(p);
              EXPECT_TRUE(exact->proven_optimal);
              EXPECT_NEAR(exact->objective, brute->objective, tol);
              EXPECT_LE(exact->lower_bound, brute->objective + tol);
              EXPECT_GE(exact->lower_bound, exact->objective - tol);
              EXPECT_LE(exact->memory_bytes, p.budget_bytes);
              EXPECT_EQ(exact->memory_bytes, p.Footprint(exact->choice));
              EXPECT_DOUBLE_EQ(exact->objective, p.Evaluate(exact->choice));
              for (int i = 0; i < n; ++i) EXPECT_EQ(exact->bits[i], widths[exact->choice[i]]);
            }
            tight_unique += frac == 0.0;
            ++instances;
          }
        }
      }
    }
  }
  EXPECT_EQ(instances, kFamilies * 4 * 3 * 3 * 6);
  EXPECT_GT(tight_unique, 0);
}

// The node bounds themselves (the solver's result alone would hide an invalid bound behind a
// good incumbent): at random nodes of small instances, each bound is at most the true minimum
// over the node's choices (by enumeration), and at a leaf both equal its value.
TEST(MultiChoiceTest, NodeBoundsAreValidAndExactAtLeaves) {
  Rng rng(17);
  int checked = 0, fixings = 0;
  for (int family = 0; family < kFamilies; ++family) {
    for (uint64_t seed = 1; seed <= 6; ++seed) {
      const std::vector<int> widths =
          seed % 2 ? std::vector<int>{2, 3, 4, 8} : std::vector<int>{2, 3, 4};
      MultiChoiceProblem p = Instance(family, 5, widths, 500 + seed);
      const int n = p.num_players, m = p.num_widths();
      p.budget_bytes = testing::BudgetAtAverageBits(p, 2.5 + 0.5 * (seed % 3));
      for (int trial = 0; trial < 12; ++trial) {
        std::vector<uint32_t> allowed(n);
        for (uint32_t& mask : allowed) {
          do {
            mask = static_cast<uint32_t>(rng.Below(1u << m));
          } while (mask == 0);
        }
        if (trial == 0) {
          for (uint32_t& mask : allowed) mask = (1u << m) - 1;  // the root
        }
        // The true minimum over the node by enumeration.
        double best = std::numeric_limits<double>::infinity();
        std::vector<int> c(n, 0);
        while (true) {
          bool ok = true;
          for (int i = 0; i < n; ++i) ok = ok && (allowed[i] >> c[i] & 1u);
          if (ok && p.Footprint(c) <= p.budget_bytes) best = std::min(best, p.Evaluate(c));
          int i = 0;
          while (i < n && ++c[i] == m) c[i++] = 0;
          if (i == n) break;
        }
        const internal::MultiChoiceBounds b = internal::MultiChoiceNodeBounds(p, allowed);
        SCOPED_TRACE(::testing::Message()
                     << "family " << family << " seed " << seed << " trial " << trial);
        if (best == std::numeric_limits<double>::infinity()) {
          // No choice of the node fits: the split bound's knapsack must say so.
          EXPECT_EQ(b.split, best);
          EXPECT_EQ(b.pairwise, best);
          continue;
        }
        EXPECT_LE(b.split, best + Tolerance(p));
        EXPECT_LE(b.relaxation, best + Tolerance(p));
        EXPECT_LE(b.pairwise, best + Tolerance(p));
        // Reduced-cost fixing: the bound for player i fixed to width w is at most the true
        // minimum over the node's choices with c[i] = w.
        ASSERT_EQ(b.pairwise_fixing.size(), static_cast<size_t>(n * m));
        for (int i = 0; i < n; ++i) {
          if (std::has_single_bit(allowed[i])) continue;
          for (int w = 0; w < m; ++w) {
            if (!(allowed[i] >> w & 1u)) continue;
            std::vector<uint32_t> child = allowed;
            child[i] = 1u << w;
            double child_best = std::numeric_limits<double>::infinity();
            std::fill(c.begin(), c.end(), 0);
            while (true) {
              bool ok = true;
              for (int j = 0; j < n; ++j) ok = ok && (child[j] >> c[j] & 1u);
              if (ok && p.Footprint(c) <= p.budget_bytes) {
                child_best = std::min(child_best, p.Evaluate(c));
              }
              int j = 0;
              while (j < n && ++c[j] == m) c[j++] = 0;
              if (j == n) break;
            }
            if (child_best < std::numeric_limits<double>::infinity()) {
              EXPECT_LE(b.pairwise_fixing[i * m + w], child_best + Tolerance(p))
                  << "player " << i << " width " << w;
              ++fixings;
            }
          }
        }
        ++checked;
      }
      // A leaf: one width per player, within the budget.
      const MultiChoiceResult r = *SolveMultiChoiceBruteForce(p);
      std::vector<uint32_t> leaf(n);
      for (int i = 0; i < n; ++i) leaf[i] = 1u << r.choice[i];
      const internal::MultiChoiceBounds b = internal::MultiChoiceNodeBounds(p, leaf);
      EXPECT_NEAR(b.split, r.objective, Tolerance(p));
      EXPECT_NEAR(b.relaxation, r.objective, Tolerance(p));
      EXPECT_NEAR(b.pairwise, r.objective, Tolerance(p));
    }
  }
  EXPECT_GT(checked, 150);
  EXPECT_GT(fixings, 1000);
}

TEST(MultiChoiceTest, BinaryWidthsGiveTheBinarySolversOptimum) {
  auto binary = NewExactSolver();
  for (int family : {0, 1}) {
    for (int n : {6, 12, 20}) {
      for (uint64_t seed = 0; seed < 3; ++seed) {
        const QuadraticObjective o = family == 0 ? testing::RandomCovarianceObjective(n, 70 + seed)
                                                 : testing::RandomIndefiniteObjective(n, 70 + seed);
        const PlayerBytes bytes = testing::RandomPlayerBytes(n, 90 + seed);
        for (double bits : {2.0, 2.5, 3.0, 3.5, 4.0}) {
          const int64_t budget = *BudgetForAverageBits(bytes, bits);
          auto problem = MakeAllocationProblem(o, bytes, budget);
          ASSERT_TRUE(problem.ok()) << problem.status();
          auto b = binary->Solve(*problem);
          ASSERT_TRUE(b.ok()) << b.status();
          auto mc = MultiChoiceFromBinary(o, bytes, budget);
          ASSERT_TRUE(mc.ok()) << mc.status();
          auto r = SolveMultiChoiceExact(*mc);
          ASSERT_TRUE(r.ok()) << r.status();
          SCOPED_TRACE(::testing::Message() << "family " << family << " n " << n << " seed " << seed
                                            << " bits " << bits);
          ASSERT_TRUE(b->proven_optimal && r->proven_optimal);
          EXPECT_NEAR(r->objective, b->objective, Tolerance(*mc));
          // The same point has the same value in both programs.
          std::vector<int> as_choice(n);
          for (int i = 0; i < n; ++i) as_choice[i] = b->assignment[i] != 0 ? 0 : 1;
          EXPECT_NEAR(mc->Evaluate(as_choice), b->objective, Tolerance(*mc));
          for (int i = 0; i < n; ++i) EXPECT_EQ(r->bits[i], r->choice[i] == 0 ? 2 : 4);
        }
      }
    }
  }
}

TEST(MultiChoiceTest, WithinPlayerBlocksAreAHintOnly) {
  // The blocks i == j of K change neither the objective nor the optimum, only the bounds.
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    MultiChoiceProblem p = testing::RandomCovarianceMultiChoice(7, {2, 3, 4, 8}, 300 + seed);
    p.budget_bytes = testing::BudgetAtAverageBits(p, 3.0);
    MultiChoiceProblem bare = p;
    const int m = p.num_widths(), nv = p.num_vars();
    for (int k = 0; k < nv; ++k) {
      for (int l = 0; l < nv; ++l) {
        if (k / m == l / m) bare.quadratic[static_cast<size_t>(k) * nv + l] = 0.0;
      }
    }
    ASSERT_NE(bare.quadratic, p.quadratic);
    auto with = SolveMultiChoiceExact(p);
    auto without = SolveMultiChoiceExact(bare);
    auto brute = SolveMultiChoiceBruteForce(bare);
    ASSERT_TRUE(with.ok() && without.ok() && brute.ok());
    EXPECT_DOUBLE_EQ(p.Evaluate(brute->choice), bare.Evaluate(brute->choice));
    EXPECT_NEAR(with->objective, brute->objective, Tolerance(p));
    EXPECT_NEAR(without->objective, brute->objective, Tolerance(p));
    EXPECT_TRUE(with->proven_optimal && without->proven_optimal);
  }
}

TEST(MultiChoiceTest, NodeLimitGivesACertifiedBoundWithoutTheClaim) {
  MultiChoiceProblem p = testing::RandomIndefiniteMultiChoice(7, {2, 3, 4, 8}, 5, false);
  p.budget_bytes = testing::BudgetAtAverageBits(p, 3.5);
  auto brute = SolveMultiChoiceBruteForce(p);
  ASSERT_TRUE(brute.ok());
  for (MultiChoiceBounding bounding : kBoundings) {
    SCOPED_TRACE(static_cast<int>(bounding));
    MultiChoiceSolverOptions options;
    options.max_nodes = 2;
    options.bounding = bounding;
    auto r = SolveMultiChoiceExact(p, options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_FALSE(r->proven_optimal);
    EXPECT_LE(r->nodes, 2);
    EXPECT_LE(r->lower_bound, brute->objective + Tolerance(p));
    EXPECT_GE(r->objective, brute->objective - Tolerance(p));
    EXPECT_LE(r->memory_bytes, p.budget_bytes);
  }
}

// Issue 14's size with the objectives the job builds from a fitted surrogate (indefinite K
// over the ladder's steps, mapped by WidthLadder::ToMultiChoice): certified within a node
// limit far below what the relaxation alone needs, and the same optimum with either bound.
TEST(MultiChoiceTest, SurrogateLadderAt35PlayersIsCertified) {
  MultiChoiceProblem p = testing::RandomSurrogateLadderMultiChoice(35, {2, 3, 4, 8}, 7003);
  p.budget_bytes = testing::BudgetAtAverageBits(p, 3.0);
  MultiChoiceSolverOptions options;
  options.max_nodes = 50'000;
  auto r = SolveMultiChoiceExact(p, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->proven_optimal);
  EXPECT_NEAR(r->lower_bound, r->objective, Tolerance(p));
  EXPECT_LE(r->memory_bytes, p.budget_bytes);
  // Deterministic: the same call, the same answer.
  auto again = SolveMultiChoiceExact(p, options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->choice, r->choice);
  EXPECT_EQ(again->nodes, r->nodes);
  options.bounding = MultiChoiceBounding::kPairwise;
  auto pairwise = SolveMultiChoiceExact(p, options);
  ASSERT_TRUE(pairwise.ok());
  EXPECT_TRUE(pairwise->proven_optimal);
  EXPECT_NEAR(pairwise->objective, r->objective, Tolerance(p));
}

TEST(MultiChoiceTest, InfeasibleBudgetIsAClearError) {
  MultiChoiceProblem p = testing::RandomCovarianceMultiChoice(4, {2, 3, 4, 8}, 9);
  p.budget_bytes = p.MinFootprint() - 1;
  for (auto solve : {+[](const MultiChoiceProblem& q) { return SolveMultiChoiceExact(q); },
                     +[](const MultiChoiceProblem& q) { return SolveMultiChoiceBruteForce(q); }}) {
    auto r = solve(p);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat("budget ", p.budget_bytes)));
    EXPECT_THAT(r.status().message(), HasSubstr(absl::StrCat(p.MinFootprint())));
  }
  p.budget_bytes = p.MinFootprint();  // exactly the smallest footprint: feasible
  auto r = SolveMultiChoiceExact(p);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->memory_bytes, p.MinFootprint());
}

TEST(MultiChoiceTest, MalformedProblemsNameTheEntry) {
  const MultiChoiceProblem good = testing::RandomIndefiniteMultiChoice(3, {2, 3, 4}, 11);
  ASSERT_TRUE(ValidateMultiChoiceProblem(good).ok());
  auto expect = [](const MultiChoiceProblem& p, const char* needle) {
    const absl::Status s = ValidateMultiChoiceProblem(p);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(s.message(), HasSubstr(needle));
    EXPECT_FALSE(SolveMultiChoiceExact(p).ok());
  };
  MultiChoiceProblem p = good;
  p.quadratic[3] += 1.0;  // (0, 2) with (1, 2), mirror unchanged
  expect(p, "(player 0, width 2), (player 1, width 2)] breaks symmetry");
  p = good;
  p.linear[4] = std::nan("");
  expect(p, "linear[player 1, width 3] is not finite");
  p = good;
  p.bytes[2] = -1;
  expect(p, "bytes[player 0, width 4] = -1");
  p = good;
  p.widths = {2, 3, 3};
  expect(p, "width 3 is given twice");
  p = good;
  p.linear.pop_back();
  expect(p, "for 3 players x 3 widths");
}

}  // namespace
}  // namespace impq::solver
