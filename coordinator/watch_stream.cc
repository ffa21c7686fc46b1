#include "coordinator/watch_stream.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace impq::coordinator {
namespace {

bool Terminal(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

class WatchStream final : public grpc::ServerWriteReactor<v1::JobStatus>, public JobObserver {
 public:
  WatchStream(Coordinator* c, WatchStreamLimit* limit) : c_(c), limit_(limit) {}

  // Once, from the handler, before the reactor is returned to gRPC.
  void Start(const std::string& job_id) {
    // Without mu_: AddJobObserver calls OnJobChanged (lock order, see the header).
    absl::StatusOr<int64_t> handle = c_->AddJobObserver(job_id, this);
    absl::MutexLock lock(&mu_);
    if (!handle.ok()) {
      FinishLocked(grpc::Status(static_cast<grpc::StatusCode>(handle.status().code()),
                                std::string(handle.status().message())));
      return;
    }
    handle_ = *handle;
  }

  // JobObserver (the coordinator's mutex is held).
  void OnJobChanged(const v1::JobStatus& status) override {
    absl::MutexLock lock(&mu_);
    if (finished_ || status.version() <= newest_version_) return;
    newest_version_ = status.version();
    next_ = status;
    has_next_ = true;
    if (!writing_) WriteNextLocked();
  }
  void OnShutdown() override {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    if (!writing_) FinishLocked(Unavailable());
  }

  // gRPC reactions.
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed"));
    } else if (Terminal(out_.state())) {
      FinishLocked(grpc::Status::OK);  // the job is over: so is its watch
    } else if (shutting_down_) {
      FinishLocked(Unavailable());
    } else if (cancelled_) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
    } else if (has_next_) {
      WriteNextLocked();
    }
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    int64_t handle;
    {
      absl::MutexLock lock(&mu_);
      handle = handle_;
    }
    // After this returns no OnJobChanged is running or will run: the stream may go.
    c_->RemoveJobObserver(handle);
    limit_->Release();
    delete this;
  }

 private:
  static grpc::Status Unavailable() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
  }
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    out_ = std::move(next_);
    has_next_ = false;
    writing_ = true;
    StartWrite(&out_);
  }
  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  Coordinator* const c_;
  WatchStreamLimit* const limit_;
  absl::Mutex mu_;
  int64_t handle_ ABSL_GUARDED_BY(mu_) = 0;  // 0: not registered
  v1::JobStatus out_ ABSL_GUARDED_BY(mu_);   // being written (alive until OnWriteDone)
  v1::JobStatus next_ ABSL_GUARDED_BY(mu_);  // the newest status not yet written
  bool has_next_ ABSL_GUARDED_BY(mu_) = false;
  int64_t newest_version_ ABSL_GUARDED_BY(mu_) = -1;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class RefusedStream final : public grpc::ServerWriteReactor<v1::JobStatus> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

bool WatchStreamLimit::TryAcquire() {
  if (open_.fetch_add(1) < max_) return true;
  open_.fetch_sub(1);
  return false;
}

grpc::ServerWriteReactor<v1::JobStatus>* StartWatchStream(Coordinator* coordinator,
                                                          WatchStreamLimit* limit,
                                                          const std::string& job_id) {
  auto* stream = new WatchStream(coordinator, limit);
  stream->Start(job_id);
  return stream;
}

grpc::ServerWriteReactor<v1::JobStatus>* RefusedWatchStream(const grpc::Status& status) {
  return new RefusedStream(status);
}

}  // namespace impq::coordinator
