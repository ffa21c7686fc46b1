#include "coordinator/embedded.h"

#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/status.h"
#include "coordinator/coordinator.h"
#include "coordinator/in_process_worker_client.h"
#include "worker/service/worker_loop.h"

namespace impq::coordinator {
namespace {

// Remembers the first executor error. In the cluster a failing unit is left to expire and be
// retried elsewhere; in one process every worker has the same files, so a unit error would
// only repeat forever: the driver stops the job with it instead.
class FirstError {
 public:
  void Record(const absl::Status& s) {
    absl::MutexLock lock(&mu_);
    if (status_.ok()) status_ = s;
  }
  absl::Status Get() {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  absl::Mutex mu_;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class GuardedExecutor : public worker_service::UnitExecutor {
 public:
  GuardedExecutor(std::unique_ptr<worker_service::UnitExecutor> inner, FirstError* errors)
      : inner_(std::move(inner)), errors_(errors) {}
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    absl::StatusOr<v1::WorkResult> r = inner_->Execute(unit);
    if (!r.ok()) errors_->Record(r.status());
    return r;
  }

 private:
  std::unique_ptr<worker_service::UnitExecutor> inner_;
  FirstError* errors_;
};

bool Terminal(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

}  // namespace

absl::StatusOr<EmbeddedResult> RunEmbedded(const v1::JobSpec& spec,
                                           const EmbeddedOptions& options) {
  if (options.workers < 1 || options.threads_per_worker < 1 || options.capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("embedded: workers = ", options.workers, ", threads_per_worker = ",
                     options.threads_per_worker, ", capacity = ", options.capacity,
                     "; expected >= 1 each"));
  }
  CoordinatorOptions co;
  co.store_path = options.store_path;
  co.limits = options.limits;
  co.lease_duration = absl::Seconds(30);
  co.max_units_per_lease = options.capacity;
  if (options.pipeline_progress) {
    co.on_progress = [f = options.pipeline_progress](const std::string&,
                                                     const job::JobProgress& p) { f(p); };
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator, Coordinator::Open(co));
  // A job's paths are absolute (no data root here): resolve them against the cwd.
  v1::JobSpec absolute = spec;
  for (std::string* p : {absolute.mutable_model_path(), absolute.mutable_tokenizer_path(),
                         absolute.mutable_calibration_text_path(),
                         absolute.mutable_evaluation_text_path()}) {
    *p = AbsolutePath(*p);
  }
  ASSIGN_OR_RETURN(v1::JobStatus status, coordinator->SubmitJob(absolute));
  // The background thread expires the leases of a stalled worker.
  coordinator->StartBackground(absl::Milliseconds(50));

  FirstError errors;
  InProcessWorkerClient client(*coordinator, co.lease_duration);
  std::vector<std::unique_ptr<worker_service::UnitExecutor>> executors;
  std::vector<std::unique_ptr<worker_service::WorkerLoop>> loops;
  for (int w = 0; w < options.workers; ++w) {
    std::unique_ptr<worker_service::UnitExecutor> inner =
        options.make_executor ? options.make_executor()
                              : worker_service::NewEngineExecutor(options.threads_per_worker);
    executors.push_back(std::make_unique<GuardedExecutor>(std::move(inner), &errors));
    worker_service::WorkerLoopOptions lo;
    lo.worker_id = absl::StrCat("embedded-", w);
    lo.capacity = options.capacity;
    lo.idle_poll = absl::Milliseconds(5);
    loops.push_back(
        std::make_unique<worker_service::WorkerLoop>(&client, executors.back().get(), lo));
  }
  std::vector<std::thread> threads;
  for (auto& loop : loops) threads.emplace_back([l = loop.get()] { l->Run(); });

  if (options.progress) options.progress(status);
  absl::Status unit_error;
  while (!Terminal(status.state())) {
    absl::StatusOr<v1::JobStatus> next =
        coordinator->WaitForChange(status.job_id(), status.version(), absl::Milliseconds(200));
    if (!next.ok()) {
      unit_error = next.status();
      break;
    }
    if (next->version() != status.version()) {
      status = *std::move(next);
      if (options.progress) options.progress(status);
    }
    if (unit_error = errors.Get(); !unit_error.ok()) break;
  }
  for (auto& loop : loops) loop->Stop();
  for (auto& t : threads) t.join();
  if (!unit_error.ok()) {
    (void)coordinator->CancelJob(status.job_id());
    coordinator->Shutdown();
    return unit_error;
  }
  ASSIGN_OR_RETURN(JobView view, coordinator->GetJob(status.job_id()));
  coordinator->Shutdown();
  if (view.status.state() == v1::JOB_STATE_FAILED) {
    // The job's own error, as the service reports it (e.g. a budget the model cannot meet).
    return absl::AbortedError(view.status.error());
  }
  if (view.status.state() != v1::JOB_STATE_DONE || !view.has_result) {
    return absl::InternalError(absl::StrCat("embedded job ", view.status.job_id(), " ended ",
                                            v1::JobState_Name(view.status.state()), ": ",
                                            view.status.error()));
  }
  EmbeddedResult out;
  out.pipeline = coordinator->PipelineResult(view.status.job_id());
  out.status = std::move(view.status);
  out.spec = std::move(view.spec);
  out.result = std::move(view.result);
  return out;
}

}  // namespace impq::coordinator
