// Simulated annealing over budget-feasible allocations, on measured losses (beyond the paper;
// issue 8).
//
// Why. The per-budget choice (job/job.h) has a quarter of SPQE's evaluations to spend;
// whether a shortfall is its fault or the game's needs a search that spends far more:
// bench/choice_bound_bench runs this one, on the job's own game, from several starts, for 40–240×
// the choice's allowance. It is not part of the job.
//
// A move from q (q_i = 1: player i at 2 bits) raises 1..max_raised random players of q to 4
// bits, then drops random players outside q to 2 bits until the footprint fits the budget (a
// move that cannot fit is not made). It is accepted when it measures no worse, else with
// probability exp(−Δ/T); T falls geometrically from t0 to t1 over the run's evaluations.
// Coalitions already measured (by this run or an earlier one on the same MeasuredGame) cost
// nothing; a run also stops after 50 proposals per allowed evaluation (a frozen chain).
//
// Determinism: the result depends only on the inputs and the Rng's state.
#ifndef IMPQ_SOLVER_ANNEALING_SEARCH_H_
#define IMPQ_SOLVER_ANNEALING_SEARCH_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/rng.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"

namespace impq::solver {

// Every coalition measured on one evaluator, so that no run pays twice for one.
// Thread-compatible.
class MeasuredGame {
 public:
  // REQUIRES: `evaluator` outlives this object.
  explicit MeasuredGame(CoalitionEvaluator& evaluator) : evaluator_(evaluator) {}
  // v(q), evaluated once. Errors of the evaluator are returned as they are.
  absl::StatusOr<double> Loss(const Coalition& q);
  int64_t evaluations() const { return static_cast<int64_t>(loss_.size()); }
  // The k lowest measured coalitions, ascending (ties: coalition order).
  std::vector<Observation> Lowest(size_t k) const;

 private:
  CoalitionEvaluator& evaluator_;
  std::map<Coalition, double> loss_;
};

// A random move from q (see the file comment); q itself when none fits (q has no 2-bit player,
// or dropping every other 4-bit player does not fit). REQUIRES: q valid, max_raised >= 1.
Coalition RandomBudgetNeighbour(const Coalition& q, const PlayerBytes& bytes,
                                int64_t budget_bytes, int max_raised, Rng& rng);

struct AnnealingOptions {
  int64_t evaluations = 2000;  // new evaluations of the run's moves (>= 1; the start is extra)
  double t0 = 0.02;            // starting temperature, in loss units (> 0)
  double t1 = 0.0005;          // final temperature (0 < t1 <= t0)
  int max_raised = 2;          // players raised to 4 bits per move (>= 1)
};

struct AnnealingResult {
  Observation best;          // lowest measured along the run (the start included)
  Observation last;          // where the chain ended
  int64_t evaluations = 0;   // new evaluations of the moves (the start's not counted)
  int64_t accepted = 0;      // moves made
  std::string stop_reason;   // "evaluations" | "frozen" (too many proposals already measured)
};

// Called after every 1000th new evaluation: (evaluations, temperature, current, best).
using AnnealingProgress = std::function<void(int64_t, double, double, double)>;

// One run from `start`. InvalidArgument: bad options, start invalid or over the budget, bytes
// invalid or of another size; errors of the evaluator are returned as they are.
absl::StatusOr<AnnealingResult> Anneal(MeasuredGame& game, const PlayerBytes& bytes,
                                       int64_t budget_bytes, const Coalition& start,
                                       const AnnealingOptions& options, Rng& rng,
                                       const AnnealingProgress& progress = nullptr);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ANNEALING_SEARCH_H_
