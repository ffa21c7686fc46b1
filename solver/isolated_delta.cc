#include "solver/isolated_delta.h"

#include "common/status.h"

namespace impq::solver {

absl::StatusOr<IsolatedDelta> IsolatedDeltaScores(CoalitionEvaluator& evaluator,
                                                  const WidthLadder& ladder) {
  const int n = ladder.num_players(), m = ladder.num_widths();
  std::vector<int> choice(static_cast<size_t>(n), m - 1);
  std::vector<Coalition> batch = {ladder.CoalitionOfChoice(choice)};
  for (int i = 0; i < n; ++i) {
    for (int w = m - 2; w >= 0; --w) {
      choice[i] = w;
      batch.push_back(ladder.CoalitionOfChoice(choice));
    }
    choice[i] = m - 1;
  }
  ASSIGN_OR_RETURN(std::vector<double> losses, evaluator.Evaluate(batch));
  IsolatedDelta r;
  r.base_loss = losses[0];
  r.scores.resize(static_cast<size_t>(ladder.num_steps()));
  r.width_delta.assign(static_cast<size_t>(n) * m, 0.0);
  for (int i = 0; i < n; ++i) {
    double above = losses[0];  // player i one rung up: at the widest before its first step
    for (int step = 0; step < m - 1; ++step) {
      const double loss = losses[1 + static_cast<size_t>(i) * (m - 1) + step];
      r.scores[ladder.Step(i, step)] = loss - above;
      r.width_delta[static_cast<size_t>(i) * m + (m - 2 - step)] = loss - losses[0];
      above = loss;
    }
  }
  for (size_t k = 0; k < batch.size(); ++k) r.observations.push_back({batch[k], losses[k]});
  r.evaluations = static_cast<int64_t>(batch.size());
  return r;
}

}  // namespace impq::solver
