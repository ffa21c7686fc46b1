#include "solver/local_search.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <set>

#include "gtest/gtest.h"
#include "solver/allocation_solver.h"
#include "solver/baselines.h"
#include "solver/test_games.h"
#include "solver/width_ladder.h"

namespace impq::solver {
namespace {

// The game's own quadratic objective: the perfect model.
QuadraticObjective ObjectiveOf(const testing::QuadraticGame& g) {
  QuadraticObjective obj;
  obj.estimator = "truth";
  obj.num_players = g.n;
  obj.constant = g.c;
  obj.linear = g.a;
  obj.quadratic.assign(g.b.size(), 0.0);
  for (size_t k = 0; k < g.b.size(); ++k) obj.quadratic[k] = 0.5 * g.b[k];
  return obj;
}

// Independent definition of the neighbourhood on masks: every feasible coalition at Hamming
// distance <= max_changed whose raised/dropped counts are in range, with >= 1 raised, and
// minimal (removing any single drop leaves it infeasible... checked for the least-saving one,
// which is the weakest requirement that implies it for all).
std::set<uint64_t> NeighbourMasks(uint64_t q, const PlayerBytes& bytes, int64_t budget,
                                  const NeighbourhoodOptions& o) {
  const int n = static_cast<int>(bytes.bytes2.size());
  std::set<uint64_t> out;
  for (uint64_t x = 0; x < (uint64_t{1} << n); ++x) {
    const int raised = std::popcount(q & ~x), dropped = std::popcount(x & ~q);
    if (raised < 1 || raised > o.max_raised || dropped > o.max_dropped ||
        raised + dropped > o.max_changed) {
      continue;
    }
    const Coalition c = CoalitionFromMask(x, n);
    const int64_t f = Footprint(bytes, c);
    if (f > budget) continue;
    bool minimal = true;
    for (int j = 0; j < n; ++j) {
      if (((x & ~q) >> j & 1) == 0) continue;
      Coalition undo = c;
      undo[j] = 0;
      if (Footprint(bytes, undo) <= budget) minimal = false;
    }
    if (minimal) out.insert(x);
  }
  return out;
}

TEST(LocalSearchTest, NeighboursAreExactlyTheFeasibleMinimalMoves) {
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const int n = 9;
    const PlayerBytes bytes = testing::RandomPlayerBytes(n, seed);
    const int64_t budget = *BudgetForAverageBits(bytes, 2.4 + 0.06 * seed);
    Rng rng(seed + 50);
    const Coalition q = *RandomAllocation(bytes, budget, seed + 7);
    for (const NeighbourhoodOptions o :
         {NeighbourhoodOptions{}, NeighbourhoodOptions{1, 1, 2}, NeighbourhoodOptions{3, 0, 3}}) {
      auto got = BudgetNeighbours(q, bytes, budget, o);
      ASSERT_TRUE(got.ok()) << got.status();
      std::set<uint64_t> masks;
      for (const Coalition& c : *got) {
        EXPECT_LE(Footprint(bytes, c), budget);
        EXPECT_TRUE(masks.insert(CoalitionToMask(c)).second) << "duplicate " << CoalitionToString(c);
      }
      EXPECT_EQ(masks, NeighbourMasks(CoalitionToMask(q), bytes, budget, o)) << "seed " << seed;
    }
  }
  EXPECT_FALSE(BudgetNeighbours(Coalition{1, 0}, testing::RandomPlayerBytes(2, 0), 1 << 20,
                                NeighbourhoodOptions{0, 1, 1})
                   .ok());
}

// On a width ladder the neighbours are, independently defined on choice vectors: every
// feasible choice whose players each moved at most one rung, 1..max_raised of them wider,
// at most max_dropped narrower, at most max_changed in all, minimal as above.
TEST(LocalSearchTest, LadderNeighboursMoveEachPlayerOneRung) {
  const int n = 4;
  auto ladder = WidthLadder::Create(n, {2, 3, 4, 8});
  ASSERT_TRUE(ladder.ok());
  const int m = ladder->num_widths();
  for (uint64_t seed = 0; seed < 8; ++seed) {
    Rng rng(seed);
    std::vector<int64_t> wb;
    for (int i = 0; i < n; ++i) {
      const int64_t weights = 64 * (1 + static_cast<int64_t>(rng.Below(6)));
      for (int b : ladder->widths()) wb.push_back(weights * b / 8 + 8);
    }
    const PlayerBytes sb = ladder->StepBytes(wb);
    std::vector<int> start(n);
    for (int& c : start) c = static_cast<int>(rng.Below(m));
    const Coalition q = ladder->CoalitionOfChoice(start);
    const int64_t budget = Footprint(sb, q) + static_cast<int64_t>(rng.Below(40));
    for (const NeighbourhoodOptions base :
         {NeighbourhoodOptions{}, NeighbourhoodOptions{1, 1, 2}, NeighbourhoodOptions{2, 2, 4}}) {
      NeighbourhoodOptions o = base;
      o.steps_per_player = m - 1;
      auto got = BudgetNeighbours(q, sb, budget, o);
      ASSERT_TRUE(got.ok()) << got.status();
      std::set<std::vector<int>> got_choices;
      for (const Coalition& c : *got) {
        ASSERT_TRUE(ladder->ValidateClosed(c).ok());
        EXPECT_TRUE(got_choices.insert(ladder->ChoiceOf(c)).second);
      }
      std::set<std::vector<int>> want;
      std::vector<int> c(n, 0);
      for (int code = 0; code < 256; ++code) {
        for (int i = 0, x = code; i < n; ++i, x /= m) c[i] = x % m;
        int raised = 0, dropped = 0;
        bool one_rung = true;
        for (int i = 0; i < n; ++i) {
          if (c[i] == start[i] + 1) ++raised;
          else if (c[i] == start[i] - 1) ++dropped;
          else if (c[i] != start[i]) one_rung = false;
        }
        if (!one_rung || raised < 1 || raised > o.max_raised || dropped > o.max_dropped ||
            raised + dropped > o.max_changed) {
          continue;
        }
        auto bytes_of = [&](const std::vector<int>& x) {
          int64_t t = 0;
          for (int i = 0; i < n; ++i) t += wb[static_cast<size_t>(i) * m + x[i]];
          return t;
        };
        if (bytes_of(c) > budget + ladder->NarrowestBytes(wb)) continue;
        bool minimal = true;
        for (int i = 0; i < n; ++i) {
          if (c[i] != start[i] - 1) continue;
          std::vector<int> undo = c;
          undo[i] = start[i];
          if (bytes_of(undo) <= budget + ladder->NarrowestBytes(wb)) minimal = false;
        }
        if (minimal) want.insert(c);
      }
      EXPECT_EQ(got_choices, want) << "seed " << seed;
    }
  }
  NeighbourhoodOptions o;
  o.steps_per_player = 3;
  const PlayerBytes sb = ladder->StepBytes(std::vector<int64_t>(16, 10));
  const auto open = BudgetNeighbours(Coalition{0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, sb, 100, o);
  ASSERT_FALSE(open.ok());
  EXPECT_NE(open.status().message().find("is not closed (player 0, step 1)"), std::string::npos)
      << open.status();
}

TEST(LocalSearchTest, WithThePerfectModelTheFirstMoveIsTheBestNeighbour) {
  const int n = 12;
  const testing::QuadraticGame g = testing::RandomQuadraticGame(n, 3);
  const PlayerBytes bytes = testing::RandomPlayerBytes(n, 3);
  const int64_t budget = *BudgetForAverageBits(bytes, 2.75);
  const Coalition start = *RandomAllocation(bytes, budget, 11);
  FunctionEvaluator ev([&](const Coalition& q) { return g(q); });
  LocalSearchOptions o;
  o.max_evaluations = 1;
  const NeighbourRanker truth = QuadraticModelRanker(
      [&](std::span<const Observation>, const Coalition&) -> absl::StatusOr<QuadraticObjective> {
        return ObjectiveOf(g);
      });
  auto r = MeasuredLocalSearch(ev, bytes, budget, {start, g(start)}, {}, truth, o);
  ASSERT_TRUE(r.ok()) << r.status();
  double best = g(start);
  auto neighbours = BudgetNeighbours(start, bytes, budget, o.neighbourhood);
  ASSERT_TRUE(neighbours.ok());
  for (const Coalition& c : *neighbours) best = std::min(best, g(c));
  ASSERT_EQ(r->evaluated.size(), 1u);
  EXPECT_EQ(r->best.loss, best);
  EXPECT_EQ(ev.num_coalitions(), 1);
}

TEST(LocalSearchTest, ExhaustedSearchEndsAtALocalOptimumWithinItsAllowance) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const int n = 10;
    const testing::RandomGame g{testing::RandomQuadraticGame(n, seed), seed};
    const PlayerBytes bytes = testing::RandomPlayerBytes(n, seed);
    const int64_t budget = *BudgetForAverageBits(bytes, 2.6);
    const Coalition start = *RandomAllocation(bytes, budget, seed);
    // A model that is wrong on purpose (only the quadratic part): the measurements decide.
    const NeighbourRanker model = QuadraticModelRanker(
        [&](std::span<const Observation>, const Coalition&) -> absl::StatusOr<QuadraticObjective> {
          return ObjectiveOf(g.base);
        });
    std::set<Coalition> evaluated;
    FunctionEvaluator ev([&](const Coalition& q) {
      EXPECT_TRUE(evaluated.insert(q).second) << "evaluated twice: " << CoalitionToString(q);
      return g(q);
    });
    // A candidate already measured is never evaluated again.
    auto start_neighbours = BudgetNeighbours(start, bytes, budget, {});
    ASSERT_TRUE(start_neighbours.ok() && !start_neighbours->empty());
    const Coalition other = start_neighbours->front();
    LocalSearchOptions o;
    o.max_evaluations = 1 << 20;
    o.batch_size = 3;
    auto r = MeasuredLocalSearch(ev, bytes, budget, {start, g(start)},
                                 std::vector<Observation>{{other, g(other)}}, model, o);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->stop_reason, "exhausted");
    EXPECT_FALSE(evaluated.contains(other));
    EXPECT_LE(Footprint(bytes, r->best.coalition), budget);
    EXPECT_EQ(r->best.loss, g(r->best.coalition));
    EXPECT_LE(r->best.loss, g(start));
    double lowest = g(start);
    for (const Observation& ob : r->evaluated) lowest = std::min(lowest, ob.loss);
    EXPECT_EQ(r->best.loss, lowest);
    // No neighbour of the result (other than the pre-measured one) is lower: a local optimum.
    auto around = BudgetNeighbours(r->best.coalition, bytes, budget, {});
    ASSERT_TRUE(around.ok());
    for (const Coalition& c : *around) {
      if (c == other) continue;
      EXPECT_GE(g(c), r->best.loss) << CoalitionToString(c);
    }
    // A small allowance is respected exactly.
    FunctionEvaluator small([&](const Coalition& q) { return g(q); });
    o.max_evaluations = 5;
    auto r5 = MeasuredLocalSearch(small, bytes, budget, {start, g(start)}, {}, model, o);
    ASSERT_TRUE(r5.ok());
    EXPECT_EQ(r5->evaluated.size(), 5u);
    EXPECT_EQ(small.num_coalitions(), 5);
    EXPECT_EQ(r5->rounds, 2);  // batches of 3 then 2
  }
}

TEST(MarginalsNearSizeTest, KernelWeightedMeanAndItsVariance) {
  // Player 0: marginals 1.0 at size 2 and 3.0 at size 4, target 3: equal weights, mean 2,
  // spread 1, n_eff 2, variance 1/2. Player 1: one marginal: borrows the mean spread (1).
  const std::vector<SizedMarginal> m = {{0, 2, 1.0}, {0, 4, 3.0}, {1, 3, 5.0}};
  auto p = MarginalsNearSize(2, m, 3.0, 1.5);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_DOUBLE_EQ(p->mean[0], 2.0);
  EXPECT_DOUBLE_EQ(p->variance[0], 0.5);
  EXPECT_DOUBLE_EQ(p->mean[1], 5.0);
  EXPECT_DOUBLE_EQ(p->variance[1], 1.0);
  EXPECT_DOUBLE_EQ(p->residual_variance, 1.0);
  // Off-centre marginals weigh less: target 2 pulls player 0's mean towards 1.
  auto q = MarginalsNearSize(2, m, 2.0, 1.0);
  ASSERT_TRUE(q.ok());
  const double w = std::exp(-2.0);  // size 4 is 2 away, bandwidth 1
  EXPECT_DOUBLE_EQ(q->mean[0], (1.0 + 3.0 * w) / (1.0 + w));
  EXPECT_EQ(MarginalsNearSize(3, m, 3.0, 1.0).status().code(),
            absl::StatusCode::kFailedPrecondition);  // player 2 has none
  EXPECT_EQ(MarginalsNearSize(2, m, 3.0, 0.0).status().code(), absl::StatusCode::kInvalidArgument);
}

// On an additive game v(q) = c + Σ a_i q_i a first-order model is exact, so the ranker's sign
// is the truth's once it knows a: from an exact prior at once, and from an ignorant prior
// (mean 0, huge variance) after measuring every single-player toggle around the incumbent.
TEST(FirstOrderRankerTest, SignsMatchTheTruthOnAnAdditiveGame) {
  const int n = 10;
  const testing::QuadraticGame g = testing::RandomQuadraticGame(n, 21, /*interaction=*/0.0);
  const PlayerBytes bytes = testing::RandomPlayerBytes(n, 21);
  const int64_t budget = *BudgetForAverageBits(bytes, 2.8);
  const Coalition s = *RandomAllocation(bytes, budget, 5);
  const Observation incumbent{s, g(s)};
  auto neighbours = BudgetNeighbours(s, bytes, budget, {});
  ASSERT_TRUE(neighbours.ok() && !neighbours->empty());
  auto check = [&](const NeighbourRanker& ranker, std::span<const Observation> measured) {
    auto scores = ranker(measured, incumbent, *neighbours);
    ASSERT_TRUE(scores.ok()) << scores.status();
    ASSERT_EQ(scores->size(), neighbours->size());
    for (size_t k = 0; k < neighbours->size(); ++k) {
      const double truth = g((*neighbours)[k]) - incumbent.loss;
      if (std::abs(truth) < 1e-9) continue;
      EXPECT_EQ((*scores)[k] < 0, truth < 0) << CoalitionToString((*neighbours)[k]);
    }
  };
  MarginalPrior exact{g.a, std::vector<double>(n, 1e-12), 1e-6};
  check(FirstOrderRanker(exact, 4), {});
  MarginalPrior ignorant{std::vector<double>(n, 0.0), std::vector<double>(n, 1e6), 1e-6};
  std::vector<Observation> toggles;
  for (int i = 0; i < n; ++i) {
    Coalition t = s;
    t[i] = 1 - t[i];
    toggles.push_back({t, g(t)});
  }
  check(FirstOrderRanker(ignorant, 1), toggles);
  // Far measurements (beyond the radius) are ignored: the ignorant prior then scores 0.
  auto flat = FirstOrderRanker(ignorant, 0)(toggles, incumbent, *neighbours);
  ASSERT_TRUE(flat.ok());
  for (double x : *flat) EXPECT_EQ(x, 0.0);
}

TEST(LocalSearchTest, BadInputsAreRefused) {
  const testing::QuadraticGame g = testing::RandomQuadraticGame(4, 1);
  const PlayerBytes bytes = testing::RandomPlayerBytes(4, 1);
  FunctionEvaluator ev([&](const Coalition& q) { return g(q); });
  const NeighbourRanker model = QuadraticModelRanker(
      [&](std::span<const Observation>, const Coalition&) -> absl::StatusOr<QuadraticObjective> {
        return ObjectiveOf(g);
      });
  LocalSearchOptions o;
  o.max_evaluations = 3;
  const Coalition all4 = EmptyCoalition(4);
  // The all-4-bit start does not fit a 3-bit budget.
  EXPECT_EQ(MeasuredLocalSearch(ev, bytes, *BudgetForAverageBits(bytes, 3.0), {all4, g(all4)},
                                {}, model, o)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  o.batch_size = 0;
  EXPECT_FALSE(MeasuredLocalSearch(ev, bytes, *BudgetForAverageBits(bytes, 4.0),
                                   {all4, g(all4)}, {}, model, o)
                   .ok());
  EXPECT_EQ(ev.num_coalitions(), 0);
}

}  // namespace
}  // namespace impq::solver
