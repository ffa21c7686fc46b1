#include "coordinator/store.h"
#include "coordinator/store_rows.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"

namespace impq::coordinator {
namespace {

using store_rows::Stmt;

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

std::string MarkerPath(const std::string& path) { return path + ".id"; }
constexpr const char* kMarkerPrefix = "impq-store ";

// The id in `<path>.id`; 0 when there is no marker. Errors: a marker that cannot be read or
// does not hold an id.
absl::StatusOr<int64_t> ReadMarker(const std::string& path) {
  struct stat sb;
  if (::stat(MarkerPath(path).c_str(), &sb) != 0 && errno == ENOENT) return 0;
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(MarkerPath(path)));
  int64_t id = 0;
  if (!absl::StartsWith(text, kMarkerPrefix) ||
      !absl::SimpleAtoi(absl::StripAsciiWhitespace(text.substr(strlen(kMarkerPrefix))), &id) ||
      id <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        MarkerPath(path), ": not a store marker (expected '", kMarkerPrefix, "<id>')"));
  }
  return id;
}

}  // namespace

namespace store_rows {

absl::Status DecodeJob(sqlite3_stmt* st, StoredJob& j, bool* result_dropped) {
  *result_dropped = false;
  if (sqlite3_column_type(st, 0) != SQLITE_TEXT) return absl::DataLossError("id is not text");
  j.id = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  if (j.id.empty() || j.id.size() > 64) return absl::DataLossError("id is empty or too long");
  if (sqlite3_column_type(st, 1) != SQLITE_INTEGER || sqlite3_column_int64(st, 1) <= 0) {
    return absl::DataLossError("seq is not a positive integer");
  }
  j.seq = sqlite3_column_int64(st, 1);
  if (sqlite3_column_type(st, 2) == SQLITE_NULL || !j.spec.ParseFromString(ColumnBytes(st, 2))) {
    return absl::DataLossError("spec does not parse");
  }
  const int64_t state = sqlite3_column_int64(st, 3);
  if (sqlite3_column_type(st, 3) != SQLITE_INTEGER || state <= 0 ||
      state > std::numeric_limits<int>::max() ||
      !v1::JobState_IsValid(static_cast<int>(state))) {
    return absl::DataLossError(absl::StrCat("state ", state, " is invalid"));
  }
  j.state = static_cast<v1::JobState>(state);
  j.submitted_ms = sqlite3_column_int64(st, 4);
  j.started_ms = sqlite3_column_int64(st, 5);
  j.finished_ms = sqlite3_column_int64(st, 6);
  const unsigned char* err = sqlite3_column_text(st, 7);
  j.error = err != nullptr ? reinterpret_cast<const char*>(err) : "";
  j.evaluations = std::max<int64_t>(0, sqlite3_column_int64(st, 9));
  j.has_result = false;
  if (sqlite3_column_type(st, 8) != SQLITE_NULL) {
    j.has_result = j.result.ParseFromString(ColumnBytes(st, 8));
    if (!j.has_result) {
      // The result is recomputable from the stored unit results: re-derive it.
      *result_dropped = true;
      j.result.Clear();
      if (j.state == v1::JOB_STATE_DONE) j.state = v1::JOB_STATE_ESTIMATING;
    }
  }
  return absl::OkStatus();
}

absl::Status Migrate(sqlite3* db) {
  for (const char* table : {"jobs", "quarantine_jobs"}) {
    Stmt st;
    int rc = sqlite3_prepare_v2(db, absl::StrCat("PRAGMA table_info(", table, ")").c_str(), -1,
                                &st.s, nullptr);
    bool has = false;
    while (rc == SQLITE_OK && sqlite3_step(st.s) == SQLITE_ROW) {
      const unsigned char* name = sqlite3_column_text(st.s, 1);
      has = has || (name != nullptr && std::string(reinterpret_cast<const char*>(name)) == "evaluations");
    }
    if (has) continue;
    rc = sqlite3_exec(db,
                      absl::StrCat("ALTER TABLE ", table,
                                   " ADD COLUMN evaluations INTEGER NOT NULL DEFAULT 0")
                          .c_str(),
                      nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) {
      return absl::InternalError(absl::StrCat("add ", table, ".evaluations: ", sqlite3_errmsg(db)));
    }
  }
  return absl::OkStatus();
}

absl::Status DecodeResult(sqlite3_stmt* st, StoredResult& r) {
  if (sqlite3_column_type(st, 0) != SQLITE_TEXT) return absl::DataLossError("job_id is not text");
  r.job_id = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  if (sqlite3_column_type(st, 1) != SQLITE_INTEGER || sqlite3_column_int64(st, 1) < 0) {
    return absl::DataLossError("unit_index is not a non-negative integer");
  }
  r.unit_index = sqlite3_column_int64(st, 1);
  if (!r.result.ParseFromString(ColumnBytes(st, 2))) {
    return absl::DataLossError("payload does not parse");
  }
  return absl::OkStatus();
}

}  // namespace store_rows

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

absl::StatusOr<std::unique_ptr<Store>> Store::OpenDatabase(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  std::unique_ptr<Store> store(new Store(db, path));
  if (rc != SQLITE_OK) return store->Error("open", rc);
  absl::MutexLock lock(&store->mu_);
  sqlite3_busy_timeout(db, 5000);
  const std::string recover_hint = absl::StrCat(
      "; to salvage its readable jobs run `impq-coordinator --recover --store ", path,
      "` (README: Store recovery)");
  // The first statements touch the file header: a torn or foreign file fails here. Pages
  // freed by retention go back to the file system (incremental_vacuum after each deletion);
  // auto_vacuum takes effect only on a new database (a store created earlier keeps its size).
  for (const char* pragma : {"PRAGMA auto_vacuum=INCREMENTAL", "PRAGMA journal_mode=WAL",
                             "PRAGMA synchronous=FULL"}) {
    if (absl::Status s = store->Exec(pragma); !s.ok()) {
      if (s.code() != absl::StatusCode::kDataLoss) return s;
      return absl::DataLossError(absl::StrCat(s.message(), recover_hint));
    }
  }
  {
    Stmt st;
    int r = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st.s, nullptr);
    if (r == SQLITE_OK) r = sqlite3_step(st.s);
    if (r != SQLITE_ROW) {
      absl::Status s = store->Error("integrity check", r);
      if (s.code() != absl::StatusCode::kDataLoss) return s;
      return absl::DataLossError(absl::StrCat(s.message(), recover_hint));
    }
    const char* verdict = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0));
    if (verdict == nullptr || std::string(verdict) != "ok") {
      return absl::DataLossError(absl::StrCat("store ", path, ": integrity check failed: ",
                                              verdict != nullptr ? verdict : "(null)",
                                              recover_hint));
    }
  }
  RETURN_IF_ERROR(store->Exec(store_rows::kSchema));
  RETURN_IF_ERROR(store_rows::Migrate(db));
  RETURN_IF_ERROR(store->Exec(
      "INSERT INTO meta(key, value) VALUES('incarnation', 1) "
      "ON CONFLICT(key) DO UPDATE SET value = value + 1"));
  {
    // A random positive id, fixed at creation (the marker file repeats it).
    std::random_device rd;
    const int64_t fresh =
        static_cast<int64_t>(((uint64_t{rd()} << 32) ^ rd()) & 0x7fffffffffffffffULL) | 1;
    Stmt st;
    sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO meta(key, value) VALUES('store_id', ?1)", -1,
                       &st.s, nullptr);
    sqlite3_bind_int64(st.s, 1, fresh);
    if (const int r = sqlite3_step(st.s); r != SQLITE_DONE) return store->Error("write id", r);
  }
  for (auto [key, out] : {std::pair{"incarnation", &store->incarnation_},
                          std::pair{"store_id", &store->store_id_}}) {
    Stmt st;
    sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key=?1", -1, &st.s, nullptr);
    sqlite3_bind_text(st.s, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st.s) != SQLITE_ROW) {
      return store->Error(absl::StrCat("read ", key), SQLITE_ERROR);
    }
    *out = sqlite3_column_int64(st.s, 0);
  }
  RETURN_IF_ERROR(store->Prepare());
  return store;
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                  StoreOpenOptions options) {
  if (path == ":memory:" || path.empty()) return OpenDatabase(path);
  ASSIGN_OR_RETURN(const int64_t marker, ReadMarker(path));
  struct stat sb;
  const bool exists = ::stat(path.c_str(), &sb) == 0;
  if (exists && !S_ISREG(sb.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("store ", path, ": not a regular file"));
  }
  const bool empty = !exists || sb.st_size == 0;
  if (empty && marker != 0 && !options.allow_new) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", path, " is ", exists ? "empty" : "missing", ", but ", MarkerPath(path),
        " shows store ", marker, " was kept here: its jobs would be lost. Put the file back ",
        "(from a backup), salvage a damaged copy with `impq-coordinator --recover`, or start ",
        "with --new_store to begin with an empty store on purpose"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenDatabase(path));
  if (marker != 0 && marker != store->store_id_ && !options.allow_new) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store ", path, " is store ", store->store_id_, ", but ", MarkerPath(path),
        " says store ", marker, " was kept here (another store's file was put in its place?). ",
        "If this file is the one to use, delete ", MarkerPath(path), " or pass --new_store"));
  }
  if (marker != store->store_id_) {
    RETURN_IF_ERROR(WriteFileAtomically(MarkerPath(path),
                                        absl::StrCat(kMarkerPrefix, store->store_id_, "\n")));
  }
  if (::stat(path.c_str(), &sb) != 0) {
    return ErrnoToStatus(errno, "store vanished while opening", path);
  }
  absl::MutexLock lock(&store->mu_);
  store->check_file_ = true;
  store->dev_ = sb.st_dev;
  store->ino_ = sb.st_ino;
  return store;
}

absl::Status Store::CheckFile() {
  if (!check_file_ || !file_lost_.ok()) return file_lost_;
  struct stat sb;
  if (::stat(path_.c_str(), &sb) != 0 || sb.st_dev != dev_ || sb.st_ino != ino_) {
    file_lost_ = absl::DataLossError(absl::StrCat(
        "store ", path_, " was removed or replaced while the coordinator ran: no write is ",
        "acknowledged any more (a restart would not see it). Restart the coordinator "
        "(README: Store recovery)"));
    IMPQ_LOG(ERROR) << file_lost_.message();
  }
  return file_lost_;
}

absl::Status Store::Quarantine(const char* table, int64_t rowid, const std::string& reason) {
  const bool jobs = std::string(table) == "jobs";
  const std::string columns = jobs ? store_rows::kJobColumns : store_rows::kResultColumns;
  const std::string copy = absl::StrCat("INSERT INTO quarantine_", table, "(", columns,
                                        ", reason, quarantined_ms) SELECT ", columns,
                                        ", ?1, ?2 FROM ", table, " WHERE rowid = ?3");
  const std::string remove = absl::StrCat("DELETE FROM ", table, " WHERE rowid = ?1");
  RETURN_IF_ERROR(Exec("SAVEPOINT quarantine"));
  Stmt a, b;
  int rc = sqlite3_prepare_v2(db_, copy.c_str(), -1, &a.s, nullptr);
  if (rc == SQLITE_OK) {
    BindText(a.s, 1, reason);
    sqlite3_bind_int64(a.s, 2, absl::ToUnixMillis(absl::Now()));
    sqlite3_bind_int64(a.s, 3, rowid);
    rc = sqlite3_step(a.s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db_);
  }
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db_, remove.c_str(), -1, &b.s, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_bind_int64(b.s, 1, rowid);
    rc = sqlite3_step(b.s) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db_);
  }
  if (rc != SQLITE_OK) {
    (void)Exec("ROLLBACK TO quarantine");
    (void)Exec("RELEASE quarantine");
    return Error(absl::StrCat("quarantine ", table, " row ", rowid), rc);
  }
  return Exec("RELEASE quarantine");
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
      "error, result, evaluations) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
  RETURN_IF_ERROR(CheckFile());
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
  sqlite3_bind_int64(st, 10, job.evaluations);
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
  RETURN_IF_ERROR(CheckFile());
  return InsertResult(job_id, unit_index, payload);
}

absl::Status Store::PutResults(std::span<const ResultRecord> records) {
  if (records.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckFile());
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
                                           const std::string& then,
                                           const std::function<absl::Status()>& extra) {
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
  if (extra) {
    if (absl::Status s = extra(); !s.ok()) return fail(s);
  }
  if (!then.empty()) {
    if (absl::Status s = Exec(then.c_str()); !s.ok()) return fail(s);
  }
  if (absl::Status s = Exec("COMMIT"); !s.ok()) return fail(s);
  // Gives the freed pages back (the file shrinks at the next checkpoint); best effort.
  if (absl::Status s = Exec("PRAGMA incremental_vacuum"); !s.ok()) IMPQ_LOG(WARNING) << s.message();
  return absl::OkStatus();
}

absl::Status Store::DeleteResults(std::span<const std::string> job_ids) {
  if (job_ids.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckFile());
  return ForEachIdInTransaction("delete results of job", {"DELETE FROM results WHERE job_id = ?1"},
                                job_ids, "");
}

absl::Status Store::DeleteJobs(std::span<const std::string> job_ids, int64_t max_seq,
                              std::span<const RemovedRequest> removed, int64_t keep_removed) {
  if (job_ids.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckFile());
  // The removed jobs' request_ids, then only the newest keep_removed of all recorded.
  auto record_removed = [&]() -> absl::Status {
    if (removed.empty()) return absl::OkStatus();
    Stmt ins;
    int rc = sqlite3_prepare_v2(db_,
                                "INSERT OR REPLACE INTO removed_requests(request_id, job_id, "
                                "removed_ms) VALUES(?1, ?2, ?3)",
                                -1, &ins.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare record removed request", rc);
    for (const RemovedRequest& r : removed) {
      BindText(ins.s, 1, r.request_id);
      BindText(ins.s, 2, r.job_id);
      sqlite3_bind_int64(ins.s, 3, r.removed_ms);
      rc = sqlite3_step(ins.s);
      sqlite3_reset(ins.s);
      sqlite3_clear_bindings(ins.s);
      if (rc != SQLITE_DONE) return Error(absl::StrCat("record removed request of ", r.job_id), rc);
    }
    return Exec(absl::StrCat("DELETE FROM removed_requests WHERE rowid IN (SELECT rowid FROM "
                             "removed_requests ORDER BY removed_ms DESC, rowid DESC LIMIT -1 "
                             "OFFSET ",
                             std::max<int64_t>(0, keep_removed), ")")
                    .c_str());
  };
  return ForEachIdInTransaction(
      "delete job",
      {"DELETE FROM results WHERE job_id = ?1", "DELETE FROM jobs WHERE id = ?1"}, job_ids,
      absl::StrCat("INSERT INTO meta(key, value) VALUES('max_deleted_seq', ", max_seq,
                   ") ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)"),
      record_removed);
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
  // Rows that do not decode are collected first and quarantined after each scan (a table is
  // not modified under its own cursor).
  std::vector<std::pair<int64_t, std::string>> bad;
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key='max_deleted_seq'", -1,
                                &st.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare load max_deleted_seq", rc);
    if ((rc = sqlite3_step(st.s)) == SQLITE_ROW) out.max_deleted_seq = sqlite3_column_int64(st.s, 0);
    else if (rc != SQLITE_DONE) return Error("load max_deleted_seq", rc);
  }
  {
    // Rows of another shape (not text, not an integer) are skipped: a record of this table
    // only ever refuses a retried request, it never runs anything.
    Stmt st;
    int rc = sqlite3_prepare_v2(db_,
                                "SELECT request_id, job_id, removed_ms FROM removed_requests "
                                "ORDER BY removed_ms, rowid",
                                -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare load removed requests", rc);
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
      if (sqlite3_column_type(st.s, 0) != SQLITE_TEXT ||
          sqlite3_column_type(st.s, 1) != SQLITE_TEXT ||
          sqlite3_column_type(st.s, 2) != SQLITE_INTEGER) {
        continue;
      }
      out.removed_requests.push_back(
          {reinterpret_cast<const char*>(sqlite3_column_text(st.s, 0)),
           reinterpret_cast<const char*>(sqlite3_column_text(st.s, 1)),
           sqlite3_column_int64(st.s, 2)});
    }
    if (rc != SQLITE_DONE) return Error("load removed requests", rc);
  }
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(
        db_, absl::StrCat("SELECT ", store_rows::kJobColumns, ", rowid FROM jobs ORDER BY seq").c_str(),
        -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return Error("prepare load jobs", rc);
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
      StoredJob j;
      bool result_dropped = false;
      const int64_t rowid = sqlite3_column_int64(st.s, store_rows::kJobColumnCount);
      if (absl::Status s = store_rows::DecodeJob(st.s, j, &result_dropped); !s.ok()) {
        bad.emplace_back(rowid, std::string(s.message()));
        continue;
      }
      if (result_dropped) {
        IMPQ_LOG(WARNING) << "store " << path_ << ": job " << j.id
                          << ": result record does not parse; it will be recomputed";
      }
      out.jobs.push_back(std::move(j));
    }
    if (rc != SQLITE_DONE) return Error("load jobs", rc);
  }
  for (const auto& [rowid, reason] : bad) {
    IMPQ_LOG(WARNING) << "store " << path_ << ": job row " << rowid << " quarantined: " << reason;
    RETURN_IF_ERROR(Quarantine("jobs", rowid, reason));
  }
  out.quarantined_jobs = static_cast<int64_t>(bad.size());
  bad.clear();
  Stmt st;
  int rc = sqlite3_prepare_v2(
      db_,
      "SELECT r.job_id, r.unit_index, r.result, r.rowid FROM results r JOIN jobs j ON j.id = "
      "r.job_id ORDER BY j.seq, r.unit_index",
      -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return Error("prepare load results", rc);
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    StoredResult r;
    if (absl::Status s = store_rows::DecodeResult(st.s, r); !s.ok()) {
      bad.emplace_back(sqlite3_column_int64(st.s, store_rows::kResultColumnCount),
                       std::string(s.message()));
      continue;
    }
    out.results.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Error("load results", rc);
  for (const auto& [rowid, reason] : bad) {
    IMPQ_LOG(WARNING) << "store " << path_ << ": result row " << rowid
                      << " quarantined (the unit will be evaluated again): " << reason;
    RETURN_IF_ERROR(Quarantine("results", rowid, reason));
  }
  out.quarantined_results = static_cast<int64_t>(bad.size());
  return out;
}

}  // namespace impq::coordinator
