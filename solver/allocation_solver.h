// Solvers of the allocation problem (allocation_problem.h) behind one interface.
// One estimation serves every budget: a sweep over b_avg costs only solver time.
#ifndef IMPQ_SOLVER_ALLOCATION_SOLVER_H_
#define IMPQ_SOLVER_ALLOCATION_SOLVER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"

namespace impq::solver {

struct AllocationResult {
  std::string solver;          // name() of the solver that produced it
  Coalition assignment;        // q, feasible
  double objective = 0.0;      // objective.Evaluate(q), constant included
  double lower_bound = 0.0;    // certified: no feasible q has objective < lower_bound
  bool proven_optimal = false; // objective − lower_bound <= tolerance (exhaustive search)
  int64_t nodes = 0;           // search nodes (branch-and-bound) or candidates visited
  int64_t memory_bytes = 0;    // footprint of assignment (budget_bytes − slack)
  // objective − lower_bound (>= 0 up to rounding).
  double gap() const { return objective - lower_bound; }
};

class AllocationSolver {
 public:
  virtual ~AllocationSolver();
  virtual std::string name() const = 0;
  // OK: a feasible assignment with its certified lower bound. InvalidArgument when the problem
  // is malformed (it should come from MakeAllocationProblem); ResourceExhausted when a solver
  // refuses the size (brute force). Solvers keep no state between calls: thread-safe.
  virtual absl::StatusOr<AllocationResult> Solve(const AllocationProblem& problem) const = 0;
};

struct ExactSolverOptions {
  // Give up certifying after this many nodes: the result is then the best found, with
  // proven_optimal = false and the lower bound of the unexplored nodes.
  int64_t max_nodes = 10'000'000;
  // Pruning tolerance, relative to the objective's scale Σ|a_i + K_ii| + Σ_{i<j} 2|K_ij|.
  double relative_tolerance = 1e-9;
};
// Branch and bound with a convexified continuous relaxation bound (see exact_solver.cc);
// certifies optimality. Name "exact_bnb".
std::unique_ptr<AllocationSolver> NewExactSolver(const ExactSolverOptions& options = {});

struct HeuristicSolverOptions {
  int restarts = 16;  // restart 0 is the plain greedy; others perturb the best and re-search
  uint64_t seed = 0;
};
// Greedy + best-improvement local search (add, remove, swap) with seeded restarts; reports the
// root relaxation bound as lower bound. Name "heuristic".
std::unique_ptr<AllocationSolver> NewHeuristicSolver(const HeuristicSolverOptions& options = {});

// Enumerates all 2^n assignments (Gray code). ResourceExhausted when n > 26. Name
// "brute_force". For tests.
std::unique_ptr<AllocationSolver> NewBruteForceSolver();

// Solves the objective at each average bit-width (BudgetForAverageBits). Errors as those.
absl::StatusOr<std::vector<AllocationResult>> SweepAverageBits(
    const AllocationSolver& solver, const QuadraticObjective& objective,
    const PlayerBytes& bytes, std::span<const double> average_bits);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ALLOCATION_SOLVER_H_
