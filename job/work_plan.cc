// JobWorkPlan (work_plan.h).
#include "job/work_plan.h"

#include <algorithm>

namespace impq::job {

JobWorkPlan::JobWorkPlan(const JobOptions& o, int players, int64_t calib_tokens,
                         int64_t heldout_tokens) {
  if (players <= 0 || calib_tokens <= 0) return;
  // In full calibration-set evaluations. A walk step reruns ~60% of the decoder (prefix
  // reuse; bench/prefix_reuse_bench); a held-out measurement of a sorted allocation ~85%; the
  // choice's evaluations mostly run in full; the solver's time is ~2 evaluations per budget.
  const double n = players;
  const double budgets = static_cast<double>(o.average_bits.size());
  const double spqe = static_cast<double>(o.permutations) * n;
  const double heldout = static_cast<double>(heldout_tokens) / static_cast<double>(calib_tokens);
  phases_ = {{"baselines", 0.6 * n + 1},
             {"spqe", 0.6 * spqe},
             {"solve", 2 * budgets},
             {"select", o.extra_evaluation_fraction * spqe + 10 * budgets},
             {"measure", 0.85 * heldout * (budgets * (12 + o.random_draws) + 3)}};
}

double JobWorkPlan::SecondsLeft(const std::string& phase, int64_t done, int64_t total,
                                double elapsed_seconds) const {
  int current = -1;
  for (size_t i = 0; i < phases_.size(); ++i) {
    if (phases_[i].first == phase) current = static_cast<int>(i);
  }
  if (current < 0) return 0;  // before the plan (loading) or a phase it does not know
  double before = 0, after = 0;
  for (int i = 0; i < static_cast<int>(phases_.size()); ++i) {
    if (i < current) before += phases_[i].second;
    if (i > current) after += phases_[i].second;
  }
  const double frac = total > 0 ? std::clamp(static_cast<double>(done) / total, 0.0, 1.0) : 0;
  const double work_done = before + frac * phases_[current].second;
  const double work_left = (1 - frac) * phases_[current].second + after;
  // Nothing measured yet: no rate to extrapolate from.
  if (work_done <= 0 || elapsed_seconds <= 0) return 0;
  return elapsed_seconds / work_done * work_left;
}

}  // namespace impq::job
