// Tests' direct access to a store file, through a connection of their own (as an operator's
// sqlite3 shell, a hand edit or a damaged disk would reach it).
#ifndef IMPQ_COORDINATOR_TEST_SQLITE_H_
#define IMPQ_COORDINATOR_TEST_SQLITE_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace impq::coordinator {

// Runs `sql` (several statements allowed) on the database at `path`. "" or SQLite's error.
inline std::string StoreExec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string error;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) {
    error = sqlite3_errmsg(db);
  } else {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      error = err != nullptr ? err : "error";
    }
    sqlite3_free(err);
  }
  sqlite3_close(db);
  return error;
}

// The first column of the first row of `sql` (a count), read-only; -1 when it fails.
inline int64_t StoreRows(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_TEST_SQLITE_H_
