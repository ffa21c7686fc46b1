// The coordinator core: jobs, work units, leases, the durable store and the job pipeline,
// with no RPC in it. The gRPC services (grpc_server.h) and the in-process worker client
// (embedded.h) both call these methods, so the cluster and the embedded mode (`impq run`) run
// the very same code.
//
// A job is the pipeline of job/job.h (prepare → baselines → SPQE → solve → select →
// measure), run by a driver thread of this coordinator per running job on a UnitGame
// (unit_game.h): every model evaluation of every phase becomes work units that workers lease,
// so N workers share all of it. The pipeline is deterministic given the answers, and every
// accepted answer is durable, so:
//   - results depend on the spec (seed included) only, never on the number of workers or the
//     order their results arrive in;
//   - a restarted coordinator replays each unfinished job's pipeline from the start: unit k of
//     the replay is unit k of the first run (same content, checked by digest), answered from
//     the store without a lease; the first unit not in the store goes out to workers. Nothing
//     reported is evaluated again.
//
// Job state machine: QUEUED ──driver starts──▶ ESTIMATING (phases prepare, baselines, spqe)
//   ──▶ SOLVING (solve) ──▶ MEASURING (select, measure) ──▶ DONE; any non-terminal state
//   ──CancelJob──▶ CANCELLED; a pipeline error (invalid settings, a budget the model cannot
//   meet, a unit that failed on max_unit_failures attempts) ──▶ FAILED with the error.
//   At most max_running_jobs drivers run at once; the rest wait QUEUED, in submission order.
//
// Leasing protocol: AcquireLease hands out up to `capacity` pending units of one running job
// (round robin over the running jobs, so one job never starves another) with a deadline
// now + lease_duration; Heartbeat extends it; a lease past its deadline expires (checked on
// every call and by the background thread) and its unfinished units become pending again with
// attempt + 1. ReportResult is idempotent: a unit's first valid result under its current lease
// is ACCEPTED (persisted before the call returns), a result for a unit already done is
// DUPLICATE, anything else (expired or unknown lease, cancelled job) is STALE. A result with
// `error` set is the worker's failure to compute the unit: the unit is re-issued, and after
// max_unit_failures failures the job FAILS with that error (a poison job never loops).
//
// Bounds on the client API (issue 20): at most max_jobs jobs; ListJobs pages (at most 1000
// jobs and 2 MiB a page); finished jobs beyond the retention policy are removed from memory
// and the store (PruneFinishedJobs); a job's units and their results are dropped from memory
// once it is finished, and a cancelled or failed job's unit results from the store as well
// (nothing can resume it). Watchers of a job are notified through JobObserver, with no thread
// of theirs.
//
// Group commit: an accepted report's result is written to the store *outside* the mutex, and
// reports that arrive while a commit is running are written together in the next one (one
// SQLite transaction, one fsync). A report returns ACCEPTED only once its result is durable.
//
// Thread-safe.
#ifndef IMPQ_COORDINATOR_COORDINATOR_H_
#define IMPQ_COORDINATOR_COORDINATOR_H_

#include <cstdint>
#include <functional>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "coordinator/job_spec.h"
#include "coordinator/metrics.h"
#include "coordinator/retention.h"
#include "coordinator/store.h"
#include "job/job.h"
#include "impq/v1/messages.pb.h"

namespace impq::coordinator {

struct CoordinatorOptions {
  std::string store_path;                 // SQLite file (":memory:" for tests that need no restart)
  bool new_store = false;                 // begin empty although a store was kept here (store.h)
  Clock* clock = nullptr;                 // not owned; nullptr = RealClock::Default()
  absl::Duration lease_duration = absl::Seconds(30);
  int max_units_per_lease = 8;            // caps AcquireLease's capacity
  SpecLimits limits;                      // data roots and sizes for submitted specs
  CoordinatorMetrics* metrics = nullptr;  // optional, not owned
  int max_running_jobs = 4;               // pipelines driven at once (the rest wait QUEUED)
  int max_unit_failures = 3;              // reported failures of one unit before the job fails
  // Units a pipeline batch is split into (each unit one worker's work): 2 keeps a walk's
  // coalitions together (prefix reuse) while two workers share every batch.
  int batch_split = 2;
  int64_t max_jobs = 100000;              // jobs kept (queued + running + finished)
  // Finished jobs kept (retention.h): the rest are removed from memory and the store.
  RetentionPolicy retention;
  // Optional: every progress report of a job's pipeline, from its driver thread (the embedded
  // `impq run` prints them).
  std::function<void(const std::string& job_id, const job::JobProgress&)> on_progress;
};

// What a lease grant, heartbeat or report looks like to the core (the RPC layer copies these
// into the v1 responses).
struct LeaseGrant {
  bool has_lease = false;
  std::string lease_id;
  absl::Time deadline;
  std::vector<v1::WorkUnit> units;
};
struct HeartbeatReply {
  v1::LeaseState state = v1::LEASE_STATE_UNKNOWN;
  absl::Time deadline;
};

struct JobView {
  v1::JobStatus status;
  v1::JobSpec spec;
  bool has_result = false;
  v1::JobResult result;
};

// ListJobs' request (services.proto ListJobsRequest) and one page of its answer.
struct JobListQuery {
  int page_size = 0;                                // 0 = kDefaultPageSize; > kMaxPageSize = max
  std::string page_token;                           // empty = the first page
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;  // UNSPECIFIED = every state
};
struct JobListPage {
  std::vector<v1::JobStatus> jobs;
  std::string next_page_token;  // empty on the last page
};

// Receives a job's changes (Coordinator::AddJobObserver): the gRPC WatchJob streams, with no
// thread each. Both methods are called with the coordinator's mutex held: they must return
// promptly, must not block and must not call the Coordinator.
class JobObserver {
 public:
  virtual ~JobObserver() = default;
  // The job's status: once when the observer is added, then after every change (every new
  // version), up to and past the terminal state.
  virtual void OnJobChanged(const v1::JobStatus& status) = 0;
  // The coordinator is shutting down: no further calls follow.
  virtual void OnShutdown() = 0;
};

// What a driver asks of the workers: one batch of units of its job, answered in order.
struct UnitRequest {
  v1::UnitKind kind = v1::UNIT_KIND_UNSPECIFIED;
  v1::Dataset dataset = v1::DATASET_UNSPECIFIED;
  std::vector<std::string> coalitions;   // BATCH, SEQUENCES
  std::vector<std::string> assignments;  // ASSIGNMENTS
  int64_t sequence_begin = 0, sequence_end = 0;  // SEQUENCES
};

class Coordinator {
 public:
  // Opens the store and restores every job. Errors from Store::Open/Load, or DataLoss naming
  // the job when a stored record contradicts its spec.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Open(const CoordinatorOptions& options);
  ~Coordinator();  // stops the background thread; does not need Shutdown() first

  // --- client API ---
  // Validates (InvalidArgument / PermissionDenied naming the field), persists, then returns
  // the QUEUED status. Unavailable after Shutdown().
  absl::StatusOr<v1::JobStatus> SubmitJob(const v1::JobSpec& spec);
  absl::StatusOr<JobView> GetJob(const std::string& job_id);  // NotFound for an unknown id
  // Cancels a non-terminal job (its leases answer CANCELLED); terminal jobs are unchanged.
  absl::StatusOr<v1::JobStatus> CancelJob(const std::string& job_id);
  // One page of the jobs in submission order (JobListQuery). InvalidArgument naming page_size
  // (negative) or page_token (not issued by ListJobs, or for another state filter). A page
  // holds at most kMaxPageSize jobs and ends early once its statuses reach kMaxPageBytes.
  static constexpr int kDefaultPageSize = 100;
  static constexpr int kMaxPageSize = 1000;
  static constexpr size_t kMaxPageBytes = 2 << 20;
  absl::StatusOr<JobListPage> ListJobs(const JobListQuery& query = {});
  // Registers `observer` (not owned; must stay valid until RemoveJobObserver returns) for the
  // job's changes and calls its OnJobChanged with the current status before returning.
  // Returns the handle for RemoveJobObserver. NotFound for an unknown job, Unavailable after
  // Shutdown().
  absl::StatusOr<int64_t> AddJobObserver(const std::string& job_id, JobObserver* observer);
  // After it returns the observer is called no more. Unknown handles are ignored.
  void RemoveJobObserver(int64_t handle);
  // Blocks until the job's version differs from `known_version`, `timeout` (real time)
  // passes or Shutdown() is called, then returns the current status. NotFound for an unknown
  // id.
  absl::StatusOr<v1::JobStatus> WaitForChange(const std::string& job_id, int64_t known_version,
                                              absl::Duration timeout);

  // --- worker API ---
  // InvalidArgument for an empty worker id or capacity < 1; Unavailable after Shutdown().
  absl::StatusOr<LeaseGrant> AcquireLease(const std::string& worker_id, int capacity);
  absl::StatusOr<HeartbeatReply> Heartbeat(const std::string& lease_id,
                                           const std::string& worker_id);
  // InvalidArgument naming the field for a malformed result (wrong loss count, non-finite
  // loss, permutation or model info inconsistent with the job); NotFound for an unknown job;
  // the store's error if persisting fails (the unit is then not done).
  absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string& lease_id,
                                                 const v1::WorkResult& result);

  // --- driver API (unit_game.h; the pipeline's evaluations) ---
  // Appends `units` to the job, waits until each is answered (from the store when a replay
  // reaches a stored unit, else by a worker) and returns the results in order. Cancelled when
  // the job was cancelled or failed meanwhile; Unavailable when the coordinator shuts down
  // (the job stays unfinished and resumes on the next start).
  absl::StatusOr<std::vector<v1::WorkResult>> RunUnits(const std::string& job_id,
                                                       std::vector<UnitRequest> units);
  // The driver's progress: the job's phase and its units of work.
  void SetPhase(const std::string& job_id, const job::JobProgress& progress);

  // --- maintenance (the background thread calls these; tests call them directly) ---
  // Expires leases past their deadline. Returns how many expired.
  int ExpireLeases();
  // Starts drivers for queued jobs while fewer than max_running_jobs run. Returns how many
  // it started.
  int StartDrivers();
  // Applies the retention policy: removes the finished jobs beyond it from memory and the
  // store (job row and unit results; a request_id it was submitted with is remembered, so a
  // retried submit is refused rather than run again), drops finished jobs' units from memory and a cancelled
  // or failed job's unit results from the store. A job still referenced by a call in flight
  // (its driver returning, a report being committed) is left for the next call. Returns how
  // many jobs were removed.
  int PruneFinishedJobs();
  // Starts a thread calling ExpireLeases, StartDrivers and PruneFinishedJobs every `period`.
  void StartBackground(absl::Duration period);
  // Graceful shutdown: stop accepting submissions and granting leases (Unavailable), keep
  // accepting heartbeats and reports of leases in flight (drain), stop the background
  // thread. Everything accepted is already persisted. Idempotent.
  void Shutdown();

  // True once Shutdown() was called.
  bool shutting_down();
  // The pipeline's full result of a job this process finished (nullptr otherwise, e.g. after
  // a restart: the document in v1::JobResult is the durable form).
  std::shared_ptr<const job::JobResult> PipelineResult(const std::string& job_id);

  int64_t incarnation() const { return incarnation_; }
  // Units waiting for a lease, over all jobs.
  int64_t QueueDepth();

 private:
  struct Unit;
  struct Job;
  struct LeaseRec;
  struct PendingCommit;
  explicit Coordinator(const CoordinatorOptions& options);

  int64_t NowMs() const;
  Job* FindJob(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NotFound for a job id not in jobs_, saying when retention removed it.
  absl::Status UnknownJob(const std::string& id) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int PruneFinishedJobsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Remembers `r` in removed_requests_, forgetting the oldest beyond the policy's bound.
  void RememberRemovedLocked(RemovedRequest r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobStatus StatusOf(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Persist(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks a result against the unit and what the job already knows; OK or InvalidArgument
  // naming the field.
  absl::Status ValidateResult(const Job& job, const v1::WorkResult& r) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a validated, durable result.
  void ApplyResult(Job& job, const v1::WorkResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A worker's failure report for a unit under its lease.
  void ApplyFailure(Job& job, const v1::WorkResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Job& job, v1::JobState state, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropUnitsOf(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int ExpireLeasesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int StartDriversLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Drive(std::string job_id);  // a driver thread's body
  void SeeWorker(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CommitQueued() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FinishCommit(PendingCommit& c, const absl::Status& stored)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountReport(v1::ReportOutcome outcome) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Restore(StoreContents contents) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const CoordinatorOptions options_;
  Clock* const clock_;
  int64_t incarnation_ = 0;

  // Set once by Open; the Store is thread-safe, and results are committed without mu_.
  std::unique_ptr<Store> store_;

  absl::Mutex mu_;
  absl::CondVar changed_;    // signalled on every job version bump
  absl::CondVar committed_;  // signalled when a group commit has settled its reports
  std::vector<PendingCommit*> commit_queue_ ABSL_GUARDED_BY(mu_);  // waiting for a commit
  bool committing_ ABSL_GUARDED_BY(mu_) = false;                   // a commit is running
  std::map<std::string, std::unique_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<Job*> order_ ABSL_GUARDED_BY(mu_);  // submission order
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::unique_ptr<LeaseRec>> leases_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> expired_leases_ ABSL_GUARDED_BY(mu_);  // bounded: oldest evicted
  std::vector<std::string> expired_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);  // → job id
  // The request_ids of jobs retention removed (RetentionPolicy::max_removed_requests newest),
  // with the order they were removed in (oldest first) for trimming.
  std::map<std::string, RemovedRequest> removed_requests_ ABSL_GUARDED_BY(mu_);
  std::deque<std::string> removed_order_ ABSL_GUARDED_BY(mu_);
  size_t next_job_rr_ ABSL_GUARDED_BY(mu_) = 0;  // AcquireLease's round robin
  std::map<std::string, std::thread> drivers_ ABSL_GUARDED_BY(mu_);  // by job id
  std::vector<std::thread> finished_drivers_ ABSL_GUARDED_BY(mu_);   // to join
  std::map<std::string, absl::Time> workers_seen_ ABSL_GUARDED_BY(mu_);
  // Job observers (AddJobObserver): by job id, then handle; and each handle's job.
  std::map<std::string, std::map<int64_t, JobObserver*>> observers_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::string> observer_jobs_ ABSL_GUARDED_BY(mu_);
  int64_t next_observer_ ABSL_GUARDED_BY(mu_) = 1;
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_background_ ABSL_GUARDED_BY(mu_) = false;
  std::thread background_;  // started once by StartBackground, joined by Shutdown
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_COORDINATOR_H_
