// Allocations of the baselines IMPQ compares against (IMPQ §4): methods that score each layer
// in isolation and then fill the same memory budget. Scores come from elsewhere (e.g. per-layer
// perplexity increase, Hessian trace, Shapley φ); this file only turns them into assignments.
#ifndef IMPQ_SOLVER_BASELINES_H_
#define IMPQ_SOLVER_BASELINES_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"

namespace impq::solver {

// Greedy by importance: players are dropped to 2 bits in ascending order of
// score_i / (bytes4_i − bytes2_i) — least sensitivity per byte saved first — until the
// footprint is within budget; ties go to the lower index; players saving 0 bytes are never
// dropped (dropping them cannot help the budget). Higher score = more sensitive, kept at 4 bits.
// InvalidArgument: sizes differ, a score is not finite, bytes invalid, or budget below the
// all-2-bit footprint.
absl::StatusOr<Coalition> GreedyImportanceAllocation(std::span<const double> scores,
                                                     const PlayerBytes& bytes,
                                                     int64_t budget_bytes);

// Uniform: all-4-bit when it fits, otherwise all-2-bit. Errors as above.
absl::StatusOr<Coalition> UniformAllocation(const PlayerBytes& bytes, int64_t budget_bytes);

// Random: players in a uniformly random order (Fisher–Yates with impq::Rng(seed)) are dropped
// to 2 bits until the budget is met. Deterministic for a seed. Errors as above.
absl::StatusOr<Coalition> RandomAllocation(const PlayerBytes& bytes, int64_t budget_bytes,
                                           uint64_t seed);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_BASELINES_H_
