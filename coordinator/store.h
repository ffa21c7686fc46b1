// The coordinator's durable store: an embedded SQLite database in WAL mode.
//
// What is stored is exactly what cannot be recomputed: every accepted job (its normalized
// spec, state and timestamps, the final result) and every accepted unit result (the losses a
// worker reported). Everything else (units, the estimation prefix, the allocation) is a pure
// function of the spec and the results, and is re-derived on open (coordinator.cc). Leases
// are deliberately not stored: after a restart, units in flight are simply re-issued.
//
// Durability: every Put* is one transaction committed with synchronous=FULL before it
// returns, so an OK Put survives a crash of the process (and of the machine). PutResults
// writes many results in one transaction (one fsync): the coordinator's group commit.
// Damage (README, "Store recovery"):
// - Open() runs PRAGMA quick_check and returns DataLoss naming the file and the way out
//   (`impq-coordinator --recover`, store_recover.h) when the database is torn.
// - Load() never fails on a row's content: a job row that does not decode (NULL id, a spec
//   that does not parse, an unknown state) and a result row that does not parse are moved to
//   the quarantine tables, logged and counted; such a unit is simply evaluated again.
// - Lost files: the first Open of a path writes a marker `<path>.id` holding the store's id.
//   A later Open that finds the store missing or empty while the marker is there refuses
//   (FailedPrecondition) unless `allow_new` (--new_store) says to begin empty; a marker naming
//   another store refuses as well. While open, every write first checks that `path` is still
//   the file that was opened: a store unlinked or replaced under a running coordinator fails
//   every later write (DataLoss) instead of acknowledging what a restart would lose.
//
// Deletion (the coordinator's retention of finished jobs): DeleteJobs removes job rows with
// their results and records the highest deleted seq, so a restarted coordinator never hands an
// id out twice; DeleteResults drops the results of a job that can no longer use them.
//
// Thread-safe: calls are serialized by the store's own mutex (a transaction never interleaves
// with another call's statements), so the coordinator can commit results outside its mutex.
#ifndef IMPQ_COORDINATOR_STORE_H_
#define IMPQ_COORDINATOR_STORE_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <span>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "impq/v1/messages.pb.h"

struct sqlite3;
struct sqlite3_stmt;

namespace impq::coordinator {

struct StoredJob {
  std::string id;
  int64_t seq = 0;  // submission order, 1-based
  v1::JobSpec spec;
  v1::JobState state = v1::JOB_STATE_QUEUED;
  int64_t submitted_ms = 0, started_ms = 0, finished_ms = 0;
  std::string error;
  bool has_result = false;
  v1::JobResult result;  // final (DONE) result
  int64_t evaluations = 0;  // evaluations done when the row was written (a finished job's count)
};

struct StoredResult {
  std::string job_id;
  int64_t unit_index = 0;
  v1::WorkResult result;
};

// One row of PutResults: the result of unit `unit_index` of `job_id`, already serialized.
struct ResultRecord {
  std::string job_id;
  int64_t unit_index = 0;
  std::string payload;  // v1::WorkResult::SerializeAsString()
};

// A job retention removed that was submitted with a request_id: a retried SubmitJob with that
// request_id is refused (naming the job) instead of running the job again.
struct RemovedRequest {
  std::string request_id;
  std::string job_id;
  int64_t removed_ms = 0;
};

struct StoreContents {
  std::vector<StoredJob> jobs;        // in seq order
  std::vector<StoredResult> results;  // by (job seq, unit index)
  int64_t quarantined_jobs = 0;       // job rows moved to quarantine by this Load
  int64_t quarantined_results = 0;    // result rows moved to quarantine by this Load
  // The highest seq DeleteJobs ever removed (0: none): seqs are never handed out again, even
  // when the newest jobs were deleted.
  int64_t max_deleted_seq = 0;
  std::vector<RemovedRequest> removed_requests;  // oldest first
  int64_t incarnation = 0;            // number of times the store was opened, this one included
};

struct StoreOpenOptions {
  // Create an empty store although `<path>.id` shows one was here (--new_store).
  bool allow_new = false;
};

class Store {
 public:
  // Opens or creates the database at `path` (":memory:" for a throwaway store). Increments
  // the stored incarnation counter. DataLoss naming the file when it is not a database or
  // fails the integrity check; FailedPrecondition for a lost store (file comment); Internal
  // for other SQLite errors.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path,
                                                     StoreOpenOptions options = {});
  // The database alone: sqlite open, pragmas, integrity check, schema, incarnation. No marker
  // and no file identity (the salvage writes its output through this).
  static absl::StatusOr<std::unique_ptr<Store>> OpenDatabase(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Inserts or replaces the job row.
  absl::Status PutJob(const StoredJob& job);
  // Inserts the result of (job, unit); a second result for the same unit is ignored (the
  // first accepted one wins, as in the coordinator).
  absl::Status PutResult(const std::string& job_id, int64_t unit_index,
                         const v1::WorkResult& result);
  // PutResult for every record, in one transaction: all are durable when it returns OK, none
  // is when it fails (rolled back). An empty span is OK and writes nothing.
  absl::Status PutResults(std::span<const ResultRecord> records);
  // Deletes the unit results of these jobs (their job rows stay), in one transaction.
  absl::Status DeleteResults(std::span<const std::string> job_ids);
  // Deletes these jobs' rows and unit results, raises the stored max_deleted_seq to `max_seq`
  // and records `removed` (the request_ids among them), keeping the newest `keep_removed`
  // records of those, in one transaction (all or nothing).
  absl::Status DeleteJobs(std::span<const std::string> job_ids, int64_t max_seq,
                          std::span<const RemovedRequest> removed, int64_t keep_removed);
  // Rows in the jobs and results tables (tests and diagnostics).
  struct RowCounts {
    int64_t jobs = 0, results = 0;
  };
  absl::StatusOr<RowCounts> CountRows();
  // Everything stored. See the file comment for corrupt rows.
  absl::StatusOr<StoreContents> Load();

  int64_t incarnation() const { return incarnation_; }
  int64_t store_id() const { return store_id_; }
  const std::string& path() const { return path_; }

 private:
  Store(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  // OK while `path_` is the file Open() opened; else DataLoss, and every later call too.
  absl::Status CheckFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves row `rowid` of `table` ("jobs" / "results") to its quarantine table.
  absl::Status Quarantine(const char* table, int64_t rowid, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Error(const std::string& what, int rc) const;
  // Prepares the cached statements (once, from Open).
  absl::Status Prepare() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertResult(const std::string& job_id, int64_t unit_index,
                            const std::string& payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the `per_id` statements (each with one '?1' text parameter) for every id, then
  // `extra` (when given), then the statement `then` (no parameters; empty = none), all in one
  // transaction.
  absl::Status ForEachIdInTransaction(const char* what, std::initializer_list<const char*> per_id,
                                      std::span<const std::string> ids, const std::string& then,
                                      const std::function<absl::Status()>& extra = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after Open.
  sqlite3* const db_;
  const std::string path_;
  int64_t incarnation_ = 0;
  int64_t store_id_ = 0;
  // The opened file's identity (Open(); none for ":memory:" and OpenDatabase()).
  bool check_file_ = false;
  uint64_t dev_ = 0, ino_ = 0;

  absl::Mutex mu_;
  sqlite3_stmt* put_job_ ABSL_GUARDED_BY(mu_) = nullptr;
  sqlite3_stmt* put_result_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Status file_lost_ ABSL_GUARDED_BY(mu_);
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_STORE_H_
