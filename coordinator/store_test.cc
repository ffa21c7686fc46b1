#include "coordinator/store.h"

#include <sqlite3.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/test_paths.h"
#include "coordinator/store_recover.h"
#include "coordinator/test_sqlite.h"
#include "gtest/gtest.h"

namespace impq::coordinator {
namespace {

StoredJob Job(const std::string& id, int64_t seq) {
  StoredJob j;
  j.id = id;
  j.seq = seq;
  j.spec.set_model_path("/m.bin");
  j.spec.set_permutations(4);
  j.submitted_ms = 1000 + seq;
  return j;
}

void RemoveDb(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", ".id"}) std::remove((path + suffix).c_str());
}

void RawExec(const std::string& path, const std::string& sql) {
  EXPECT_EQ(StoreExec(path, sql), "") << sql;
}

int64_t CountRows(const std::string& path, const std::string& table) {
  return StoreRows(path, "SELECT count(*) FROM " + table);
}

// A store of `jobs` jobs, each with `results` unit results, checkpointed into the main file
// (no WAL left), closed.
void WriteStore(const std::string& path, int jobs, int results) {
  RemoveDb(path);
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  v1::WorkResult r;
  for (int i = 0; i < 16; ++i) r.add_losses(i + 0.25);
  for (int i = 1; i <= jobs; ++i) {
    const std::string id = "job-" + std::to_string(i);
    ASSERT_TRUE((*s)->PutJob(Job(id, i)).ok());
    std::vector<ResultRecord> recs;
    for (int u = 0; u < results; ++u) recs.push_back({id, u, r.SerializeAsString()});
    ASSERT_TRUE((*s)->PutResults(recs).ok());
  }
  s->reset();
  RawExec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
}

TEST(StoreTest, RoundTripsAcrossReopen) {
  const std::string path = TempFilePath("store_rt.db");
  RemoveDb(path);
  {
    auto s = Store::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ((*s)->incarnation(), 1);
    ASSERT_TRUE((*s)->PutJob(Job("job-000001", 1)).ok());
    StoredJob j2 = Job("job-000002", 2);
    j2.state = v1::JOB_STATE_DONE;
    j2.has_result = true;
    j2.result.add_phi(0.5);
    ASSERT_TRUE((*s)->PutJob(j2).ok());
    v1::WorkResult r;
    r.add_losses(1.5);
    ASSERT_TRUE((*s)->PutResult("job-000001", 3, r).ok());
    r.set_losses(0, 9.0);
    ASSERT_TRUE((*s)->PutResult("job-000001", 3, r).ok());  // first wins
  }
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ((*s)->incarnation(), 2);
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->jobs.size(), 2u);
  EXPECT_EQ(c->jobs[0].id, "job-000001");
  EXPECT_EQ(c->jobs[0].spec.permutations(), 4);
  EXPECT_TRUE(c->jobs[1].has_result);
  EXPECT_EQ(c->jobs[1].result.phi(0), 0.5);
  ASSERT_EQ(c->results.size(), 1u);
  EXPECT_EQ(c->results[0].unit_index, 3);
  EXPECT_EQ(c->results[0].result.losses(0), 1.5);
}

TEST(StoreTest, TornFileIsDataLossNamingTheFile) {
  const std::string path = TempFilePath("store_torn.db");
  RemoveDb(path);
  {
    auto s = Store::Open(path);
    ASSERT_TRUE(s.ok());
    for (int i = 1; i <= 50; ++i) ASSERT_TRUE((*s)->PutJob(Job("job-" + std::to_string(i), i)).ok());
  }
  // Overwrite the header as a torn write would.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(0);
    const std::string junk(100, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto s = Store::Open(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
  EXPECT_NE(s.status().message().find(path), std::string::npos);
}

TEST(StoreTest, TruncatedResultRecordIsQuarantinedAndCounted) {
  const std::string path = TempFilePath("store_trunc.db");
  RemoveDb(path);
  v1::WorkResult r;
  r.set_job_id("job-000001");
  for (int i = 0; i < 20; ++i) r.add_losses(i + 0.5);
  r.set_worker_id("w");
  {
    auto s = Store::Open(path);
    ASSERT_TRUE((*s)->PutJob(Job("job-000001", 1)).ok());
    ASSERT_TRUE((*s)->PutResult("job-000001", 0, r).ok());
    ASSERT_TRUE((*s)->PutResult("job-000001", 1, r).ok());
  }
  {
    // A record cut mid-write: the payload stops inside the packed losses field.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    const std::string bytes = r.SerializeAsString().substr(0, 40);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "UPDATE results SET result = ?1 WHERE unit_index = 1", -1, &st, nullptr);
    sqlite3_bind_blob(st, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
    ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->quarantined_results, 1);
  ASSERT_EQ(c->results.size(), 1u);
  EXPECT_EQ(c->results[0].unit_index, 0);
  s->reset();
  EXPECT_EQ(CountRows(path, "quarantine_results"), 1);
  EXPECT_EQ(CountRows(path, "results"), 1);
}

// A store written before jobs.evaluations existed opens (the column is added) and keeps its
// jobs; the count is stored from then on.
TEST(StoreTest, StoreOfAnEarlierSchemaIsMigrated) {
  const std::string path = TempFilePath("store_v0.db");
  RemoveDb(path);
  v1::JobSpec spec;
  spec.set_permutations(3);
  const std::string hex = [&] {
    std::string out;
    for (unsigned char c : spec.SerializeAsString()) out += "0123456789abcdef"[c >> 4], out += "0123456789abcdef"[c & 15];
    return out;
  }();
  RawExec(path,
          "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
          "CREATE TABLE jobs (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, spec BLOB NOT "
          "NULL, state INTEGER NOT NULL, submitted_ms INTEGER NOT NULL, started_ms INTEGER NOT "
          "NULL, finished_ms INTEGER NOT NULL, error TEXT NOT NULL, result BLOB);"
          "INSERT INTO jobs VALUES('job-000001', 1, x'" + hex + "', 5, 1, 2, 3, '', NULL);");
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->jobs.size(), 1u);
  EXPECT_EQ(c->jobs[0].spec.permutations(), 3);
  EXPECT_EQ(c->jobs[0].evaluations, 0);
  StoredJob j = c->jobs[0];
  j.evaluations = 1234;
  ASSERT_TRUE((*s)->PutJob(j).ok());
  s->reset();
  auto again = Store::Open(path);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->Load()->jobs[0].evaluations, 1234);
}

TEST(StoreTest, FirstStartCreatesTheStoreAndItsMarker) {
  const std::string path = TempFilePath("store_first.db");
  RemoveDb(path);
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  std::ifstream marker(path + ".id");
  std::string word, id;
  marker >> word >> id;
  EXPECT_EQ(word, "impq-store");
  EXPECT_EQ(id, std::to_string((*s)->store_id()));
}

// The store deleted, or truncated to nothing, between two starts: its jobs are not silently
// replaced by an empty store.
TEST(StoreTest, LostStoreIsRefusedUnlessNewStoreIsAsked) {
  const std::string path = TempFilePath("store_lost.db");
  for (bool truncate : {false, true}) {
    WriteStore(path, 3, 0);
    if (truncate) {
      std::ofstream(path, std::ios::trunc).flush();
    } else {
      std::remove(path.c_str());
    }
    auto s = Store::Open(path);
    ASSERT_FALSE(s.ok()) << (truncate ? "truncated" : "deleted");
    EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
    EXPECT_NE(s.status().message().find(truncate ? "is empty" : "is missing"), std::string::npos)
        << s.status();
    EXPECT_NE(s.status().message().find("--new_store"), std::string::npos);
    EXPECT_NE(s.status().message().find("--recover"), std::string::npos);
    // Deliberately empty: allowed, and the marker now names the new store.
    auto fresh = Store::Open(path, {.allow_new = true});
    ASSERT_TRUE(fresh.ok()) << fresh.status();
    EXPECT_TRUE((*fresh)->Load()->jobs.empty());
    const int64_t id = (*fresh)->store_id();
    fresh->reset();
    auto again = Store::Open(path);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->store_id(), id);
  }
}

TEST(StoreTest, AnotherStoresFileInItsPlaceIsRefused) {
  const std::string a = TempFilePath("store_a.db"), b = TempFilePath("store_b.db");
  WriteStore(a, 1, 0);
  WriteStore(b, 2, 0);
  ASSERT_EQ(std::rename(b.c_str(), a.c_str()), 0);  // b's file where a's marker is
  auto s = Store::Open(a);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition) << s.status();
  EXPECT_NE(s.status().message().find(a + ".id"), std::string::npos) << s.status();
}

// Unlinked (or replaced) under a running coordinator: nothing more is acknowledged.
TEST(StoreTest, StoreRemovedWhileOpenRefusesEveryLaterWrite) {
  const std::string path = TempFilePath("store_unlinked.db");
  RemoveDb(path);
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->PutJob(Job("job-1", 1)).ok());
  ASSERT_EQ(std::remove(path.c_str()), 0);
  const absl::Status put = (*s)->PutJob(Job("job-2", 2));
  EXPECT_EQ(put.code(), absl::StatusCode::kDataLoss) << put;
  EXPECT_NE(put.message().find("removed or replaced"), std::string::npos) << put;
  v1::WorkResult r;
  r.add_losses(1);
  EXPECT_EQ((*s)->PutResult("job-1", 0, r).code(), absl::StatusCode::kDataLoss);
  const ResultRecord rec{"job-1", 1, r.SerializeAsString()};
  EXPECT_EQ((*s)->PutResults({&rec, 1}).code(), absl::StatusCode::kDataLoss);
}

// Any content in a job row: a NULL id, a spec that does not parse, an unknown state, a NULL
// seq. Each is quarantined (kept, byte for byte, with its reason), never a crash; the good
// job loads.
TEST(StoreTest, UndecodableJobRowsAreQuarantinedNotFatal) {
  const std::string path = TempFilePath("store_badrows.db");
  WriteStore(path, 1, 2);
  RawExec(path,
          "PRAGMA ignore_check_constraints=ON;"
          "CREATE TABLE tmp AS SELECT * FROM jobs;"
          "DROP TABLE jobs;"
          "CREATE TABLE jobs (id TEXT, seq INTEGER, spec BLOB, state INTEGER, submitted_ms "
          "INTEGER, started_ms INTEGER, finished_ms INTEGER, error TEXT, result BLOB, evaluations "
          "INTEGER);"
          "INSERT INTO jobs SELECT * FROM tmp; DROP TABLE tmp;"
          "INSERT INTO jobs VALUES(NULL, 7, x'', 1, 0, 0, 0, '', NULL, 0);"
          "INSERT INTO jobs VALUES('job-bad-spec', 8, x'ffffffff', 1, 0, 0, 0, '', NULL, 0);"
          "INSERT INTO jobs VALUES('job-bad-state', 9, x'', 77, 0, 0, 0, '', NULL, 0);"
          "INSERT INTO jobs VALUES('job-null-seq', NULL, x'', 1, 0, 0, 0, NULL, NULL, 0);");
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->jobs.size(), 1u);
  EXPECT_EQ(c->jobs[0].id, "job-1");
  EXPECT_EQ(c->results.size(), 2u);
  EXPECT_EQ(c->quarantined_jobs, 4);
  s->reset();
  EXPECT_EQ(CountRows(path, "quarantine_jobs"), 4);
  auto again = Store::Open(path);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->Load()->quarantined_jobs, 0);  // moved once, not reported again
}

// Bytes of the first page overwritten (a torn write of the header): Open refuses naming the
// way out; --recover rebuilds the header and salvages every job and result.
TEST(StoreTest, RecoverSalvagesATornHeader) {
  const std::string path = TempFilePath("store_rec_header.db");
  WriteStore(path, 40, 3);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const std::string junk(100, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  auto refused = Store::Open(path);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.status().message().find("--recover"), std::string::npos) << refused.status();
  absl::StatusOr<StoreRecoveryReport> r = RecoverStore(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->header_rebuilt);
  EXPECT_EQ(r->jobs, 40);
  EXPECT_EQ(r->results, 120);
  std::ifstream damaged(r->damaged_copy);
  EXPECT_TRUE(damaged.good()) << r->damaged_copy;
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok()) << s.status();
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->jobs.size(), 40u);
  EXPECT_EQ(c->results.size(), 120u);
  EXPECT_EQ(c->jobs[39].spec.permutations(), 4);
}

// Half the file gone, or a run of random bytes in the middle: what SQLite can still reach is
// salvaged, the rest is counted as damage, and the result is a store that opens and loads.
TEST(StoreTest, RecoverSalvagesTheReadablePartOfATruncatedOrScribbledFile) {
  const std::string path = TempFilePath("store_rec_body.db");
  for (bool truncate : {true, false}) {
    WriteStore(path, 600, 4);
    const auto size = std::filesystem::file_size(path);
    if (truncate) {
      std::filesystem::resize_file(path, size / 2);
    } else {
      std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(size / 3));
      std::string junk(8192, '\0');
      for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<char>((i * 131 + 7) % 251);
      f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
    }
    auto refused = Store::Open(path);
    ASSERT_FALSE(refused.ok()) << (truncate ? "truncated" : "scribbled");
    absl::StatusOr<StoreRecoveryReport> r = RecoverStore(path);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->jobs, 0);
    EXPECT_GT(r->results, 0);
    EXPECT_LT(r->jobs + r->results, 600 + 600 * 4);
    EXPECT_GT(r->damaged_regions, 0);
    auto s = Store::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    auto c = (*s)->Load();
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(static_cast<int64_t>(c->jobs.size()), r->jobs);
    for (const StoredJob& j : c->jobs) EXPECT_EQ(j.spec.model_path(), "/m.bin");
  }
}

TEST(StoreTest, RecoverOfAFileWithNothingReadableChangesNothing) {
  const std::string path = TempFilePath("store_rec_junk.db");
  RemoveDb(path);
  {
    std::ofstream f(path, std::ios::binary);
    const std::string junk(3 * 4096, '\x33');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  absl::StatusOr<StoreRecoveryReport> r = RecoverStore(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  EXPECT_EQ(std::filesystem::file_size(path), 3u * 4096);
  EXPECT_FALSE(std::filesystem::exists(path + ".recovered"));
}

TEST(StoreTest, DeleteJobsRemovesRowsAndResultsAndRemembersTheHighestSeq) {
  const std::string path = TempFilePath("store_delete.db");
  RemoveDb(path);
  v1::WorkResult r;
  r.add_losses(1.0);
  {
    auto s = Store::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    for (int i = 1; i <= 3; ++i) {
      const std::string id = "job-00000" + std::to_string(i);
      ASSERT_TRUE((*s)->PutJob(Job(id, i)).ok());
      for (int u = 0; u < 4; ++u) ASSERT_TRUE((*s)->PutResult(id, u, r).ok());
    }
    const std::vector<std::string> results_of = {"job-000001"};
    ASSERT_TRUE((*s)->DeleteResults(results_of).ok());
    Store::RowCounts n = *(*s)->CountRows();
    EXPECT_EQ(n.jobs, 3);
    EXPECT_EQ(n.results, 8);
    // The newest job goes: its seq must never be handed out again.
    const std::vector<std::string> drop = {"job-000002", "job-000003"};
    ASSERT_TRUE((*s)->DeleteJobs(drop, 3, {}, 0).ok());
    n = *(*s)->CountRows();
    EXPECT_EQ(n.jobs, 1);
    EXPECT_EQ(n.results, 0);
    // A lower seq later does not lower the mark.
    const std::vector<std::string> none_left = {"job-000009"};
    ASSERT_TRUE((*s)->DeleteJobs(none_left, 2, {}, 0).ok());
  }
  auto s = Store::Open(path);
  ASSERT_TRUE(s.ok());
  auto c = (*s)->Load();
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->jobs.size(), 1u);
  EXPECT_EQ(c->jobs[0].id, "job-000001");
  EXPECT_TRUE(c->results.empty());
  EXPECT_EQ(c->max_deleted_seq, 3);
}

// Deleted rows give their pages back: the file shrinks (issue 20: a cancelled 100,000-
// permutation job kept 13.8 MiB).
TEST(StoreTest, DeletingAJobsResultsShrinksTheFile) {
  const std::string path = TempFilePath("store_shrink.db");
  WriteStore(path, 2, 2000);  // 2 jobs x 2,000 results of 16 losses
  const auto before = std::filesystem::file_size(path);
  {
    auto s = Store::Open(path);
    ASSERT_TRUE(s.ok()) << s.status();
    const std::vector<std::string> ids = {"job-1"};
    ASSERT_TRUE((*s)->DeleteResults(ids).ok());
  }
  RawExec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
  const auto after = std::filesystem::file_size(path);
  EXPECT_LT(static_cast<double>(after), 0.7 * static_cast<double>(before))
      << before << " -> " << after << " bytes";
}

}  // namespace
}  // namespace impq::coordinator
