// The store's SQL schema and row codecs, shared by Store (store.cc) and the salvage of a
// damaged file (store_recover.cc). Internal to the coordinator's store.
#ifndef IMPQ_COORDINATOR_STORE_ROWS_H_
#define IMPQ_COORDINATOR_STORE_ROWS_H_

#include <sqlite3.h>

#include <string>

#include "absl/status/status.h"
#include "coordinator/store.h"

namespace impq::coordinator::store_rows {

// Tables. `removed_requests`: the request_ids of jobs retention removed (Store::DeleteJobs),
// newest kept. `quarantine_jobs` / `quarantine_results` hold rows that could not be decoded, byte
// for byte (no constraints), with the reason: kept for an operator, never loaded.
inline constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, spec BLOB NOT NULL, state INTEGER NOT NULL,
  submitted_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL,
  error TEXT NOT NULL, result BLOB, evaluations INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS results (
  job_id TEXT NOT NULL, unit_index INTEGER NOT NULL, result BLOB NOT NULL,
  PRIMARY KEY (job_id, unit_index));
CREATE TABLE IF NOT EXISTS removed_requests (
  request_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, removed_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine_jobs (
  id, seq, spec, state, submitted_ms, started_ms, finished_ms, error, result, evaluations,
  reason TEXT NOT NULL, quarantined_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS quarantine_results (
  job_id, unit_index, result, reason TEXT NOT NULL, quarantined_ms INTEGER NOT NULL);
)sql";

// The columns a job row is read with, in the order DecodeJob expects (then `rowid`).
inline constexpr const char* kJobColumns =
    "id, seq, spec, state, submitted_ms, started_ms, finished_ms, error, result, evaluations";
inline constexpr int kJobColumnCount = 10;
inline constexpr const char* kResultColumns = "job_id, unit_index, result";
inline constexpr int kResultColumnCount = 3;

// Finalizes a prepared statement on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s); }
};

// Adds the columns later versions introduced to the tables of a store written by an earlier
// one (jobs.evaluations). Idempotent.
absl::Status Migrate(sqlite3* db);

// Decodes columns [0, kJobColumnCount) of `st` into `job`. Any content is safe: a NULL or
// non-text id, an unparseable spec, an unknown state, a negative seq are errors naming the
// column (the caller quarantines the row). An unparseable *result* is not an error (it is
// recomputed from the unit results): `job.has_result` is false and a DONE job goes back to
// ESTIMATING, with `*result_dropped` set.
absl::Status DecodeJob(sqlite3_stmt* st, StoredJob& job, bool* result_dropped);

// Decodes columns [0, kResultColumnCount) of `st` (job_id, unit_index, payload).
absl::Status DecodeResult(sqlite3_stmt* st, StoredResult& result);

}  // namespace impq::coordinator::store_rows

#endif  // IMPQ_COORDINATOR_STORE_ROWS_H_
