// Which TLS files a gRPC endpoint uses (no gRPC here; common/grpc_tls.h turns them into
// credentials). All paths are PEM files; all empty means plaintext.
#ifndef IMPQ_COMMON_TLS_FILES_H_
#define IMPQ_COMMON_TLS_FILES_H_

#include <string>

namespace impq {

struct TlsFiles {
  std::string cert;         // certificate chain
  std::string key;          // private key of `cert`
  std::string ca;           // CA bundle (server: required client CA; client: server roots)
  std::string server_name;  // clients only: name expected in the server certificate
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

}  // namespace impq

#endif  // IMPQ_COMMON_TLS_FILES_H_
