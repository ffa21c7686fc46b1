// Permutations of the players for Monte Carlo Shapley estimation (IMPQ §3, SPQE).
//
// Permutation k is a pure function of (seed, k): it does not depend on how many permutations
// are drawn, in which order, or on which worker, so permutations can be sharded freely.
#ifndef IMPQ_SOLVER_PERMUTATION_SAMPLER_H_
#define IMPQ_SOLVER_PERMUTATION_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace impq::solver {

// perm[t] is the player dropped to 2 bits at step t+1 of a walk. A permutation of 0..n-1.
using Permutation = std::vector<int>;

// OK iff perm is a permutation of 0..num_players-1; InvalidArgument otherwise.
absl::Status ValidatePermutation(const Permutation& perm, int num_players);

class PermutationSampler {
 public:
  virtual ~PermutationSampler();
  virtual int num_players() const = 0;
  // True when permutations come in antithetic pairs (2p, 2p+1) = (π, reverse(π)).
  virtual bool antithetic() const = 0;
  // Permutation number `index` (0-based). Deterministic; thread-safe (const, no state).
  virtual Permutation Get(uint64_t index) const = 0;
};

// Uniform random permutations: permutation k is a Fisher–Yates shuffle (impq::Rng) seeded with
// DeriveSeed(seed, k). With antithetic = true, pair p uses DeriveSeed(seed, p) for index 2p and
// the reverse of that permutation for index 2p+1. Immutable after construction: thread-safe.
class SeededPermutationSampler : public PermutationSampler {
 public:
  // REQUIRES: num_players >= 1.
  SeededPermutationSampler(int num_players, uint64_t seed, bool antithetic);

  int num_players() const override { return num_players_; }
  bool antithetic() const override { return antithetic_; }
  Permutation Get(uint64_t index) const override;

 private:
  const int num_players_;
  const uint64_t seed_;
  const bool antithetic_;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_PERMUTATION_SAMPLER_H_
