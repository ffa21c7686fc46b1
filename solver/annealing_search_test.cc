#include "solver/annealing_search.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

constexpr int kPlayers = 14;

struct Instance {
  testing::QuadraticGame game = testing::RandomQuadraticGame(kPlayers, 21);
  PlayerBytes bytes = testing::RandomPlayerBytes(kPlayers, 22);
  int64_t budget = BudgetForAverageBits(bytes, 2.75).value();
};

// The best feasible coalition by enumeration: the independent reference.
Observation BruteForceOptimum(const Instance& in) {
  Observation best{Coalition(), std::numeric_limits<double>::infinity()};
  for (uint64_t m = 0; m < (uint64_t{1} << kPlayers); ++m) {
    const Coalition q = CoalitionFromMask(m, kPlayers);
    if (Footprint(in.bytes, q) > in.budget) continue;
    if (const double v = in.game(q); v < best.loss) best = {q, v};
  }
  return best;
}

Coalition AllTwoBit() { return Coalition(kPlayers, 1); }

TEST(AnnealingSearchTest, NeighboursFitTheBudgetAndChangeTheCoalition) {
  const Instance in;
  Rng rng(3);
  Coalition q = AllTwoBit();
  int moved = 0;
  for (int step = 0; step < 2000; ++step) {
    const Coalition next = RandomBudgetNeighbour(q, in.bytes, in.budget, 2, rng);
    ASSERT_TRUE(ValidateCoalition(next, kPlayers).ok());
    ASSERT_LE(Footprint(in.bytes, next), in.budget);
    if (next == q) continue;
    ++moved;
    // 1 or 2 players raised to 4 bits.
    int raised = 0;
    for (int i = 0; i < kPlayers; ++i) raised += q[i] == 1 && next[i] == 0;
    EXPECT_GE(raised, 1);
    EXPECT_LE(raised, 2);
    q = next;
  }
  EXPECT_GT(moved, 1000);
  // No 2-bit player: nothing to raise.
  EXPECT_EQ(RandomBudgetNeighbour(Coalition(kPlayers, 0), in.bytes, in.budget, 2, rng),
            Coalition(kPlayers, 0));
}

TEST(AnnealingSearchTest, FindsTheOptimumOfASmallGameFromAnyStart) {
  const Instance in;
  const Observation optimum = BruteForceOptimum(in);
  FunctionEvaluator ev([&](const Coalition& q) { return in.game(q); });
  AnnealingOptions o;
  o.evaluations = 600;  // of ~2,000 feasible coalitions
  o.t0 = 0.5;
  o.t1 = 0.005;
  for (uint64_t seed : {1, 2, 3}) {
    MeasuredGame game(ev);  // a fresh memo: each run on its own
    Rng rng(seed);
    const Coalition start = AllTwoBit();
    auto r = Anneal(game, in.bytes, in.budget, start, o, rng);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->best.coalition, optimum.coalition) << "seed " << seed;
    EXPECT_DOUBLE_EQ(r->best.loss, optimum.loss);
    EXPECT_EQ(r->evaluations, o.evaluations);
    EXPECT_EQ(r->stop_reason, "evaluations");
    EXPECT_EQ(game.evaluations(), o.evaluations + 1);  // the start, then the moves
    EXPECT_EQ(game.Lowest(1)[0].coalition, optimum.coalition);
  }
}

TEST(AnnealingSearchTest, IsDeterministicAndSharesTheMemoAcrossRuns) {
  const Instance in;
  int64_t calls = 0;
  FunctionEvaluator ev([&](const Coalition& q) {
    ++calls;
    return in.game(q);
  });
  AnnealingOptions o;
  o.evaluations = 50;
  MeasuredGame a(ev), b(ev);
  Rng ra(9), rb(9);
  auto r1 = Anneal(a, in.bytes, in.budget, AllTwoBit(), o, ra);
  auto r2 = Anneal(b, in.bytes, in.budget, AllTwoBit(), o, rb);
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(r1->best.coalition, r2->best.coalition);
  EXPECT_EQ(r1->last.coalition, r2->last.coalition);
  EXPECT_EQ(r1->accepted, r2->accepted);
  // A second run on `a` pays only for coalitions the first did not measure.
  const int64_t before = calls;
  auto r3 = Anneal(a, in.bytes, in.budget, AllTwoBit(), o, ra);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(calls - before, r3->evaluations);
  EXPECT_EQ(a.evaluations(), 1 + r1->evaluations + r3->evaluations);  // one start
  const std::vector<Observation> low = a.Lowest(5);
  ASSERT_EQ(low.size(), 5u);
  for (size_t i = 1; i < low.size(); ++i) EXPECT_LE(low[i - 1].loss, low[i].loss);
}

TEST(AnnealingSearchTest, RejectsBadArguments) {
  const Instance in;
  FunctionEvaluator ev([&](const Coalition& q) { return in.game(q); });
  MeasuredGame game(ev);
  Rng rng(1);
  AnnealingOptions o;
  EXPECT_EQ(Anneal(game, in.bytes, in.budget, Coalition(kPlayers, 0), o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);  // all 4 bits: over the budget
  EXPECT_EQ(Anneal(game, in.bytes, in.budget, Coalition(3, 1), o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.t1 = 2 * o.t0;
  EXPECT_EQ(Anneal(game, in.bytes, in.budget, AllTwoBit(), o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = AnnealingOptions();
  o.evaluations = 0;
  EXPECT_EQ(Anneal(game, in.bytes, in.budget, AllTwoBit(), o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  o = AnnealingOptions();
  o.max_raised = 0;
  EXPECT_EQ(Anneal(game, in.bytes, in.budget, AllTwoBit(), o, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(game.evaluations(), 0);
}

}  // namespace
}  // namespace impq::solver
