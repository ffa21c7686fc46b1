// The coordinator's gRPC front: ImpqService (client API, bearer-token auth) and WorkerService
// (pull leases), plus the standard health service and server reflection. Thin adapters: each
// handler validates the request shape, calls the Coordinator core and maps absl::Status to
// grpc::Status (same code, same message). No handler computes: the solver runs on the core's
// background thread.
#ifndef IMPQ_COORDINATOR_GRPC_SERVER_H_
#define IMPQ_COORDINATOR_GRPC_SERVER_H_

#include <memory>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/status/statusor.h"
#include "common/grpc_tls.h"
#include "coordinator/coordinator.h"

namespace impq::coordinator {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // host:port; port 0 picks a free one
  // When non-empty, every ImpqService call needs metadata "authorization: Bearer <token>"
  // (UNAUTHENTICATED otherwise).
  std::string token;
  // When non-empty, every WorkerService call needs "authorization: Bearer <worker_token>": a
  // worker credential distinct from the clients' (a client cannot lease units or report
  // results, a worker cannot submit or read jobs).
  std::string worker_token;
  int max_message_bytes = 16 << 20;    // larger requests get RESOURCE_EXHAUSTED
  // WatchJob streams open at once (each is a callback reactor, no thread: watch_stream.h);
  // one more gets RESOURCE_EXHAUSTED. >= 1.
  int max_watch_streams = 1024;
  absl::Duration lease_duration = absl::Seconds(30);  // echoed to workers in each lease
  // TLS for both services (common/grpc_tls.h): cert + key turn it on; a CA as well requires
  // client certificates signed by it. Default: plaintext.
  TlsFiles tls;
  // When non-empty, host:port of a second, plaintext gRPC server that carries only the
  // standard health service (grpc.health.v1; SERVING while the main server is): for
  // orchestrator probes, which speak neither mutual TLS nor bearer tokens. Bind it to
  // loopback (127.0.0.1:PORT) and probe from inside the container (deploy/k8s: `impqctl
  // --server 127.0.0.1:PORT health`); it exposes nothing else.
  std::string health_listen;
};

// The grpc::Status a caller receives for `s`: same code and message, except for internal
// failures (kInternal, kDataLoss, kUnknown: the store, I/O), whose messages name server paths
// — those are logged, and the caller gets the code with a fixed message.
grpc::Status ToCallerStatus(const absl::Status& s);

class CoordinatorServer {
 public:
  // Starts serving `coordinator` (not owned; must outlive the server). Unavailable when the
  // address cannot be bound; InvalidArgument naming a bad option; the TLS errors of
  // MakeServerCredentials (naming the file).
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(Coordinator* coordinator,
                                                                  const ServerOptions& options);
  ~CoordinatorServer();  // Shutdown(0) if still running
  int port() const;
  int health_port() const;  // 0 when ServerOptions::health_listen is empty
  // Graceful and prompt: marks health NOT_SERVING, refuses new WatchJob streams, waits up to
  // `grace` for the unary calls in flight to finish (a ReportResult in a group commit returns
  // once durable), then cancels what is left and closes every connection — idle clients do
  // not hold it up. Call Coordinator::Shutdown() first: it stops intake and ends every open
  // WatchJob stream with UNAVAILABLE (streams still open here are cancelled). Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown() completes.
  void Wait();

 private:
  struct Impl;
  explicit CoordinatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_GRPC_SERVER_H_
