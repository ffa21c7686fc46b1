#include "solver/baselines.h"

#include "gtest/gtest.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

PlayerBytes SmallBytes() {
  // Savings 100, 200, 100, 0 bytes; all4 = 1000, all2 = 600.
  return PlayerBytes{{100, 200, 200, 100}, {200, 400, 300, 100}};
}

TEST(BaselinesTest, GreedyDropsLeastImportancePerByteFirst) {
  const PlayerBytes bytes = SmallBytes();
  // Score per byte saved: 0.01, 0.005, 0.03, (never: saves nothing).
  const std::vector<double> scores = {1.0, 1.0, 3.0, 0.0};
  auto q = GreedyImportanceAllocation(scores, bytes, 800);  // must save 200
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(CoalitionToString(*q), "0100");
  q = GreedyImportanceAllocation(scores, bytes, 750);  // must save 250
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(CoalitionToString(*q), "1100");
  q = GreedyImportanceAllocation(scores, bytes, 1000);
  EXPECT_EQ(CoalitionToString(*q), "0000");
  EXPECT_EQ(GreedyImportanceAllocation(scores, bytes, 599).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GreedyImportanceAllocation(std::vector<double>{1.0}, bytes, 800).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BaselinesTest, UniformIsAllFourOrAllTwo) {
  const PlayerBytes bytes = SmallBytes();
  EXPECT_EQ(CoalitionToString(*UniformAllocation(bytes, 1000)), "0000");
  EXPECT_EQ(CoalitionToString(*UniformAllocation(bytes, 999)), "1111");
  EXPECT_EQ(CoalitionToString(*UniformAllocation(bytes, 600)), "1111");
  EXPECT_FALSE(UniformAllocation(bytes, 599).ok());
}

TEST(BaselinesTest, RandomMeetsBudgetAndIsSeeded) {
  const PlayerBytes bytes = testing::RandomPlayerBytes(30, 3);
  const int64_t budget = *BudgetForAverageBits(bytes, 2.7);
  bool any_differ = false;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto q = RandomAllocation(bytes, budget, seed);
    ASSERT_TRUE(q.ok());
    EXPECT_LE(Footprint(bytes, *q), budget);
    EXPECT_EQ(*q, *RandomAllocation(bytes, budget, seed));
    any_differ = any_differ || *q != *RandomAllocation(bytes, budget, seed + 100);
  }
  EXPECT_TRUE(any_differ);
}

}  // namespace
}  // namespace impq::solver
