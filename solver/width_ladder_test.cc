// The ladder game of more than two widths (width_ladder.h): closed coalitions and choices,
// the step sampler (closed walks, uniform over linear extensions, binary = the plain sampler),
// the step bytes, and the multiple-choice program (equal to the step objective on every
// choice; binary = MultiChoiceFromBinary; the solver's optimum = the best closed coalition).
#include "solver/width_ladder.h"

#include <cmath>
#include <map>
#include <vector>

#include "common/logging.h"
#include "common/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "solver/spqe.h"

namespace impq::solver {
namespace {

using ::testing::HasSubstr;

WidthLadder Ladder(int n, std::vector<int> widths) {
  auto ladder = WidthLadder::Create(n, std::move(widths));
  IMPQ_CHECK(ladder.ok()) << ladder.status();
  return *ladder;
}

// Every choice vector of n players over m widths, in lexicographic order.
std::vector<std::vector<int>> AllChoices(int n, int m) {
  std::vector<std::vector<int>> out;
  std::vector<int> c(static_cast<size_t>(n), 0);
  while (true) {
    out.push_back(c);
    int i = n - 1;
    while (i >= 0 && ++c[i] == m) c[i--] = 0;
    if (i < 0) return out;
  }
}

QuadraticObjective RandomObjective(int n, uint64_t seed) {
  Rng rng(seed);
  QuadraticObjective o;
  o.estimator = "test";
  o.num_players = n;
  o.constant = rng.Uniform();
  for (int i = 0; i < n; ++i) o.linear.push_back(rng.Uniform() * 2.0 - 0.5);
  o.quadratic.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i; j < n; ++j) {
      const double k = (rng.Uniform() - 0.5) * 0.4;
      o.quadratic[static_cast<size_t>(i) * n + j] = k;
      o.quadratic[static_cast<size_t>(j) * n + i] = k;
    }
  }
  return o;
}

// Bytes of player i at each width: ~ weights·bits/8 plus a per-width-constant overhead.
std::vector<int64_t> WidthBytes(const WidthLadder& ladder, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> out;
  for (int i = 0; i < ladder.num_players(); ++i) {
    const int64_t weights = 64 * (1 + static_cast<int64_t>(rng.Below(8)));
    for (int b : ladder.widths()) out.push_back(weights * b / 8 + weights / 16);
  }
  return out;
}

TEST(WidthLadderTest, CreateRejectsBadWidths) {
  EXPECT_THAT(WidthLadder::Create(3, {4}).status().message(), HasSubstr("expected 2 to 16"));
  EXPECT_THAT(WidthLadder::Create(3, {4, 2}).status().message(),
              HasSubstr("strictly ascending"));
  EXPECT_THAT(WidthLadder::Create(3, {2, 2}).status().message(),
              HasSubstr("strictly ascending"));
  EXPECT_THAT(WidthLadder::Create(0, {2, 4}).status().message(), HasSubstr("0 players"));
  EXPECT_TRUE(WidthLadder::Create(3, {2, 3, 4, 8}).ok());
}

TEST(WidthLadderTest, ChoicesAndClosedCoalitionsCorrespond) {
  const WidthLadder ladder = Ladder(3, {2, 3, 4, 8});
  EXPECT_EQ(ladder.num_steps(), 9);
  int closed = 0;
  for (uint64_t mask = 0; mask < (1u << 9); ++mask) {
    const Coalition q = CoalitionFromMask(mask, 9);
    if (!ladder.ValidateClosed(q).ok()) continue;
    ++closed;
    EXPECT_EQ(ladder.CoalitionOfChoice(ladder.ChoiceOf(q)), q);
  }
  EXPECT_EQ(closed, 4 * 4 * 4);
  for (const auto& c : AllChoices(3, 4)) {
    const Coalition q = ladder.CoalitionOfChoice(c);
    ASSERT_TRUE(ladder.ValidateClosed(q).ok());
    EXPECT_EQ(ladder.ChoiceOf(q), c);
    auto bits = ladder.BitsOf(q);
    ASSERT_TRUE(bits.ok());
    for (int i = 0; i < 3; ++i) EXPECT_EQ((*bits)[i], ladder.widths()[c[i]]);
    EXPECT_EQ(*ladder.CoalitionOfBits(*bits), q);
  }
  // Player 1 takes its second step (to 3 bits) without its first (to 4 bits).
  const Coalition open = {0, 0, 0, 0, 1, 0, 0, 0, 0};
  EXPECT_THAT(std::string(ladder.BitsOf(open).status().message()),
              HasSubstr("player 1 takes step 1 (to 3 bits) without step 0 (to 4 bits)"));
  EXPECT_THAT(std::string(ladder.CoalitionOfBits(std::vector<int>{2, 5, 8}).status().message()),
              HasSubstr("player 1 at 5 bits: not one of the widths 2,3,4,8"));
  EXPECT_THAT(std::string(ladder.ValidateClosed(Coalition(8, 0)).message()),
              HasSubstr("expected 9"));
}

TEST(WidthLadderTest, BinaryLadderIsThePlainGame) {
  const WidthLadder ladder = Ladder(7, {2, 4});
  EXPECT_EQ(ladder.num_steps(), 7);
  const LadderPermutationSampler steps(ladder, 42, /*antithetic=*/true);
  const SeededPermutationSampler plain(7, 42, /*antithetic=*/true);
  for (uint64_t k = 0; k < 20; ++k) EXPECT_EQ(steps.Get(k), plain.Get(k));
  const Coalition q = {1, 0, 0, 1, 1, 0, 1};
  EXPECT_EQ(*ladder.BitsOf(q), (std::vector<int>{2, 4, 4, 2, 2, 4, 2}));

  // The program equals MultiChoiceFromBinary entry for entry.
  const QuadraticObjective o = RandomObjective(7, 3);
  const std::vector<int64_t> wb = WidthBytes(ladder, 4);
  PlayerBytes pb;
  for (int i = 0; i < 7; ++i) {
    pb.bytes2.push_back(wb[2 * i]);
    pb.bytes4.push_back(wb[2 * i + 1]);
  }
  const int64_t budget = (Footprint(pb, Coalition(7, 0)) + Footprint(pb, Coalition(7, 1))) / 2;
  auto from_ladder = ladder.ToMultiChoice(o, wb, budget);
  auto from_binary = MultiChoiceFromBinary(o, pb, budget);
  ASSERT_TRUE(from_ladder.ok() && from_binary.ok());
  EXPECT_EQ(from_ladder->linear, from_binary->linear);
  EXPECT_EQ(from_ladder->quadratic, from_binary->quadratic);
  EXPECT_EQ(from_ladder->bytes, from_binary->bytes);
  EXPECT_EQ(from_ladder->widths, from_binary->widths);
}

TEST(WidthLadderTest, WalksStayClosedAndGoFromWidestToNarrowest) {
  const WidthLadder ladder = Ladder(5, {2, 3, 4, 8});
  const LadderPermutationSampler sampler(ladder, 7, /*antithetic=*/true);
  EXPECT_EQ(sampler.num_players(), 15);
  for (uint64_t k = 0; k < 40; ++k) {
    const Permutation perm = sampler.Get(k);
    ASSERT_TRUE(ValidatePermutation(perm, 15).ok());
    const std::vector<Coalition> walk = WalkCoalitions(perm);
    for (const Coalition& q : walk) ASSERT_TRUE(ladder.ValidateClosed(q).ok()) << k;
    EXPECT_EQ(*ladder.BitsOf(walk.front()), std::vector<int>(5, 8));
    EXPECT_EQ(*ladder.BitsOf(walk.back()), std::vector<int>(5, 2));
  }
  // The antithetic partner takes the players in reverse order of their labels.
  const Permutation a = sampler.Get(0), b = sampler.Get(1);
  for (size_t t = 0; t < a.size(); ++t) {
    EXPECT_EQ(ladder.PlayerOfStep(a[t]), ladder.PlayerOfStep(b[a.size() - 1 - t]));
  }
}

TEST(WidthLadderTest, SamplerIsUniformOverLinearExtensions) {
  // Two players with two steps each: the 4!/(2!·2!) = 6 orders of the labels equally likely.
  const WidthLadder ladder = Ladder(2, {2, 3, 4});
  const LadderPermutationSampler sampler(ladder, 11, /*antithetic=*/false);
  std::map<Permutation, int> counts;
  const int draws = 12000;
  for (int k = 0; k < draws; ++k) ++counts[sampler.Get(static_cast<uint64_t>(k))];
  ASSERT_EQ(counts.size(), 6u);
  double chi2 = 0;
  for (const auto& [perm, c] : counts) {
    const double e = draws / 6.0;
    chi2 += (c - e) * (c - e) / e;
  }
  EXPECT_LT(chi2, 20.5);  // χ²(5 dof) exceeds 20.5 with probability 0.001
}

TEST(WidthLadderTest, StepBytesGiveTheTrueFootprintOnClosedCoalitions) {
  const WidthLadder ladder = Ladder(3, {2, 3, 4, 8});
  const std::vector<int64_t> wb = WidthBytes(ladder, 9);
  ASSERT_TRUE(ladder.ValidateWidthBytes(wb).ok());
  const PlayerBytes sb = ladder.StepBytes(wb);
  ASSERT_TRUE(ValidatePlayerBytes(sb).ok());
  for (const auto& c : AllChoices(3, 4)) {
    int64_t truth = 0;
    for (int i = 0; i < 3; ++i) truth += wb[static_cast<size_t>(i) * 4 + c[i]];
    EXPECT_EQ(Footprint(sb, ladder.CoalitionOfChoice(c)) + ladder.NarrowestBytes(wb), truth);
  }
  std::vector<int64_t> bad = wb;
  bad[5] = bad[4] - 1;  // player 1 smaller at 3 bits than at 2
  EXPECT_THAT(std::string(ladder.ValidateWidthBytes(bad).message()),
              HasSubstr("player 1"));
}

TEST(WidthLadderTest, MultiChoiceProgramEqualsTheStepObjective) {
  for (const std::vector<int>& widths :
       std::vector<std::vector<int>>{{2, 3, 4}, {2, 3, 4, 8}, {2, 4, 8}}) {
    const WidthLadder ladder = Ladder(4, widths);
    const QuadraticObjective o = RandomObjective(ladder.num_steps(), 17 + widths.size());
    const std::vector<int64_t> wb = WidthBytes(ladder, 5);
    int64_t hi = 0;
    for (int i = 0; i < 4; ++i) hi += wb[static_cast<size_t>(i) * widths.size() + widths.size() - 1];
    const int64_t lo = ladder.NarrowestBytes(wb);
    const int64_t budget = lo + (hi - lo) * 2 / 5;
    auto p = ladder.ToMultiChoice(o, wb, budget);
    ASSERT_TRUE(p.ok()) << p.status();
    ASSERT_TRUE(ValidateMultiChoiceProblem(*p).ok());
    double best = INFINITY;
    for (const auto& c : AllChoices(4, static_cast<int>(widths.size()))) {
      const Coalition q = ladder.CoalitionOfChoice(c);
      EXPECT_NEAR(p->Evaluate(c), o.Evaluate(q), 1e-12);
      if (p->Footprint(c) <= budget) best = std::min(best, o.Evaluate(q));
    }
    auto solved = SolveMultiChoiceExact(*p);
    ASSERT_TRUE(solved.ok()) << solved.status();
    EXPECT_TRUE(solved->proven_optimal);
    EXPECT_NEAR(solved->objective, best, 1e-9);
  }
  const WidthLadder ladder = Ladder(4, {2, 3, 4});
  EXPECT_THAT(std::string(ladder.ToMultiChoice(RandomObjective(4, 1), WidthBytes(ladder, 1), 0)
                              .status()
                              .message()),
              HasSubstr("the ladder has 8 steps"));
}

}  // namespace
}  // namespace impq::solver
