// Heuristic allocation: greedy construction, local search, seeded perturbation restarts
// (iterated local search). The lower bound is the root bound of the exact solver, so the
// reported gap is honest even when the heuristic is not optimal.
#include "solver/heuristic_search.h"

#include <algorithm>

#include "common/rng.h"
#include "common/status.h"
#include "solver/bqp.h"

namespace impq::solver {

using internal::Bqp;

namespace internal {

Coalition HeuristicSearch(const Bqp& b, int restarts, uint64_t seed, int64_t* visited) {
  const int n = b.n;
  Coalition best = EmptyCoalition(n);
  GreedyRepair(b, best);  // always succeeds: the budget admits all-2-bit
  LocalSearch(b, best);
  double best_value = Value(b, best);
  int64_t count = 1;
  for (int k = 1; k < restarts; ++k) {
    Rng rng(DeriveSeed(seed, static_cast<uint64_t>(k)));
    Coalition q = best;
    const int flips = 2 + static_cast<int>(rng.Below(std::max(1, n / 4)));
    for (int f = 0; f < flips; ++f) {
      const int i = static_cast<int>(rng.Below(static_cast<uint64_t>(n)));
      q[i] = q[i] == 0 ? 1 : 0;
    }
    if (!GreedyRepair(b, q)) continue;
    LocalSearch(b, q);
    ++count;
    const double v = Value(b, q);
    if (v < best_value - b.tolerance) best_value = v, best = q;
  }
  if (visited != nullptr) *visited = count;
  return best;
}

double RootBound(const Bqp& b, int max_iters) {
  std::vector<int8_t> fix(b.n, -1);
  std::vector<double> x;
  const double cheap = LinearSplitBound(b, fix);
  return std::max(cheap, RelaxationBound(b, fix, max_iters, cheap + 1e300, x));
}

}  // namespace internal

namespace {

class HeuristicSolver : public AllocationSolver {
 public:
  explicit HeuristicSolver(const HeuristicSolverOptions& options) : options_(options) {}
  std::string name() const override { return "heuristic"; }

  absl::StatusOr<AllocationResult> Solve(const AllocationProblem& problem) const override {
    RETURN_IF_ERROR(ValidateObjective(problem.objective));
    const Bqp b = internal::MakeBqp(problem, 1e-9);
    AllocationResult result;
    result.solver = name();
    result.assignment = internal::HeuristicSearch(b, std::max(1, options_.restarts),
                                                  options_.seed, &result.nodes);
    result.objective = problem.objective.Evaluate(result.assignment);
    const double bound = internal::RootBound(b, 2000) + problem.objective.constant;
    result.lower_bound = std::min(bound, result.objective);
    result.proven_optimal = result.objective - result.lower_bound <= b.tolerance;
    result.memory_bytes = problem.all4_bytes;
    for (int i = 0; i < b.n; ++i) {
      if (result.assignment[i] != 0) result.memory_bytes -= problem.savings[i];
    }
    return result;
  }

 private:
  const HeuristicSolverOptions options_;
};

}  // namespace

std::unique_ptr<AllocationSolver> NewHeuristicSolver(const HeuristicSolverOptions& options) {
  return std::make_unique<HeuristicSolver>(options);
}

}  // namespace impq::solver
