// Internal dense form of an AllocationProblem shared by the allocation solvers, with the bounds
// and the local search they use. Not part of the public contract of the library.
//
//   f(q) = Σ_i lin_i q_i + Σ_{i<j} pair_ij q_i q_j       (lin_i = a_i + K_ii, pair_ij = 2 K_ij)
//   subject to Σ_i s_i q_i ≥ R.
#ifndef IMPQ_SOLVER_BQP_H_
#define IMPQ_SOLVER_BQP_H_

#include <cstdint>
#include <span>
#include <vector>

#include "solver/allocation_problem.h"
#include "solver/coalition.h"

namespace impq::solver::internal {

struct Bqp {
  int n = 0;
  std::vector<double> lin;      // n
  std::vector<double> pair;     // n×n symmetric, zero diagonal
  std::vector<int64_t> savings;  // s_i (exact, for feasibility)
  int64_t required = 0;         // R
  // Convexified relaxation F(x) = xᵀHx + hlinᵀx with H = K + t·I positive definite and
  // hlin = a − t·1: F(q) = f(q) on binary q (q_i² = q_i), F convex on [0,1]^n.
  std::vector<double> h;        // n×n
  std::vector<double> hlin;     // n
  double lipschitz = 0.0;       // ≥ 2·λ_max(H): step 1/L for projected gradient
  std::vector<double> s_norm;   // s_i / max_s (relaxation works in normalised units)
  double r_norm = 0.0;          // R / max_s
  double scale = 0.0;           // Σ|lin_i| + Σ_{i<j}|pair_ij|: bound on |f|
  double tolerance = 0.0;       // absolute pruning tolerance
};

Bqp MakeBqp(const AllocationProblem& problem, double relative_tolerance);

// f(q) without the objective's constant.
double Value(const Bqp& b, const Coalition& q);

// Node of a search: fix[i] = -1 (free), 0 or 1.
// Lower bound of f over completions of `fix` meeting the budget (+inf if none exists):
// each free pair term is bounded below by min(0, pair_ij)·(q_i + q_j)/2, leaving a linear
// covering knapsack whose LP relaxation is solved exactly by ratio order.
double LinearSplitBound(const Bqp& b, std::span<const int8_t> fix);

// Lower bound from the convex relaxation min F(x) over {x ∈ box(fix), sᵀx ≥ R}: at every
// iterate y of accelerated projected gradient, F(y) + min_{z} ∇F(y)ᵀ(z − y) is a valid bound
// (F lies above its tangent plane). Runs at most max_iters iterations and stops early once
// the bound reaches `target`, or once a feasible iterate has F below `target` (then no bound
// can reach it). x is the warm start on entry and the last iterate on exit.
double RelaxationBound(const Bqp& b, std::span<const int8_t> fix, int max_iters, double target,
                       std::vector<double>& x);

// Best-improvement local search over add / remove / swap moves that keep q feasible.
// REQUIRES: q feasible. Returns the number of moves made.
int64_t LocalSearch(const Bqp& b, Coalition& q);

// Makes q feasible by adding the players of smallest (marginal cost / saving), in place.
// Players with fix[i] != -1 are left alone when fix is non-empty. Returns false if impossible.
bool GreedyRepair(const Bqp& b, Coalition& q, std::span<const int8_t> fix = {});

}  // namespace impq::solver::internal

#endif  // IMPQ_SOLVER_BQP_H_
