#include "coordinator/grpc_server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/logging.h"
#include "common/token_file.h"
#include "coordinator/watch_stream.h"
#include "impq/v1/services.grpc.pb.h"

namespace impq::coordinator {

grpc::Status ToCallerStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(s.code());
  switch (s.code()) {
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
      // The store's and the file system's failures name server paths (the store file, ...):
      // they are the operator's, in the log; the caller gets the code.
      IMPQ_LOG(ERROR) << "call failed: " << s;
      return grpc::Status(code, "internal error in the coordinator (the details are in its log)");
    default:
      return grpc::Status(code, std::string(s.message()));
  }
}

namespace {

grpc::Status ToGrpc(const absl::Status& s) { return ToCallerStatus(s); }

// Counts the calls in flight, so that Shutdown can drain them and then close every connection
// at once (grpc::Server::Shutdown with a deadline otherwise waits for idle clients to hang up).
// Two atomic increments per call; the drain polls. Thread-safe.
class CallTracker {
 public:
  class Scope {
   public:
    explicit Scope(CallTracker* t) : t_(t) { t_->in_flight_.fetch_add(1); }
    ~Scope() { t_->in_flight_.fetch_sub(1); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    CallTracker* t_;
  };
  void StartDraining() { draining_.store(true); }
  bool draining() const { return draining_.load(); }
  // Waits until no call is in flight or `deadline` passes; true when drained.
  bool AwaitDrained(absl::Time deadline) const {
    while (in_flight_.load() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
    return in_flight_.load() == 0;
  }

 private:
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> draining_{false};
};

// OK when `token` is empty or the call carries "authorization: Bearer <token>" (compared in
// constant time: the token's prefix does not leak through timing); UNAUTHENTICATED otherwise.
grpc::Status CheckBearer(grpc::ServerContextBase* ctx, const std::string& token, const char* who) {
  if (token.empty()) return grpc::Status::OK;
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("authorization metadata is required (", who, " token)"));
  }
  const std::string got(it->second.data(), it->second.size());
  if (!ConstantTimeEquals(got, "Bearer " + token)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        absl::StrCat("authorization: wrong ", who, " token"));
  }
  return grpc::Status::OK;
}

// WatchJob is a callback method (watch_stream.h: no thread per stream); the unary methods
// stay on the sync server's thread pool.
class ImpqServiceImpl final
    : public v1::ImpqService::WithCallbackMethod_WatchJob<v1::ImpqService::Service> {
 public:
  ImpqServiceImpl(Coordinator* c, std::string token, CallTracker* calls, int max_watch_streams)
      : c_(c), token_(std::move(token)), calls_(calls), watch_limit_(max_watch_streams) {}

  grpc::Status SubmitJob(grpc::ServerContext* ctx, const v1::SubmitJobRequest* req,
                         v1::SubmitJobResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (!req->has_spec()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "spec is required");
    absl::StatusOr<v1::JobStatus> s = c_->SubmitJob(req->spec());
    if (!s.ok()) return ToGrpc(s.status());
    resp->set_job_id(s->job_id());
    *resp->mutable_status() = *s;
    return grpc::Status::OK;
  }
  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
                      v1::GetJobResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (req->job_id().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required");
    absl::StatusOr<JobView> v = c_->GetJob(req->job_id());
    if (!v.ok()) return ToGrpc(v.status());
    *resp->mutable_status() = v->status;
    *resp->mutable_spec() = v->spec;
    if (v->has_result) *resp->mutable_result() = v->result;
    return grpc::Status::OK;
  }
  grpc::ServerWriteReactor<v1::JobStatus>* WatchJob(grpc::CallbackServerContext* ctx,
                                                     const v1::WatchJobRequest* req) override {
    if (grpc::Status a = Auth(ctx); !a.ok()) return RefusedWatchStream(a);
    if (req->job_id().empty()) {
      return RefusedWatchStream(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required"));
    }
    if (calls_->draining()) {
      return RefusedWatchStream(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down"));
    }
    if (!watch_limit_.TryAcquire()) {
      return RefusedWatchStream(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat(watch_limit_.max(), " WatchJob streams are open (the coordinator's "
                       "--max_watch_streams); retry later or poll GetJob")));
    }
    return StartWatchStream(c_, &watch_limit_, req->job_id());
  }
  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req,
                         v1::CancelJobResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    if (req->job_id().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "job_id is required");
    absl::StatusOr<v1::JobStatus> s = c_->CancelJob(req->job_id());
    if (!s.ok()) return ToGrpc(s.status());
    *resp->mutable_status() = *s;
    return grpc::Status::OK;
  }
  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req,
                        v1::ListJobsResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = Auth(ctx); !a.ok()) return a;
    JobListQuery q;
    q.page_size = req->page_size();
    q.page_token = req->page_token();
    q.state = req->state();
    absl::StatusOr<JobListPage> page = c_->ListJobs(q);
    if (!page.ok()) return ToGrpc(page.status());
    for (auto& s : page->jobs) *resp->add_jobs() = std::move(s);
    resp->set_next_page_token(std::move(page->next_page_token));
    return grpc::Status::OK;
  }

 private:
  grpc::Status Auth(grpc::ServerContextBase* ctx) const {
    return CheckBearer(ctx, token_, "client");
  }
  Coordinator* c_;
  const std::string token_;
  CallTracker* calls_;
  WatchStreamLimit watch_limit_;
};

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  WorkerServiceImpl(Coordinator* c, absl::Duration lease, std::string token, CallTracker* calls)
      : c_(c), lease_(lease), token_(std::move(token)), calls_(calls) {}

  grpc::Status AcquireLease(grpc::ServerContext* ctx, const v1::AcquireLeaseRequest* req,
                            v1::AcquireLeaseResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = CheckBearer(ctx, token_, "worker"); !a.ok()) return a;
    absl::StatusOr<LeaseGrant> g = c_->AcquireLease(req->worker_id(), req->capacity());
    if (!g.ok()) return ToGrpc(g.status());
    if (g->has_lease) {
      v1::Lease* l = resp->mutable_lease();
      l->set_lease_id(g->lease_id);
      l->set_deadline_ms(absl::ToUnixMillis(g->deadline));
      l->set_duration_ms(absl::ToInt64Milliseconds(lease_));
      for (auto& u : g->units) *l->add_units() = std::move(u);
    }
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const v1::HeartbeatRequest* req,
                         v1::HeartbeatResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = CheckBearer(ctx, token_, "worker"); !a.ok()) return a;
    absl::StatusOr<HeartbeatReply> h = c_->Heartbeat(req->lease_id(), req->worker_id());
    if (!h.ok()) return ToGrpc(h.status());
    resp->set_state(h->state);
    if (h->state == v1::LEASE_STATE_ACTIVE) resp->set_deadline_ms(absl::ToUnixMillis(h->deadline));
    return grpc::Status::OK;
  }
  grpc::Status ReportResult(grpc::ServerContext* ctx, const v1::ReportResultRequest* req,
                            v1::ReportResultResponse* resp) override {
    CallTracker::Scope call(calls_);
    if (grpc::Status a = CheckBearer(ctx, token_, "worker"); !a.ok()) return a;
    if (!req->has_result()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "result is required");
    absl::StatusOr<v1::ReportOutcome> o = c_->ReportResult(req->lease_id(), req->result());
    if (!o.ok()) return ToGrpc(o.status());
    resp->set_outcome(*o);
    return grpc::Status::OK;
  }

 private:
  Coordinator* c_;
  const absl::Duration lease_;
  const std::string token_;
  CallTracker* calls_;
};

}  // namespace

struct CoordinatorServer::Impl {
  CallTracker calls;
  std::unique_ptr<ImpqServiceImpl> impq;
  std::unique_ptr<WorkerServiceImpl> worker;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  // The plaintext health-only server (ServerOptions::health_listen); null when off.
  std::unique_ptr<grpc::Server> health;
  int health_port = 0;
  bool shut_down = false;
};

CoordinatorServer::CoordinatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CoordinatorServer::~CoordinatorServer() { Shutdown(absl::ZeroDuration()); }

int CoordinatorServer::port() const { return impl_->port; }

int CoordinatorServer::health_port() const { return impl_->health_port; }

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    Coordinator* coordinator, const ServerOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(options.tls);
  if (!creds.ok()) return creds.status();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  auto impl = std::make_unique<Impl>();
  if (options.max_watch_streams < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_watch_streams = ", options.max_watch_streams,
                                                   "; expected >= 1"));
  }
  impl->impq = std::make_unique<ImpqServiceImpl>(coordinator, options.token, &impl->calls,
                                                 options.max_watch_streams);
  impl->worker =
      std::make_unique<WorkerServiceImpl>(coordinator, options.lease_duration,
                                          options.worker_token, &impl->calls);
  grpc::ServerBuilder b;
  b.AddListeningPort(options.listen, *creds, &impl->port);
  b.SetMaxReceiveMessageSize(options.max_message_bytes);
  // The sync server's default (at most 2 idle pollers) makes a thread that finishes a call
  // exit whenever 2 others are polling, and a new one start when the last poller takes a
  // call: with a few busy workers that is a thread created per few calls. Letting finished
  // threads go back to polling removes the churn (bench/service_bench: 35 -> 28 syscalls and
  // 13 -> 10 context switches per lease round trip; more reports per group commit).
  b.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  b.RegisterService(impl->impq.get());
  b.RegisterService(impl->worker.get());
  impl->server = b.BuildAndStart();
  if (impl->server == nullptr || impl->port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.health_listen.empty()) {
    // No service registered: the builder adds the default health service (enabled above), and
    // nothing else of the coordinator is reachable through this plaintext port.
    grpc::ServerBuilder hb;
    hb.AddListeningPort(options.health_listen, grpc::InsecureServerCredentials(),
                        &impl->health_port);
    hb.SetMaxReceiveMessageSize(4096);
    impl->health = hb.BuildAndStart();
    if (impl->health == nullptr || impl->health_port == 0) {
      impl->server->Shutdown(absl::ToChronoTime(absl::Now()));
      return absl::UnavailableError(
          absl::StrCat("--health_listen: cannot listen on ", options.health_listen));
    }
    impl->health->GetHealthCheckService()->SetServingStatus(true);
  }
  impl->server->GetHealthCheckService()->SetServingStatus(true);
  return std::unique_ptr<CoordinatorServer>(new CoordinatorServer(std::move(impl)));
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (impl_->shut_down) return;
  impl_->shut_down = true;
  impl_->server->GetHealthCheckService()->SetServingStatus(false);
  if (impl_->health != nullptr) impl_->health->GetHealthCheckService()->SetServingStatus(false);
  // Drain: watches end at once, unary calls in flight finish (a report returns once its result
  // is durable). Then close: a deadline already past makes grpc cancel whatever is left and
  // drop every connection instead of waiting for idle clients to disconnect.
  impl_->calls.StartDraining();
  impl_->calls.AwaitDrained(absl::Now() + grace);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now()));
  if (impl_->health != nullptr) impl_->health->Shutdown(absl::ToChronoTime(absl::Now()));
}

void CoordinatorServer::Wait() { impl_->server->Wait(); }

}  // namespace impq::coordinator
