// The one place an allocation is made for any width set (IMPQ §3.3, §4 and their
// multiple-choice generalisation, solver/width_ladder.h): the exact allocation of an objective
// and the baselines' rules, each returning a coalition over the game's players (the ladder's
// steps; the players themselves with widths {2, 4}). Widths {2, 4} — IMPQ's own game — run the
// binary code (allocation_solver.h, baselines.h) as a fast path, bit for bit what that game
// always ran; any other set runs the multiple-choice code (multi_choice.h,
// multi_choice_baselines.h), which equals the binary code on {2, 4} up to rounding (tested).
// The job pipeline calls nothing else to allocate.
#ifndef IMPQ_SOLVER_ALLOCATE_H_
#define IMPQ_SOLVER_ALLOCATE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
#include "solver/coalition.h"
#include "solver/quadratic_objective.h"
#include "solver/width_ladder.h"

namespace impq::solver {

// Minimises `objective` over the game's players — the steps of `ladder` (the players
// themselves with widths {2, 4}) — under a total of `budget_bytes` for the linear weights
// (the scale of BudgetForAverageBits over `bytes`, the players' 2- and 4-bit bytes).
// `width_bytes` holds player i's bytes at ladder.widths()[w] at [i·m + w]. Widths {2, 4}: the
// binary quadratic program by certified branch and bound (NewExactSolver, the fast path);
// any other set: the ladder's multiple-choice program (WidthLadder::ToMultiChoice,
// SolveMultiChoiceExact). The result's assignment is a coalition over the steps; memory_bytes
// is the allocation's total. Errors: those of the solvers (a budget no allocation meets,
// inconsistent sizes), naming the budget.
absl::StatusOr<AllocationResult> SolveExactAllocation(const QuadraticObjective& objective,
                                                      const WidthLadder& ladder,
                                                      const PlayerBytes& bytes,
                                                      std::span<const int64_t> width_bytes,
                                                      int64_t budget_bytes);

// The game SPQE plays and the allocations are made in: its players' bytes and budgets in its
// terms. Widths {2, 4}: the players' own bytes and budgets; any other set: the ladder's steps
// (WidthLadder::StepBytes: what each step saves) and budgets less the narrowest allocation's
// bytes.
class StepGame {
 public:
  // InvalidArgument: width_bytes the ladder refuses (WidthLadder::ValidateWidthBytes).
  static absl::StatusOr<StepGame> Create(const WidthLadder& ladder, const PlayerBytes& bytes,
                                         std::span<const int64_t> width_bytes);
  const PlayerBytes& bytes() const { return bytes_; }
  // `budget_bytes` (the linear weights' total) in the game's terms. InvalidArgument when it is
  // below the narrowest allocation (names both byte counts and the widths).
  absl::StatusOr<int64_t> Budget(int64_t budget_bytes) const;

 private:
  PlayerBytes bytes_;
  int64_t narrowest_ = 0;
  std::vector<int> widths_;
};

// The greedy baselines (IMPQ §4: isolated Δ, LIM, Z-score, act. norm) under `budget_bytes`.
// Isolated Δ passes its measured scores: `step_scores` per step of the ladder and
// `width_delta` per (player, width) (solver/isolated_delta.h). A per-player sensitivity
// (LIM, Z-score, act. norm) passes `width_delta` empty: it is spread over the widths as
// s_i · (e(b) − e(widest)), e(b) = 1/(2^b − 1)² the relative noise power of a b-bit uniform
// quantizer (with two widths: s_i per byte saved, the binary rule). Errors: those of
// GreedyImportanceAllocation / GreedyDeltaPerByteAllocation.
absl::StatusOr<Coalition> GreedyBaselineAllocation(const WidthLadder& ladder,
                                                   std::span<const double> step_scores,
                                                   std::span<const double> width_delta,
                                                   const PlayerBytes& bytes,
                                                   std::span<const int64_t> width_bytes,
                                                   int64_t budget_bytes);
// Uniform: the widest single width that fits (UniformAllocation / UniformWidthAllocation).
absl::StatusOr<Coalition> UniformBaselineAllocation(const WidthLadder& ladder,
                                                    const PlayerBytes& bytes,
                                                    std::span<const int64_t> width_bytes,
                                                    int64_t budget_bytes);
// Random, deterministic for a seed (RandomAllocation / RandomWidthAllocation).
absl::StatusOr<Coalition> RandomBaselineAllocation(const WidthLadder& ladder,
                                                   const PlayerBytes& bytes,
                                                   std::span<const int64_t> width_bytes,
                                                   int64_t budget_bytes, uint64_t seed);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ALLOCATE_H_
