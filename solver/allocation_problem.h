// The memory-constrained allocation of IMPQ §3.3: choose q ∈ {0,1}^n (q_i = 1: player i at
// 2 bits) minimising the quadratic objective subject to the model fitting the budget:
//   Σ_i bytes(q_i) ≤ budget   ⇔   Σ_i q_i·(bytes4_i − bytes2_i) ≥ bytes_all4 − budget.
#ifndef IMPQ_SOLVER_ALLOCATION_PROBLEM_H_
#define IMPQ_SOLVER_ALLOCATION_PROBLEM_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"
#include "solver/quadratic_objective.h"

namespace impq::solver {

// Exact storage of every player at 2 and at 4 bits (weights plus scales/zeros), in bytes.
struct PlayerBytes {
  std::vector<int64_t> bytes2;
  std::vector<int64_t> bytes4;
};

// OK iff both vectors have n >= 1 entries and 0 <= bytes2_i <= bytes4_i for every i;
// InvalidArgument naming the player otherwise.
absl::Status ValidatePlayerBytes(const PlayerBytes& bytes);
// Σ_i (q_i ? bytes2_i : bytes4_i). REQUIRES: valid bytes, q of the same size.
int64_t Footprint(const PlayerBytes& bytes, const Coalition& q);

// Budget for a target average bit-width, interpolated linearly between the exact footprints:
//   budget = all2 + floor((b_avg − 2)/2 · (all4 − all2)),
// so b_avg = 2 gives all2 and b_avg = 4 gives all4 exactly (floor keeps the budget honest).
// InvalidArgument naming the value when b_avg is NaN or outside [2, 4], or bytes are invalid.
absl::StatusOr<int64_t> BudgetForAverageBits(const PlayerBytes& bytes, double average_bits);

struct AllocationProblem {
  QuadraticObjective objective;
  std::vector<int64_t> savings;  // s_i = bytes4_i − bytes2_i >= 0
  int64_t required_savings = 0;  // R = bytes_all4 − budget (<= 0: all-4-bit is feasible)
  int64_t budget_bytes = 0;
  int64_t all4_bytes = 0;
  int64_t all2_bytes = 0;

  int num_players() const { return objective.num_players; }
  // True iff Σ q_i s_i >= R.
  bool Feasible(const Coalition& q) const;
};

// Builds a problem. InvalidArgument when the objective or bytes are invalid, their sizes
// differ, or budget_bytes is below the all-2-bit footprint (no assignment fits; the message
// names both values).
absl::StatusOr<AllocationProblem> MakeAllocationProblem(const QuadraticObjective& objective,
                                                        const PlayerBytes& bytes,
                                                        int64_t budget_bytes);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ALLOCATION_PROBLEM_H_
