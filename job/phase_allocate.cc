// Phase "allocate": every method's allocation for every budget, in table order — the exact
// allocation of each estimator's objective, then the baselines' (isolated Δ, LIM, Z-score,
// act. norm, uniform, random draws) — all through solver/allocate.h, the one place an
// allocation is made for any width set. Candidates of the per-budget choice are every
// deterministic allocation, in three tiers (phase_select.cc): the isolated metrics' and
// uniform (0), the five estimators' (1), and the measured local search's (2, added there).
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/rng.h"
#include "common/status.h"
#include "job/phases.h"

namespace impq::job {

absl::StatusOr<std::vector<solver::AllocationResult>> SolveEveryBudget(
    const PipelineState& s, const solver::QuadraticObjective& objective) {
  std::vector<solver::AllocationResult> out;
  for (int64_t budget : s.budgets) {
    ASSIGN_OR_RETURN(solver::AllocationResult a,
                     solver::SolveExactAllocation(objective, *s.ladder, s.bytes,
                                                  s.facts.width_bytes, budget));
    out.push_back(std::move(a));
  }
  return out;
}

absl::Status AllocatePhase(PipelineState& s) {
  const JobOptions& o = s.o;
  JobResult& r = s.r;
  const solver::WidthLadder& ladder = *s.ladder;
  const std::vector<int64_t>& width_bytes = s.facts.width_bytes;
  const auto t0 = PipelineClock::now();
  const int64_t num_budgets = static_cast<int64_t>(s.budgets.size());
  auto solve = [&](const solver::QuadraticObjective& obj, size_t b) {
    return solver::SolveExactAllocation(obj, ladder, s.bytes, width_bytes, s.budgets[b]);
  };
  const solver::QuadraticObjective& chosen = o.estimator == "covariance" ? s.cov : s.sur;
  const solver::QuadraticObjective& other = o.estimator == "covariance" ? s.sur : s.cov;
  ASSIGN_OR_RETURN(std::vector<solver::AllocationResult> impq_alloc, SolveEveryBudget(s, chosen));
  std::vector<solver::AllocationResult> other_alloc;
  if (s.fit_surrogates) {
    ASSIGN_OR_RETURN(other_alloc, SolveEveryBudget(s, other));
  }
  s.Report("solve", 1, 1 + num_budgets, t0);
  s.plan.assign(s.budgets.size(), {});
  for (size_t b = 0; b < s.budgets.size(); ++b) {
    const BudgetObjectives& obj = s.per_budget[b];
    auto& p = s.plan[b];
    p.push_back({"impq", impq_alloc[b].assignment, impq_alloc[b], 1});
    if (s.fit_surrogates) {
      p.push_back({absl::StrCat("impq_", other.estimator), other_alloc[b].assignment,
                   other_alloc[b], 1});
    }
    ASSIGN_OR_RETURN(solver::AllocationResult aw, solve(obj.window, b));
    p.push_back({"impq_window", aw.assignment, aw, 1});
    ASSIGN_OR_RETURN(solver::AllocationResult at, solve(obj.window_top, b));
    p.push_back({"impq_window_top", at.assignment, at, 1});
    if (obj.local) {
      ASSIGN_OR_RETURN(solver::AllocationResult al, solve(*obj.local, b));
      p.push_back({"impq_local", al.assignment, al, 1});
    }
    // The greedy baselines: isolated Δ with its measured scores, the per-player
    // sensitivities spread over the widths (solver::GreedyBaselineAllocation).
    const struct {
      const char* method;
      const std::vector<double>* scores;
      const std::vector<double>* width_delta;
    } greedy[] = {{"isolated", &r.isolated_delta, &s.iso.width_delta},
                  {"lim", &r.lim, nullptr},
                  {"zscore", &r.zscore, nullptr},
                  {"actnorm", &r.actnorm, nullptr}};
    for (const auto& g : greedy) {
      ASSIGN_OR_RETURN(solver::Coalition q,
                       solver::GreedyBaselineAllocation(
                           ladder, *g.scores,
                           g.width_delta != nullptr ? std::span<const double>(*g.width_delta)
                                                    : std::span<const double>(),
                           s.bytes, width_bytes, s.budgets[b]));
      p.push_back({g.method, std::move(q), std::nullopt, 0});
    }
    ASSIGN_OR_RETURN(solver::Coalition uq, solver::UniformBaselineAllocation(
                                               ladder, s.bytes, width_bytes, s.budgets[b]));
    p.push_back({"uniform", std::move(uq), std::nullopt, 0});
    for (int d = 0; d < o.random_draws; ++d) {
      const uint64_t seed = DeriveSeed(o.seed, 1000003 * (b + 1) + d);
      ASSIGN_OR_RETURN(solver::Coalition q, solver::RandomBaselineAllocation(
                                                ladder, s.bytes, width_bytes, s.budgets[b], seed));
      p.push_back({"random", std::move(q), std::nullopt, /*tier=*/-1});
    }
    s.Report("solve", 2 + static_cast<int64_t>(b), 1 + num_budgets, t0);
  }
  r.solve_seconds += SecondsSince(t0);
  return absl::OkStatus();
}

}  // namespace impq::job
