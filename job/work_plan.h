// The whole job's time left, for progress reports (JobProgress::job_eta_seconds).
#ifndef IMPQ_JOB_WORK_PLAN_H_
#define IMPQ_JOB_WORK_PLAN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "job/job.h"

namespace impq::job {

// Each phase's work estimated up front in
// calibration-set evaluations (from the options and the sets' sizes), the rate measured so far
// (elapsed time per unit of work done), the rest extrapolated at that rate. An estimate:
// prefix reuse, early stopping and the machine's load move it; it corrects itself as phases
// finish.
class JobWorkPlan {
 public:
  JobWorkPlan() = default;
  JobWorkPlan(const JobOptions& options, int players, int64_t calib_tokens,
              int64_t heldout_tokens);
  // Seconds left when `phase` ("baselines" ... "measure") has done `done` of `total` units
  // after `elapsed_seconds` of the job; 0 when unknown (no plan, another phase, nothing done).
  double SecondsLeft(const std::string& phase, int64_t done, int64_t total,
                     double elapsed_seconds) const;

 private:
  std::vector<std::pair<std::string, double>> phases_;  // in order, work units each
};

}  // namespace impq::job

#endif  // IMPQ_JOB_WORK_PLAN_H_
