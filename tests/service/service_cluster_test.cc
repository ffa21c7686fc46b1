// The service's cross-process guarantees (issue 5), each with real impq-coordinator and
// impq-worker processes on 127.0.0.1 (ephemeral ports):
//  - three workers give a result byte-identical to the embedded run (coordinator/embedded.h),
//    and the Prometheus endpoint shows the evaluation counter moving while the job runs;
//  - the coordinator SIGKILLed mid-job and restarted on the same store resumes the job; no
//    evaluation is lost or counted twice (checked in the store) and the result is identical;
//  - 200 jobs submitted by 20 concurrent clients, half cancelled, are all persisted and end
//    as asked, also after a restart;
//  - hostile requests get the right status code and a message naming the field, no crash;
//  - TLS: a job over TLS (certificates made here with openssl); a plaintext client fails.
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "coordinator/embedded.h"
#include "coordinator/store.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/service/service_test_util.h"

namespace impq::service_test {
namespace {

v1::JobSpec Spec() { return SharedModelSpec("cluster", 8, 4, 128, 40, 99); }

// The embedded run of Spec(), computed once.
const v1::JobResult& EmbeddedReference() {
  static const v1::JobResult* r = [] {
    coordinator::EmbeddedOptions o;
    o.workers = 2;
    absl::StatusOr<coordinator::EmbeddedResult> e = coordinator::RunEmbedded(Spec(), o);
    EXPECT_TRUE(e.ok()) << e.status();
    return new v1::JobResult(e.ok() ? e->result : v1::JobResult());
  }();
  return *r;
}

void ExpectSameAsEmbedded(const v1::GetJobResponse& job) {
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  const v1::JobResult& embedded = EmbeddedReference();
  ASSERT_EQ(embedded.phi_size(), 5);
  EXPECT_EQ(Comparable(job.result()), Comparable(embedded));
}

TEST(ServiceClusterTest, ThreeWorkersMatchEmbeddedAndMetricsMove) {
  const std::string dir = FreshDir("three");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  const std::string id = Submit(*stub, Spec());
  const double before = MetricValue(HttpGet(c.metrics_port, "/metrics"), "impq_coordinator_evaluations_total");
  // A first worker does exactly three units and exits: the job is mid-estimation (unit 0
  // prepares the game, units 1 and 2 are the isolated-Δ batch of 5 + 1 coalitions).
  const pid_t first = StartWorker(dir, c.target(), "w0", {"--max_units", "3"});
  int status = 0;
  waitpid(first, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "see " << dir << "/w0.log";
  v1::GetJobResponse mid;
  ASSERT_TRUE(GetJob(*stub, id, &mid).ok());
  EXPECT_EQ(mid.status().state(), v1::JOB_STATE_ESTIMATING);
  EXPECT_EQ(mid.status().units_done(), 3);
  const double during = MetricValue(HttpGet(c.metrics_port, "/metrics"), "impq_coordinator_evaluations_total");
  EXPECT_LE(before, 0);  // absent or 0 before any work
  EXPECT_EQ(during, 6) << "the isolated-Δ batch: 5 players alone + all at 4 bits";

  std::vector<pid_t> workers;
  for (const char* w : {"w1", "w2", "w3"}) workers.push_back(StartWorker(dir, c.target(), w));
  std::vector<double> seen;
  v1::GetJobResponse job;
  for (int i = 0; i < 3000; ++i) {
    job.Clear();
    ASSERT_TRUE(GetJob(*stub, id, &job).ok());
    if (Terminal(job.status().state())) break;
    seen.push_back(MetricValue(HttpGet(c.metrics_port, "/metrics"), "impq_coordinator_evaluations_total"));
    usleep(10 * 1000);
  }
  const std::string page = HttpGet(c.metrics_port, "/metrics");
  const double after = MetricValue(page, "impq_coordinator_evaluations_total");
  EXPECT_EQ(after, static_cast<double>(job.status().evaluations_done()));
  EXPECT_GT(after, during);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_GE(seen[i], seen[i - 1]);
  EXPECT_NE(page.find("impq_coordinator_workers_connected"), std::string::npos);
  for (pid_t w : workers) Stop(w, SIGTERM);
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  ExpectSameAsEmbedded(job);
}

TEST(ServiceClusterTest, CoordinatorSigkillMidJobResumesWithoutLossOrDoubleCount) {
  const std::string dir = FreshDir("ckill");
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", {"--lease_seconds", "2"});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  const std::string fixed = c.target();  // the restart listens here again
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(fixed, grpc::InsecureChannelCredentials()));
  const std::string id = Submit(*stub, Spec());
  // Two workers do 4 walks each and exit; a third keeps working through the crash.
  std::vector<pid_t> bounded;
  for (const char* w : {"a", "b"}) bounded.push_back(StartWorker(dir, fixed, w, {"--max_units", "4"}));
  for (pid_t p : bounded) waitpid(p, nullptr, 0);
  const pid_t steady = StartWorker(dir, fixed, "s");
  v1::GetJobResponse mid;
  for (int i = 0; i < 500; ++i) {
    mid.Clear();
    ASSERT_TRUE(GetJob(*stub, id, &mid).ok());
    if (mid.status().units_done() > 8) break;
    usleep(5 * 1000);
  }
  ASSERT_FALSE(Terminal(mid.status().state())) << "the job ended before the crash";
  Stop(c.pid, SIGKILL);
  const int64_t units_before = mid.status().units_done();

  CoordinatorProcess again = StartCoordinator(dir, fixed, {"--lease_seconds", "2"});
  ASSERT_EQ(again.grpc_port, c.grpc_port) << "see " << dir << "/coordinator.log";
  // The client channel saw the connection drop; retry while it reconnects.
  v1::GetJobResponse restored;
  bool reachable = false;
  for (int i = 0; i < 200 && !reachable; ++i) {
    restored.Clear();
    reachable = GetJob(*stub, id, &restored).ok();
    if (!reachable) usleep(50 * 1000);
  }
  ASSERT_TRUE(reachable) << "restarted coordinator unreachable; see " << dir << "/coordinator.log";
  EXPECT_GE(restored.status().units_done(), units_before) << "an accepted unit was lost";
  const pid_t extra = StartWorker(dir, fixed, "t");
  const v1::GetJobResponse job = WaitTerminal(*stub, id, 40);
  Stop(steady, SIGTERM);
  Stop(extra, SIGTERM);
  stub.reset();
  EXPECT_EQ(Stop(again.pid, SIGTERM), 0);
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  EXPECT_EQ(job.status().evaluations_done(), job.status().evaluations_total());
  EXPECT_EQ(job.status().units_done(), job.status().units_total());

  // The store holds each unit once and exactly the evaluations the status reports.
  auto store = coordinator::Store::Open(dir + "/c.db");
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->incarnation(), 3);  // two coordinator runs + this open
  auto contents = (*store)->Load();
  ASSERT_TRUE(contents.ok()) << contents.status();
  std::map<int64_t, int> units;
  int64_t evaluations = 0;
  for (const auto& r : contents->results) {
    if (r.job_id != id) continue;
    ++units[r.unit_index];
    // A coalition split over several SEQUENCES units (by sequences) counts once: on the unit
    // with the set's first sequence (unit digest "kind:dataset:begin-end:...").
    const bool first_part = r.result.unit_digest().find(":0-") != std::string::npos;
    evaluations += r.result.losses_size() + (first_part ? r.result.sequence_sums_size() : 0);
  }
  EXPECT_EQ(static_cast<int64_t>(units.size()), job.status().units_total());
  for (const auto& [k, n] : units) EXPECT_EQ(n, 1) << "unit " << k;
  EXPECT_EQ(evaluations, job.status().evaluations_done());
  ExpectSameAsEmbedded(job);
}

// SIGTERM while a worker is mid-job, a client channel is open and a WatchJob stream is
// waiting: the coordinator drains and exits at once (it used to wait out its 5 s gRPC grace
// for the open connections), the watch ends UNAVAILABLE, and a restart on the same store
// resumes the job with every accepted evaluation.
TEST(ServiceClusterTest, SigtermIsPromptWithWorkersAndWatchersConnected) {
  const std::string dir = FreshDir("sigterm");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  const std::string id = Submit(*stub, Spec());
  grpc::ClientContext watch_ctx;
  watch_ctx.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::WatchJobRequest watch_req;
  watch_req.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<v1::JobStatus>> watch = stub->WatchJob(&watch_ctx, watch_req);
  std::atomic<int> statuses{0};
  grpc::Status watch_end;
  std::thread watcher([&] {
    v1::JobStatus st;
    while (watch->Read(&st)) ++statuses;
    watch_end = watch->Finish();
  });
  const pid_t worker = StartWorker(dir, c.target(), "busy");
  v1::GetJobResponse mid;
  for (int i = 0; i < 1000 && mid.status().units_done() < 2; ++i) {
    mid.Clear();
    ASSERT_TRUE(GetJob(*stub, id, &mid).ok());
    usleep(10 * 1000);
  }
  ASSERT_GE(mid.status().units_done(), 2) << "see " << dir << "/busy.log";
  ASSERT_FALSE(Terminal(mid.status().state())) << "the job ended before the signal";

  const auto t0 = std::chrono::steady_clock::now();
  const int status = Stop(c.pid, SIGTERM);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "see " << dir << "/coordinator.log";
  EXPECT_LT(seconds, 2.0) << "graceful shutdown waited for the open connections";
  watcher.join();
  EXPECT_EQ(watch_end.error_code(), grpc::StatusCode::UNAVAILABLE) << watch_end.error_message();
  EXPECT_GE(statuses.load(), 2);

  // Nothing accepted was lost: the restarted coordinator has at least what `mid` saw, and
  // the job finishes with the embedded run's result.
  CoordinatorProcess again = StartCoordinator(dir, c.target());
  ASSERT_EQ(again.grpc_port, c.grpc_port) << "see " << dir << "/coordinator.log";
  v1::GetJobResponse restored;
  bool reachable = false;
  for (int i = 0; i < 200 && !reachable; ++i) {
    restored.Clear();
    reachable = GetJob(*stub, id, &restored).ok();
    if (!reachable) usleep(50 * 1000);
  }
  ASSERT_TRUE(reachable) << "see " << dir << "/coordinator.log";
  EXPECT_GE(restored.status().units_done(), mid.status().units_done());
  const v1::GetJobResponse job = WaitTerminal(*stub, id, 60);
  Stop(worker, SIGTERM);
  stub.reset();
  EXPECT_EQ(Stop(again.pid, SIGTERM), 0);
  ExpectSameAsEmbedded(job);
}

// Tiny jobs: two walks over one short document, measured on one; every job differs by its
// seed only, so the workers prepare the game once.
v1::JobSpec TinySpec(uint64_t seed) {
  v1::JobSpec s = Spec();
  s.set_name("tiny-" + std::to_string(seed));
  s.set_evaluation_docs(1);
  s.set_random_draws(1);
  s.set_calibration_docs(1);
  s.set_context(32);
  s.set_permutations(2);
  s.set_antithetic(false);
  s.set_seed(seed);
  s.clear_average_bits();
  s.add_average_bits(3.0);
  return s;
}

TEST(ServiceClusterTest, TwoHundredConcurrentJobsFromTwentyClients) {
  const std::string dir = FreshDir("many");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  std::vector<pid_t> workers;
  for (const char* w : {"m1", "m2"}) workers.push_back(StartWorker(dir, c.target(), w, {"--capacity", "2"}));
  std::mutex mu;
  std::map<std::string, bool> cancelled;  // job id -> CancelJob answered CANCELLED
  std::atomic<int> failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 20; ++t) {
    clients.emplace_back([&, t] {
      // Each client has its own channel, as separate processes would.
      auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
      for (int j = 0; j < 10; ++j) {
        const int k = t * 10 + j;
        grpc::ClientContext ctx;
        Auth(ctx);
        v1::SubmitJobRequest req;
        *req.mutable_spec() = TinySpec(static_cast<uint64_t>(k));
        v1::SubmitJobResponse resp;
        if (!stub->SubmitJob(&ctx, req, &resp).ok() || resp.job_id().empty()) {
          ++failures;
          continue;
        }
        bool was_cancelled = false;
        if (k % 2 == 1) {
          grpc::ClientContext cctx;
          Auth(cctx);
          v1::CancelJobRequest creq;
          creq.set_job_id(resp.job_id());
          v1::CancelJobResponse cresp;
          if (!stub->CancelJob(&cctx, creq, &cresp).ok()) ++failures;
          was_cancelled = cresp.status().state() == v1::JOB_STATE_CANCELLED;
          // A tiny job may finish before the cancel arrives: then it stays DONE.
          if (!was_cancelled && cresp.status().state() != v1::JOB_STATE_DONE) ++failures;
        }
        std::lock_guard<std::mutex> lock(mu);
        cancelled[resp.job_id()] = was_cancelled;
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  ASSERT_EQ(cancelled.size(), 200u);
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  auto list = [&] {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::ListJobsRequest req;
    req.set_page_size(1000);  // all 200 in one page (the default page is 100 jobs)
    v1::ListJobsResponse resp;
    EXPECT_TRUE(stub->ListJobs(&ctx, req, &resp).ok());
    EXPECT_TRUE(resp.next_page_token().empty());
    return resp;
  };
  v1::ListJobsResponse all;
  for (int i = 0; i < 1500; ++i) {
    all = list();
    int open = 0;
    for (const auto& s : all.jobs()) open += Terminal(s.state()) ? 0 : 1;
    if (open == 0) break;
    usleep(20 * 1000);
  }
  auto check = [&](const v1::ListJobsResponse& jobs) {
    ASSERT_EQ(jobs.jobs_size(), 200);
    for (const auto& s : jobs.jobs()) {
      auto it = cancelled.find(s.job_id());
      ASSERT_NE(it, cancelled.end()) << s.job_id();
      EXPECT_EQ(s.state(), it->second ? v1::JOB_STATE_CANCELLED : v1::JOB_STATE_DONE)
          << s.job_id() << " " << s.error();
    }
  };
  check(all);
  for (pid_t w : workers) Stop(w, SIGTERM);
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
  // Persisted: a new coordinator on the same store lists the same 200 jobs, same states.
  CoordinatorProcess again = StartCoordinator(dir);
  ASSERT_GT(again.grpc_port, 0);
  stub = v1::ImpqService::NewStub(grpc::CreateChannel(again.target(), grpc::InsecureChannelCredentials()));
  check(list());
  stub.reset();
  EXPECT_EQ(Stop(again.pid, SIGTERM), 0);
}

TEST(ServiceClusterTest, HostileRequestsGetTheRightCodeNamingTheField) {
  const std::string dir = FreshDir("hostile");
  CoordinatorProcess c = StartCoordinator(dir);
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto channel = grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);
  auto submit = [&](const v1::JobSpec* spec, const std::string& token) {
    grpc::ClientContext ctx;
    if (!token.empty()) Auth(ctx, token);
    v1::SubmitJobRequest req;
    if (spec != nullptr) *req.mutable_spec() = *spec;
    v1::SubmitJobResponse resp;
    return stub->SubmitJob(&ctx, req, &resp);
  };
  struct Case {
    const char* what;
    std::function<void(v1::JobSpec&)> edit;
    grpc::StatusCode code;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"missing model", [](v1::JobSpec& s) { s.clear_model_path(); }, grpc::StatusCode::INVALID_ARGUMENT, "model_path"},
      {"missing calibration", [](v1::JobSpec& s) { s.clear_calibration_text_path(); }, grpc::StatusCode::INVALID_ARGUMENT, "calibration_text_path"},
      {"negative permutations", [](v1::JobSpec& s) { s.set_permutations(-4); }, grpc::StatusCode::INVALID_ARGUMENT, "permutations"},
      {"negative docs", [](v1::JobSpec& s) { s.set_calibration_docs(-1); }, grpc::StatusCode::INVALID_ARGUMENT, "calib_docs = -1"},
      {"negative context", [](v1::JobSpec& s) { s.set_context(-5); }, grpc::StatusCode::INVALID_ARGUMENT, "ctx = -5"},
      {"budget above 4", [](v1::JobSpec& s) { s.set_average_bits(0, 4.5); }, grpc::StatusCode::INVALID_ARGUMENT, "average_bits"},
      {"budget below 2", [](v1::JobSpec& s) { s.set_average_bits(1, 1.5); }, grpc::StatusCode::INVALID_ARGUMENT, "average_bits"},
      {"unknown estimator", [](v1::JobSpec& s) { s.set_estimator("magic"); }, grpc::StatusCode::INVALID_ARGUMENT, "estimator"},
      {"absolute path outside", [](v1::JobSpec& s) { s.set_model_path("/etc/passwd"); }, grpc::StatusCode::PERMISSION_DENIED, "model_path"},
      {"relative escape", [](v1::JobSpec& s) { s.set_tokenizer_path("../../../../etc/shadow"); }, grpc::StatusCode::PERMISSION_DENIED, "tokenizer_path"},
      {"long name", [](v1::JobSpec& s) { s.set_name(std::string(300, 'x')); }, grpc::StatusCode::INVALID_ARGUMENT, "name"},
      {"unknown backend", [](v1::JobSpec& s) { s.set_backend("fp8"); }, grpc::StatusCode::INVALID_ARGUMENT, "backend"},
  };
  for (const Case& k : cases) {
    v1::JobSpec s = Spec();
    k.edit(s);
    grpc::Status st = submit(&s, kToken);
    EXPECT_EQ(st.error_code(), k.code) << k.what << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(k.field), std::string::npos) << k.what << ": " << st.error_message();
  }
  {
    grpc::Status st = submit(nullptr, kToken);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("spec"), std::string::npos) << st.error_message();
  }
  const v1::JobSpec good = Spec();
  EXPECT_EQ(submit(&good, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    grpc::Status st = submit(&good, "wrong");
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_NE(st.error_message().find("token"), std::string::npos) << st.error_message();
  }
  {  // 17 MB > the 16 MB limit: rejected by gRPC before any handler runs.
    v1::JobSpec big = Spec();
    big.set_name(std::string(17 << 20, 'x'));
    grpc::Status st = submit(&big, kToken);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  }
  {
    v1::GetJobResponse resp;
    EXPECT_EQ(GetJob(*stub, "job-999999", &resp).error_code(), grpc::StatusCode::NOT_FOUND);
    grpc::Status st = GetJob(*stub, "", &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("job_id"), std::string::npos);
  }
  // The worker API (with the workers' credential: without it, UNAUTHENTICATED).
  auto wstub = v1::WorkerService::NewStub(channel);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    v1::AcquireLeaseRequest req;
    req.set_worker_id("w");
    req.set_capacity(-3);
    v1::AcquireLeaseResponse resp;
    grpc::Status st = wstub->AcquireLease(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("capacity"), std::string::npos) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    v1::AcquireLeaseRequest req;
    req.set_capacity(1);
    v1::AcquireLeaseResponse resp;
    grpc::Status st = wstub->AcquireLease(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("worker_id"), std::string::npos) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    v1::ReportResultRequest req;
    req.set_lease_id("L1-1");
    v1::ReportResultResponse resp;
    grpc::Status st = wstub->ReportResult(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("result"), std::string::npos) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    v1::ReportResultRequest req;
    req.set_lease_id("L1-1");
    req.mutable_result()->set_job_id("job-424242");
    v1::ReportResultResponse resp;
    grpc::Status st = wstub->ReportResult(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_NE(st.error_message().find("job_id"), std::string::npos) << st.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", std::string("Bearer ") + kWorkerToken);
    v1::HeartbeatRequest req;
    v1::HeartbeatResponse resp;
    grpc::Status st = wstub->Heartbeat(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("lease_id"), std::string::npos) << st.error_message();
  }
  // Nothing crashed: the process is alive and healthy, and no job was accepted.
  EXPECT_TRUE(Alive(c.pid));
  {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(grpc::health::v1::Health::NewStub(channel)
                    ->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp)
                    .ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    grpc::ClientContext lctx;
    Auth(lctx);
    v1::ListJobsResponse jobs;
    ASSERT_TRUE(stub->ListJobs(&lctx, v1::ListJobsRequest(), &jobs).ok());
    EXPECT_EQ(jobs.jobs_size(), 0);
  }
  // Our connection stays open: the graceful shutdown does not wait for it.
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(ServiceClusterTest, JobOverTlsAndPlaintextClientFailsCleanly) {
  if (system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI not installed";
  const std::string dir = FreshDir("tls");
  // Two CAs (the second one signs nothing the server uses), and a server certificate for
  // localhost / 127.0.0.1 signed by the first. P-256 keys: fast to generate.
  ASSERT_TRUE(MakeTestCertificates(dir)) << "see " << dir << "/openssl.log";
  CoordinatorProcess c = StartCoordinator(
      dir, "127.0.0.1:0", {"--tls_cert", dir + "/server.pem", "--tls_key", dir + "/server.key"});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  TlsFiles tls;
  tls.ca = dir + "/ca.pem";
  tls.server_name = "localhost";
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = MakeChannel(c.target(), tls);
  ASSERT_TRUE(channel.ok()) << channel.status();
  auto stub = v1::ImpqService::NewStub(*channel);
  const std::string id = Submit(*stub, TinySpec(7));
  ASSERT_FALSE(id.empty());
  const pid_t w = StartWorker(dir, c.target(), "tw",
                              {"--tls_ca", tls.ca, "--tls_server_name", "localhost"});
  const v1::GetJobResponse job = WaitTerminal(*stub, id, 30);
  EXPECT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  EXPECT_EQ(job.result().phi_size(), 5);
  {  // Plaintext against the TLS port: a clean UNAVAILABLE, not a hang or a crash.
    auto plain = v1::ImpqService::NewStub(grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext ctx;
    Auth(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListJobsResponse resp;
    grpc::Status st = plain->ListJobs(&ctx, v1::ListJobsRequest(), &resp);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  }
  {  // A client trusting another CA is refused too.
    TlsFiles wrong;
    wrong.ca = dir + "/other.pem";
    wrong.server_name = "localhost";
    auto other = v1::ImpqService::NewStub(*MakeChannel(c.target(), wrong));
    grpc::ClientContext ctx;
    Auth(ctx);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListJobsResponse resp;
    EXPECT_EQ(other->ListJobs(&ctx, v1::ListJobsRequest(), &resp).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  // Bad TLS files fail at startup with a message naming the file.
  EXPECT_FALSE(MakeChannel(c.target(), TlsFiles{"", "", dir + "/missing.pem", ""}).ok());
  Stop(w, SIGTERM);
  EXPECT_TRUE(Alive(c.pid));
  stub.reset();
  channel->reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

}  // namespace
}  // namespace impq::service_test
