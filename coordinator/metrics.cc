#include "coordinator/metrics.h"

#include <algorithm>
#include <cctype>
#include <string>

namespace impq::coordinator {

CoordinatorMetrics::CoordinatorMetrics(prometheus::Registry& r)
    : jobs(prometheus::BuildGauge()
               .Name("impq_coordinator_jobs")
               .Help("Jobs known to the coordinator, by state")
               .Register(r)),
      jobs_submitted(prometheus::BuildCounter()
                         .Name("impq_coordinator_jobs_submitted_total")
                         .Help("Jobs accepted by SubmitJob")
                         .Register(r)
                         .Add({})),
      leases_granted(prometheus::BuildCounter()
                         .Name("impq_coordinator_leases_granted_total")
                         .Help("Leases handed to workers")
                         .Register(r)
                         .Add({})),
      leases_expired(prometheus::BuildCounter()
                         .Name("impq_coordinator_leases_expired_total")
                         .Help("Leases that missed their deadline; their units were re-issued")
                         .Register(r)
                         .Add({})),
      reports(prometheus::BuildCounter()
                  .Name("impq_coordinator_reports_total")
                  .Help("Unit results reported by workers, by outcome")
                  .Register(r)),
      evaluations(prometheus::BuildCounter()
                      .Name("impq_coordinator_evaluations_total")
                      .Help("Coalition losses accepted")
                      .Register(r)
                      .Add({})),
      evaluation_seconds(prometheus::BuildHistogram()
                             .Name("impq_coordinator_evaluation_seconds")
                             .Help("Worker wall time per accepted unit")
                             .Register(r)
                             .Add({}, prometheus::Histogram::BucketBoundaries{
                                          0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800})),
      queue_depth(prometheus::BuildGauge()
                      .Name("impq_coordinator_queue_depth_units")
                      .Help("Units waiting for a lease")
                      .Register(r)
                      .Add({})),
      workers_connected(prometheus::BuildGauge()
                            .Name("impq_coordinator_workers_connected")
                            .Help("Workers heard from within two lease durations")
                            .Register(r)
                            .Add({})),
      store_commits(prometheus::BuildCounter()
                        .Name("impq_coordinator_store_commits_total")
                        .Help("Store transactions that made accepted reports durable (group "
                              "commit: one per batch of concurrent reports)")
                        .Register(r)
                        .Add({})),
      reports_accepted(reports.Add({{"outcome", "accepted"}})),
      reports_duplicate(reports.Add({{"outcome", "duplicate"}})),
      reports_stale(reports.Add({{"outcome", "stale"}})) {
  for (int s = v1::JOB_STATE_QUEUED; s <= v1::JOB_STATE_CANCELLED; ++s) {
    std::string name = v1::JobState_Name(static_cast<v1::JobState>(s)).substr(10);  // JOB_STATE_
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    jobs_in_state[static_cast<size_t>(s)] = &jobs.Add({{"state", name}});
  }
}

}  // namespace impq::coordinator
