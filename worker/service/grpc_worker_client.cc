// The gRPC WorkerClient (the only gRPC translation unit of the worker side).
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_tls.h"
#include "impq/v1/services.grpc.pb.h"
#include "worker/service/worker_client.h"

namespace impq::worker_service {
namespace {

absl::Status FromGrpc(const grpc::Status& s, const char* rpc) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(rpc, ": ", s.error_message()));
}

class GrpcWorkerClient : public WorkerClient {
 public:
  GrpcWorkerClient(const GrpcClientOptions& o, std::shared_ptr<grpc::Channel> channel)
      : options_(o), stub_(v1::WorkerService::NewStub(std::move(channel))) {}

  absl::StatusOr<LeaseReply> AcquireLease(const std::string& worker_id, int capacity) override {
    v1::AcquireLeaseRequest req;
    req.set_worker_id(worker_id);
    req.set_capacity(capacity);
    v1::AcquireLeaseResponse resp;
    grpc::ClientContext ctx;
    Prepare(ctx);
    if (absl::Status s = FromGrpc(stub_->AcquireLease(&ctx, req, &resp), "AcquireLease"); !s.ok()) return s;
    LeaseReply r;
    r.has_lease = resp.has_lease();
    r.lease_id = resp.lease().lease_id();
    r.duration_ms = resp.lease().duration_ms();
    r.units.assign(resp.lease().units().begin(), resp.lease().units().end());
    return r;
  }
  absl::StatusOr<v1::LeaseState> Heartbeat(const std::string& lease_id,
                                           const std::string& worker_id) override {
    v1::HeartbeatRequest req;
    req.set_lease_id(lease_id);
    req.set_worker_id(worker_id);
    v1::HeartbeatResponse resp;
    grpc::ClientContext ctx;
    Prepare(ctx);
    if (absl::Status s = FromGrpc(stub_->Heartbeat(&ctx, req, &resp), "Heartbeat"); !s.ok()) return s;
    return resp.state();
  }
  absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string& lease_id,
                                                 const v1::WorkResult& result) override {
    v1::ReportResultRequest req;
    req.set_lease_id(lease_id);
    *req.mutable_result() = result;
    v1::ReportResultResponse resp;
    grpc::ClientContext ctx;
    Prepare(ctx);
    if (absl::Status s = FromGrpc(stub_->ReportResult(&ctx, req, &resp), "ReportResult"); !s.ok()) return s;
    return resp.outcome();
  }

 private:
  void Prepare(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(options_.rpc_timeout_ms));
    if (!options_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.token);
  }
  const GrpcClientOptions options_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<WorkerClient>> NewGrpcWorkerClient(
    const GrpcClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(options.target, options.tls);
  if (!channel.ok()) return channel.status();
  return std::unique_ptr<WorkerClient>(new GrpcWorkerClient(options, *std::move(channel)));
}

}  // namespace impq::worker_service
