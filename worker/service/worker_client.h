// WorkerClient: how a worker talks to the coordinator's WorkerService. Two implementations:
// the gRPC one (NewGrpcWorkerClient, for the cluster) and the in-process one
// (coordinator/in_process_worker_client.h, for the embedded mode and tests), so both run the
// same coordinator code and the same worker loop. Worker code does not depend on the
// coordinator.
#ifndef IMPQ_WORKER_SERVICE_WORKER_CLIENT_H_
#define IMPQ_WORKER_SERVICE_WORKER_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_files.h"
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
