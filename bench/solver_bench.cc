// solver_bench: how long does the allocation take, exactly and heuristically?
//
// For random instances of the two families the solver tests use (covariance-like K as IMPQ's
// estimator produces, and indefinite K) at n = 20, 35 and 42 players (42: the largest model in
// the IMPQ paper) and every target average bit-width of the job, prints per (family, n): the
// exact branch and bound's median / mean / worst wall time, nodes, how many instances it
// proved optimal, and the heuristic's mean time, worst reported gap (objective minus its lower
// bound) and worst actual excess over the optimum, both relative to |optimum|.
//
//   build/bench/solver_bench [--seeds 10]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <optional>
#include <vector>

#include "common/flags.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
#include "solver/test_games.h"

namespace impq::solver {
namespace {

int Main(int argc, char** argv) {
  int64_t seeds = 10;
  FlagSet flags("solver_bench");
  flags.Int("seeds", &seeds, "instances per (family, n, budget)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  auto exact = NewExactSolver();
  auto heuristic = NewHeuristicSolver();
  const double budgets[] = {2.25, 2.5, 3.0, 3.5};
  std::printf("| family | n | instances | exact median ms | exact mean ms | exact worst ms | mean nodes | proven optimal | heuristic mean ms | heuristic worst bound gap | heuristic worst excess over optimum |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (int family : {0, 1}) {
    for (int n : {20, 35, 42}) {
      std::vector<double> ms;
      double nodes = 0, heur_ms = 0, worst_gap = 0, worst_excess = 0;
      int proven = 0;
      for (int64_t seed = 0; seed < seeds; ++seed) {
        const QuadraticObjective obj = family == 0 ? testing::RandomCovarianceObjective(n, 5000 + seed)
                                                   : testing::RandomIndefiniteObjective(n, 5000 + seed);
        const PlayerBytes bytes = testing::RandomPlayerBytes(n, 9000 + seed);
        for (double bits : budgets) {
          auto problem = MakeAllocationProblem(obj, bytes, *BudgetForAverageBits(bytes, bits));
          if (!problem.ok()) {
            std::cerr << problem.status() << "\n";
            return 1;
          }
          auto t0 = std::chrono::steady_clock::now();
          auto r = exact->Solve(*problem);
          ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
          if (!r.ok()) {
            std::cerr << r.status() << "\n";
            return 1;
          }
          nodes += static_cast<double>(r->nodes);
          proven += r->proven_optimal;
          t0 = std::chrono::steady_clock::now();
          auto h = heuristic->Solve(*problem);
          heur_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
          if (h.ok()) {
            // Gaps relative to the optimum's magnitude (objectives are loss increases).
            const double scale = std::max(std::abs(r->objective), 1e-12);
            worst_gap = std::max(worst_gap, h->gap() / scale);
            worst_excess = std::max(worst_excess, (h->objective - r->objective) / scale);
          }
        }
      }
      std::vector<double> sorted = ms;
      std::sort(sorted.begin(), sorted.end());
      double mean = 0;
      for (double x : ms) mean += x;
      mean /= static_cast<double>(ms.size());
      std::printf("| %s | %d | %zu | %.1f | %.1f | %.1f | %.0f | %d/%zu | %.2f | %.2f%% | %.3f%% |\n",
                  family == 0 ? "covariance-like" : "indefinite", n, ms.size(),
                  sorted[sorted.size() / 2], mean, sorted.back(), nodes / static_cast<double>(ms.size()), proven,
                  ms.size(), heur_ms / static_cast<double>(ms.size()), 100 * worst_gap, 100 * worst_excess);
    }
  }
  return 0;
}

}  // namespace
}  // namespace impq::solver

int main(int argc, char** argv) { return impq::solver::Main(argc, argv); }
