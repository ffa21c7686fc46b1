// The worker process's main loop: pull a lease, evaluate its units on a dedicated compute
// thread, heartbeat on a timer meanwhile, report each result.
//
// Threads: Run() is the RPC thread (lease, heartbeats, reports); every Execute() runs on the
// loop's own compute thread, so RPCs never wait behind compute and compute never waits on
// the network except between units. When a heartbeat answers EXPIRED, CANCELLED or UNKNOWN
// the lease's remaining units are dropped (the unit in progress finishes; its result is not
// sent). Thread-safe: Stop() may be called from any thread.
#ifndef IMPQ_WORKER_SERVICE_WORKER_LOOP_H_
#define IMPQ_WORKER_SERVICE_WORKER_LOOP_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "worker/service/unit_executor.h"
#include "worker/service/worker_client.h"

namespace impq::worker_service {

struct WorkerLoopOptions {
  std::string worker_id;                     // required, unique per process
  int capacity = 1;                          // units asked per lease
  absl::Duration idle_poll = absl::Milliseconds(200);  // wait after "no lease" or an error
  int64_t max_units = 0;                     // stop after this many reported units (0: never)
};

struct WorkerLoopStats {
  int64_t leases = 0, units_reported = 0, accepted = 0, duplicate = 0, stale = 0;
  int64_t errors = 0, dropped_units = 0;
  absl::Status health;  // the executor's Health() when it made the loop stop; OK otherwise
};

class WorkerLoop {
 public:
  // Neither pointer is owned; both must outlive the loop.
  WorkerLoop(WorkerClient* client, UnitExecutor* executor, WorkerLoopOptions options);
  ~WorkerLoop();

  // Runs until Stop(), max_units, or the executor's Health() is not OK (checked before every
  // lease: a worker that cannot compute takes no work). Returns the counters.
  WorkerLoopStats Run();
  void Stop() { stop_.store(true); }

 private:
  class ComputeThread;
  WorkerClient* client_;
  UnitExecutor* executor_;
  const WorkerLoopOptions options_;
  std::atomic<bool> stop_{false};
  std::unique_ptr<ComputeThread> compute_;
};

}  // namespace impq::worker_service

#endif  // IMPQ_WORKER_SERVICE_WORKER_LOOP_H_
