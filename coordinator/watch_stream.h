// WatchJob streams without a thread each (issue 20: 2,000 streams were 2,015 threads of the
// sync server). A stream is a gRPC callback reactor that the coordinator's job-change
// notifications (JobObserver) drive: it writes the job's current status, then each newer one,
// and finishes after writing the terminal one. Nothing blocks: while a write is in flight the
// newest status waits in the stream (intermediate versions are skipped, never the last one).
//
// Lock order: the coordinator's mutex, then a stream's own (JobObserver calls arrive with the
// first held); gRPC runs OnWriteDone, OnCancel and OnDone on its own threads, never inside
// StartWrite or Finish, so a stream may call those under both locks.
#ifndef IMPQ_COORDINATOR_WATCH_STREAM_H_
#define IMPQ_COORDINATOR_WATCH_STREAM_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <string>

#include "coordinator/coordinator.h"
#include "impq/v1/messages.pb.h"

namespace impq::coordinator {

// How many watch streams may be open at once. Thread-safe.
class WatchStreamLimit {
 public:
  explicit WatchStreamLimit(int max_streams) : max_(max_streams) {}
  // False when max_streams are open already.
  bool TryAcquire();
  void Release() { open_.fetch_sub(1); }
  int max() const { return max_; }
  int open() const { return open_.load(); }

 private:
  const int max_;
  std::atomic<int> open_{0};
};

// A stream watching `job_id`: NOT_FOUND for an unknown job, UNAVAILABLE when the coordinator
// is shutting down (then or later). `limit` must already be acquired; the stream releases it
// when done. `coordinator` and `limit` must outlive the stream (the gRPC server's shutdown
// waits for every stream to be done).
grpc::ServerWriteReactor<v1::JobStatus>* StartWatchStream(Coordinator* coordinator,
                                                          WatchStreamLimit* limit,
                                                          const std::string& job_id);

// A stream that only finishes with `status` (a refused call).
grpc::ServerWriteReactor<v1::JobStatus>* RefusedWatchStream(const grpc::Status& status);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_WATCH_STREAM_H_
