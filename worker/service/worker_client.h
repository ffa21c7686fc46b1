// WorkerClient: how a worker talks to the coordinator's WorkerService. Two implementations:
// the gRPC one (NewGrpcWorkerClient, for the cluster) and the in-process one
// (InProcessWorkerClient, for the embedded mode and tests), so both run the same
// coordinator code and the same worker loop.
#ifndef IMPQ_WORKER_SERVICE_WORKER_CLIENT_H_
#define IMPQ_WORKER_SERVICE_WORKER_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_files.h"
#include "coordinator/coordinator.h"
#include "impq/v1/messages.pb.h"

namespace impq::worker_service {

struct LeaseReply {
  bool has_lease = false;
  std::string lease_id;
  int64_t duration_ms = 0;
  std::vector<v1::WorkUnit> units;
};

// Thread-safe in both implementations.
class WorkerClient {
 public:
  virtual ~WorkerClient() = default;
  virtual absl::StatusOr<LeaseReply> AcquireLease(const std::string& worker_id, int capacity) = 0;
  virtual absl::StatusOr<v1::LeaseState> Heartbeat(const std::string& lease_id,
                                                   const std::string& worker_id) = 0;
  virtual absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string& lease_id,
                                                         const v1::WorkResult& result) = 0;
};

// Calls a Coordinator in this process. The coordinator must outlive the client.
class InProcessWorkerClient : public WorkerClient {
 public:
  explicit InProcessWorkerClient(coordinator::Coordinator& c, absl::Duration lease_duration)
      : c_(c), lease_ms_(absl::ToInt64Milliseconds(lease_duration)) {}
  absl::StatusOr<LeaseReply> AcquireLease(const std::string& worker_id, int capacity) override {
    absl::StatusOr<coordinator::LeaseGrant> g = c_.AcquireLease(worker_id, capacity);
    if (!g.ok()) return g.status();
    LeaseReply r;
    r.has_lease = g->has_lease;
    r.lease_id = g->lease_id;
    r.duration_ms = lease_ms_;
    r.units = std::move(g->units);
    return r;
  }
  absl::StatusOr<v1::LeaseState> Heartbeat(const std::string& lease_id,
                                           const std::string& worker_id) override {
    absl::StatusOr<coordinator::HeartbeatReply> h = c_.Heartbeat(lease_id, worker_id);
    if (!h.ok()) return h.status();
    return h->state;
  }
  absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string& lease_id,
                                                 const v1::WorkResult& result) override {
    return c_.ReportResult(lease_id, result);
  }

 private:
  coordinator::Coordinator& c_;
  const int64_t lease_ms_;
};

struct GrpcClientOptions {
  std::string target;            // host:port
  std::string token;             // not needed by WorkerService today; sent when non-empty
  int64_t rpc_timeout_ms = 10000;
  TlsFiles tls;                  // default: plaintext (common/grpc_tls.h)
};
// A client over a gRPC channel, TLS per options.tls. Errors: the TLS file errors of
// MakeChannel (naming the file). Connection problems surface on the calls (UNAVAILABLE).
absl::StatusOr<std::unique_ptr<WorkerClient>> NewGrpcWorkerClient(const GrpcClientOptions& options);

}  // namespace impq::worker_service

#endif  // IMPQ_WORKER_SERVICE_WORKER_CLIENT_H_
