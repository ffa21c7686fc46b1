#include "solver/permutation_sampler.h"

#include <algorithm>
#include <map>

#include "gtest/gtest.h"

namespace impq::solver {
namespace {

TEST(PermutationSamplerTest, DrawsValidPermutations) {
  SeededPermutationSampler sampler(17, 42, false);
  for (uint64_t k = 0; k < 50; ++k) EXPECT_TRUE(ValidatePermutation(sampler.Get(k), 17).ok());
}

TEST(PermutationSamplerTest, PermutationDependsOnlyOnSeedAndIndex) {
  SeededPermutationSampler a(12, 7, false), b(12, 7, false), c(12, 8, false);
  // Drawn in a different order: the same permutation for the same index.
  const Permutation late = b.Get(30);
  for (uint64_t k = 0; k < 30; ++k) EXPECT_EQ(a.Get(k), b.Get(k));
  EXPECT_EQ(a.Get(30), late);
  int differ = 0;
  for (uint64_t k = 0; k < 30; ++k) differ += a.Get(k) != c.Get(k);
  EXPECT_GE(differ, 29);  // a collision of two random 12-permutations has probability 1/12!
}

TEST(PermutationSamplerTest, AntitheticPairsAreReverses) {
  SeededPermutationSampler sampler(9, 3, true);
  for (uint64_t p = 0; p < 20; ++p) {
    Permutation first = sampler.Get(2 * p);
    std::reverse(first.begin(), first.end());
    EXPECT_EQ(first, sampler.Get(2 * p + 1));
  }
}

TEST(PermutationSamplerTest, UniformOverPermutations) {
  // 24 permutations of 4 players, 24000 draws: each count ~ Binomial(24000, 1/24), sd ≈ 31.2;
  // ±5 sd bounds every one of the 24 counts except with probability < 2e-5.
  SeededPermutationSampler sampler(4, 11, false);
  std::map<Permutation, int> counts;
  for (uint64_t k = 0; k < 24000; ++k) ++counts[sampler.Get(k)];
  ASSERT_EQ(counts.size(), 24u);
  for (const auto& [perm, count] : counts) {
    EXPECT_NEAR(count, 1000, 156);
  }
}

TEST(PermutationSamplerTest, ValidateRejectsBadPermutations) {
  EXPECT_FALSE(ValidatePermutation({0, 1, 1}, 3).ok());
  EXPECT_FALSE(ValidatePermutation({0, 1}, 3).ok());
  EXPECT_FALSE(ValidatePermutation({0, 1, 3}, 3).ok());
  EXPECT_TRUE(ValidatePermutation({2, 0, 1}, 3).ok());
}

}  // namespace
}  // namespace impq::solver
