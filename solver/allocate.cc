// SolveExactAllocation (allocate.h).
#include "solver/allocate.h"

#include <vector>

#include "common/status.h"
#include "solver/multi_choice.h"

namespace impq::solver {

absl::StatusOr<AllocationResult> SolveExactAllocation(const QuadraticObjective& objective,
                                                      const WidthLadder& ladder,
                                                      const PlayerBytes& bytes,
                                                      std::span<const int64_t> width_bytes,
                                                      int64_t budget_bytes) {
  if (ladder.widths() == std::vector<int>{2, 4}) {
    ASSIGN_OR_RETURN(AllocationProblem p, MakeAllocationProblem(objective, bytes, budget_bytes));
    return NewExactSolver()->Solve(p);
  }
  const std::vector<int64_t> wb(width_bytes.begin(), width_bytes.end());
  ASSIGN_OR_RETURN(MultiChoiceProblem p, ladder.ToMultiChoice(objective, wb, budget_bytes));
  ASSIGN_OR_RETURN(MultiChoiceResult mc, SolveMultiChoiceExact(p));
  AllocationResult a;
  a.solver = "multi_choice_exact";
  a.assignment = ladder.CoalitionOfChoice(mc.choice);
  a.objective = mc.objective;
  a.lower_bound = mc.lower_bound;
  a.proven_optimal = mc.proven_optimal;
  a.nodes = mc.nodes;
  a.memory_bytes = mc.memory_bytes;
  return a;
}

}  // namespace impq::solver
