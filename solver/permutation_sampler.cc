#include "solver/permutation_sampler.h"

#include <algorithm>
#include <numeric>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/rng.h"

namespace impq::solver {

absl::Status ValidatePermutation(const Permutation& perm, int num_players) {
  if (static_cast<int64_t>(perm.size()) != num_players) {
    return absl::InvalidArgumentError(absl::StrCat("permutation has ", perm.size(),
                                                   " entries, expected ", num_players));
  }
  std::vector<bool> seen(perm.size(), false);
  for (size_t t = 0; t < perm.size(); ++t) {
    const int p = perm[t];
    if (p < 0 || p >= num_players || seen[p]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "permutation entry ", t, " is ", p, ": out of range [0, ", num_players,
          ") or repeated"));
    }
    seen[p] = true;
  }
  return absl::OkStatus();
}

PermutationSampler::~PermutationSampler() = default;

SeededPermutationSampler::SeededPermutationSampler(int num_players, uint64_t seed,
                                                   bool antithetic)
    : num_players_(num_players), seed_(seed), antithetic_(antithetic) {
  IMPQ_CHECK(num_players >= 1) << "num_players " << num_players;
}

Permutation SeededPermutationSampler::Get(uint64_t index) const {
  const uint64_t stream = antithetic_ ? index / 2 : index;
  Permutation perm(static_cast<size_t>(num_players_));
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(DeriveSeed(seed_, stream));
  rng.Shuffle(std::span<int>(perm));
  if (antithetic_ && (index % 2) == 1) std::reverse(perm.begin(), perm.end());
  return perm;
}

}  // namespace impq::solver
