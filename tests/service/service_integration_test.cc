// End to end on 127.0.0.1, as the issue asks: `impqctl submit` with `impq run`'s flags to an
// impq-coordinator with two impq-worker processes on stories260K gives `impq run --json`'s
// document field for field (timings aside) — with a worker SIGKILLed during the per-budget
// choice and the coordinator SIGKILLed and restarted during the held-out measurement — and so
// does a width-set job (`--widths 2,3,4`).
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

TEST(ServiceIntegrationTest, BinariesRefuseAnUnreadableOrEmptyTokenFile) {
  const std::string log = TempFilePath("worker_token.log");
  const std::string cmd = std::string(IMPQ_WORKER_BINARY) +
                          " --device cpu --token_file /nonexistent/impq-token > " + log + " 2>&1";
  const int status = system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("/nonexistent/impq-token"), std::string::npos) << text;
  // An empty token file would turn authentication off: every binary refuses it, naming it.
  const std::string empty = TempFilePath("empty_token");
  std::ofstream(empty) << "  \n";
  for (const std::string& bin : {std::string(IMPQ_WORKER_BINARY) + " --device cpu",
                                std::string(IMPQ_COORDINATOR_BINARY) + " --store :memory:"}) {
    const int st = system((bin + " --token_file " + empty + " > " + log + " 2>&1").c_str());
    ASSERT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 2) << bin;
    std::ifstream again(log);
    const std::string out((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
    EXPECT_NE(out.find("empty"), std::string::npos) << bin << ": " << out;
  }
}

// The job's flags, as `impq run` and `impqctl submit` both take them (one vocabulary): the
// default job (every setting at its default, the default files by absolute path), or a small
// width-set job.
std::vector<std::string> JobFlags(const std::string& widths) {
  std::vector<std::string> flags = {
      "--model", SharedDataPath("stories260K.bin"), "--tokenizer", SharedDataPath("tok512.bin"),
      "--calib-text", SharedDataPath("tinystories_v2_valid_100.txt"), "--heldout-text",
      SharedDataPath("tinystories_valid_a.txt")};
  if (widths == "2,4") return flags;  // the default job
  for (const char* f : {"--calib-docs", "10", "--heldout-docs", "40", "--ctx", "256", "--players",
                        "block", "--permutations", "8", "--seed", "2025", "--budgets", "2.5,3.0",
                        "--random-draws", "1"}) {
    flags.push_back(f);
  }
  flags.insert(flags.end(), {"--widths", widths});
  return flags;
}

std::string Quote(const std::vector<std::string>& args) {
  std::string out;
  for (const std::string& a : args) out += " '" + a + "'";
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// `impq run` of the same flags, its --json file without the timings.
std::string ImpqRunDocument(const std::string& dir, const std::string& widths) {
  const std::string json = dir + "/run.json";
  const std::string cmd = std::string(IMPQ_BINARY) + " run --quiet --threads 2" +
                          Quote(JobFlags(widths)) + " --json " + json + " > " + dir +
                          "/run.md 2> " + dir + "/run.log";
  EXPECT_EQ(system(cmd.c_str()), 0) << "see " << dir << "/run.log";
  return coordinator::WithoutTimings(ReadFile(json));
}

// `impqctl submit` of the job's flags; returns the job id.
std::string ImpqctlSubmit(const std::string& dir, const std::string& target,
                          const std::string& widths) {
  const std::string cmd = std::string(IMPQCTL_BINARY) + " --server " + target +
                          " --token_file " + dir + "/token submit" + Quote(JobFlags(widths)) +
                          " 2>" + dir + "/impqctl.log";
  FILE* out = popen(cmd.c_str(), "r");
  EXPECT_NE(out, nullptr);
  char line[256] = {0};
  const bool got = fgets(line, sizeof(line), out) != nullptr;
  EXPECT_EQ(pclose(out), 0) << "see " << dir << "/impqctl.log";
  return got ? std::string(absl::StripAsciiWhitespace(line)) : "";
}

// `impqctl result --json`: the service's result document, without the timings.
std::string ImpqctlResultDocument(const std::string& dir, const std::string& target,
                                  const std::string& id) {
  const std::string path = dir + "/result.json";
  const std::string cmd = std::string(IMPQCTL_BINARY) + " --server " + target +
                          " --token_file " + dir + "/token result --json --job " + id + " > " + path;
  EXPECT_EQ(system(cmd.c_str()), 0);
  return coordinator::WithoutTimings(ReadFile(path));
}

// The end to end on the default job: `impqctl submit` with `impq run`'s flags, two
// impq-worker processes;
// one worker SIGKILLed during the per-budget choice, the coordinator SIGKILLed during the
// held-out measurement and restarted on the same store and port. `impqctl result --json` is
// `impq run --json`'s document, field for field (timings aside). Also: health, reflection,
// auth, validation and the Prometheus endpoint.
TEST(ServiceIntegrationTest, ImpqctlWithTwoWorkersSurvivingCrashesEqualsImpqRun) {
  const std::string dir = service_test::FreshDir("svc");
  ASSERT_FALSE(dir.empty());
  service_test::CoordinatorProcess coord =
      StartCoordinator(dir, "127.0.0.1:0", {"--lease_seconds", "2", "--units_per_lease", "1"});
  ASSERT_GT(coord.grpc_port, 0) << "coordinator did not start; see " << dir << "/coordinator.log";
  const std::string target = coord.target();
  std::vector<pid_t> workers = {StartWorker(dir, target, "wa"), StartWorker(dir, target, "wb")};
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
    for (const auto& sv : rresp.list_services_response().service()) services.push_back(sv.name());
    EXPECT_TRUE(stream->Finish().ok());
    for (const char* sv : {"impq.v1.ImpqService", "impq.v1.WorkerService", "grpc.health.v1.Health"}) {
      EXPECT_NE(std::find(services.begin(), services.end(), sv), services.end()) << sv;
    }
  }
  // Auth, and validation naming the field (the CLI's own check, through the service).
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    v1::ListJobsResponse resp;
    EXPECT_EQ(stub->ListJobs(&ctx, v1::ListJobsRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    service_test::Auth(ctx);
    v1::SubmitJobRequest req;
    *req.mutable_spec() = SharedModelSpec("bad", 10, 10, 256, 8, 1);
    req.mutable_spec()->set_search_model("greedy");
    v1::SubmitJobResponse resp;
    grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("search_model"), std::string::npos) << st.error_message();
  }
  // The worker API takes the workers' credential only: a caller without it (or with the
  // clients' token) cannot lease units (and so never sees a job's paths) or report results.
  {
    auto workers_api = v1::WorkerService::NewStub(channel);
    for (const std::string& auth : {std::string(), std::string("Bearer ") + service_test::kToken}) {
      grpc::ClientContext ctx;
      if (!auth.empty()) ctx.AddMetadata("authorization", auth);
      v1::AcquireLeaseRequest req;
      req.set_worker_id("intruder");
      req.set_capacity(1);
      v1::AcquireLeaseResponse resp;
      EXPECT_EQ(workers_api->AcquireLease(&ctx, req, &resp).error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
      grpc::ClientContext rctx;
      if (!auth.empty()) rctx.AddMetadata("authorization", auth);
      v1::ReportResultRequest rreq;
      rreq.set_lease_id("L0");
      rreq.mutable_result()->set_job_id("job-000001");
      v1::ReportResultResponse rresp;
      EXPECT_EQ(workers_api->ReportResult(&rctx, rreq, &rresp).error_code(),
                grpc::StatusCode::UNAUTHENTICATED);
    }
  }
  const std::string id = ImpqctlSubmit(dir, target, "2,4");
  ASSERT_FALSE(id.empty());
  bool killed_worker = false, killed_coordinator = false;
  v1::GetJobResponse job;
  for (int i = 0; i < 30000; ++i) {  // up to 10 minutes
    job.Clear();
    if (!service_test::GetJob(*stub, id, &job).ok()) {  // the restarted coordinator's port
      usleep(20 * 1000);
      continue;
    }
    const std::string& phase = job.status().phase();
    if (!killed_worker && phase == "select") {
      Stop(workers[0], SIGKILL);
      killed_worker = true;
    }
    if (!killed_coordinator && phase == "measure") {
      Stop(coord.pid, SIGKILL);
      killed_coordinator = true;
      coord = StartCoordinator(dir, target, {"--lease_seconds", "2", "--units_per_lease", "1"});
      ASSERT_GT(coord.grpc_port, 0) << "restart failed; see " << dir << "/coordinator.log";
      continue;
    }
    if (service_test::Terminal(job.status().state())) break;
    usleep(20 * 1000);
  }
  EXPECT_TRUE(killed_worker) << "the choice phase was never seen";
  EXPECT_TRUE(killed_coordinator) << "the measurement phase was never seen";
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  const std::string metrics = HttpGet(coord.metrics_port, "/metrics");
  EXPECT_NE(metrics.find("impq_coordinator_jobs{state=\"done\"} 1"), std::string::npos) << metrics;
  const std::string service = ImpqctlResultDocument(dir, target, id);
  Stop(workers[1], SIGTERM);
  stub.reset();
  channel.reset();
  EXPECT_EQ(Stop(coord.pid, SIGTERM), 0);
  EXPECT_EQ(service, ImpqRunDocument(dir, "2,4"));
  // `impq report` and every `impq export` format read the service's document as it is.
  const std::string doc = dir + "/result.json";
  EXPECT_EQ(system((std::string(IMPQ_BINARY) + " report --quiet --from " + doc + " --out " + dir +
                    "/report.html > " + dir + "/report.log 2>&1")
                       .c_str()),
            0)
      << "see " << dir << "/report.log";
  for (const char* format : {"llama.cpp", "gptqmodel", "hqq", "quanto", "safetensors"}) {
    const std::string out = dir + "/export-" + format;
    const std::string cmd = std::string(IMPQ_BINARY) + " export --from " + doc + " --budget 3.0" +
                            " --format " + format + " --out " + out + " > " + out + ".log 2>&1";
    EXPECT_EQ(system(cmd.c_str()), 0) << format << ": see " << out << ".log";
  }
}

// Width sets through the cluster: `impqctl submit --widths 2,3,4` with `impq run`'s flags,
// two impq-worker processes; the result document is `impq run --widths 2,3,4`'s.
TEST(ServiceIntegrationTest, WidthSetJobThroughImpqctlEqualsImpqRun) {
  const std::string dir = service_test::FreshDir("svc_widths");
  ASSERT_FALSE(dir.empty());
  const service_test::CoordinatorProcess coord =
      StartCoordinator(dir, "127.0.0.1:0", {"--units_per_lease", "1"});
  ASSERT_GT(coord.grpc_port, 0) << "coordinator did not start; see " << dir << "/coordinator.log";
  std::vector<pid_t> workers = {StartWorker(dir, coord.target(), "w1"),
                                StartWorker(dir, coord.target(), "w2")};
  const std::string id = ImpqctlSubmit(dir, coord.target(), "2,3,4");
  ASSERT_FALSE(id.empty());
  auto stub = v1::ImpqService::NewStub(
      grpc::CreateChannel(coord.target(), grpc::InsecureChannelCredentials()));
  const v1::GetJobResponse job = service_test::WaitTerminal(*stub, id, 300);
  ASSERT_EQ(job.status().state(), v1::JOB_STATE_DONE) << job.status().error();
  EXPECT_EQ(std::vector<int>(job.spec().widths().begin(), job.spec().widths().end()),
            (std::vector<int>{2, 3, 4}));
  const std::string service = ImpqctlResultDocument(dir, coord.target(), id);
  stub.reset();
  for (pid_t w : workers) Stop(w, SIGTERM);
  EXPECT_EQ(Stop(coord.pid, SIGTERM), 0);
  EXPECT_NE(service.find("\"to_bits\": 3"), std::string::npos);
  EXPECT_EQ(service, ImpqRunDocument(dir, "2,3,4"));
}

// Bad settings through the service get what the CLI gives. A value ValidateJobOptions
// refuses: `impq run` exits 2 and `impqctl submit` with the same flags fails, carrying impq
// run's message (which names the setting). A value only the model can refuse (a context
// beyond its seq_len): `impq run` fails with the model's message, and the submitted job
// FAILS with the same message (after its attempts), never retried forever.
TEST(ServiceIntegrationTest, BadSettingsGetTheCliMessageThroughTheService) {
  const std::string dir = service_test::FreshDir("svc_bad_settings");
  service_test::CoordinatorProcess coord = StartCoordinator(dir);
  ASSERT_GT(coord.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto first_line_after = [](const std::string& text, const std::string& prefix) {
    const size_t at = text.find(prefix);
    if (at == std::string::npos) return std::string();
    const size_t from = at + prefix.size();
    return text.substr(from, text.find('\n', from) - from);
  };
  const std::vector<std::vector<std::string>> bad = {
      {"--budgets", "2.5,4.5"},     {"--backend", "fp8"},         {"--widths", "2,5"},
      {"--permutations", "3"},      {"--estimator", "magic"},     {"--choice-z", "-1"},
      {"--search-model", "magic"},  {"--ctx", "-5"},              {"--calib-docs", "-1"},
      {"--group-size", "-3"},       {"--se-threshold", "-1"},     {"--widths", "2,4,5"}};
  for (const std::vector<std::string>& flags : bad) {
    std::vector<std::string> args = JobFlags("2,4");
    args.insert(args.end(), flags.begin(), flags.end());
    const std::string what = Quote(flags);
    const std::string run = std::string(IMPQ_BINARY) + " run --quiet" + Quote(args) + " > /dev/null 2> " +
                            dir + "/run.log";
    const int run_status = system(run.c_str());
    EXPECT_EQ(WEXITSTATUS(run_status), 2) << what;
    const std::string message = first_line_after(ReadFile(dir + "/run.log"), "impq run: job: ");
    ASSERT_FALSE(message.empty()) << what << ": " << ReadFile(dir + "/run.log");
    const std::string submit = std::string(IMPQCTL_BINARY) + " --server " + coord.target() +
                               " --token_file " + dir + "/token submit" + Quote(args) +
                               " > /dev/null 2> " + dir + "/impqctl.log";
    EXPECT_NE(system(submit.c_str()), 0) << what;
    const std::string ctl = ReadFile(dir + "/impqctl.log");
    EXPECT_NE(ctl.find(message), std::string::npos) << what << ": impq run said '" << message
                                                    << "', impqctl said: " << ctl;
  }

  // Settings only the prepared game can refuse — a context beyond the model's seq_len, a
  // budget below the narrowest allocation of the widths: `impq run` fails the job with a
  // message, and the service's job FAILS with the same one.
  const pid_t worker = StartWorker(dir, coord.target(), "w-bad");
  auto channel = grpc::CreateChannel(coord.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::ImpqService::NewStub(channel);
  for (const std::vector<std::string>& flags :
       std::vector<std::vector<std::string>>{{"--ctx", "100000"}, {"--widths", "3,4"}}) {
    std::vector<std::string> args = JobFlags("2,4");
    args.insert(args.end(), flags.begin(), flags.end());
    const std::string what = Quote(flags);
    const std::string run = std::string(IMPQ_BINARY) + " run --quiet" + Quote(args) +
                            " > /dev/null 2> " + dir + "/run.log";
    EXPECT_EQ(WEXITSTATUS(system(run.c_str())), 1) << what;
    const std::string message = first_line_after(ReadFile(dir + "/run.log"), "impq run: ");
    ASSERT_FALSE(message.empty()) << what << ": " << ReadFile(dir + "/run.log");
    const std::string submit = std::string(IMPQCTL_BINARY) + " --server " + coord.target() +
                               " --token_file " + dir + "/token submit" + Quote(args) + " 2> " +
                               dir + "/impqctl.log";
    FILE* out = popen(submit.c_str(), "r");
    ASSERT_NE(out, nullptr);
    char line[256] = {0};
    const bool got = fgets(line, sizeof(line), out) != nullptr;
    EXPECT_EQ(pclose(out), 0) << what << ": " << ReadFile(dir + "/impqctl.log");
    ASSERT_TRUE(got) << what;
    const std::string id(absl::StripAsciiWhitespace(line));
    const v1::GetJobResponse job = service_test::WaitTerminal(*stub, id, 120);
    EXPECT_EQ(job.status().state(), v1::JOB_STATE_FAILED) << what << ": " << job.DebugString();
    EXPECT_NE(job.status().error().find(message), std::string::npos)
        << what << ": impq run said '" << message << "', the service: " << job.status().error();
  }
  Stop(worker, SIGTERM);
  EXPECT_EQ(Stop(coord.pid, SIGTERM), 0);
}

}  // namespace
}  // namespace impq
