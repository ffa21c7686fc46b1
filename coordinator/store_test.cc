#include "coordinator/store.h"

#include <sqlite3.h>

#include <cstdio>
#include <fstream>

#include "common/test_paths.h"
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
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
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

TEST(StoreTest, TruncatedResultRecordIsSkippedAndCounted) {
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
  EXPECT_EQ(c->discarded_results, 1);
  ASSERT_EQ(c->results.size(), 1u);
  EXPECT_EQ(c->results[0].unit_index, 0);
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
    ASSERT_TRUE((*s)->DeleteJobs(drop, 3).ok());
    n = *(*s)->CountRows();
    EXPECT_EQ(n.jobs, 1);
    EXPECT_EQ(n.results, 0);
    // A lower seq later does not lower the mark.
    const std::vector<std::string> none_left = {"job-000009"};
    ASSERT_TRUE((*s)->DeleteJobs(none_left, 2).ok());
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

}  // namespace
}  // namespace impq::coordinator
