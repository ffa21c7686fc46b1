// Issue 20's secure defaults and path confinement, against real impq-coordinator and
// impq-worker processes on 127.0.0.1:
//  - neither binary starts without its tokens and a data root (exit 2, naming what is missing
//    and how to fix it) unless --insecure, which starts with a loud warning; tokens come from
//    files or $IMPQ_TOKEN_FILE / $IMPQ_WORKER_TOKEN_FILE, and a token on argv is warned about;
//  - job paths are resolved (realpath) and confined at submit: a symlink inside the root that
//    points outside, a ".." escape and a FIFO are refused naming the field, never the root;
//  - the worker checks again before opening: a file swapped for a symlink to /etc/passwd after
//    the submit fails the job naming the field, and the worker never reads it;
//  - under mutual TLS the plaintext, loopback health port answers the probe and nothing else;
//  - internal errors reach the caller without the server's paths.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/grpc_tls.h"
#include "common/test_fifo.h"
#include "common/test_paths.h"
#include "coordinator/grpc_server.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "impq/v1/services.grpc.pb.h"
#include "tests/service/service_test_util.h"

namespace impq::service_test {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs `argv` to its end with the token variables unset (the test's own environment must not
// configure the binary); stdout and stderr go to `log`. Returns the exit code (-1: signalled).
int RunToExit(const std::vector<std::string>& argv, const std::string& log) {
  std::remove(log.c_str());
  const pid_t pid = Spawn(argv, log, {"IMPQ_TOKEN_FILE", "IMPQ_WORKER_TOKEN_FILE"});
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Waits (bounded) until `log` contains `text`; true when it does.
bool LogSays(const std::string& log, const std::string& text) {
  for (int i = 0; i < 400; ++i) {
    if (ReadAll(log).find(text) != std::string::npos) return true;
    usleep(25 * 1000);
  }
  return false;
}

std::vector<std::string> CoordinatorArgv(const std::string& dir) {
  return {IMPQ_COORDINATOR_BINARY, "--listen", "127.0.0.1:0", "--metrics_listen", "",
          "--store", dir + "/c.db", "--port_file", dir + "/ports"};
}

TEST(SecureDefaultsTest, CoordinatorRefusesToStartWithoutTokensAndADataRoot) {
  const std::string dir = FreshDir("secure_coord");
  std::ofstream(dir + "/token") << "client-token\n";
  std::ofstream(dir + "/worker_token") << "worker-token\n";
  const std::string log = dir + "/coordinator.log";
  const std::vector<std::string> token = {"--token_file", dir + "/token"};
  const std::vector<std::string> worker_token = {"--worker_token_file", dir + "/worker_token"};
  const std::vector<std::string> root = {"--data_root", SharedDataPath("")};
  struct Case {
    std::vector<std::vector<std::string>> given;
    std::vector<std::string> missing;  // each named in the message, with its fix
    std::vector<std::string> not_missing;
  } cases[] = {
      {{}, {"no client token", "no worker token", "no data root"}, {}},
      {{token, worker_token}, {"no data root: pass --data_root"}, {"no client token", "no worker token"}},
      {{root, worker_token}, {"no client token: pass --token_file FILE or set IMPQ_TOKEN_FILE"},
       {"no worker token", "no data root"}},
      {{root, token}, {"no worker token: pass --worker_token_file FILE or set IMPQ_WORKER_TOKEN_FILE"},
       {"no client token", "no data root"}},
  };
  for (const Case& k : cases) {
    std::vector<std::string> argv = CoordinatorArgv(dir);
    for (const auto& g : k.given) argv.insert(argv.end(), g.begin(), g.end());
    EXPECT_EQ(RunToExit(argv, log), 2) << ReadAll(log);
    const std::string out = ReadAll(log);
    EXPECT_NE(out.find("refusing to start"), std::string::npos) << out;
    EXPECT_NE(out.find("--insecure"), std::string::npos) << out;  // how to override
    for (const std::string& m : k.missing) EXPECT_NE(out.find(m), std::string::npos) << out;
    for (const std::string& m : k.not_missing) EXPECT_EQ(out.find(m), std::string::npos) << out;
  }
  {  // The same token for clients and workers would let a client lease units.
    std::vector<std::string> argv = CoordinatorArgv(dir);
    for (const auto& g : {root, token}) argv.insert(argv.end(), g.begin(), g.end());
    argv.insert(argv.end(), {"--worker_token_file", dir + "/token"});
    EXPECT_EQ(RunToExit(argv, log), 2);
    EXPECT_NE(ReadAll(log).find("equals the clients'"), std::string::npos) << ReadAll(log);
  }
  {  // A data root that is not a directory is named.
    std::vector<std::string> argv = CoordinatorArgv(dir);
    for (const auto& g : {token, worker_token}) argv.insert(argv.end(), g.begin(), g.end());
    argv.insert(argv.end(), {"--data_root", dir + "/no-such-dir"});
    EXPECT_EQ(RunToExit(argv, log), 2);
    EXPECT_NE(ReadAll(log).find("--data_root: '" + dir + "/no-such-dir' is not a directory"),
              std::string::npos)
        << ReadAll(log);
  }
}

TEST(SecureDefaultsTest, CoordinatorStartsInsecureWithAWarningOrConfiguredFromTheEnvironment) {
  const std::string dir = FreshDir("secure_coord_start");
  {  // --insecure: starts, and says loudly what is off.
    std::vector<std::string> argv = CoordinatorArgv(dir);
    argv.push_back("--insecure");
    const pid_t pid = Spawn(argv, dir + "/insecure.log");
    ASSERT_TRUE(LogSays(dir + "/insecure.log", "gRPC on port")) << ReadAll(dir + "/insecure.log");
    const std::string out = ReadAll(dir + "/insecure.log");
    EXPECT_NE(out.find("WARNING: running INSECURE"), std::string::npos) << out;
    EXPECT_NE(out.find("no client token"), std::string::npos) << out;
    EXPECT_EQ(Stop(pid, SIGTERM), 0);
  }
  {  // Token files named by the environment; --token on argv still works, with a warning.
    std::ofstream(dir + "/token") << "client-token\n";
    std::ofstream(dir + "/worker_token") << "worker-token\n";
    std::remove((dir + "/ports").c_str());
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("IMPQ_TOKEN_FILE", (dir + "/token").c_str(), 1);
      setenv("IMPQ_WORKER_TOKEN_FILE", (dir + "/worker_token").c_str(), 1);
      std::vector<std::string> argv = CoordinatorArgv(dir);
      argv.insert(argv.end(), {"--data_root", SharedDataPath("")});
      const int fd = ::open((dir + "/env.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      std::vector<char*> a;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      execv(a[0], a.data());
      _exit(127);
    }
    ASSERT_TRUE(LogSays(dir + "/env.log", "gRPC on port")) << ReadAll(dir + "/env.log");
    // The port file is written after that line (and may still be the previous process's).
    int port = 0;
    for (int i = 0; i < 200 && port == 0; ++i) {
      std::ifstream(dir + "/ports") >> port;
      if (port == 0) usleep(25 * 1000);
    }
    ASSERT_GT(port, 0);
    EXPECT_EQ(ReadAll(dir + "/env.log").find("WARNING"), std::string::npos)
        << ReadAll(dir + "/env.log");
    // The client token is the file's: a call without it is refused, with it accepted.
    auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
    v1::ListJobsResponse resp;
    grpc::ClientContext none;
    EXPECT_EQ(stub->ListJobs(&none, v1::ListJobsRequest(), &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    grpc::ClientContext with;
    Auth(with, "client-token");
    EXPECT_TRUE(stub->ListJobs(&with, v1::ListJobsRequest(), &resp).ok());
    stub.reset();
    EXPECT_EQ(Stop(pid, SIGTERM), 0);
  }
  {  // The deprecated --token: accepted, with the ps warning.
    std::vector<std::string> argv = CoordinatorArgv(dir);
    argv.insert(argv.end(), {"--insecure", "--token", "visible-in-ps"});
    const pid_t pid = Spawn(argv, dir + "/argv.log");
    ASSERT_TRUE(LogSays(dir + "/argv.log", "gRPC on port")) << ReadAll(dir + "/argv.log");
    EXPECT_NE(ReadAll(dir + "/argv.log").find("--token is deprecated"), std::string::npos)
        << ReadAll(dir + "/argv.log");
    EXPECT_EQ(Stop(pid, SIGTERM), 0);
  }
}

TEST(SecureDefaultsTest, WorkerRefusesToStartWithoutItsTokenAndADataRoot) {
  const std::string dir = FreshDir("secure_worker");
  std::ofstream(dir + "/worker_token") << "worker-token\n";
  const std::string log = dir + "/worker.log";
  const std::vector<std::string> base = {IMPQ_WORKER_BINARY, "--coordinator", "127.0.0.1:1",
                                         "--device", "cpu"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = base;
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  };
  EXPECT_EQ(RunToExit(with({}), log), 2);
  EXPECT_NE(ReadAll(log).find("no worker token: pass --token_file FILE or set "
                              "IMPQ_WORKER_TOKEN_FILE"),
            std::string::npos)
      << ReadAll(log);
  EXPECT_NE(ReadAll(log).find("no data root"), std::string::npos) << ReadAll(log);
  EXPECT_EQ(RunToExit(with({"--token_file", dir + "/worker_token"}), log), 2);
  EXPECT_NE(ReadAll(log).find("no data root: pass --data_root"), std::string::npos) << ReadAll(log);
  EXPECT_EQ(ReadAll(log).find("no worker token"), std::string::npos) << ReadAll(log);
  EXPECT_EQ(RunToExit(with({"--data_root", SharedDataPath("")}), log), 2);
  EXPECT_NE(ReadAll(log).find("no worker token"), std::string::npos) << ReadAll(log);
  // --insecure starts it (it then polls a coordinator that is not there), warning.
  const pid_t pid = Spawn(with({"--insecure"}), dir + "/insecure.log");
  ASSERT_TRUE(LogSays(dir + "/insecure.log", "polling")) << ReadAll(dir + "/insecure.log");
  EXPECT_NE(ReadAll(dir + "/insecure.log").find("WARNING: running INSECURE"), std::string::npos);
  Stop(pid, SIGTERM);
}

// A data root of its own: copies of the shared model, tokenizer and texts.
std::string MakeDataRoot(const std::string& dir) {
  const std::string root = dir + "/root";
  std::filesystem::create_directories(root);
  for (const char* f : {"stories260K.bin", "tok512.bin", "tinystories_valid_a.txt",
                        "tinystories_v2_valid_100.txt"}) {
    std::filesystem::copy_file(SharedDataPath(f), root + "/" + f,
                               std::filesystem::copy_options::overwrite_existing);
    ::chmod((root + "/" + f).c_str(), 0644);
  }
  return root;
}

v1::JobSpec RootSpec(const std::string& root) {
  v1::JobSpec s = SharedModelSpec("confined", 4, 4, 64, 4, 3);
  s.set_model_path(root + "/stories260K.bin");
  s.set_tokenizer_path(root + "/tok512.bin");
  s.set_calibration_text_path(root + "/tinystories_valid_a.txt");
  s.set_evaluation_text_path(root + "/tinystories_v2_valid_100.txt");
  return s;
}

TEST(PathConfinementTest, SubmitRefusesSymlinkEscapesDotDotAndFifosNamingTheFieldNotTheRoot) {
  const std::string dir = FreshDir("confine_submit");
  const std::string root = MakeDataRoot(dir);
  ASSERT_EQ(::symlink("/etc/passwd", (root + "/passwd.txt").c_str()), 0);
  ASSERT_EQ(::symlink("/etc", (root + "/etc").c_str()), 0);
  ScopedFifo fifo(root + "/fifo.bin");
  ASSERT_TRUE(fifo.made());
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", {"--data_root", root});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(
      grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  auto submit = [&](const v1::JobSpec& spec) {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    v1::SubmitJobResponse resp;
    return stub->SubmitJob(&ctx, req, &resp);
  };
  struct Case {
    const char* what;
    std::function<void(v1::JobSpec&)> edit;
    grpc::StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"symlink to /etc/passwd", [](v1::JobSpec& s) { s.set_calibration_text_path("passwd.txt"); },
       grpc::StatusCode::PERMISSION_DENIED,
       "spec.calibration_text_path: 'passwd.txt' resolves outside the data roots"},
      {"through a linked directory", [](v1::JobSpec& s) { s.set_evaluation_text_path("etc/hostname"); },
       grpc::StatusCode::PERMISSION_DENIED,
       "spec.evaluation_text_path: 'etc/hostname' resolves outside the data roots"},
      {"dot-dot", [](v1::JobSpec& s) { s.set_tokenizer_path("../../../../etc/passwd"); },
       grpc::StatusCode::PERMISSION_DENIED,
       "spec.tokenizer_path: '../../../../etc/passwd' is outside the data roots"},
      {"FIFO as model", [](v1::JobSpec& s) { s.set_model_path("fifo.bin"); },
       grpc::StatusCode::INVALID_ARGUMENT,
       "spec.model_path: 'fifo.bin' is not a regular file or directory: it is a FIFO"},
      {"missing", [](v1::JobSpec& s) { s.set_model_path("nope.bin"); },
       grpc::StatusCode::NOT_FOUND, "spec.model_path: 'nope.bin': no such file"},
  };
  for (const Case& k : cases) {
    v1::JobSpec s = RootSpec(root);
    k.edit(s);
    grpc::Status st = submit(s);
    EXPECT_EQ(st.error_code(), k.code) << k.what << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(k.says), std::string::npos) << k.what << ": " << st.error_message();
    // Neither the root nor the link's target is revealed.
    EXPECT_EQ(st.error_message().find(root), std::string::npos) << st.error_message();
    EXPECT_EQ(st.error_message().find(dir), std::string::npos) << st.error_message();
    if (std::string(k.what) != "dot-dot") {
      EXPECT_EQ(st.error_message().find("/etc"), std::string::npos) << st.error_message();
    }
  }
  EXPECT_FALSE(fifo.watchdog_fired()) << "the coordinator opened the FIFO";
  EXPECT_TRUE(Alive(c.pid));
  // The good spec, by relative paths: accepted, stored as the resolved paths under the root.
  v1::JobSpec good = RootSpec(root);
  good.set_model_path("stories260K.bin");
  EXPECT_TRUE(submit(good).ok());
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(PathConfinementTest, WorkerRefusesAFileSwappedForASymlinkAfterTheSubmit) {
  const std::string dir = FreshDir("confine_worker");
  const std::string root = MakeDataRoot(dir);
  CoordinatorProcess c = StartCoordinator(dir, "127.0.0.1:0", {"--data_root", root});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  auto stub = v1::ImpqService::NewStub(
      grpc::CreateChannel(c.target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::SubmitJobRequest req;
  *req.mutable_spec() = RootSpec(root);
  v1::SubmitJobResponse resp;
  ASSERT_TRUE(stub->SubmitJob(&ctx, req, &resp).ok());
  // Accepted; now the calibration text becomes a link to /etc/passwd (a writer of the data
  // volume, or a race with the submit), and a worker confined to the same root serves it.
  const std::string calib = root + "/tinystories_valid_a.txt";
  ASSERT_EQ(::unlink(calib.c_str()), 0);
  ASSERT_EQ(::symlink("/etc/passwd", calib.c_str()), 0);
  const pid_t worker = StartWorker(dir, c.target(), "confined", {"--data_root", root});
  const v1::GetJobResponse job = WaitTerminal(*stub, resp.job_id(), 60);
  Stop(worker, SIGTERM);
  EXPECT_EQ(job.status().state(), v1::JOB_STATE_FAILED) << job.status().error();
  EXPECT_NE(job.status().error().find("spec.calibration_text_path: '" + calib +
                                      "' resolves outside the data roots"),
            std::string::npos)
      << job.status().error();
  EXPECT_EQ(job.status().error().find("root:"), std::string::npos) << job.status().error();
  stub.reset();
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(ProbeTest, LoopbackHealthPortAnswersUnderMutualTlsAndServesNothingElse) {
  if (system("command -v openssl >/dev/null 2>&1") != 0) GTEST_SKIP() << "openssl CLI not installed";
  const std::string dir = FreshDir("health_mtls");
  ASSERT_TRUE(MakeTestCertificates(dir)) << "see " << dir << "/openssl.log";
  CoordinatorProcess c = StartCoordinator(
      dir, "127.0.0.1:0",
      {"--tls_cert", dir + "/server.pem", "--tls_key", dir + "/server.key", "--tls_ca",
       dir + "/ca.pem", "--health_listen", "127.0.0.1:0"});
  ASSERT_GT(c.grpc_port, 0) << "see " << dir << "/coordinator.log";
  ASSERT_GT(c.health_port, 0) << "see " << dir << "/coordinator.log";
  auto check = [](const std::string& target, grpc::health::v1::HealthCheckResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return grpc::health::v1::Health::NewStub(
               grpc::CreateChannel(target, grpc::InsecureChannelCredentials()))
        ->Check(&ctx, grpc::health::v1::HealthCheckRequest(), resp);
  };
  grpc::health::v1::HealthCheckResponse resp;
  // What a kubelet's plaintext probe gets on the mTLS port: no answer.
  EXPECT_FALSE(check(c.target(), &resp).ok());
  const std::string health = "127.0.0.1:" + std::to_string(c.health_port);
  grpc::Status st = check(health, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // The health port carries neither service, token or not.
  auto channel = grpc::CreateChannel(health, grpc::InsecureChannelCredentials());
  {
    grpc::ClientContext ctx;
    Auth(ctx);
    v1::ListJobsResponse jobs;
    EXPECT_EQ(v1::ImpqService::NewStub(channel)->ListJobs(&ctx, v1::ListJobsRequest(), &jobs)
                  .error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    grpc::ClientContext ctx;
    Auth(ctx, kWorkerToken);
    v1::AcquireLeaseRequest req;
    req.set_worker_id("w");
    req.set_capacity(1);
    v1::AcquireLeaseResponse lease;
    EXPECT_EQ(v1::WorkerService::NewStub(channel)->AcquireLease(&ctx, req, &lease).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_EQ(Stop(c.pid, SIGTERM), 0);
}

TEST(CallerStatusTest, InternalErrorsDoNotRevealServerPaths) {
  const grpc::Status internal = coordinator::ToCallerStatus(
      absl::InternalError("store /srv/impq/secret/impq.db: write job job-1: disk I/O error"));
  EXPECT_EQ(internal.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_EQ(internal.error_message().find("/srv/impq"), std::string::npos)
      << internal.error_message();
  const grpc::Status loss =
      coordinator::ToCallerStatus(absl::DataLossError("store /srv/impq/impq.db: malformed"));
  EXPECT_EQ(loss.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(loss.error_message().find("/srv/impq"), std::string::npos);
  // The caller's own mistakes keep their message (it names the field).
  const grpc::Status bad =
      coordinator::ToCallerStatus(absl::InvalidArgumentError("spec.permutations: 7; expected"));
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.error_message(), "spec.permutations: 7; expected");
}

}  // namespace
}  // namespace impq::service_test
