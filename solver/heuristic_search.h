// Internal entry points shared by the heuristic and the exact solver (see allocation_solver.h
// for the public factories).
#ifndef IMPQ_SOLVER_HEURISTIC_SEARCH_H_
#define IMPQ_SOLVER_HEURISTIC_SEARCH_H_

#include <cstdint>

#include "solver/allocation_solver.h"
#include "solver/bqp.h"

namespace impq::solver::internal {

// Greedy + local search, then `restarts - 1` seeded perturb-repair-search rounds from the best.
// Returns a feasible assignment; *visited (if non-null) gets the number of local optima seen.
Coalition HeuristicSearch(const Bqp& b, int restarts, uint64_t seed, int64_t* visited);

// max(linear split bound, convex relaxation bound) at the root, without the constant.
double RootBound(const Bqp& b, int max_iters);

}  // namespace impq::solver::internal

#endif  // IMPQ_SOLVER_HEURISTIC_SEARCH_H_
