// Embedded mode — what `impq run` is: one job run to completion in this process by the very
// same coordinator core (coordinator.h: the job pipeline of job/job.h, driven over
// work units) and worker loops (worker/service/worker_loop.h) as the cluster, the RPCs
// replaced by the in-process WorkerClient. Its result is the cluster's for the same spec,
// field for field (the timings and prefix-reuse counters aside, which depend on where units
// ran): the service tests compare impq-coordinator + impq-worker processes against it.
#ifndef IMPQ_COORDINATOR_EMBEDDED_H_
#define IMPQ_COORDINATOR_EMBEDDED_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/job_spec.h"
#include "impq/v1/messages.pb.h"
#include "job/job.h"
#include "worker/service/unit_executor.h"

namespace impq::coordinator {

struct EmbeddedOptions {
  int workers = 1;             // in-process worker loops (threads), >= 1
  int threads_per_worker = 1;  // CPU engine threads of each worker's executor, >= 1
  int capacity = 1;            // units per lease, >= 1
  // The coordinator's store. ":memory:" (default) keeps nothing; a file lets a later run (or
  // an impq-coordinator) see the job.
  std::string store_path = ":memory:";
  SpecLimits limits;           // default: no data roots (any absolute path)
  // Optional: builds each worker's executor (tests plug synthetic games in here). Default:
  // worker_service::NewEngineExecutor(threads_per_worker).
  std::function<std::unique_ptr<worker_service::UnitExecutor>()> make_executor;
  // Optional: called from the calling thread with every new status version (QUEUED first,
  // the terminal one last).
  std::function<void(const v1::JobStatus&)> progress;
  // Optional: every progress report of the job's pipeline (job::JobOptions::progress), from
  // the coordinator's driver thread.
  std::function<void(const job::JobProgress&)> pipeline_progress;
};

struct EmbeddedResult {
  v1::JobStatus status;  // DONE
  v1::JobSpec spec;      // as normalized by the coordinator
  v1::JobResult result;  // its document is job::JobResultToJson(*pipeline)
  std::shared_ptr<const job::JobResult> pipeline;  // the pipeline's full result
};

// Submits `spec` to a fresh in-process coordinator, runs `options.workers` worker loops until
// the job is terminal, and returns its result. Errors: InvalidArgument / PermissionDenied from
// spec validation (naming the field); the first error of a unit executor (unreadable files,
// backend errors: the job is cancelled and the error returned unchanged); Internal with the
// job's error when it FAILED (e.g. the solver). Blocks the calling thread.
absl::StatusOr<EmbeddedResult> RunEmbedded(const v1::JobSpec& spec,
                                           const EmbeddedOptions& options);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_EMBEDDED_H_
