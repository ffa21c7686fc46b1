#include "common/grpc_tls.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"

namespace impq {
namespace {

absl::StatusOr<std::string> ReadPem(const char* what, const std::string& path) {
  if (path.empty()) return std::string();
  absl::StatusOr<std::string> s = ReadFileToString(path);
  if (!s.ok()) {
    return absl::Status(s.status().code(),
                        absl::StrCat("tls ", what, " '", path, "': ", s.status().message()));
  }
  if (s->find("-----BEGIN") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("tls ", what, " '", path, "': not a PEM file (no -----BEGIN line)"));
  }
  return s;
}

absl::Status CheckPair(const TlsFiles& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tls: --tls_cert and --tls_key go together (cert = '", tls.cert, "', key = '", tls.key,
        "')"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsFiles& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  RETURN_IF_ERROR(CheckPair(tls));
  if (tls.cert.empty()) {
    return absl::InvalidArgumentError("tls: a server needs --tls_cert and --tls_key");
  }
  ASSIGN_OR_RETURN(std::string cert, ReadPem("certificate", tls.cert));
  ASSIGN_OR_RETURN(std::string key, ReadPem("key", tls.key));
  ASSIGN_OR_RETURN(std::string ca, ReadPem("CA", tls.ca));
  grpc::SslServerCredentialsOptions o(
      ca.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                 : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  o.pem_root_certs = ca;
  o.pem_key_cert_pairs.push_back({key, cert});
  return grpc::SslServerCredentials(o);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& target,
                                                           const TlsFiles& tls,
                                                           int max_message_bytes) {
  grpc::ChannelArguments args;
  // One connection per channel: separate clients (e.g. worker threads of a benchmark) must not
  // share a subchannel through gRPC's global pool.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (max_message_bytes > 0) {
    args.SetMaxReceiveMessageSize(max_message_bytes);
    args.SetMaxSendMessageSize(max_message_bytes);
  }
  if (!tls.enabled()) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }
  RETURN_IF_ERROR(CheckPair(tls));
  grpc::SslCredentialsOptions o;
  ASSIGN_OR_RETURN(o.pem_root_certs, ReadPem("CA", tls.ca));
  ASSIGN_OR_RETURN(o.pem_cert_chain, ReadPem("certificate", tls.cert));
  ASSIGN_OR_RETURN(o.pem_private_key, ReadPem("key", tls.key));
  if (!tls.server_name.empty()) args.SetSslTargetNameOverride(tls.server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(o), args);
}

}  // namespace impq
