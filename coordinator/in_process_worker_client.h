// InProcessWorkerClient: the WorkerClient (worker/service/worker_client.h) that calls a
// Coordinator in this process — the embedded mode (`impq run`) and tests run the cluster's
// coordinator and worker loop with it instead of gRPC.
#ifndef IMPQ_COORDINATOR_IN_PROCESS_WORKER_CLIENT_H_
#define IMPQ_COORDINATOR_IN_PROCESS_WORKER_CLIENT_H_

#include "coordinator/coordinator.h"
#include "worker/service/worker_client.h"

namespace impq::coordinator {

// Thread-safe. The coordinator must outlive the client.
class InProcessWorkerClient : public worker_service::WorkerClient {
 public:
  InProcessWorkerClient(Coordinator& c, absl::Duration lease_duration)
      : c_(c), lease_ms_(absl::ToInt64Milliseconds(lease_duration)) {}
  absl::StatusOr<worker_service::LeaseReply> AcquireLease(const std::string& worker_id,
                                                          int capacity) override {
    absl::StatusOr<LeaseGrant> g = c_.AcquireLease(worker_id, capacity);
    if (!g.ok()) return g.status();
    worker_service::LeaseReply r;
    r.has_lease = g->has_lease;
    r.lease_id = g->lease_id;
    r.duration_ms = lease_ms_;
    r.units = std::move(g->units);
    return r;
  }
  absl::StatusOr<v1::LeaseState> Heartbeat(const std::string& lease_id,
                                           const std::string& worker_id) override {
    absl::StatusOr<HeartbeatReply> h = c_.Heartbeat(lease_id, worker_id);
    if (!h.ok()) return h.status();
    return h->state;
  }
  absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string& lease_id,
                                                 const v1::WorkResult& result) override {
    return c_.ReportResult(lease_id, result);
  }

 private:
  Coordinator& c_;
  const int64_t lease_ms_;
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_IN_PROCESS_WORKER_CLIENT_H_
