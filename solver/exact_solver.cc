// Exact allocation by depth-first branch and bound.
//
// Bound at a node (fixed players F0/F1, free U): the larger of
//   (1) the linear split bound: free-free pair terms bounded by min(0, pair_ij)(q_i + q_j)/2,
//       leaving a covering knapsack LP (cheap, O(n²));
//   (2) the convexified continuous relaxation: F(x) = xᵀ(K + tI)x + (a − t)ᵀx equals the
//       objective on binary points and is convex for t ≥ −λ_min(K) (t is the smallest such
//       shift, negative when K is positive definite, which tightens the bound); its minimum
//       over the box and the budget constraint is bounded from below by the Frank–Wolfe
//       (tangent-plane) bound at projected-gradient iterates. For IMPQ's covariance objective K
//       is positive semidefinite, so the relaxation is tight up to the integrality gap.
// Feasibility: a node is infeasible when even all free players at 2 bits miss the budget
// (exact integer test). The incumbent comes from the heuristic, then from rounding and locally
// improving each node's relaxed point. Branching picks the most fractional relaxed player and
// explores the side its value rounds to first.
//
// Certificate: every discarded node had bound ≥ incumbent − tol; the reported lower bound is
// the minimum over discarded nodes (and unexplored ones when the node limit stops the search),
// so proven_optimal ⇔ the tree was exhausted ⇔ incumbent − lower_bound ≤ tol.
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/allocation_solver.h"
#include "solver/bqp.h"
#include "solver/heuristic_search.h"

namespace impq::solver {
namespace {

using internal::Bqp;
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Node {
  std::vector<int8_t> fix;
  double bound = -kInf;  // parent's bound: valid for this node
  std::vector<double> x;  // warm start for the relaxation
};

class ExactSolver : public AllocationSolver {
 public:
  explicit ExactSolver(const ExactSolverOptions& options) : options_(options) {}
  std::string name() const override { return "exact_bnb"; }

  absl::StatusOr<AllocationResult> Solve(const AllocationProblem& problem) const override {
    RETURN_IF_ERROR(ValidateObjective(problem.objective));
    const Bqp b = internal::MakeBqp(problem, options_.relative_tolerance);
    const int n = b.n;
    Coalition incumbent = internal::HeuristicSearch(b, 8, /*seed=*/0, nullptr);
    double inc_value = internal::Value(b, incumbent);
    auto offer = [&](Coalition q, std::span<const int8_t> fix) {
      if (!internal::GreedyRepair(b, q, fix)) return;
      internal::LocalSearch(b, q);
      const double v = internal::Value(b, q);
      if (v < inc_value) inc_value = v, incumbent = std::move(q);
    };

    double pruned_min = kInf;  // min bound over discarded nodes
    int64_t nodes = 0;
    std::vector<Node> stack;
    stack.push_back(Node{std::vector<int8_t>(n, -1), -kInf, {}});
    bool exhausted = true;
    while (!stack.empty()) {
      if (nodes >= options_.max_nodes) {
        exhausted = false;
        break;
      }
      Node node = std::move(stack.back());
      stack.pop_back();
      ++nodes;
      const double cutoff = inc_value - b.tolerance;
      if (node.bound >= cutoff) {
        pruned_min = std::min(pruned_min, node.bound);
        continue;
      }
      int64_t fixed_saving = 0, free_saving = 0;
      int free_count = 0;
      for (int i = 0; i < n; ++i) {
        if (node.fix[i] == 1) fixed_saving += b.savings[i];
        if (node.fix[i] == -1) free_saving += b.savings[i], ++free_count;
      }
      if (fixed_saving + free_saving < b.required) continue;  // infeasible: bound +inf
      if (free_count == 0) {
        Coalition q(n);
        for (int i = 0; i < n; ++i) q[i] = static_cast<uint8_t>(node.fix[i]);
        const double v = internal::Value(b, q);
        if (v < inc_value) inc_value = v, incumbent = q;
        pruned_min = std::min(pruned_min, v);
        continue;
      }
      double bound = std::max(node.bound, internal::LinearSplitBound(b, node.fix));
      if (bound < cutoff) {
        bound = std::max(bound, internal::RelaxationBound(b, node.fix, kRelaxIters, cutoff,
                                                          node.x));
      }
      if (bound < cutoff) {
        // Primal: round the relaxed point, repair within the node, improve globally.
        Coalition q(n);
        for (int i = 0; i < n; ++i) {
          q[i] = node.fix[i] >= 0 ? static_cast<uint8_t>(node.fix[i]) : node.x[i] > 0.5;
        }
        offer(std::move(q), node.fix);
      }
      if (bound >= inc_value - b.tolerance) {
        pruned_min = std::min(pruned_min, bound);
        continue;
      }
      int branch = -1;
      double most = -1.0;
      for (int i = 0; i < n; ++i) {
        if (node.fix[i] != -1) continue;
        const double frac = std::min(node.x[i], 1.0 - node.x[i]);
        if (frac > most) most = frac, branch = i;
      }
      const int8_t first = node.x[branch] > 0.5 ? 1 : 0;
      Node second_child{node.fix, bound, node.x};
      second_child.fix[branch] = static_cast<int8_t>(1 - first);
      stack.push_back(std::move(second_child));
      node.fix[branch] = first;
      node.bound = bound;
      stack.push_back(std::move(node));
    }
    double lower = std::min(pruned_min, inc_value);
    for (const Node& open : stack) lower = std::min(lower, open.bound);

    AllocationResult result;
    result.solver = name();
    result.assignment = incumbent;
    result.objective = problem.objective.Evaluate(incumbent);
    result.lower_bound = lower + problem.objective.constant;
    result.proven_optimal = exhausted;
    result.nodes = nodes;
    result.memory_bytes = problem.all4_bytes;
    for (int i = 0; i < n; ++i) {
      if (incumbent[i] != 0) result.memory_bytes -= problem.savings[i];
    }
    return result;
  }

 private:
  static constexpr int kRelaxIters = 200;
  const ExactSolverOptions options_;
};

class BruteForceSolver : public AllocationSolver {
 public:
  std::string name() const override { return "brute_force"; }

  absl::StatusOr<AllocationResult> Solve(const AllocationProblem& problem) const override {
    RETURN_IF_ERROR(ValidateObjective(problem.objective));
    const int n = problem.num_players();
    if (n > 26) {
      return absl::ResourceExhaustedError(
          absl::StrCat("brute force over ", n, " players refused (limit 26)"));
    }
    const Bqp b = internal::MakeBqp(problem, 1e-9);
    // Gray code: step k flips bit ctz(k); g_i tracks the change of f when toggling i.
    std::vector<double> g(b.lin);
    Coalition q(n, 0);
    int64_t saved = 0;
    double value = 0.0;
    double best_value = saved >= b.required ? 0.0 : kInf;
    uint64_t best_mask = 0, mask = 0;
    const uint64_t total = uint64_t{1} << n;
    for (uint64_t k = 1; k < total; ++k) {
      const int i = std::countr_zero(k);
      const double sign = q[i] == 0 ? 1.0 : -1.0;
      value += sign * g[i];
      q[i] ^= 1;
      mask ^= uint64_t{1} << i;
      saved += sign > 0 ? b.savings[i] : -b.savings[i];
      const double* row = &b.pair[static_cast<size_t>(i) * n];
      for (int j = 0; j < n; ++j) g[j] += sign * row[j];
      if (saved >= b.required && value < best_value) best_value = value, best_mask = mask;
    }
    AllocationResult result;
    result.solver = name();
    result.assignment = CoalitionFromMask(best_mask, n);
    result.objective = problem.objective.Evaluate(result.assignment);
    result.lower_bound = result.objective;
    result.proven_optimal = true;
    result.nodes = static_cast<int64_t>(total);
    result.memory_bytes = problem.all4_bytes;
    for (int j = 0; j < n; ++j) {
      if (result.assignment[j] != 0) result.memory_bytes -= problem.savings[j];
    }
    return result;
  }
};

}  // namespace

AllocationSolver::~AllocationSolver() = default;

std::unique_ptr<AllocationSolver> NewExactSolver(const ExactSolverOptions& options) {
  return std::make_unique<ExactSolver>(options);
}

std::unique_ptr<AllocationSolver> NewBruteForceSolver() {
  return std::make_unique<BruteForceSolver>();
}

absl::StatusOr<std::vector<AllocationResult>> SweepAverageBits(
    const AllocationSolver& solver, const QuadraticObjective& objective,
    const PlayerBytes& bytes, std::span<const double> average_bits) {
  std::vector<AllocationResult> results;
  for (double bits : average_bits) {
    ASSIGN_OR_RETURN(int64_t budget, BudgetForAverageBits(bytes, bits));
    ASSIGN_OR_RETURN(AllocationProblem problem, MakeAllocationProblem(objective, bytes, budget));
    ASSIGN_OR_RETURN(AllocationResult result, solver.Solve(problem));
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace impq::solver
