// SolveExactAllocation (allocate.h).
#include "solver/allocate.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "solver/baselines.h"
#include "solver/multi_choice.h"
#include "solver/multi_choice_baselines.h"

namespace impq::solver {
namespace {

// IMPQ's own game: the binary code's fast path.
bool Binary24(const WidthLadder& ladder) { return ladder.widths() == std::vector<int>{2, 4}; }

}  // namespace

absl::StatusOr<AllocationResult> SolveExactAllocation(const QuadraticObjective& objective,
                                                      const WidthLadder& ladder,
                                                      const PlayerBytes& bytes,
                                                      std::span<const int64_t> width_bytes,
                                                      int64_t budget_bytes) {
  if (Binary24(ladder)) {
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

absl::StatusOr<StepGame> StepGame::Create(const WidthLadder& ladder, const PlayerBytes& bytes,
                                          std::span<const int64_t> width_bytes) {
  StepGame g;
  g.widths_ = ladder.widths();
  if (Binary24(ladder)) {
    g.bytes_ = bytes;
    return g;
  }
  RETURN_IF_ERROR(ladder.ValidateWidthBytes(width_bytes));
  g.bytes_ = ladder.StepBytes(width_bytes);
  g.narrowest_ = ladder.NarrowestBytes(width_bytes);
  return g;
}

absl::StatusOr<int64_t> StepGame::Budget(int64_t budget_bytes) const {
  if (budget_bytes < narrowest_) {
    return absl::InvalidArgumentError(absl::StrCat(
        budget_bytes, " bytes is below the narrowest allocation of widths ",
        absl::StrJoin(widths_, ","), " (", narrowest_, " bytes)"));
  }
  return budget_bytes - narrowest_;
}

absl::StatusOr<Coalition> GreedyBaselineAllocation(const WidthLadder& ladder,
                                                   std::span<const double> step_scores,
                                                   std::span<const double> width_delta,
                                                   const PlayerBytes& bytes,
                                                   std::span<const int64_t> width_bytes,
                                                   int64_t budget_bytes) {
  if (Binary24(ladder)) return GreedyImportanceAllocation(step_scores, bytes, budget_bytes);
  const int n = ladder.num_players(), m = ladder.num_widths();
  const std::vector<int>& widths = ladder.widths();
  std::vector<double> delta(width_delta.begin(), width_delta.end());
  if (delta.empty()) {
    if (step_scores.size() != static_cast<size_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat("greedy baseline: ", step_scores.size(),
                                                     " scores for ", n, " players"));
    }
    auto noise = [](int bits) {
      const double levels = std::ldexp(1.0, bits) - 1.0;
      return 1.0 / (levels * levels);
    };
    delta.resize(static_cast<size_t>(n) * m);
    for (int i = 0; i < n; ++i) {
      for (int w = 0; w < m; ++w) {
        delta[static_cast<size_t>(i) * m + w] =
            step_scores[i] * (noise(widths[w]) - noise(widths[m - 1]));
      }
    }
  }
  ASSIGN_OR_RETURN(std::vector<int> choice,
                   GreedyDeltaPerByteAllocation(delta, widths, width_bytes, budget_bytes));
  return ladder.CoalitionOfChoice(choice);
}

absl::StatusOr<Coalition> UniformBaselineAllocation(const WidthLadder& ladder,
                                                    const PlayerBytes& bytes,
                                                    std::span<const int64_t> width_bytes,
                                                    int64_t budget_bytes) {
  if (Binary24(ladder)) return UniformAllocation(bytes, budget_bytes);
  ASSIGN_OR_RETURN(std::vector<int> choice,
                   UniformWidthAllocation(ladder.widths(), width_bytes, budget_bytes));
  return ladder.CoalitionOfChoice(choice);
}

absl::StatusOr<Coalition> RandomBaselineAllocation(const WidthLadder& ladder,
                                                   const PlayerBytes& bytes,
                                                   std::span<const int64_t> width_bytes,
                                                   int64_t budget_bytes, uint64_t seed) {
  if (Binary24(ladder)) return RandomAllocation(bytes, budget_bytes, seed);
  ASSIGN_OR_RETURN(std::vector<int> choice,
                   RandomWidthAllocation(ladder.widths(), width_bytes, budget_bytes, seed));
  return ladder.CoalitionOfChoice(choice);
}

}  // namespace impq::solver
