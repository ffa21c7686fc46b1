// The coordinator's Prometheus metrics. Names follow impq_<component>_<name>_<unit>, counters
// end in _total, durations are in seconds.
#ifndef IMPQ_COORDINATOR_METRICS_H_
#define IMPQ_COORDINATOR_METRICS_H_

#include <array>

#include "impq/v1/messages.pb.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace impq::coordinator {

// Registers the families on `registry` (which must outlive this). Thread-safe (prometheus-cpp
// metrics are atomic).
struct CoordinatorMetrics {
  explicit CoordinatorMetrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Gauge>& jobs;          // impq_coordinator_jobs{state}
  prometheus::Counter& jobs_submitted;                  // impq_coordinator_jobs_submitted_total
  prometheus::Counter& leases_granted;                  // impq_coordinator_leases_granted_total
  prometheus::Counter& leases_expired;                  // impq_coordinator_leases_expired_total
  prometheus::Family<prometheus::Counter>& reports;     // impq_coordinator_reports_total{outcome}
  prometheus::Counter& evaluations;                     // impq_coordinator_evaluations_total
  prometheus::Histogram& evaluation_seconds;            // impq_coordinator_evaluation_seconds
  prometheus::Gauge& queue_depth;                       // impq_coordinator_queue_depth_units
  prometheus::Gauge& workers_connected;                 // impq_coordinator_workers_connected
  prometheus::Counter& store_commits;                   // impq_coordinator_store_commits_total

  // The labelled series, resolved once (Family::Add hashes its labels on every call).
  // jobs_in_state[s] is jobs{state=<s in lower case>} for s in QUEUED..CANCELLED, null else.
  std::array<prometheus::Gauge*, v1::JobState_ARRAYSIZE> jobs_in_state{};
  prometheus::Counter& reports_accepted;                // reports{outcome="accepted"}
  prometheus::Counter& reports_duplicate;               // reports{outcome="duplicate"}
  prometheus::Counter& reports_stale;                   // reports{outcome="stale"}
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_METRICS_H_
