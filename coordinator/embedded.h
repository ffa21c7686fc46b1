// Embedded mode: one job run to completion in this process by the very same coordinator core
// (coordinator.h) and worker loop (worker/service/worker_loop.h) as the cluster, the RPCs
// replaced by the in-process WorkerClient. The service integration tests use it as the
// reference the multi-process runs must match byte for byte; embedded_spqe.h builds on it to
// run engine::RunJob's SPQE through the coordinator (with RunJob's own evaluator as the
// worker's engine).
//
// What RunEmbedded computes is the coordinator's JobResult: SPQE (IMPQ §3.2) walks 0..m-1 of
// SeededPermutationSampler(n, seed, antithetic), the covariance interaction objective with
// shrinkage Alpha(spec) (IMPQ §3.3), the exact allocation per budget and, with an evaluation
// text, the measured loss of each allocation. Against engine::RunJob on the same settings
// (SpecFromJobOptions): φ, SE(φ), m, the stop reason, v(∅), v(N), the "impq" allocations (bits,
// bytes, objective) and their held-out NLL are bit-identical (embedded_test checks it), with
// one documented exception: without antithetic sampling and with se_threshold > 0, RunJob
// checks the stopping rule only at even m (SPQE batches of 2 walks) while the coordinator
// checks every m >= min_permutations, so the coordinator may stop one walk earlier.
// RunJob's extras (baselines, surrogate and budget-aware estimators, the per-budget choice,
// fp32 perplexity) are not part of a coordinator job.
#ifndef IMPQ_COORDINATOR_EMBEDDED_H_
#define IMPQ_COORDINATOR_EMBEDDED_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/job_spec.h"
#include "impq/v1/messages.pb.h"
#include "worker/engine/job.h"
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
};

struct EmbeddedResult {
  v1::JobStatus status;  // DONE
  v1::JobSpec spec;      // as normalized by the coordinator
  v1::JobResult result;
};

// Submits `spec` to a fresh in-process coordinator, runs `options.workers` worker loops until
// the job is terminal, and returns its result. Errors: InvalidArgument / PermissionDenied from
// spec validation (naming the field); the first error of a unit executor (unreadable files,
// backend errors: the job is cancelled and the error returned unchanged); Internal with the
// job's error when it FAILED (e.g. the solver). Blocks the calling thread.
absl::StatusOr<EmbeddedResult> RunEmbedded(const v1::JobSpec& spec,
                                           const EmbeddedOptions& options);

// The coordinator JobSpec for `impq run`'s options. InvalidArgument naming the field for the
// options a coordinator job cannot express: mode other than kDocument, estimator other than
// "covariance". The fields a job does not carry (baselines' settings, random_draws, ridge,
// local_*) are ignored; threads belong to EmbeddedOptions.threads_per_worker.
absl::StatusOr<v1::JobSpec> SpecFromJobOptions(const engine::JobOptions& options);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_EMBEDDED_H_
