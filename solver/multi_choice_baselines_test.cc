// The baselines' allocation rules over a width set (multi_choice_baselines.h).
#include "solver/multi_choice_baselines.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"

#include "common/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "solver/allocate.h"
#include "solver/baselines.h"
#include "solver/width_ladder.h"
#include "solver/multi_choice_test_games.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

using ::testing::HasSubstr;

int64_t FootprintOf(const std::vector<int64_t>& bytes, int m, const std::vector<int>& c) {
  int64_t total = 0;
  for (size_t i = 0; i < c.size(); ++i) total += bytes[i * m + c[i]];
  return total;
}

// With widths {2, 4} every rule is its binary rule of baselines.h (q_i = 1 ⇔ index 0).
TEST(MultiChoiceBaselinesTest, TwoWidthsEqualTheBinaryRules) {
  Rng rng(3);
  const std::vector<int> widths = {2, 4};
  for (int n : {1, 5, 35}) {
    for (uint64_t seed = 0; seed < 4; ++seed) {
      const PlayerBytes pb = testing::RandomPlayerBytes(n, 40 + seed);
      std::vector<int64_t> bytes;
      std::vector<double> delta, scores;
      for (int i = 0; i < n; ++i) {
        bytes.push_back(pb.bytes2[i]);
        bytes.push_back(pb.bytes4[i]);
        const double d2 = rng.Uniform() * 3.0, d4 = 0.1 * rng.Uniform();
        delta.push_back(d2);
        delta.push_back(d4);
        scores.push_back(d2 - d4);
      }
      for (double bits : {2.0, 2.3, 2.5, 3.0, 3.7, 4.0}) {
        const int64_t budget = *BudgetForAverageBits(pb, bits);
        auto as_choice = [](const Coalition& q) {
          std::vector<int> c;
          for (uint8_t x : q) c.push_back(x != 0 ? 0 : 1);
          return c;
        };
        EXPECT_EQ(*GreedyDeltaPerByteAllocation(delta, widths, bytes, budget),
                  as_choice(*GreedyImportanceAllocation(scores, pb, budget)))
            << n << " " << seed << " " << bits;
        EXPECT_EQ(*UniformWidthAllocation(widths, bytes, budget),
                  as_choice(*UniformAllocation(pb, budget)));
        EXPECT_EQ(*RandomWidthAllocation(widths, bytes, budget, seed),
                  as_choice(*RandomAllocation(pb, budget, seed)));
      }
    }
  }
}

TEST(MultiChoiceBaselinesTest, GreedyTakesTheCheapestLossPerByteStep) {
  // Two players, widths {2, 3, 4}; player 0's bytes 10/15/20, player 1's 100/150/200.
  // delta (loss at each width): player 0 loses a lot below 4 bits, player 1 little.
  const std::vector<int> widths = {2, 3, 4};
  const std::vector<int64_t> bytes = {10, 15, 20, 100, 150, 200};
  const std::vector<double> delta = {5.0, 1.0, 0.0, 0.5, 0.1, 0.0};
  // Need 50 bytes saved from 220: player 1 to 3 bits (0.1 / 50 = 0.002 per byte) beats
  // player 1 to 2 bits (0.5 / 100) and any move of player 0 (>= 1.0 / 5).
  EXPECT_EQ(*GreedyDeltaPerByteAllocation(delta, widths, bytes, 170), (std::vector<int>{2, 1}));
  // 100 bytes: then player 1 to 2 bits ((0.5 − 0.1) / 50 = 0.008) before player 0 moves.
  EXPECT_EQ(*GreedyDeltaPerByteAllocation(delta, widths, bytes, 120), (std::vector<int>{2, 0}));
  // 105 bytes: player 0 must also drop; 3 bits (1.0 / 5) saves enough.
  EXPECT_EQ(*GreedyDeltaPerByteAllocation(delta, widths, bytes, 115), (std::vector<int>{1, 0}));
  EXPECT_EQ(*GreedyDeltaPerByteAllocation(delta, widths, bytes, 220), (std::vector<int>{2, 2}));
}

TEST(MultiChoiceBaselinesTest, EveryRuleFitsTheBudget) {
  const std::vector<int> widths = {2, 3, 4, 8};
  Rng rng(21);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    const int n = 3 + static_cast<int>(seed) * 3;
    const std::vector<int64_t> bytes = testing::RandomWidthBytes(n, widths, seed);
    std::vector<double> delta(bytes.size());
    for (size_t k = 0; k < delta.size(); ++k) {
      delta[k] = testing::WidthFactor(widths[k % 4]) * (1.0 + rng.Uniform());
    }
    MultiChoiceProblem shape;
    shape.num_players = n;
    shape.widths = widths;
    shape.bytes = bytes;
    for (double bits : {2.0, 2.5, 3.0, 3.5, 4.0, 6.0, 8.0}) {
      const int64_t budget = testing::BudgetAtAverageBits(shape, bits);
      for (const auto& c : {*GreedyDeltaPerByteAllocation(delta, widths, bytes, budget),
                            *RandomWidthAllocation(widths, bytes, budget, seed)}) {
        ASSERT_EQ(c.size(), static_cast<size_t>(n));
        EXPECT_LE(FootprintOf(bytes, 4, c), budget) << seed << " " << bits;
      }
      const std::vector<int> u = *UniformWidthAllocation(widths, bytes, budget);
      EXPECT_LE(FootprintOf(bytes, 4, u), budget);
      if (u[0] + 1 < 4) {  // the next wider width does not fit
        EXPECT_GT(FootprintOf(bytes, 4, std::vector<int>(n, u[0] + 1)), budget);
      }
    }
    EXPECT_EQ(*RandomWidthAllocation(widths, bytes, testing::BudgetAtAverageBits(shape, 3.0), 7),
              *RandomWidthAllocation(widths, bytes, testing::BudgetAtAverageBits(shape, 3.0), 7));
  }
}

TEST(MultiChoiceBaselinesTest, BadInputsAreNamed) {
  const std::vector<int> widths = {2, 3, 4};
  const std::vector<int64_t> bytes = {10, 15, 20, 100, 150, 200};
  const std::vector<double> delta = {5.0, 1.0, 0.0, 0.5, 0.1, 0.0};
  auto infeasible = GreedyDeltaPerByteAllocation(delta, widths, bytes, 109);
  EXPECT_EQ(infeasible.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(infeasible.status().message(),
              HasSubstr("budget_bytes 109 below the smallest footprint 110"));
  EXPECT_THAT(UniformWidthAllocation(widths, bytes, 50).status().message(),
              HasSubstr("smallest footprint 110"));
  EXPECT_THAT(RandomWidthAllocation(widths, bytes, 50, 1).status().message(),
              HasSubstr("smallest footprint 110"));
  EXPECT_THAT(
      GreedyDeltaPerByteAllocation(delta, std::vector<int>{2, 4, 3}, bytes, 200).status().message(),
      HasSubstr("strictly ascending: 4 then 3"));
  EXPECT_THAT(
      GreedyDeltaPerByteAllocation(std::vector<double>{1.0}, widths, bytes, 200).status().message(),
      HasSubstr("delta has 1 entries, bytes 6"));
  std::vector<double> nan = delta;
  nan[4] = std::nan("");
  EXPECT_THAT(GreedyDeltaPerByteAllocation(nan, widths, bytes, 200).status().message(),
              HasSubstr("delta of player 1 at 3 bits is not finite"));
  EXPECT_THAT(
      UniformWidthAllocation(widths, std::vector<int64_t>{1, 2, 3, 4}, 200).status().message(),
      HasSubstr("not a positive multiple of 3"));
}

// solver/allocate.h's entry points: widths {2, 4} run the binary rules (the fast path), any
// other set the multiple-choice rules as coalitions over the ladder's steps.
TEST(AllocateEntryPointsTest, BinaryFastPathIsTheBinaryRule) {
  const int n = 35;
  const PlayerBytes pb = testing::RandomPlayerBytes(n, 7);
  const WidthLadder ladder = *WidthLadder::Create(n, {2, 4});
  std::vector<int64_t> width_bytes;
  std::vector<double> scores, width_delta;
  Rng rng(5);
  for (int i = 0; i < n; ++i) {
    width_bytes.push_back(pb.bytes2[i]);
    width_bytes.push_back(pb.bytes4[i]);
    scores.push_back(rng.Uniform());
    width_delta.push_back(scores.back());
    width_delta.push_back(0.0);
  }
  const StepGame game = *StepGame::Create(ladder, pb, width_bytes);
  EXPECT_EQ(game.bytes().bytes2, pb.bytes2);
  EXPECT_EQ(game.bytes().bytes4, pb.bytes4);
  for (double bits : {2.0, 2.25, 3.0, 3.5, 4.0}) {
    const int64_t budget = *BudgetForAverageBits(pb, bits);
    EXPECT_EQ(*game.Budget(budget), budget);
    const Coalition binary = *GreedyImportanceAllocation(scores, pb, budget);
    EXPECT_EQ(*GreedyBaselineAllocation(ladder, scores, width_delta, pb, width_bytes, budget),
              binary);
    EXPECT_EQ(*GreedyBaselineAllocation(ladder, scores, {}, pb, width_bytes, budget), binary);
    EXPECT_EQ(*UniformBaselineAllocation(ladder, pb, width_bytes, budget),
              *UniformAllocation(pb, budget));
    EXPECT_EQ(*RandomBaselineAllocation(ladder, pb, width_bytes, budget, 11),
              *RandomAllocation(pb, budget, 11));
  }
}

TEST(AllocateEntryPointsTest, LadderRunsTheMultiChoiceRulesOverSteps) {
  const int n = 12;
  const std::vector<int> widths = {2, 3, 4, 8};
  const int m = static_cast<int>(widths.size());
  const std::vector<int64_t> width_bytes = testing::RandomWidthBytes(n, widths, 3);
  PlayerBytes pb;
  for (int i = 0; i < n; ++i) {
    pb.bytes2.push_back(width_bytes[i * m + 0]);
    pb.bytes4.push_back(width_bytes[i * m + 2]);
  }
  const WidthLadder ladder = *WidthLadder::Create(n, widths);
  Rng rng(9);
  std::vector<double> scores, width_delta;
  for (int i = 0; i < n; ++i) {
    scores.push_back(rng.Uniform());
    for (int w = 0; w < m; ++w) width_delta.push_back(w == m - 1 ? 0.0 : (m - w) * rng.Uniform());
  }
  // A per-player score spread over the widths by a b-bit quantizer's noise power.
  std::vector<double> spread;
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < m; ++w) {
      const double e = 1.0 / std::pow(std::ldexp(1.0, widths[w]) - 1.0, 2);
      const double e_widest = 1.0 / std::pow(std::ldexp(1.0, widths[m - 1]) - 1.0, 2);
      spread.push_back(scores[i] * (e - e_widest));
    }
  }
  const StepGame game = *StepGame::Create(ladder, pb, width_bytes);
  const int64_t narrowest = ladder.NarrowestBytes(width_bytes);
  EXPECT_EQ(game.bytes().bytes4, ladder.StepBytes(width_bytes).bytes4);
  for (double bits : {2.25, 3.0, 3.5}) {
    const int64_t budget = *BudgetForAverageBits(pb, bits);
    EXPECT_EQ(*game.Budget(budget), budget - narrowest);
    EXPECT_EQ(*GreedyBaselineAllocation(ladder, scores, width_delta, pb, width_bytes, budget),
              ladder.CoalitionOfChoice(
                  *GreedyDeltaPerByteAllocation(width_delta, widths, width_bytes, budget)));
    EXPECT_EQ(*GreedyBaselineAllocation(ladder, scores, {}, pb, width_bytes, budget),
              ladder.CoalitionOfChoice(
                  *GreedyDeltaPerByteAllocation(spread, widths, width_bytes, budget)));
    EXPECT_EQ(*UniformBaselineAllocation(ladder, pb, width_bytes, budget),
              ladder.CoalitionOfChoice(*UniformWidthAllocation(widths, width_bytes, budget)));
    EXPECT_EQ(*RandomBaselineAllocation(ladder, pb, width_bytes, budget, 4),
              ladder.CoalitionOfChoice(*RandomWidthAllocation(widths, width_bytes, budget, 4)));
  }
  // A budget below the narrowest allocation names both byte counts and the widths.
  const absl::StatusOr<int64_t> below = game.Budget(narrowest - 1);
  ASSERT_FALSE(below.ok());
  EXPECT_THAT(below.status().message(),
              HasSubstr(absl::StrCat(narrowest - 1, " bytes is below the narrowest allocation of "
                                                    "widths 2,3,4,8 (",
                                     narrowest, " bytes)")));
  // Scores of the wrong length are refused, not read past.
  EXPECT_FALSE(GreedyBaselineAllocation(ladder, std::vector<double>(n - 1, 1.0), {}, pb,
                                        width_bytes, *BudgetForAverageBits(pb, 3.0))
                   .ok());
}

}  // namespace
}  // namespace impq::solver
