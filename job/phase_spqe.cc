// Phase "spqe": Shapley-based progressive quantization estimation (IMPQ §3.2) on the
// calibration set — permutations of the game's players walked from all-widest to
// all-narrowest (solver/spqe.h; over the ladder's steps with more than two widths). It stops
// at JobOptions::permutations walks, or earlier by the one stopping rule RunSpqe applies:
// max SE(φ) below se_threshold, or (stable_batches) the allocation unchanged for that many
// batches of two walks.
#include <vector>

#include "common/status.h"
#include "job/phases.h"
#include "solver/interactions.h"

namespace impq::job {
namespace {

const char* StopReasonName(solver::SpqeStopReason r) {
  switch (r) {
    case solver::SpqeStopReason::kMaxPermutations: return "max_permutations";
    case solver::SpqeStopReason::kStandardError: return "standard_error";
    case solver::SpqeStopReason::kCallback: return "allocation_stable";
  }
  return "unknown";
}

}  // namespace

absl::Status SpqePhase(PipelineState& s) {
  const JobOptions& o = s.o;
  JobResult& r = s.r;
  const int ns = s.ns;
  const auto t0 = PipelineClock::now();
  solver::SpqeOptions so;
  so.num_players = ns;
  const solver::LadderPermutationSampler ladder_sampler(*s.ladder, o.seed, o.antithetic);
  if (!s.ladder->binary()) so.sampler = &ladder_sampler;
  so.max_permutations = o.permutations;
  so.antithetic = o.antithetic;
  so.seed = o.seed;
  so.se_threshold = o.se_threshold;
  so.min_permutations = o.min_permutations > 0 ? o.min_permutations : (o.antithetic ? 4 : 2);
  so.permutations_per_batch = 2;
  so.progress_callback = [&](const solver::SpqeProgress& p) {
    s.Report("spqe", p.permutations_done, o.permutations, t0);
  };
  // "The allocation stops changing": re-solve every budget from the running estimate after
  // each batch and stop after `stable_batches` batches without a change.
  std::vector<solver::Coalition> last_allocation;
  int64_t unchanged = 0;
  if (o.stable_batches > 0) {
    so.stop_callback = [&](const solver::SpqeProgress& p) {
      if (p.marginals == nullptr || p.marginals->size() < 2) return false;
      solver::InteractionInput in;
      in.num_players = ns;
      in.marginals = *p.marginals;
      // The paper's covariance objective: it needs only the walks' marginals.
      absl::StatusOr<solver::QuadraticObjective> obj =
          solver::CovarianceInteractionEstimator(o.alpha).Estimate(in);
      if (!obj.ok()) return false;
      auto sweep = SolveEveryBudget(s, *obj);
      if (!sweep.ok()) return false;
      std::vector<solver::Coalition> now;
      for (const auto& a : *sweep) now.push_back(a.assignment);
      unchanged = now == last_allocation ? unchanged + 1 : 0;
      last_allocation = std::move(now);
      return unchanged >= o.stable_batches;
    };
  }
  s.Report("spqe", 0, o.permutations, t0);
  ASSIGN_OR_RETURN(s.spqe, solver::RunSpqe(s.calib_eval, so));
  const solver::SpqeResult& spqe = s.spqe;
  r.phi = spqe.estimate.phi;
  r.phi_se = spqe.estimate.standard_error;
  r.permutations_done = spqe.estimate.num_permutations;
  r.stop_reason = StopReasonName(spqe.stop_reason);
  r.coalitions_requested = spqe.coalitions_requested;
  r.coalitions_evaluated = spqe.coalitions_evaluated;
  r.cache_hits = spqe.cache_hits;
  for (const auto& ob : spqe.observations) {
    if (solver::CoalitionSize(ob.coalition) == ns) r.calib_loss_all2 = ob.loss;  // narrowest
  }
  r.spqe_seconds = SecondsSince(t0);
  return absl::OkStatus();
}

}  // namespace impq::job
