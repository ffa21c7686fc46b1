#include "coordinator/store_recover.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/store.h"
#include "coordinator/store_rows.h"

namespace impq::coordinator {
namespace {

using store_rows::Stmt;

// The page size the store is created with (SQLite's default here; store.cc never changes it):
// used when the header that says so is unreadable.
constexpr uint32_t kStorePageSize = 4096;
constexpr char kMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f',
                             'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};

uint32_t Be32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void PutBe32(unsigned char* p, uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

// A database header (https://sqlite.org/fileformat2.html#the_database_header) for a WAL-mode
// UTF-8 database of `pages` pages of `page_size` bytes, no free list.
std::array<unsigned char, 100> RebuiltHeader(uint32_t page_size, uint32_t pages) {
  std::array<unsigned char, 100> h{};
  std::memcpy(h.data(), kMagic, 16);
  h[16] = static_cast<unsigned char>(page_size >> 8);
  h[17] = static_cast<unsigned char>(page_size & 0xff);
  h[18] = 2;   // write version: WAL
  h[19] = 2;   // read version: WAL
  h[20] = 0;   // reserved bytes per page
  h[21] = 64;  // max embedded payload fraction
  h[22] = 32;  // min embedded payload fraction
  h[23] = 32;  // leaf payload fraction
  PutBe32(&h[24], 1);      // file change counter
  PutBe32(&h[28], pages);  // database size in pages
  PutBe32(&h[40], 1);      // schema cookie
  PutBe32(&h[44], 4);      // schema format
  PutBe32(&h[56], 1);      // text encoding: UTF-8
  PutBe32(&h[92], 1);      // version-valid-for = change counter: the size above is trusted
  PutBe32(&h[96], static_cast<uint32_t>(sqlite3_libversion_number()));
  return h;
}

// Makes the copy at `path` readable by SQLite as far as its header goes (file comment).
absl::Status RepairHeader(const std::string& path, StoreRecoveryReport& report) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, "cannot open the copy", path);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat sb;
  if (::fstat(fd, &sb) != 0) return ErrnoToStatus(errno, "stat", path);
  std::array<unsigned char, 100> h{};
  if (sb.st_size < static_cast<off_t>(kStorePageSize) ||
      ::pread(fd, h.data(), h.size(), 0) != static_cast<ssize_t>(h.size())) {
    return absl::DataLossError(absl::StrCat("store ", path, ": ", sb.st_size,
                                            " bytes, less than one page: nothing to salvage"));
  }
  uint32_t page_size = (uint32_t{h[16]} << 8) | h[17];
  if (page_size == 1) page_size = 65536;
  const bool valid = std::memcmp(h.data(), kMagic, 16) == 0 && page_size >= 512 &&
                     page_size <= 65536 && (page_size & (page_size - 1)) == 0;
  if (!valid) {
    page_size = kStorePageSize;
    h = RebuiltHeader(page_size, static_cast<uint32_t>(sb.st_size / page_size));
    if (::pwrite(fd, h.data(), h.size(), 0) != static_cast<ssize_t>(h.size())) {
      return ErrnoToStatus(errno, "cannot rewrite the header of the copy", path);
    }
    report.header_rebuilt = true;
  }
  // A file cut short: pad it (sparsely) back to the size its header declares, so the root
  // pages SQLite checks the schema against exist; the lost pages read as damage.
  const int64_t declared = int64_t{Be32(&h[28])} * page_size;
  if (declared > sb.st_size && declared <= 64 * static_cast<int64_t>(sb.st_size)) {
    if (::ftruncate(fd, declared) != 0) return ErrnoToStatus(errno, "cannot pad the copy", path);
    report.padded = true;
  }
  return absl::OkStatus();
}

// Calls `row` for every row of `table` (columns `columns`, then rowid) that SQLite can reach,
// in rowid order from 1 (the store's rowids are SQLite's, all positive). A scan that fails
// restarts at last+1+2^k for k = 0, 1, ... until one reads a row (or finds none, or k = 40).
void ScanTable(sqlite3* db, const std::string& table, const std::string& columns, int ncols,
               const std::function<void(sqlite3_stmt*)>& row, StoreRecoveryReport& report) {
  const std::string sql = absl::StrCat("SELECT ", columns, ", rowid FROM ", table,
                                       " WHERE rowid >= ?1 ORDER BY rowid");
  int64_t next = 1;
  while (true) {
    Stmt st;
    int rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return;
    sqlite3_bind_int64(st.s, 1, next);
    int64_t last = next - 1;
    while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
      const int64_t rowid = sqlite3_column_int64(st.s, ncols);
      if (rowid <= last) {
        rc = SQLITE_CORRUPT;  // out of order: a damaged page
        break;
      }
      last = rowid;
      row(st.s);
    }
    if (rc == SQLITE_DONE) return;
    ++report.damaged_regions;
    bool resumed = false;
    for (int k = 0; k <= 40 && !resumed; ++k) {
      const int64_t probe = last + 1 + (int64_t{1} << k);
      Stmt p;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &p.s, nullptr) != SQLITE_OK) return;
      sqlite3_bind_int64(p.s, 1, probe);
      const int r = sqlite3_step(p.s);
      if (r == SQLITE_DONE) return;  // nothing at or beyond the probe
      if (r == SQLITE_ROW) {
        next = probe;
        resumed = true;
      }
    }
    if (!resumed) return;
  }
}

absl::Status SqliteError(sqlite3* db, const std::string& path, const std::string& what) {
  return absl::DataLossError(absl::StrCat("store ", path, ": ", what, ": ", sqlite3_errmsg(db)));
}

void RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
    ::unlink(absl::StrCat(path, suffix).c_str());
  }
}

}  // namespace

absl::StatusOr<StoreRecoveryReport> RecoverStore(const std::string& path) {
  struct stat sb;
  if (::stat(path.c_str(), &sb) != 0) return ErrnoToStatus(errno, "cannot recover", path);
  if (!S_ISREG(sb.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("store ", path, ": not a regular file"));
  }
  StoreRecoveryReport report;
  // 1. A private copy (and the WAL: its frames are the latest commits).
  const std::string copy = path + ".recovering";
  const std::string out = path + ".recovered";
  RemoveDatabaseFiles(copy);
  RemoveDatabaseFiles(out);
  std::error_code ec;
  std::filesystem::copy_file(path, copy, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat(path, ": cannot copy: ", ec.message()));
  if (std::filesystem::exists(path + "-wal")) {
    std::filesystem::copy_file(path + "-wal", copy + "-wal",
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(absl::StrCat(path, "-wal: cannot copy: ", ec.message()));
  }
  struct Cleanup {
    std::string copy;
    ~Cleanup() { RemoveDatabaseFiles(copy); }
  } cleanup{copy};
  RETURN_IF_ERROR(RepairHeader(copy, report));

  // 2. The copy must at least show its tables.
  sqlite3* src = nullptr;
  if (sqlite3_open_v2(copy.c_str(), &src, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    const absl::Status s = SqliteError(src, path, "cannot open even a repaired copy");
    sqlite3_close_v2(src);
    return s;
  }
  struct CloseDb {
    sqlite3* db;
    ~CloseDb() { sqlite3_close_v2(db); }
  } close_src{src};
  // A store written before a column existed reads with its default (our copy only).
  (void)store_rows::Migrate(src);
  for (const char* table : {"jobs", "results"}) {
    Stmt st;
    if (sqlite3_prepare_v2(src, absl::StrCat("SELECT 1 FROM ", table, " LIMIT 0").c_str(), -1,
                           &st.s, nullptr) != SQLITE_OK) {
      return SqliteError(src, path,
                         absl::StrCat("the table layout (", table,
                                      ") is unreadable; nothing was changed"));
    }
  }

  // 3. A fresh store receives every row that decodes; the rest goes to its quarantine.
  {
    ASSIGN_OR_RETURN(std::unique_ptr<Store> fresh, Store::OpenDatabase(out));
  }
  sqlite3* dst = nullptr;
  if (sqlite3_open_v2(out.c_str(), &dst, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    const absl::Status s = SqliteError(dst, out, "cannot open");
    sqlite3_close_v2(dst);
    return s;
  }
  CloseDb close_dst{dst};
  sqlite3_exec(dst, "BEGIN", nullptr, nullptr, nullptr);
  // The old store's identity and incarnation, when its meta table is still readable.
  {
    Stmt get, put;
    sqlite3_prepare_v2(src, "SELECT key, value FROM meta", -1, &get.s, nullptr);
    sqlite3_prepare_v2(dst, "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)", -1,
                       &put.s, nullptr);
    while (get.s != nullptr && sqlite3_step(get.s) == SQLITE_ROW) {
      sqlite3_bind_value(put.s, 1, sqlite3_column_value(get.s, 0));
      sqlite3_bind_value(put.s, 2, sqlite3_column_value(get.s, 1));
      sqlite3_step(put.s);
      sqlite3_reset(put.s);
    }
  }
  // The removed jobs' request_ids (best effort, as meta: a store older than the table has
  // none, and Load skips rows of another shape).
  {
    Stmt get, put;
    sqlite3_prepare_v2(src, "SELECT request_id, job_id, removed_ms FROM removed_requests", -1,
                       &get.s, nullptr);
    sqlite3_prepare_v2(dst,
                       "INSERT OR REPLACE INTO removed_requests(request_id, job_id, removed_ms) "
                       "VALUES(?1, ?2, ?3)",
                       -1, &put.s, nullptr);
    while (get.s != nullptr && put.s != nullptr && sqlite3_step(get.s) == SQLITE_ROW) {
      for (int i = 0; i < 3; ++i) sqlite3_bind_value(put.s, i + 1, sqlite3_column_value(get.s, i));
      sqlite3_step(put.s);
      sqlite3_reset(put.s);
      sqlite3_clear_bindings(put.s);
    }
  }
  absl::Status write_error;
  auto copy_rows = [&](const char* table, const char* columns, int ncols, bool is_job) {
    const std::string placeholders = [&] {
      std::string p;
      for (int i = 1; i <= ncols; ++i) absl::StrAppend(&p, i > 1 ? ", " : "", "?", i);
      return p;
    }();
    Stmt keep, quarantine;
    sqlite3_prepare_v2(dst,
                       absl::StrCat("INSERT OR ", is_job ? "REPLACE" : "IGNORE", " INTO ", table,
                                    "(", columns, ") VALUES(", placeholders, ")")
                           .c_str(),
                       -1, &keep.s, nullptr);
    sqlite3_prepare_v2(dst,
                       absl::StrCat("INSERT INTO quarantine_", table, "(", columns,
                                    ", reason, quarantined_ms) VALUES(", placeholders, ", ?",
                                    ncols + 1, ", ?", ncols + 2, ")")
                           .c_str(),
                       -1, &quarantine.s, nullptr);
    ScanTable(src, table, columns, ncols, [&](sqlite3_stmt* row) {
      absl::Status decoded;
      if (is_job) {
        StoredJob j;
        bool dropped = false;
        decoded = store_rows::DecodeJob(row, j, &dropped);
      } else {
        StoredResult r;
        decoded = store_rows::DecodeResult(row, r);
      }
      sqlite3_stmt* target = decoded.ok() ? keep.s : quarantine.s;
      for (int i = 0; i < ncols; ++i) sqlite3_bind_value(target, i + 1, sqlite3_column_value(row, i));
      if (!decoded.ok()) {
        const std::string reason = absl::StrCat("recovered: ", decoded.message());
        sqlite3_bind_text(target, ncols + 1, reason.c_str(), -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(target, ncols + 2, static_cast<int64_t>(std::time(nullptr)) * 1000);
      }
      if (sqlite3_step(target) != SQLITE_DONE && write_error.ok()) {
        write_error = SqliteError(dst, out, absl::StrCat("write ", table));
      }
      sqlite3_reset(target);
      sqlite3_clear_bindings(target);
      ++(decoded.ok() ? (is_job ? report.jobs : report.results) : report.quarantined);
    }, report);
  };
  copy_rows("jobs", store_rows::kJobColumns, store_rows::kJobColumnCount, true);
  copy_rows("results", store_rows::kResultColumns, store_rows::kResultColumnCount, false);
  if (write_error.ok() && sqlite3_exec(dst, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    write_error = SqliteError(dst, out, "commit");
  }
  RETURN_IF_ERROR(write_error);
  sqlite3_exec(dst, "PRAGMA wal_checkpoint(TRUNCATE)", nullptr, nullptr, nullptr);
  sqlite3_close_v2(close_dst.db);
  close_dst.db = nullptr;

  // 4. The damaged file steps aside, the salvaged store takes its place (same id: Open()
  //    rewrites the marker only if the old meta table was lost).
  report.damaged_copy = absl::StrCat(path, ".damaged-", std::time(nullptr));
  for (int n = 2; std::filesystem::exists(report.damaged_copy); ++n) {
    report.damaged_copy = absl::StrCat(path, ".damaged-", std::time(nullptr), "-", n);
  }
  if (::rename(path.c_str(), report.damaged_copy.c_str()) != 0) {
    return ErrnoToStatus(errno, "cannot move the damaged store aside", path);
  }
  ::rename((path + "-wal").c_str(), (report.damaged_copy + "-wal").c_str());
  ::unlink((path + "-shm").c_str());
  if (::rename(out.c_str(), path.c_str()) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("cannot move ", out, " into place"), path);
  }
  ::unlink((out + "-wal").c_str());
  ::unlink((out + "-shm").c_str());
  // Opening it once checks it and points the marker at it (its id is the old one unless the
  // old meta table was lost).
  {
    StoreOpenOptions reopen;
    reopen.allow_new = true;
    ASSIGN_OR_RETURN(std::unique_ptr<Store> check, Store::Open(path, reopen));
  }
  IMPQ_LOG(INFO) << "store " << path << ": recovered " << report.jobs << " jobs, "
                 << report.results << " unit results (" << report.quarantined
                 << " quarantined, " << report.damaged_regions << " damaged regions skipped); "
                 << "the damaged file is " << report.damaged_copy;
  return report;
}

}  // namespace impq::coordinator
