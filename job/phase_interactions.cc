// Phase "interactions" (IMPQ §3.3): the objectives the allocations minimise. Two global
// estimators — "covariance" (the paper's, from the walks' marginals) and "surrogate" (a
// second-order fit to the walks' coalitions) — serve every budget; per budget, the
// budget-aware ones (solver/budget_aware_interactions.h: the "window" and "window_top"
// semivalues around the budget's coalition size k*, and the local surrogate), which read the
// walks' coalitions plus the isolated-Δ singletons (no new evaluation).
#include <algorithm>

#include "common/status.h"
#include "job/phases.h"
#include "solver/budget_aware_interactions.h"
#include "solver/interactions.h"

namespace impq::job {

absl::Status InteractionsPhase(PipelineState& s) {
  const JobOptions& o = s.o;
  JobResult& r = s.r;
  const int ns = s.ns;
  const auto t0 = PipelineClock::now();
  const int64_t num_budgets = static_cast<int64_t>(s.budgets.size());
  s.Report("solve", 0, 1 + num_budgets, t0);
  const solver::InteractionInput input = solver::InputFromSpqe(s.spqe, ns);
  // The second-order surrogates (global and local) are fitted only in the binary game: over
  // the ladder's n·(m−1) steps they have ~(n·(m−1))²/2 coefficients, more than the walks'
  // coalitions determine (ValidateJobOptions refuses them as the allocation's estimator).
  s.fit_surrogates = s.ladder->binary();  // two widths
  ASSIGN_OR_RETURN(s.cov, solver::CovarianceInteractionEstimator(o.alpha).Estimate(input));
  r.cov_linear = s.cov.linear;
  r.cov_quadratic = s.cov.quadratic;
  r.allocation_estimator = o.estimator;
  if (s.fit_surrogates) {
    ASSIGN_OR_RETURN(s.sur, solver::SurrogateInteractionEstimator(o.ridge).Estimate(input));
    r.sur_linear = s.sur.linear;
    r.sur_quadratic = s.sur.quadratic;
    r.sur_constant = s.sur.constant;
  }
  s.all_obs = s.spqe.observations;
  // The isolated-Δ coalitions, their losses written v(∅) + Δ as the binary job always wrote
  // them (the sum can differ from the measured loss in the last bit).
  const solver::IsolatedDelta& iso = s.iso;
  for (size_t k = 0; k < iso.observations.size(); ++k) {
    const double loss = iso.observations[k].loss;
    s.all_obs.push_back({iso.observations[k].coalition,
                         k == 0 ? iso.base_loss : iso.base_loss + (loss - iso.base_loss)});
  }
  solver::InteractionInput aware_input = input;
  aware_input.observations = s.all_obs;
  s.bandwidth = o.local_bandwidth > 0 ? o.local_bandwidth : std::max(2.0, ns / 8.0);
  for (int64_t b = 0; b < num_budgets; ++b) {
    ASSIGN_OR_RETURN(double k,
                     solver::TargetCoalitionSize(s.step_game->bytes(), s.game_budgets[b]));
    BudgetObjectives obj;
    ASSIGN_OR_RETURN(obj.window, solver::NewWindowSemivalueEstimator(ns, k)->Estimate(aware_input));
    ASSIGN_OR_RETURN(obj.window_top,
                     solver::NewTopWindowSemivalueEstimator(ns, k)->Estimate(aware_input));
    if (s.fit_surrogates) {
      ASSIGN_OR_RETURN(obj.local, solver::LocalSurrogateEstimator(k, s.bandwidth, o.local_ridge)
                                      .Estimate(aware_input));
    }
    r.target_sizes.push_back(k);
    r.window_linear.push_back(obj.window.linear);
    r.window_top_linear.push_back(obj.window_top.linear);
    s.per_budget.push_back(std::move(obj));
  }
  r.solve_seconds = SecondsSince(t0);
  return absl::OkStatus();
}

}  // namespace impq::job
