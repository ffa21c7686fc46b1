// Issue 20's reproduced attacks and accidents, each against real impq-coordinator and
// impq-worker processes on 127.0.0.1, each ending in a clear error or the right behaviour:
//  - poison files (NaN weights, a header claiming 2^24 layers) fail their jobs with the
//    worker's error while a good job submitted behind them finishes, both workers alive;
//  - the worker API: a lease hijacked by another worker id, an invented answer, oversized and
//    countless worker ids, a forged PREPARE claiming 4,000 players;
//  - a retried submission (same request id) is one job;
//  - the store deleted, emptied, scribbled on, unlinked under a running coordinator, or
//    holding an undecodable row: a refusal that names the way out (--new_store, --recover),
//    a salvage that keeps the jobs, a quarantine; never a silent empty store or a crash.
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "coordinator/test_sqlite.h"
#include "job/facts_proto.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"

namespace impq::service_test {
namespace {

std::string ReadLog(const std::string& path) {
  absl::StatusOr<std::string> s = ReadFileToString(path);
  return s.ok() ? *s : std::string();
}

// Waits for the process to exit (up to ~10 s); its exit code, or -1 if it is still running.
int ExitCode(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    usleep(50 * 1000);
  }
  return -1;
}

int ListedJobs(v1::ImpqService::Stub& stub) {
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::ListJobsResponse resp;
  const grpc::Status st = stub.ListJobs(&ctx, v1::ListJobsRequest(), &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return resp.jobs_size();
}

v1::JobSpec SmallJob(const std::string& name) { return SharedModelSpec(name, 4, 4, 64, 4, 5); }

// stories260K.bin (llama2.c: a 7-int32 header, then float32 weights) with `edit` applied.
std::string WriteEditedModel(const std::string& dir, const std::string& name,
                             const std::function<void(std::string&)>& edit) {
  absl::StatusOr<std::string> bytes = ReadFileToString(SharedDataPath("stories260K.bin"));
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  std::string b = bytes.ok() ? *bytes : std::string();
  edit(b);
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << b;
  return path;
}

TEST(ServiceAttackTest, PoisonFilesFailTheirJobsAndTheGoodJobBehindThemFinishes) {
  const std::string dir = FreshDir("attack_poison");
  const std::string nan = WriteEditedModel(dir, "nan.bin", [](std::string& b) {
    const float x = std::numeric_limits<float>::quiet_NaN();
    std::memcpy(b.data() + 28 + 4 * 1000, &x, 4);  // inside token_embedding_table
  });
  const std::string bomb = WriteEditedModel(dir, "bomb.bin", [](std::string& b) {
    const int32_t layers = 1 << 24;
    std::memcpy(b.data() + 8, &layers, 4);  // header n_layers
  });
  CoordinatorProcess c = StartCoordinator(
      dir, "127.0.0.1:0", {"--data_root", SharedDataPath("") + "," + dir, "--lease_seconds", "5"});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  v1::JobSpec poison_nan = SmallJob("nan");
  poison_nan.set_model_path(nan);
  poison_nan.set_permutations(1000);
  v1::JobSpec poison_bomb = SmallJob("bomb");
  poison_bomb.set_model_path(bomb);
  poison_bomb.set_permutations(1000);
  const std::string a = Submit(*stub, poison_nan);
  const std::string b = Submit(*stub, poison_bomb);
  const std::string good = Submit(*stub, SmallJob("good"));
  ASSERT_FALSE(a.empty() || b.empty() || good.empty());
  // The workers confine paths to the same roots as the coordinator.
  const std::vector<std::string> roots = {"--data_root", SharedDataPath("") + "," + dir};
  const pid_t w1 = StartWorker(dir, c.target(), "w1", roots);
  const pid_t w2 = StartWorker(dir, c.target(), "w2", roots);
  const v1::GetJobResponse ra = WaitTerminal(*stub, a, 300);
  const v1::GetJobResponse rb = WaitTerminal(*stub, b, 300);
  const v1::GetJobResponse rg = WaitTerminal(*stub, good, 300);
  EXPECT_EQ(ra.status().state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(ra.status().error().find("token_embedding_table"), std::string::npos) << ra.status().error();
  EXPECT_NE(ra.status().error().find("attempts"), std::string::npos) << ra.status().error();
  EXPECT_EQ(rb.status().state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(rb.status().error().find("n_layers"), std::string::npos) << rb.status().error();
  EXPECT_EQ(rg.status().state(), v1::JOB_STATE_DONE) << rg.status().error();
  EXPECT_TRUE(Alive(w1)) << "see " << dir << "/w1.log";
  EXPECT_TRUE(Alive(w2)) << "see " << dir << "/w2.log";
  Stop(w1, SIGTERM);
  Stop(w2, SIGTERM);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(ServiceAttackTest, WorkerApiRefusesHijackedLeasesInventedAnswersAndIdFloods) {
  const std::string dir = FreshDir("attack_worker_api");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto channel = grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  auto acquire = [&](const std::string& id, v1::AcquireLeaseResponse* resp) {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::AcquireLeaseRequest req;
    req.set_worker_id(id);
    req.set_capacity(1);
    return workers->AcquireLease(&ctx, req, resp);
  };
  const std::string job = Submit(*stub, SmallJob("victim"));
  ASSERT_FALSE(job.empty());
  v1::AcquireLeaseResponse lease;
  for (int i = 0; i < 200 && !lease.has_lease(); ++i) {
    ASSERT_TRUE(acquire("honest", &lease).ok());
    if (!lease.has_lease()) usleep(20 * 1000);
  }
  ASSERT_TRUE(lease.has_lease());
  EXPECT_GE(lease.lease().lease_id().size(), 32u);  // 128 random bits
  {  // Another worker keeping the lease alive.
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::HeartbeatRequest req;
    req.set_lease_id(lease.lease().lease_id());
    req.set_worker_id("thief");
    v1::HeartbeatResponse resp;
    EXPECT_EQ(workers->Heartbeat(&ctx, req, &resp).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  auto report = [&](const v1::WorkResult& r) {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::ReportResultRequest req;
    req.set_lease_id(lease.lease().lease_id());
    *req.mutable_result() = r;
    v1::ReportResultResponse resp;
    return workers->ReportResult(&ctx, req, &resp);
  };
  v1::WorkResult invented;
  invented.set_job_id(job);
  invented.set_unit_index(lease.lease().units(0).unit_index());
  invented.set_worker_id("thief");
  invented.mutable_facts()->add_player_names("p");
  invented.add_losses(42.0);
  EXPECT_EQ(report(invented).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  invented.set_worker_id("honest");  // the holder, answering nonsense
  const grpc::Status st = report(invented);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("result.facts"), std::string::npos) << st.error_message();
  // An oversized id is refused; thousands of distinct ids are remembered only up to a bound.
  v1::AcquireLeaseResponse ignored;
  EXPECT_EQ(acquire(std::string(100000, 'x'), &ignored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  for (int i = 0; i < 6000; ++i) {
    ASSERT_TRUE(acquire(absl::StrCat(std::string(200, 'w'), i), &ignored).ok());
  }
  const double connected =
      MetricValue(HttpGet(c.metrics_port, "/metrics"), "impq_coordinator_workers_connected");
  EXPECT_GT(connected, 100);
  EXPECT_LE(connected, 4096);
  // The job is not decided by the invented answer: real workers finish it.
  const pid_t w = StartWorker(dir, c.target(), "w1");
  const v1::GetJobResponse done = WaitTerminal(*stub, job, 300);
  EXPECT_EQ(done.status().state(), v1::JOB_STATE_DONE) << done.status().error();
  EXPECT_EQ(done.result().phi_size(), 5);
  Stop(w, SIGTERM);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

// A worker (with the worker token) answers the PREPARE unit claiming 4,000 players, with a
// self-consistent digest: the honest workers then refuse the coalitions of 4,000 entries (or
// disagree with the digest), each refusal counts as a failure of its unit, and the job ends
// FAILED saying so — not DONE on invented facts, not stuck on units too large to lease (a
// batch is cut so that every lease fits in one gRPC message).
TEST(ServiceAttackTest, ForgedPrepareClaimingThousandsOfPlayersFailsTheJob) {
  const std::string dir = FreshDir("attack_forged_prepare");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto channel = grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);
  auto workers = v1::WorkerService::NewStub(channel);
  const std::string job = Submit(*stub, SmallJob("victim"));
  ASSERT_FALSE(job.empty());
  v1::AcquireLeaseResponse lease;
  for (int i = 0; i < 200 && !lease.has_lease(); ++i) {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::AcquireLeaseRequest req;
    req.set_worker_id("liar");
    req.set_capacity(1);
    ASSERT_TRUE(workers->AcquireLease(&ctx, req, &lease).ok());
    if (!lease.has_lease()) usleep(20 * 1000);
  }
  ASSERT_TRUE(lease.has_lease());
  ASSERT_EQ(lease.lease().units(0).kind(), v1::UNIT_KIND_PREPARE);
  coordinator::SyntheticGame fake(4000, {2, 4});
  absl::StatusOr<job::GameFacts> facts = fake.Prepare();
  ASSERT_TRUE(facts.ok());
  v1::WorkResult forged;
  forged.set_job_id(job);
  forged.set_unit_index(lease.lease().units(0).unit_index());
  forged.set_worker_id("liar");
  *forged.mutable_facts() = job::FactsToProto(*facts);
  forged.set_facts_digest(job::FactsDigest(*facts));
  {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::ReportResultRequest req;
    req.set_lease_id(lease.lease().lease_id());
    *req.mutable_result() = forged;
    v1::ReportResultResponse resp;
    ASSERT_TRUE(workers->ReportResult(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.outcome(), v1::REPORT_OUTCOME_ACCEPTED);
  }
  const pid_t w = StartWorker(dir, c.target(), "w1");
  const v1::GetJobResponse end = WaitTerminal(*stub, job, 300);
  EXPECT_EQ(end.status().state(), v1::JOB_STATE_FAILED);
  // The honest worker's refusal (its game has 5 players), or the digest disagreement.
  EXPECT_NE(end.status().error().find("4000"), std::string::npos) << end.status().error();
  EXPECT_NE(end.status().error().find("3 attempts"), std::string::npos) << end.status().error();
  EXPECT_TRUE(Alive(w));
  Stop(w, SIGTERM);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

// The metrics endpoint with --metrics_auth_file: no credentials or wrong ones get 401, the
// right ones the page; a malformed auth file refuses the start.
TEST(ServiceAttackTest, MetricsEndpointRequiresBasicAuthWhenConfigured) {
  const std::string dir = FreshDir("attack_metrics_auth");
  std::ofstream(dir + "/metrics_auth") << "prometheus:m3trics-pw\n";
  CoordinatorProcess c =
      StartCoordinator(dir, "127.0.0.1:0", {"--metrics_auth_file", dir + "/metrics_auth"});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  ASSERT_GT(c.metrics_port, 0);
  auto basic = [](const std::string& user_password) {
    return "Authorization: Basic " + absl::Base64Escape(user_password) + "\r\n";
  };
  const std::string none = HttpGet(c.metrics_port, "/metrics");
  EXPECT_NE(none.find(" 401 "), std::string::npos) << none.substr(0, 200);
  EXPECT_EQ(none.find("impq_coordinator_"), std::string::npos);
  const std::string wrong = HttpGet(c.metrics_port, "/metrics", basic("prometheus:guess"));
  EXPECT_NE(wrong.find(" 401 "), std::string::npos) << wrong.substr(0, 200);
  const std::string right = HttpGet(c.metrics_port, "/metrics", basic("prometheus:m3trics-pw"));
  EXPECT_NE(right.find(" 200 "), std::string::npos) << right.substr(0, 200);
  EXPECT_NE(right.find("impq_coordinator_jobs"), std::string::npos);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  std::ofstream(dir + "/metrics_auth", std::ios::trunc) << "no-colon-here\n";
  CoordinatorProcess bad =
      StartCoordinator(dir, "127.0.0.1:0", {"--metrics_auth_file", dir + "/metrics_auth"});
  EXPECT_EQ(bad.grpc_port, 0);
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(ReadLog(dir + "/coordinator.log").find("expected one line 'user:password'"),
            std::string::npos);
}

TEST(ServiceAttackTest, RetriedSubmissionIsOneJob) {
  const std::string dir = FreshDir("attack_retry");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  v1::JobSpec s = SmallJob("retried");
  s.set_request_id("client-7f3a");
  const std::string first = Submit(*stub, s);
  const std::string again = Submit(*stub, s);  // the acknowledgement was lost; the client retries
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(first, again);
  EXPECT_EQ(ListedJobs(*stub), 1);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  // Also after a restart.
  c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0);
  stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(Submit(*stub, s), first);
  EXPECT_EQ(ListedJobs(*stub), 1);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

// A coordinator with `jobs` queued jobs (no workers), stopped.
void StoreWithJobs(const std::string& dir, int jobs) {
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  for (int i = 0; i < jobs; ++i) ASSERT_FALSE(Submit(*stub, SmallJob(absl::StrCat("j", i))).empty());
  ASSERT_EQ(Stop(c.pid, SIGTERM), 0);
}

// Starts the coordinator expecting it to refuse: its exit code and log.
std::pair<int, std::string> RefusedStart(const std::string& dir, std::vector<std::string> extra = {}) {
  std::remove((dir + "/coordinator.log").c_str());
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", std::move(extra));
  EXPECT_EQ(c.grpc_port, 0) << "the coordinator started";
  if (c.grpc_port != 0) Stop(c.pid, SIGKILL);
  return {c.exit_code, ReadLog(dir + "/coordinator.log")};
}

TEST(ServiceAttackTest, DeletedOrEmptiedStoreIsRefusedUntilNewStoreIsAsked) {
  for (bool empty : {false, true}) {
    const std::string dir = FreshDir(empty ? "attack_store_empty" : "attack_store_deleted");
    StoreWithJobs(dir, 3);
    if (empty) {
      std::ofstream(dir + "/c.db", std::ios::trunc).flush();
    } else {
      std::filesystem::remove(dir + "/c.db");
    }
    const auto [code, log] = RefusedStart(dir);
    EXPECT_NE(code, 0);
    EXPECT_NE(log.find(empty ? "is empty" : "is missing"), std::string::npos) << log;
    EXPECT_NE(log.find("--new_store"), std::string::npos) << log;
    CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", {"--new_store"});
    ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
    auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
    EXPECT_EQ(ListedJobs(*stub), 0);
    EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  }
}

TEST(ServiceAttackTest, StoreUnlinkedUnderARunningCoordinatorAcknowledgesNothingMore) {
  const std::string dir = FreshDir("attack_store_unlinked");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  ASSERT_FALSE(Submit(*stub, SmallJob("kept")).empty());
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((dir + "/c.db" + suffix).c_str());
  for (int i = 0; i < 5; ++i) {
    grpc::Status st;
    EXPECT_TRUE(Submit(*stub, SmallJob(absl::StrCat("lost", i)), &st).empty());
    EXPECT_FALSE(st.ok());
  }
  Stop(c.pid, SIGKILL);
  const auto [code, log] = RefusedStart(dir);  // and no restart pretends nothing happened
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("is missing"), std::string::npos) << log;
}

TEST(ServiceAttackTest, ScribbledStoreIsRefusedThenRecoveredWithItsJobs) {
  const std::string dir = FreshDir("attack_store_scribbled");
  StoreWithJobs(dir, 4);
  {
    std::fstream f(dir + "/c.db", std::ios::in | std::ios::out | std::ios::binary);
    const std::string junk(100, '\x5a');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
  const auto [code, log] = RefusedStart(dir);
  EXPECT_NE(code, 0);
  EXPECT_NE(log.find("--recover"), std::string::npos) << log;
  const std::string recover_log = dir + "/recover.log";
  const pid_t r = Spawn({IMPQ_COORDINATOR_BINARY, "--recover", "--store", dir + "/c.db"}, recover_log);
  EXPECT_EQ(ExitCode(r), 0) << ReadLog(recover_log);
  EXPECT_NE(ReadLog(recover_log).find("4 jobs"), std::string::npos) << ReadLog(recover_log);
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(ListedJobs(*stub), 4);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(ServiceAttackTest, UndecodableStoreRowIsQuarantinedAndTheRestServed) {
  const std::string dir = FreshDir("attack_store_badrow");
  StoreWithJobs(dir, 2);
  {
    // A row no coordinator wrote: NULL id (the schema's NOT NULL bypassed by rebuilding the
    // table without it, as a hand edit or another tool could).
    EXPECT_EQ(coordinator::StoreExec(
                  dir + "/c.db",
                  "CREATE TABLE t AS SELECT * FROM jobs; DROP TABLE jobs; ALTER TABLE t RENAME TO "
                  "jobs; INSERT INTO jobs VALUES(NULL, 99, x'08', 1, 0, 0, 0, NULL, NULL, 0);"),
              "");
  }
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(ListedJobs(*stub), 2);
  EXPECT_NE(ReadLog(dir + "/coordinator.log").find("quarantined: id is not text"), std::string::npos);
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

}  // namespace
}  // namespace impq::service_test
