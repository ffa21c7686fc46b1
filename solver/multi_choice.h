// The allocation with more than two widths (issue 14): every player picks ONE width out of m
// (e.g. {2, 3, 4, 8} bits). IMPQ §3.3's binary program, where q_i = 1 puts player i at 2 bits
// and 0 at 4, becomes a multiple-choice quadratic program with one binary x_{i,w} per player
// and width and a one-hot constraint per player:
//
//   minimise    c + Σ_i Σ_w a_{i,w} x_{i,w} + Σ_{i<j} Σ_{w,v} K_{(i,w),(j,v)} x_{i,w} x_{j,v}
//   subject to  Σ_w x_{i,w} = 1 for every player i,
//               Σ_{i,w} bytes_{i,w} x_{i,w} ≤ budget,           x binary.
//
// A solution is written as a choice vector: choice[i] = the index w of player i's width.
// With widths {2, 4} this is exactly the binary program (MultiChoiceFromBinary).
//
// Solvers keep no state between calls: thread-safe. Deterministic.
#ifndef IMPQ_SOLVER_MULTI_CHOICE_H_
#define IMPQ_SOLVER_MULTI_CHOICE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/quadratic_objective.h"

namespace impq::solver {

struct MultiChoiceProblem {
  int num_players = 0;         // n >= 1
  std::vector<int> widths;     // m labels (bits), e.g. {2, 3, 4, 8}; 1 <= m <= 16, distinct
  std::vector<double> linear;  // a: n·m, a_{i,w} at [i·m + w]
  // K: (n·m)×(n·m) row-major, symmetric; entry [(i·m + w)·n·m + j·m + v] is the coefficient of
  // x_{i,w}·x_{j,v} for i ≠ j (each unordered pair of players counted once in the objective).
  // The blocks i == j are NOT part of the objective (two widths of one player are never
  // chosen together); they may hold a hint for the exact solver's relaxation: terms that
  // vanish on one-hot points, like the binary program's diagonal K_ii (bqp.cc). For an
  // objective built from a covariance C of the (player, width) variables, K = 2·C between
  // players and the blocks 2·C_ii make the relaxation convex without a shift (tight bounds).
  // Any hint gives the same optimum; zero blocks mean none.
  std::vector<double> quadratic;
  std::vector<int64_t> bytes;  // n·m, bytes_{i,w} >= 0 at [i·m + w]
  int64_t budget_bytes = 0;
  double constant = 0.0;  // c

  int num_widths() const { return static_cast<int>(widths.size()); }
  int num_vars() const { return num_players * num_widths(); }
  double K(int i, int w, int j, int v) const {
    const size_t nv = static_cast<size_t>(num_vars());
    return quadratic[(static_cast<size_t>(i) * num_widths() + w) * nv +
                     static_cast<size_t>(j) * num_widths() + v];
  }
  // The objective at a choice vector, constant included. REQUIRES: valid problem,
  // choice.size() == n, 0 <= choice[i] < m.
  double Evaluate(std::span<const int> choice) const;
  // Σ_i bytes_{i, choice[i]}. Same REQUIRES.
  int64_t Footprint(std::span<const int> choice) const;
  // Σ_i min_w bytes_{i,w}: the smallest footprint any choice reaches.
  int64_t MinFootprint() const;
};

// OK iff the sizes agree, widths are distinct and 1 <= m <= 16, every number is finite, K is
// exactly symmetric, and bytes >= 0; InvalidArgument naming the first
// offending entry otherwise. Infeasible budgets are NOT checked here (see the solvers).
absl::Status ValidateMultiChoiceProblem(const MultiChoiceProblem& problem);

// The binary program of allocation_problem.h as a multiple-choice one with widths
// {low_bits, high_bits}: index 0 is q_i = 1 (low, e.g. 2 bits), index 1 is q_i = 0:
//   a_{i,0} = a_i + K_ii, a_{i,1} = 0, K_{(i,0),(j,0)} = 2·K_ij for i ≠ j, the hint
//   K_{(i,0),(i,0)} = 2·K_ii (the binary relaxation's diagonal), other entries 0,
//   bytes_{i,0} = bytes2_i, bytes_{i,1} = bytes4_i, same constant and budget.
// Both programs then have the same value at corresponding points. InvalidArgument as
// ValidateObjective / ValidatePlayerBytes, or when their sizes differ.
absl::StatusOr<MultiChoiceProblem> MultiChoiceFromBinary(const QuadraticObjective& objective,
                                                         const PlayerBytes& bytes,
                                                         int64_t budget_bytes, int low_bits = 2,
                                                         int high_bits = 4);

struct MultiChoiceResult {
  std::vector<int> choice;      // width index per player; feasible
  std::vector<int> bits;        // widths[choice[i]]
  double objective = 0.0;       // Evaluate(choice), constant included
  double lower_bound = 0.0;     // certified: no feasible choice has a smaller objective
  bool proven_optimal = false;  // the search was exhausted (objective − lower_bound <= tol)
  int64_t nodes = 0;            // branch-and-bound nodes, or choices enumerated
  int64_t memory_bytes = 0;     // Footprint(choice) <= budget_bytes
  double gap() const { return objective - lower_bound; }
};

// Which node bound SolveMultiChoiceExact uses (multi_choice_solver.cc's file comment).
enum class MultiChoiceBounding {
  kAuto,        // by the root: the relaxation when it closes at least half the root gap
                // that the pairwise dual leaves, the pairwise dual otherwise
  kPairwise,    // the pairwise dual with reduced-cost fixing (indefinite, surrogate-like K)
  kRelaxation,  // the split bound and the convexified relaxation (covariance-like K)
};

struct MultiChoiceSolverOptions {
  // Give up certifying after this many nodes: the result is then the best choice found with
  // proven_optimal = false and the smallest bound of the unexplored nodes.
  int64_t max_nodes = 10'000'000;
  // Pruning tolerance relative to the scale Σ|a| + Σ_{i<j}|K| of the objective.
  double relative_tolerance = 1e-9;
  // Every choice gives the same optimum; only the time differs (and the bound at max_nodes).
  MultiChoiceBounding bounding = MultiChoiceBounding::kAuto;
};

// Certified branch and bound (multi_choice_solver.cc). InvalidArgument for an invalid problem
// and for an infeasible budget (budget_bytes below MinFootprint(); the message names both).
absl::StatusOr<MultiChoiceResult> SolveMultiChoiceExact(
    const MultiChoiceProblem& problem, const MultiChoiceSolverOptions& options = {});

// Enumerates all m^n choices. Errors as SolveMultiChoiceExact, and ResourceExhausted when
// m^n > 2^24. For tests.
absl::StatusOr<MultiChoiceResult> SolveMultiChoiceBruteForce(const MultiChoiceProblem& problem);

namespace internal {

// The lower bounds SolveMultiChoiceExact computes at a node (multi_choice_solver.cc),
// constant included, over the choices with choice[i] in the bit mask allowed[i] that fit the
// budget: `split` (pair terms split into per-player minima, then the knapsack LP),
// `relaxation` (the convexified continuous relaxation after max_iters iterations) and
// `pairwise` (the pairwise dual after max_iters sweeps from the split's messages), with
// `pairwise_fixing`: for each variable i·m + w allowed at a free player, the bound the
// solver's reduced-cost fixing gives the node with player i fixed to width w (+inf elsewhere).
// Each is +inf when no allowed choice fits. Exposed for the tests of their validity.
// REQUIRES: valid problem, allowed.size() == n, every mask nonzero within the m widths.
struct MultiChoiceBounds {
  double split = 0.0;
  double relaxation = 0.0;
  double pairwise = 0.0;
  std::vector<double> pairwise_fixing;
};
MultiChoiceBounds MultiChoiceNodeBounds(const MultiChoiceProblem& problem,
                                        std::span<const uint32_t> allowed, int max_iters = 200);

}  // namespace internal
}  // namespace impq::solver

#endif  // IMPQ_SOLVER_MULTI_CHOICE_H_
