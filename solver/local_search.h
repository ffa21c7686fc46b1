// Measured local search around an allocation (beyond the paper; issue 8).
//
// Why. Every estimator (the paper's covariance objective, the surrogates, the window
// semivalues) is a model of v fitted to the walks' coalitions; the allocation it solves for
// is optimal for the model, not for v. Near the budget a handful of *measured* coalitions
// tells more than the model: starting from the best measured allocation, the search evaluates
// the budget-feasible neighbours a ranker puts first (swap a few players between 2 and 4
// bits), moves to any that measures lower, lets the ranker learn from everything measured so
// far (the search's own evaluations are data right where the budget is), and repeats until
// its evaluation allowance is spent.
//
// Neighbours of q (q_i = 1: player i at 2 bits) raise r players of q to 4 bits and drop d
// players outside q to 2 bits, 1 <= r <= max_raised, 0 <= d <= max_dropped, r + d <=
// max_changed, keeping the footprint within the budget. A move never only drops players
// (that cannot lower the loss of a monotone game and only wastes an evaluation); "raise one"
// alone fills slack the start left.
//
// Rankers. FirstOrderRanker (the one `impq run` uses) scores a move by the probability that
// it lowers the loss under a Bayesian first-order model around the incumbent; its prior is
// the walks' marginals near the budget's coalition size and every measured neighbour updates
// it. QuadraticModelRanker scores by a refitted quadratic model's value: with a model fitted
// to few coalitions near the budget, the moves it puts first are those it extrapolates most
// wildly (measured on stories260K: predicted gains of ~0.5–1 nats that measure as losses).
//
// Determinism: the result depends only on the inputs (ties in the ranking go to the
// neighbour generated first: fewer players changed, raised players ascending, then dropped
// players ascending).
#ifndef IMPQ_SOLVER_LOCAL_SEARCH_H_
#define IMPQ_SOLVER_LOCAL_SEARCH_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/budget_aware_interactions.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"
#include "solver/quadratic_objective.h"

namespace impq::solver {

struct NeighbourhoodOptions {
  int max_raised = 2;   // players of q raised to 4 bits per move (>= 1)
  int max_dropped = 2;  // players outside q dropped to 2 bits per move (>= 0)
  int max_changed = 3;  // raised + dropped (>= 1)
  // The game of a width ladder (solver/width_ladder.h): entries [i·k, i·k + k) are player i's
  // k steps. With k > 1, q must be closed and every neighbour is: a raised entry is a
  // player's last step taken (one rung wider), a dropped one its next step (one rung
  // narrower), and no player is both raised and dropped. 1: the binary game (every entry free).
  int steps_per_player = 1;
};

// Every budget-feasible neighbour of q (see the file comment), in generation order: by number
// of players changed, then raised players ascending, then dropped players ascending.
// InvalidArgument: q or bytes invalid, sizes differ, options out of range.
absl::StatusOr<std::vector<Coalition>> BudgetNeighbours(const Coalition& q,
                                                        const PlayerBytes& bytes,
                                                        int64_t budget_bytes,
                                                        const NeighbourhoodOptions& options);

// Scores the incumbent's unmeasured neighbours before every round; lower = evaluated first.
// `measured` is every coalition measured on the search's evaluator so far (the caller's, the
// start, the search's own). OK: one finite score per neighbour.
using NeighbourRanker = std::function<absl::StatusOr<std::vector<double>>(
    std::span<const Observation> measured, const Observation& incumbent,
    std::span<const Coalition> neighbours)>;

// Ranks by a quadratic model of v, refitted by `fit` before every round: the score is the
// model's value of the neighbour.
using QuadraticFit = std::function<absl::StatusOr<QuadraticObjective>(
    std::span<const Observation> measured, const Coalition& incumbent)>;
NeighbourRanker QuadraticModelRanker(QuadraticFit fit);

// Per player, the marginal v(S ∪ {i}) − v(S) expected near a coalition size, and the variance
// of that expectation (see MarginalsNearSize).
struct MarginalPrior {
  std::vector<double> mean;
  std::vector<double> variance;       // of the mean (> 0)
  double residual_variance = 0;       // spread of single marginals around their player's mean
};

// From observed marginals (SizedMarginalsFromObservations), a Gaussian kernel on the size of S
// around target_size with width bandwidth: mean_i = Σ w·m / Σ w over player i's marginals,
// spread_i = Σ w·(m − mean_i)² / Σ w, n_eff = (Σ w)² / Σ w², variance_i = spread_i / n_eff
// (a player with n_eff < 2 borrows the players' mean spread), residual_variance = the mean
// spread. InvalidArgument: bandwidth <= 0, n < 1; FailedPrecondition: a player without
// marginals (named).
absl::StatusOr<MarginalPrior> MarginalsNearSize(int num_players,
                                                std::span<const SizedMarginal> marginals,
                                                double target_size, double bandwidth);

// Ranks by the probability that a move lowers the loss under a Bayesian first-order model
// around the incumbent S: v(q) − v(S) = βᵀ(q − S) + ε, prior β ~ N(prior.mean,
// diag(prior.variance)), ε ~ N(0, prior.residual_variance) (what a first-order model misses:
// the interactions). The measured coalitions within Hamming distance `radius` of S update β
// (conjugate Gaussian posterior, mean μ, covariance Σ); a neighbour with x = q − S scores
// xᵀμ / sqrt(xᵀΣx + residual_variance): most negative = most likely an improvement.
NeighbourRanker FirstOrderRanker(MarginalPrior prior, int radius);

struct LocalSearchOptions {
  int64_t max_evaluations = 0;  // new coalitions the search may evaluate (>= 0)
  int64_t batch_size = 1;       // coalitions per round (>= 1): one model fit per round
  NeighbourhoodOptions neighbourhood;
};

struct LocalSearchResult {
  Observation best;                  // lowest measured loss: the start or an evaluated one
  std::vector<Observation> evaluated;  // the search's evaluations, in order
  int64_t rounds = 0;                // rankings (one per batch)
  int64_t moves = 0;                 // times the incumbent improved
  std::string stop_reason;           // "evaluations" (allowance spent) | "exhausted" (no
                                     // unmeasured neighbour left)
};

// Runs the search from `start` (a measured, budget-feasible coalition; the incumbent).
// `measured` are coalitions already measured on `evaluator` (comparable losses, e.g. the other
// candidates): never evaluated again. Each round ranks the incumbent's unmeasured neighbours
// (ties: generation order) and evaluates the best batch_size of them (fewer when the allowance
// ends); the incumbent becomes the lowest of itself and the round's evaluations (ties:
// incumbent).
// Neighbours that drop a player the budget does not need are left out: in a monotone game
// (2 bits never better than 4) the same move without that drop measures no worse.
// InvalidArgument: bad options, start infeasible or invalid; errors of the evaluator or the
// ranker are returned as they are; Internal when the ranker scores the wrong number of
// neighbours or gives a non-finite score.
absl::StatusOr<LocalSearchResult> MeasuredLocalSearch(CoalitionEvaluator& evaluator,
                                                      const PlayerBytes& bytes,
                                                      int64_t budget_bytes,
                                                      const Observation& start,
                                                      std::span<const Observation> measured,
                                                      const NeighbourRanker& ranker,
                                                      const LocalSearchOptions& options);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_LOCAL_SEARCH_H_
