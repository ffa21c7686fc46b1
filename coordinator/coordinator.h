// The coordinator core: jobs, work units, leases, the durable store and the solver, with no
// RPC in it. The gRPC services (grpc_server.h) and the in-process worker client
// (worker/service/worker_client.h, used by the embedded mode in embedded.h) both call these
// methods, so the cluster and the embedded mode run the very same code.
//
// Job state machine:
//   QUEUED ──first lease──▶ ESTIMATING ──walks done / SE rule──▶ SOLVING ──solved──▶
//   MEASURING (only with an evaluation text) ──measured──▶ DONE
//   any non-terminal state ──CancelJob──▶ CANCELLED;  solver or validation error ──▶ FAILED.
//
// Units (deterministic; IMPQ §3.2 SPQE): unit k < M is the walk along permutation k of
// SeededPermutationSampler(n, seed, antithetic); unit M (measuring only) is the batch
// [all-4, all-2, allocation 0, allocation 1, ...] on the evaluation text. The estimate
// aggregates the marginal vectors of walks 0..m-1 in unit order, where m = M or the smallest
// admissible m meeting the SE threshold over that prefix. Hence results depend on the spec
// (seed included) only, never on the number of workers or the order results arrive in.
// Width sets (JobSpec.widths other than {2, 4}; messages.proto): the walks are over the
// n·(m−1) steps of the job's solver::WidthLadder (LadderPermutationSampler), φ and SE are per
// step, each budget's allocation is WidthLadder::ToMultiChoice of the covariance objective
// solved by solver::SolveMultiChoiceExact (bits from the set), and the measurement batch's
// coalitions are closed step coalitions [all-widest, all-narrowest, allocations...]. The
// default widths run the binary code path unchanged.
//
// Leasing protocol: AcquireLease hands out up to `capacity` pending units of the oldest
// runnable job with a deadline now + lease_duration; Heartbeat extends it; a lease past its
// deadline expires (checked on every call and by Tick) and its unfinished units become
// pending again with attempt + 1. ReportResult is idempotent: a unit's first valid result
// under its current lease is ACCEPTED (persisted before the call returns), a result for a
// unit already done is DUPLICATE, anything else (expired or unknown lease, cancelled job,
// unit no longer needed) is STALE; DUPLICATE and STALE change nothing.
//
// Durability: jobs and accepted results are in the Store (store.h); on open every
// non-terminal job's state is re-derived from its spec and results (a restart loses no
// accepted job and no reported evaluation, and counts none twice). Leases are not durable:
// after a restart the units in flight are re-issued, and reports under old leases are STALE.
//
// Group commit: an accepted report's result is written to the store *outside* the mutex, and
// reports that arrive while a commit is running are written together in the next one (one
// SQLite transaction, one fsync, however many reports). A report still returns ACCEPTED only
// once its own result is durable; while it is being committed its unit is neither re-issued
// nor accepted twice (a concurrent report for it waits for the outcome). Job records
// (submission, state changes) are written under the mutex.
//
// Thread-safe. The solver runs outside the mutex (SolvePending).
#ifndef IMPQ_COORDINATOR_COORDINATOR_H_
#define IMPQ_COORDINATOR_COORDINATOR_H_

#include <cstdint>
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
#include "coordinator/store.h"
#include "impq/v1/messages.pb.h"

namespace impq::coordinator {

struct CoordinatorOptions {
  std::string store_path;                 // SQLite file (":memory:" for tests that need no restart)
  Clock* clock = nullptr;                 // not owned; nullptr = RealClock::Default()
  absl::Duration lease_duration = absl::Seconds(30);
  int max_units_per_lease = 8;            // caps AcquireLease's capacity
  SpecLimits limits;                      // data roots and sizes for submitted specs
  CoordinatorMetrics* metrics = nullptr;  // optional, not owned
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
  std::vector<v1::JobStatus> ListJobs();
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

  // --- maintenance (the background thread calls these; tests call them directly) ---
  // Expires leases past their deadline. Returns how many expired.
  int ExpireLeases();
  // Runs the solver for every job in SOLVING (outside the mutex). Returns how many it solved.
  int SolvePending();
  // Starts a thread calling ExpireLeases and SolvePending every `period`.
  void StartBackground(absl::Duration period);
  // Graceful shutdown: stop accepting submissions and granting leases (Unavailable), keep
  // accepting heartbeats and reports of leases in flight (drain), stop the background
  // thread. Everything accepted is already persisted. Idempotent.
  void Shutdown();

  // True once Shutdown() was called.
  bool shutting_down();

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
  v1::JobStatus StatusOf(const Job& job) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Persist(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Touch(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BuildUnits(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks a result against the job; OK or InvalidArgument naming the field.
  absl::Status ValidateResult(const Job& job, const v1::WorkResult& r) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records a validated result (no persistence) and advances the job.
  void ApplyResult(Job& job, const v1::WorkResult& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves ESTIMATING → SOLVING once the prefix rule is met.
  void AdvanceEstimation(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Job& job, v1::JobState state, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropUnitsOf(Job& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int ExpireLeasesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SeeWorker(const std::string& worker_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Group commit: writes every queued result in one store transaction with mu_ released, then
  // settles each one (FinishCommit). Called by a reporting thread when no commit is running.
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
  std::set<std::string> expired_leases_ ABSL_GUARDED_BY(mu_);
  int64_t next_lease_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, absl::Time> workers_seen_ ABSL_GUARDED_BY(mu_);
  bool accepting_ ABSL_GUARDED_BY(mu_) = true;
  bool stop_background_ ABSL_GUARDED_BY(mu_) = false;
  std::thread background_;  // started once by StartBackground, joined by Shutdown
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_COORDINATOR_H_
