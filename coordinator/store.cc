#include "coordinator/store.h"

#include <sqlite3.h>

#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace impq::coordinator {
namespace {

// Finalizes a prepared statement on scope exit.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

void BindBlob(sqlite3_stmt* s, int i, const std::string& bytes) {
  sqlite3_bind_blob(s, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
}
void BindText(sqlite3_stmt* s, int i, const std::string& text) {
  sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
}
std::string ColumnBytes(sqlite3_stmt* s, int i) {
  const void* p = sqlite3_column_blob(s, i);
  const int n = sqlite3_column_bytes(s, i);
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, spec BLOB NOT NULL, state INTEGER NOT NULL,
  submitted_ms INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL,
  error TEXT NOT NULL, result BLOB);
CREATE TABLE IF NOT EXISTS results (
  job_id TEXT NOT NULL, unit_index INTEGER NOT NULL, result BLOB NOT NULL,
  PRIMARY KEY (job_id, unit_index));
)sql";

}  // namespace

absl::Status Store::Error(const std::string& what, int rc) const {
  const std::string msg = absl::StrCat("store ", path_, ": ", what, ": ", sqlite3_errstr(rc),
                                       " (", db_ != nullptr ? sqlite3_errmsg(db_) : "", ")");
  if (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) return absl::DataLossError(msg);
  return absl::InternalError(msg);
}

absl::Status Store::Exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return Error(sql, rc);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  std::unique_ptr<Store> store(new Store(db, path));
  if (rc != SQLITE_OK) return store->Error("open", rc);
  absl::MutexLock lock(&store->mu_);
  sqlite3_busy_timeout(db, 5000);
  // The first statements touch the file header: a torn or foreign file fails here.
  RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  {
    Stmt st;
    int r = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st.s, nullptr);
    if (r != SQLITE_OK) return store->Error("integrity check", r);
    r = sqlite3_step(st.s);
    if (r != SQLITE_ROW) return store->Error("integrity check", r);
    const char* verdict = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
    if (verdict == nullptr || std::string(verdict) != "ok") {
      return absl::DataLossError(absl::StrCat("store ", path, ": integrity check failed: ",
                                              verdict != nullptr ? verdict : "(null)"));
    }
  }
  RETURN_IF_ERROR(store->Exec(kSchema));
  RETURN_IF_ERROR(store->Exec(
      "INSERT INTO meta(key, value) VALUES('incarnation', 1) "
      "ON CONFLICT(key) DO UPDATE SET value = value + 1"));
  Stmt st;
  sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key='incarnation'", -1, &st.s, nullptr);
  if (sqlite3_step(st.s) != SQLITE_ROW) return store->Error("read incarnation", SQLITE_ERROR);
  store->incarnation_ = sqlite3_column_int64(st.s, 0);
  RETURN_IF_ERROR(store->Prepare());
  return store;
}

Store::~Store() {
  {
    absl::MutexLock lock(&mu_);
    sqlite3_finalize(put_job_);
    sqlite3_finalize(put_result_);
  }
  sqlite3_close_v2(db_);
}

absl::Status Store::Prepare() {
  int rc = sqlite3_prepare_v2(
      db_,
      "INSERT OR REPLACE INTO jobs(id, seq, spec, state, submitted_ms, started_ms, finished_ms, "
      "error, result) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
      -1, &put_job_, nullptr);
  if (rc != SQLITE_OK) return Error("prepare PutJob", rc);
  rc = sqlite3_prepare_v2(
      db_, "INSERT OR IGNORE INTO results(job_id, unit_index, result) VALUES(?1, ?2, ?3)", -1,
      &put_result_, nullptr);
  if (rc != SQLITE_OK) return Error("prepare PutResult", rc);
  return absl::OkStatus();
}

absl::Status Store::PutJob(const StoredJob& job) {
  const std::string spec = job.spec.SerializeAsString();
  const std::string result = job.has_result ? job.result.SerializeAsString() : std::string();
  absl::MutexLock lock(&mu_);
  sqlite3_stmt* st = put_job_;
  BindText(st, 1, job.id);
  sqlite3_bind_int64(st, 2, job.seq);
  BindBlob(st, 3, spec);
  sqlite3_bind_int64(st, 4, job.state);
  sqlite3_bind_int64(st, 5, job.submitted_ms);
  sqlite3_bind_int64(st, 6, job.started_ms);
  sqlite3_bind_int64(st, 7, job.finished_ms);
  BindText(st, 8, job.error);
  if (job.has_result) {
    BindBlob(st, 9, result);
  } else {
    sqlite3_bind_null(st, 9);
  }
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return Error(absl::StrCat("write job ", job.id), rc);
  return absl::OkStatus();
}

absl::Status Store::InsertResult(const std::string& job_id, int64_t unit_index,
                                 const std::string& payload) {
  sqlite3_stmt* st = put_result_;
  BindText(st, 1, job_id);
  sqlite3_bind_int64(st, 2, unit_index);
  BindBlob(st, 3, payload);
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return Error(absl::StrCat("write result ", job_id, "/", unit_index), rc);
  return absl::OkStatus();
}

absl::Status Store::PutResult(const std::string& job_id, int64_t unit_index,
                              const v1::WorkResult& result) {
  const std::string payload = result.SerializeAsString();
  absl::MutexLock lock(&mu_);
  return InsertResult(job_id, unit_index, payload);
}

absl::Status Store::PutResults(std::span<const ResultRecord> records) {
  if (records.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (records.size() == 1) {
    return InsertResult(records[0].job_id, records[0].unit_index, records[0].payload);
  }
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  for (const ResultRecord& r : records) {
    if (absl::Status s = InsertResult(r.job_id, r.unit_index, r.payload); !s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
  }
  if (absl::Status s = Exec("COMMIT"); !s.ok()) {
    // A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY): end it.
    if (!sqlite3_get_autocommit(db_)) (void)Exec("ROLLBACK");
    return s;
  }
  return absl::OkStatus();
}

absl::Status Store::ForEachIdInTransaction(const char* what,
                                           std::initializer_list<const char*> per_id,
                                           std::span<const std::string> ids,
                                           const std::string& then) {
  std::vector<Stmt> stmts(per_id.size());
  size_t i = 0;
  for (const char* sql : per_id) {
    const int rc = sqlite3_prepare_v2(db_, sql, -1, &stmts[i++].s, nullptr);
    if (rc != SQLITE_OK) return Error(absl::StrCat("prepare ", what), rc);
  }
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto fail = [&](absl::Status s) {
    if (!sqlite3_get_autocommit(db_)) (void)Exec("ROLLBACK");
    return s;
  };
  for (const std::string& id : ids) {
    for (Stmt& st : stmts) {
      BindText(st.s, 1, id);
      const int rc = sqlite3_step(st.s);
      sqlite3_reset(st.s);
      sqlite3_clear_bindings(st.s);
      if (rc != SQLITE_DONE) return fail(Error(absl::StrCat(what, " ", id), rc));
    }
  }
  if (!then.empty()) {
    if (absl::Status s = Exec(then.c_str()); !s.ok()) return fail(s);
  }
  if (absl::Status s = Exec("COMMIT"); !s.ok()) return fail(s);
  return absl::OkStatus();
}

absl::Status Store::DeleteResults(std::span<const std::string> job_ids) {
  if (job_ids.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return ForEachIdInTransaction("delete results of job", {"DELETE FROM results WHERE job_id = ?1"},
                                job_ids, "");
}

absl::Status Store::DeleteJobs(std::span<const std::string> job_ids, int64_t max_seq) {
  if (job_ids.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  return ForEachIdInTransaction(
      "delete job",
      {"DELETE FROM results WHERE job_id = ?1", "DELETE FROM jobs WHERE id = ?1"}, job_ids,
      absl::StrCat("INSERT INTO meta(key, value) VALUES('max_deleted_seq', ", max_seq,
                   ") ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)"));
}

absl::StatusOr<Store::RowCounts> Store::CountRows() {
  absl::MutexLock lock(&mu_);
  RowCounts out;
  for (auto [sql, dst] : {std::pair{"SELECT count(*) FROM jobs", &out.jobs},
                          std::pair{"SELECT count(*) FROM results", &out.results}}) {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return Error(sql, rc);
    if ((rc = sqlite3_step(st.s)) != SQLITE_ROW) return Error(sql, rc);
    *dst = sqlite3_column_int64(st.s, 0);
  }
  return out;
}

absl::StatusOr<StoreContents> Store::Load() {
  absl::MutexLock lock(&mu_);
  StoreContents out;
  out.incarnation = incarnation_;
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key='max_deleted_seq'", -1,
                                &st.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare load max_deleted_seq", rc);
    if ((rc = sqlite3_step(st.s)) == SQLITE_ROW) out.max_deleted_seq = sqlite3_column_int64(st.s, 0);
    else if (rc != SQLITE_DONE) return Error("load max_deleted_seq", rc);
  }
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_,
                                "SELECT id, seq, spec, state, submitted_ms, started_ms, "
                                "finished_ms, error, result FROM jobs ORDER BY seq",
                                -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare load jobs", rc);
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
      StoredJob j;
      j.id = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
      j.seq = sqlite3_column_int64(st.s, 1);
      if (!j.spec.ParseFromString(ColumnBytes(st.s, 2))) {
        return absl::DataLossError(
            absl::StrCat("store ", path_, ": job ", j.id, ": spec record does not parse"));
      }
      const int64_t state = sqlite3_column_int64(st.s, 3);
      if (!v1::JobState_IsValid(static_cast<int>(state)) || state == 0) {
        return absl::DataLossError(
            absl::StrCat("store ", path_, ": job ", j.id, ": state ", state, " is invalid"));
      }
      j.state = static_cast<v1::JobState>(state);
      j.submitted_ms = sqlite3_column_int64(st.s, 4);
      j.started_ms = sqlite3_column_int64(st.s, 5);
      j.finished_ms = sqlite3_column_int64(st.s, 6);
      const unsigned char* err = sqlite3_column_text(st.s, 7);
      j.error = err != nullptr ? reinterpret_cast<const char*>(err) : "";
      if (sqlite3_column_type(st.s, 8) != SQLITE_NULL) {
        j.has_result = j.result.ParseFromString(ColumnBytes(st.s, 8));
        if (!j.has_result) {
          // The result is recomputable from the stored unit results: re-derive it.
          IMPQ_LOG(WARNING) << "store " << path_ << ": job " << j.id
                            << ": result record does not parse; it will be recomputed";
          j.result.Clear();
          if (j.state == v1::JOB_STATE_DONE) j.state = v1::JOB_STATE_ESTIMATING;
        }
      }
      out.jobs.push_back(std::move(j));
    }
    if (rc != SQLITE_DONE) return Error("load jobs", rc);
  }
  Stmt st;
  int rc = sqlite3_prepare_v2(db_,
                              "SELECT r.job_id, r.unit_index, r.result FROM results r JOIN jobs "
                              "j ON j.id = r.job_id ORDER BY j.seq, r.unit_index",
                              -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return Error("prepare load results", rc);
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    StoredResult r;
    r.job_id = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
    r.unit_index = sqlite3_column_int64(st.s, 1);
    if (!r.result.ParseFromString(ColumnBytes(st.s, 2))) {
      IMPQ_LOG(WARNING) << "store " << path_ << ": result " << r.job_id << "/" << r.unit_index
                        << " does not parse; the unit will be evaluated again";
      ++out.discarded_results;
      continue;
    }
    out.results.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Error("load results", rc);
  return out;
}

}  // namespace impq::coordinator
