// TLS for the service's gRPC channels (an option; plaintext is the default). The only place
// that reads certificate files and builds gRPC credentials, for the coordinator's server and
// for its clients (impq-worker, impqctl, tests, benchmarks).
//
// Server: cert + key (PEM) are its identity; with a CA as well, clients must present a
// certificate signed by it (mutual TLS). Client: TLS is on as soon as any of ca, cert, key is
// set; the server is verified against `ca` (empty: the system roots); cert + key, when given,
// are the client's identity for mutual TLS. `server_name` overrides the name checked against
// the server certificate (e.g. "localhost" when dialling 127.0.0.1).
#ifndef IMPQ_COMMON_GRPC_TLS_H_
#define IMPQ_COMMON_GRPC_TLS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls_files.h"

namespace impq {

// Insecure credentials when !tls.enabled(). InvalidArgument when only one of cert/key is set
// (or, for the server, when TLS is asked for without them); NotFound / the read error naming
// the file when a file cannot be read.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(const TlsFiles& tls);

// A channel to `target` (host:port) with TLS per `tls`, and the send/receive message limits
// (bytes; <= 0 leaves gRPC's defaults). Errors as for MakeServerCredentials.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const TlsFiles& tls,
                                                           int max_message_bytes = 0);

}  // namespace impq

#endif  // IMPQ_COMMON_GRPC_TLS_H_
