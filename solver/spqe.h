// SPQE: Shapley-based Progressive Quantization Estimation (IMPQ §3.2).
//
// A walk follows one permutation π of the players: it starts from the all-4-bit model (empty
// coalition) and drops π[0], π[1], ... to 2 bits one at a time, evaluating the loss after every
// step. The loss increase at step t is the marginal contribution of player π[t] to the
// coalition {π[0..t-1]}; averaging over random permutations estimates the Shapley value φ
// (Castro et al. permutation sampling, applied progressively as in IMPQ). A walk is the natural
// unit of distributed work: WalkCoalitions() → evaluate → MarginalsFromWalk().
#ifndef IMPQ_SOLVER_SPQE_H_
#define IMPQ_SOLVER_SPQE_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"
#include "solver/permutation_sampler.h"
#include "solver/shapley_estimate.h"

namespace impq::solver {

// The n+1 coalitions of the walk along perm: element t has players perm[0..t-1] at 2 bits
// (element 0 is empty, element n is full). REQUIRES: ValidatePermutation(perm, n) is OK.
std::vector<Coalition> WalkCoalitions(const Permutation& perm);

// Marginal vector of one walk: result[perm[t]] = losses[t+1] - losses[t], indexed by player.
// losses are v() of WalkCoalitions(perm) in order. InvalidArgument when perm is not a
// permutation or losses.size() != perm.size() + 1.
absl::StatusOr<std::vector<double>> MarginalsFromWalk(const Permutation& perm,
                                                      std::span<const double> losses);

// Snapshot passed to the callbacks after each batch of walks.
struct SpqeProgress {
  int64_t permutations_done = 0;
  int64_t coalitions_evaluated = 0;  // distinct coalitions sent to the evaluator so far
  int64_t cache_hits = 0;            // coalitions of walks served from the cache so far
  const ShapleyEstimate* estimate = nullptr;  // current estimate; valid during the call only
  const std::vector<std::vector<double>>* marginals = nullptr;  // ditto, one vector per walk
};

enum class SpqeStopReason {
  kMaxPermutations,  // all max_permutations walks done
  kStandardError,    // max_i SE(φ_i) < se_threshold after min_permutations
  kCallback,         // stop_callback returned true (e.g. the allocation stopped changing)
};

struct SpqeOptions {
  int num_players = 0;           // n >= 1
  int64_t max_permutations = 0;  // M >= 1 (even when antithetic)
  bool antithetic = false;       // permutations in (π, reverse(π)) pairs
  uint64_t seed = 0;
  // Walks evaluated per Evaluate() call; stop rules are checked between batches. Rounded up
  // to even when antithetic. Without early stopping the result does not depend on it.
  int64_t permutations_per_batch = 8;
  // Early stop on precision: once at least min_permutations are done, stop when
  // max_i SE(φ_i) < se_threshold. se_threshold <= 0 disables it.
  int64_t min_permutations = 2;
  double se_threshold = 0.0;
  // Optional: return true to stop (called after every batch, once min_permutations are done).
  // Typical use: re-solve the allocation and stop when it has not changed for a few batches.
  std::function<bool(const SpqeProgress&)> stop_callback;
  // Optional: observes progress after every batch.
  std::function<void(const SpqeProgress&)> progress_callback;
  // Optional: overrides the default SeededPermutationSampler(num_players, seed, antithetic).
  // Not owned; must outlive RunSpqe and agree on num_players and antithetic.
  const PermutationSampler* sampler = nullptr;
};

struct SpqeResult {
  ShapleyEstimate estimate;
  std::vector<Permutation> permutations;         // walked, in index order
  std::vector<std::vector<double>> marginals;    // marginals[k] from permutations[k]
  std::vector<Observation> observations;         // every distinct (coalition, loss) evaluated
  int64_t coalitions_requested = 0;              // (n+1) per walk
  int64_t coalitions_evaluated = 0;              // distinct coalitions sent to the evaluator
  int64_t cache_hits = 0;                        // requested - evaluated
  SpqeStopReason stop_reason = SpqeStopReason::kMaxPermutations;
};

// Runs SPQE walks over permutations 0, 1, ... of the sampler, evaluating each distinct
// coalition once (the cache spans the whole run and duplicates inside a batch).
// OK: the estimate and everything evaluated. InvalidArgument for bad options (naming the
// field); any evaluator error is returned unchanged (the run is abandoned).
// Deterministic for a seed: identical results for identical options and evaluator.
// Calls evaluator from the calling thread only.
absl::StatusOr<SpqeResult> RunSpqe(CoalitionEvaluator& evaluator, const SpqeOptions& options);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_SPQE_H_
