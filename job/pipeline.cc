// RunPipeline: the job's phases (phases.h) in order, and what they share.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "job/job.h"
#include "job/phases.h"

namespace impq::job {

double SecondsSince(PipelineClock::time_point t) {
  return std::chrono::duration<double>(PipelineClock::now() - t).count();
}

absl::StatusOr<std::vector<double>> CalibrationEvaluator::Evaluate(
    std::span<const solver::Coalition> coalitions) {
  ASSIGN_OR_RETURN(std::vector<double> losses, game_.CalibrationLosses(coalitions));
  if (losses.size() != coalitions.size()) {
    return absl::InternalError("job: the game answered a calibration batch with a wrong count");
  }
  for (size_t k = 0; k < losses.size(); ++k) {
    if (!std::isfinite(losses[k])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "job: calibration loss of coalition ", solver::CoalitionToString(coalitions[k]),
          " is not finite (", losses[k], "): the model's weights or quantization fail"));
    }
  }
  evaluated_ += static_cast<int64_t>(coalitions.size());
  return losses;
}

PipelineState::PipelineState(const JobOptions& options, Game& g)
    : o(options), game(g), job_start(PipelineClock::now()), calib_eval(g) {
  r.options = options;
  r.options.progress = nullptr;
}

void PipelineState::Report(const std::string& phase, int64_t done, int64_t total,
                           PipelineClock::time_point phase_start) const {
  if (!o.progress) return;
  JobProgress p;
  p.phase = phase;
  p.done = done;
  p.total = total;
  p.evaluations = calib_eval.evaluated();
  p.phase_seconds = SecondsSince(phase_start);
  p.eta_seconds = done > 0 && total > done ? p.phase_seconds / done * (total - done) : 0;
  p.elapsed_seconds = SecondsSince(job_start);
  p.job_eta_seconds = work_plan.SecondsLeft(phase, done, total, p.elapsed_seconds);
  o.progress(p);
}

absl::StatusOr<JobResult> RunPipeline(const JobOptions& o, Game& game) {
  RETURN_IF_ERROR(ValidateJobOptions(o));
  PipelineState s(o, game);
  for (absl::Status (*phase)(PipelineState&) :
       {PreparePhase, BaselinesPhase, SpqePhase, InteractionsPhase, AllocatePhase, SelectPhase,
        MeasurePhase}) {
    RETURN_IF_ERROR(phase(s));
  }
  JobResult& r = s.r;
  const GameCounters st = game.Counters();
  r.calib_evaluations = s.calib_eval.evaluated() + r.selection_evaluations;
  r.block_evals_done = st.block_evals_done;
  r.block_evals_full = st.block_evals_full;
  r.prefix_saved_fraction =
      st.block_evals_full > 0 ? 1.0 - static_cast<double>(st.block_evals_done) /
                                          static_cast<double>(st.block_evals_full)
                              : 0.0;
  r.prefix_cache_bytes = st.cache_bytes;
  r.total_seconds = SecondsSince(s.job_start);
  return std::move(s.r);
}

}  // namespace impq::job
