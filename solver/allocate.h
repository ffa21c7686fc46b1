// The one entry point for an exact allocation, whatever the width set (IMPQ §3.3 and its
// multiple-choice generalisation): the job pipeline calls it for every objective and budget.
#ifndef IMPQ_SOLVER_ALLOCATE_H_
#define IMPQ_SOLVER_ALLOCATE_H_

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
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

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ALLOCATE_H_
