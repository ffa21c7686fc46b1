// The isolated-Δ baseline's scores (IMPQ §4), measured on the game: v({i}) − v(∅), player i
// alone at 2 bits and everything else at 4 bits, ΔNLL on the calibration set; with more widths
// (solver/width_ladder.h) every player alone at every narrower width. Costs n·(m−1) + 1
// evaluations, one batch.
#ifndef IMPQ_SOLVER_ISOLATED_DELTA_H_
#define IMPQ_SOLVER_ISOLATED_DELTA_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition_evaluator.h"
#include "solver/coalition.h"
#include "solver/width_ladder.h"

namespace impq::solver {

struct IsolatedDelta {
  double base_loss = 0;        // v(∅): all players at the widest width (4 bits)
  // Per step of the evaluator's ladder (per player with widths {2, 4}: v({i}) − v(∅)): the
  // loss increase of that step with every other player at the widest width, i.e. of player
  // i alone one rung below where its previous step left it.
  std::vector<double> scores;
  // Per (player, width) [i·m + w]: v(player i alone at widths[w]) − v(∅); 0 at the widest.
  std::vector<double> width_delta;
  // Every coalition evaluated, with its loss: ∅ first, then each player alone at each
  // narrower width (widest first).
  std::vector<Observation> observations;
  int64_t evaluations = 0;     // n·(m−1) + 1
};
// Evaluates the empty coalition and every player alone at every narrower width of the
// ladder (the singletons with widths {2, 4}), in one batch; `evaluator` plays its game.
absl::StatusOr<IsolatedDelta> IsolatedDeltaScores(CoalitionEvaluator& evaluator,
                                                  const WidthLadder& ladder);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_ISOLATED_DELTA_H_
