// End to end on 127.0.0.1: impq-coordinator + 2 impq-worker processes on stories260K. One
// worker is SIGKILLed mid-job; the job still finishes with a result identical to the embedded
// (in-process coordinator + worker loop) run. Also: auth, validation, health, reflection and
// the Prometheus endpoint; and a width-set job (issue 14: `impqctl submit --widths 2,3,4`)
// through two workers, equal to its embedded run.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>
#include <thread>

#include "absl/strings/ascii.h"
#include "common/test_paths.h"
#include "coordinator/embedded.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "impq/v1/services.grpc.pb.h"
#include "tests/service/service_test_util.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace impq {
namespace {

using service_test::HttpGet;
using service_test::SharedModelSpec;
using service_test::Spawn;
using service_test::StartCoordinator;
using service_test::StartWorker;
using service_test::Stop;

v1::JobSpec Spec() { return SharedModelSpec("integration", 20, 10, 256, 24, 2025); }

// The same job in embedded mode (coordinator/embedded.h): in-process coordinator, one
// worker loop, the CPU engine.
v1::JobResult Embedded(const v1::JobSpec& spec) {
  absl::StatusOr<coordinator::EmbeddedResult> r =
      coordinator::RunEmbedded(spec, coordinator::EmbeddedOptions());
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->result : v1::JobResult();
}

TEST(ServiceIntegrationTest, WorkerRefusesAnUnreadableTokenFile) {
  const std::string log = TempFilePath("worker_token.log");
  const std::string cmd = std::string(IMPQ_WORKER_BINARY) +
                          " --device cpu --token_file /nonexistent/impq-token > " + log + " 2>&1";
  const int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("/nonexistent/impq-token"), std::string::npos) << text;
}

TEST(ServiceIntegrationTest, KilledWorkerDoesNotChangeTheResult) {
  const std::string dir = TempFilePath("svc");
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  const std::string data_root = SharedDataPath("");
  const pid_t coord = Spawn({IMPQ_COORDINATOR_BINARY, "--listen", "127.0.0.1:0", "--metrics_listen",
                             "127.0.0.1:0", "--store", dir + "/c.db", "--data_root", data_root,
                             "--token", "s3cret", "--lease_seconds", "2", "--units_per_lease", "2",
                             "--port_file", dir + "/ports"},
                            dir + "/coordinator.log");
  int grpc_port = 0, metrics_port = 0;
  for (int i = 0; i < 100 && grpc_port == 0; ++i) {
    std::ifstream(dir + "/ports") >> grpc_port >> metrics_port;
    if (grpc_port == 0) usleep(100 * 1000);
  }
  ASSERT_GT(grpc_port, 0) << "coordinator did not start; see " << dir << "/coordinator.log";
  const std::string target = "127.0.0.1:" + std::to_string(grpc_port);
  std::vector<pid_t> workers;
  std::ofstream(dir + "/token") << "s3cret\n";
  for (const char* id : {"wa", "wb"}) {
    std::vector<std::string> args = {IMPQ_WORKER_BINARY, "--coordinator", target, "--worker_id",
                                     id, "--capacity", "2", "--device", "cpu"};
    if (std::string(id) == "wb") {  // the token from a file, as the README runs it
      args.insert(args.end(), {"--token_file", dir + "/token"});
    }
    workers.push_back(Spawn(args, dir + "/" + id + ".log"));
  }
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);

  // Health and reflection.
  {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(grpc::health::v1::Health::NewStub(channel)
                    ->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp)
                    .ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
    // What grpcurl's "list" does: ask the reflection service for its services.
    auto refl = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
    grpc::ClientContext rctx;
    auto stream = refl->ServerReflectionInfo(&rctx);
    grpc::reflection::v1alpha::ServerReflectionRequest rreq;
    rreq.set_list_services("");
    ASSERT_TRUE(stream->Write(rreq));
    stream->WritesDone();
    grpc::reflection::v1alpha::ServerReflectionResponse rresp;
    ASSERT_TRUE(stream->Read(&rresp));
    std::vector<std::string> services;
    for (const auto& s : rresp.list_services_response().service()) services.push_back(s.name());
    EXPECT_TRUE(stream->Finish().ok());
    for (const char* s : {"impq.v1.ImpqService", "impq.v1.WorkerService", "grpc.health.v1.Health"}) {
      EXPECT_NE(std::find(services.begin(), services.end(), s), services.end()) << s;
    }
  }
  // Auth and validation.
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    v1::ListJobsResponse resp;
    EXPECT_EQ(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::SubmitJobRequest req;
    *req.mutable_spec() = Spec();
    req.mutable_spec()->set_permutations(-4);
    v1::SubmitJobResponse resp;
    grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("permutations"), std::string::npos) << st.error_message();
  }
  std::string job_id;
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::SubmitJobRequest req;
    *req.mutable_spec() = Spec();
    v1::SubmitJobResponse resp;
    ASSERT_TRUE(stub->SubmitJob(&ctx, req, &resp).ok());
    job_id = resp.job_id();
  }
  auto get = [&] {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer s3cret");
    v1::GetJobRequest req;
    req.set_job_id(job_id);
    v1::GetJobResponse resp;
    EXPECT_TRUE(stub->GetJob(&ctx, req, &resp).ok());
    return resp;
  };
  // Kill worker "wa" as soon as the job has made progress (it holds or just held a lease).
  bool killed = false;
  v1::GetJobResponse job;
  for (int i = 0; i < 1200; ++i) {
    job = get();
    if (!killed && job.status().evaluations_done() > 0) {
      kill(workers[0], SIGKILL);
      waitpid(workers[0], nullptr, 0);
      killed = true;
    }
    const auto s = job.status().state();
    if (s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED) break;
    usleep(100 * 1000);
  }
  EXPECT_TRUE(killed);
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  ASSERT_TRUE(job.has_result());
  const std::string metrics = HttpGet(metrics_port, "/metrics");
  EXPECT_NE(metrics.find("impq_coordinator_evaluations_total"), std::string::npos);
  EXPECT_NE(metrics.find("impq_coordinator_jobs{state=\"done\"} 1"), std::string::npos) << metrics;

  kill(workers[1], SIGTERM);
  waitpid(workers[1], nullptr, 0);
  // Close our connection first (SIGTERM would end it anyway: service_cluster_test).
  stub.reset();
  channel.reset();
  kill(coord, SIGTERM);
  int status = 0;
  waitpid(coord, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  v1::JobResult embedded = Embedded(Spec());
  embedded.set_job_id(job.result().job_id());
  EXPECT_EQ(job.result().SerializeAsString(), embedded.SerializeAsString());
  EXPECT_EQ(job.result().phi_size(), 5);
  EXPECT_TRUE(job.result().allocations(1).measured());
}

// Width sets through the cluster (issue 14): `impqctl submit --widths 2,3,4` on stories260K
// (5 block players, so walks over 10 ladder steps), two impq-worker processes: the job ends
// DONE with a result identical, bit for bit, to the embedded run of the same spec, with φ per
// step and allocations from the set that fit their budgets.
TEST(ServiceIntegrationTest, WidthSetJobThroughImpqctlEqualsTheEmbeddedRun) {
  const std::string dir = service_test::FreshDir("svc_widths");
  ASSERT_FALSE(dir.empty());
  const service_test::CoordinatorProcess coord =
      StartCoordinator(dir, "127.0.0.1:0", {"--units_per_lease", "1"});
  ASSERT_GT(coord.grpc_port, 0) << "coordinator did not start; see " << dir << "/coordinator.log";
  std::vector<pid_t> workers = {StartWorker(dir, coord.target(), "w1"),
                                StartWorker(dir, coord.target(), "w2")};
  v1::JobSpec spec = SharedModelSpec("widths", 10, 10, 256, 8, 2026);
  // The spec without widths as impqctl's --job_file; --widths sets them.
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(spec, &json).ok());
  std::ofstream(dir + "/job.json") << json;
  const std::string cmd = std::string(IMPQCTL_BINARY) + " --server " + coord.target() +
                          " --token " + service_test::kToken + " submit --job_file " + dir +
                          "/job.json --widths 2,3,4 2>" + dir + "/impqctl.log";
  FILE* out = popen(cmd.c_str(), "r");
  ASSERT_NE(out, nullptr);
  char line[256] = {0};
  const bool got_line = fgets(line, sizeof(line), out) != nullptr;
  ASSERT_EQ(pclose(out), 0) << "see " << dir << "/impqctl.log";
  ASSERT_TRUE(got_line);
  const std::string job_id = std::string(absl::StripAsciiWhitespace(line));
  ASSERT_FALSE(job_id.empty());

  auto channel = grpc::CreateChannel(coord.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);
  const v1::GetJobResponse job = service_test::WaitTerminal(*stub, job_id, 120);
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  EXPECT_EQ(std::vector<int>(job.spec().widths().begin(), job.spec().widths().end()),
            (std::vector<int>{2, 3, 4}));
  stub.reset();
  channel.reset();
  for (pid_t w : workers) Stop(w, SIGTERM);
  const int status = Stop(coord.pid, SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  const v1::JobResult& r = job.result();
  EXPECT_EQ(r.phi_size(), 5 * 2);
  EXPECT_EQ(r.model().width_bytes_size(), 5 * 3);
  ASSERT_EQ(r.allocations_size(), 2);
  for (const v1::Allocation& a : r.allocations()) {
    for (int b : a.bits()) EXPECT_TRUE(b == 2 || b == 3 || b == 4) << b;
    EXPECT_LE(a.memory_bytes(), a.budget_bytes());
    EXPECT_TRUE(a.measured());
  }
  // Deterministic: the embedded run of the same spec (in-process coordinator, one worker
  // loop, the CPU engine) gives the same result.
  v1::JobSpec with_widths = spec;
  for (int w : {2, 3, 4}) with_widths.add_widths(w);
  v1::JobResult embedded = Embedded(with_widths);
  embedded.set_job_id(r.job_id());
  EXPECT_EQ(r.SerializeAsString(), embedded.SerializeAsString());
}

}  // namespace
}  // namespace impq
