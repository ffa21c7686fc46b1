// Phase "baselines": the isolated metrics' scores. Isolated Δ is measured on the game
// (n·(m−1) + 1 evaluations, solver/isolated_delta.h); LIM, Z-score and act. norm need the
// weights or full-precision activations and came with the game's facts.
#include "common/status.h"
#include "job/phases.h"

namespace impq::job {

absl::Status BaselinesPhase(PipelineState& s) {
  JobResult& r = s.r;
  const auto t0 = PipelineClock::now();
  s.Report("baselines", 0, 1, t0);
  ASSIGN_OR_RETURN(s.iso, solver::IsolatedDeltaScores(s.calib_eval, *s.ladder));
  r.isolated_delta = s.iso.scores;
  r.isolated_evaluations = s.iso.evaluations;
  r.calib_loss_all4 = s.iso.base_loss;
  r.lim = s.facts.lim;
  r.actnorm = s.facts.actnorm;
  r.zscore = s.facts.zscore;
  r.baselines_seconds = SecondsSince(t0);
  s.Report("baselines", 1, 1, t0);
  return absl::OkStatus();
}

}  // namespace impq::job
