// Helpers of the cross-process service tests: spawning impq-coordinator / impq-worker on
// 127.0.0.1 with ephemeral ports, authenticated stubs, and a plain HTTP GET for the metrics.
#ifndef IMPQ_TESTS_SERVICE_SERVICE_TEST_UTIL_H_
#define IMPQ_TESTS_SERVICE_SERVICE_TEST_UTIL_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "common/grpc_tls.h"
#include "common/test_paths.h"
#include "coordinator/test_game.h"
#include "impq/v1/services.grpc.pb.h"

namespace impq::service_test {

// fork + execv with stderr (and stdout) appended to `log`, the variables `unset_env` removed
// from the child's environment. Returns the child's pid.
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
                   const std::vector<std::string>& unset_env = {}) {
  const pid_t pid = fork();
  if (pid == 0) {
    for (const std::string& name : unset_env) unsetenv(name.c_str());
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> a;
    for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
    a.push_back(nullptr);
    execv(a[0], a.data());
    _exit(127);
  }
  return pid;
}

// SIGKILL or SIGTERM, then reap. Returns the wait status.
inline int Stop(pid_t pid, int sig) {
  if (pid <= 0) return 0;
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

inline bool Alive(pid_t pid) { return waitpid(pid, nullptr, WNOHANG) == 0; }

// The whole HTTP/1.0 response (status line, headers, body) of GET `path` on 127.0.0.1:`port`;
// `headers`: extra header lines, each ending in "\r\n".
inline std::string HttpGet(int port, const std::string& path, const std::string& headers = "") {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  const std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n" + headers + "\r\n";
  (void)!write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// The value of an unlabelled sample `name` in a Prometheus text page; -1 when absent.
inline double MetricValue(const std::string& page, const std::string& name) {
  const std::string key = "\n" + name + " ";
  const size_t at = page.find(key);
  if (at == std::string::npos) return -1;
  return std::strtod(page.c_str() + at + key.size(), nullptr);
}

struct CoordinatorProcess {
  pid_t pid = -1;
  int grpc_port = 0;
  int metrics_port = 0;
  int health_port = 0;  // with --health_listen
  int exit_code = -1;   // when it exited before listening (refused to start): its exit code
  std::string target() const { return "127.0.0.1:" + std::to_string(grpc_port); }
};

inline const char* kToken = "s3cret";
inline const char* kWorkerToken = "w0rker-s3cret";  // the workers' credential (distinct)

// Starts impq-coordinator on `listen` (default: an ephemeral port) with the store in `dir`
// and the shared data as its only root; waits for its port file. grpc_port == 0 on failure.
inline CoordinatorProcess StartCoordinator(const std::string& dir,
                                           const std::string& listen = "127.0.0.1:0",
                                           std::vector<std::string> extra = {}) {
  CoordinatorProcess p;
  const std::string ports = dir + "/ports";
  std::remove(ports.c_str());
  // Tokens from files (never argv, which `ps` shows): the clients' and the workers'.
  std::ofstream(dir + "/token") << kToken << "\n";
  std::ofstream(dir + "/worker_token") << kWorkerToken << "\n";
  std::vector<std::string> argv = {IMPQ_COORDINATOR_BINARY, "--listen", listen,
                                   "--metrics_listen", "127.0.0.1:0", "--store", dir + "/c.db",
                                   "--data_root", SharedDataPath(""), "--token_file",
                                   dir + "/token", "--worker_token_file", dir + "/worker_token",
                                   "--port_file", ports};
  argv.insert(argv.end(), extra.begin(), extra.end());
  p.pid = Spawn(argv, dir + "/coordinator.log");
  for (int i = 0; i < 200 && p.grpc_port == 0; ++i) {
    std::ifstream(ports) >> p.grpc_port >> p.metrics_port >> p.health_port;
    if (p.grpc_port != 0) break;
    int status = 0;
    if (waitpid(p.pid, &status, WNOHANG) == p.pid) {  // it exited: reaped here
      p.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    usleep(50 * 1000);
  }
  return p;
}

inline pid_t StartWorker(const std::string& dir, const std::string& target, const std::string& id,
                         std::vector<std::string> extra = {}) {
  // The CPU engine: results are compared bit for bit with the (CPU) embedded run.
  // Secure defaults: the workers' token from a file, and the shared data as the only root
  // (the worker resolves and confines every path of a unit again before opening it).
  std::vector<std::string> argv = {IMPQ_WORKER_BINARY, "--coordinator", target, "--worker_id", id,
                                   "--device", "cpu", "--token_file", dir + "/worker_token",
                                   "--data_root", SharedDataPath("")};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return Spawn(argv, dir + "/" + id + ".log");
}

// SubmitJob with the client token: the job id, "" on failure. Without `status` a failure is a
// test failure; with it, the caller checks `*status`.
inline std::string Submit(v1::ImpqService::Stub& stub, const v1::JobSpec& spec,
                          grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::SubmitJobRequest req;
  *req.mutable_spec() = spec;
  v1::SubmitJobResponse resp;
  const grpc::Status st = stub.SubmitJob(&ctx, req, &resp);
  if (status != nullptr) {
    *status = st;
  } else {
    EXPECT_TRUE(st.ok()) << st.error_message();
  }
  return resp.job_id();
}

// In `dir`, with the openssl CLI (P-256 keys: fast): a test CA (ca.pem, ca.key), a second CA
// that signs nothing the server uses (other.pem), and a server certificate for localhost /
// 127.0.0.1 signed by the first (server.pem, server.key). False when openssl fails (its output
// is in dir/openssl.log).
inline bool MakeTestCertificates(const std::string& dir) {
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  const std::string make =
      "cd " + dir + " && "
      "openssl req -x509 " + ec + " -days 1 -subj /CN=impq-test-ca -keyout ca.key -out ca.pem && "
      "openssl req -x509 " + ec + " -days 1 -subj /CN=other-ca -keyout other.key -out other.pem && "
      "openssl req " + ec + " -subj /CN=localhost -keyout server.key -out server.csr && "
      "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem";
  return system(("(" + make + ") > " + dir + "/openssl.log 2>&1").c_str()) == 0;
}

// A fresh empty directory for one test.
// A block-granularity job on the shared stories260K model: calibration on
// tinystories_valid_a.txt, allocations measured on tinystories_v2_valid_100.txt, budgets 2.5
// and 3.0 bits, antithetic walks.
inline v1::JobSpec SharedModelSpec(const std::string& name, int64_t calib_docs, int64_t eval_docs,
                                   int64_t context, int64_t permutations, uint64_t seed) {
  v1::JobSpec s;
  s.set_name(name);
  s.set_model_path(SharedDataPath("stories260K.bin"));
  s.set_tokenizer_path(SharedDataPath("tok512.bin"));
  s.set_calibration_text_path(SharedDataPath("tinystories_valid_a.txt"));
  s.set_evaluation_text_path(SharedDataPath("tinystories_v2_valid_100.txt"));
  s.set_calibration_docs(calib_docs);
  s.set_evaluation_docs(eval_docs);
  s.set_context(context);
  s.set_players("block");
  s.set_permutations(permutations);
  s.set_antithetic(true);
  s.set_seed(seed);
  s.add_average_bits(2.5);
  s.add_average_bits(3.0);
  return s;
}

// A result as far as it is a function of the spec: the result document without its timings
// and prefix-reuse counters (which depend on where units ran), the job id cleared.
inline std::string Comparable(v1::JobResult r) {
  r.set_document(coordinator::WithoutTimings(r.document()));
  r.clear_job_id();
  return r.SerializeAsString();
}

inline std::string FreshDir(const std::string& name) {
  const std::string dir = TempFilePath(name);
  if (system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()) != 0) return "";
  return dir;
}

inline void Auth(grpc::ClientContext& ctx, const std::string& token = kToken) {
  ctx.AddMetadata("authorization", "Bearer " + token);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

inline grpc::Status GetJob(v1::ImpqService::Stub& stub, const std::string& id,
                           v1::GetJobResponse* resp) {
  grpc::ClientContext ctx;
  Auth(ctx);
  v1::GetJobRequest req;
  req.set_job_id(id);
  return stub.GetJob(&ctx, req, resp);
}

inline bool Terminal(v1::JobState s) {
  return s == v1::JOB_STATE_DONE || s == v1::JOB_STATE_FAILED || s == v1::JOB_STATE_CANCELLED;
}

// Polls GetJob until the job is terminal or `seconds` pass. Returns the last response.
inline v1::GetJobResponse WaitTerminal(v1::ImpqService::Stub& stub, const std::string& id,
                                       double seconds) {
  v1::GetJobResponse resp;
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (std::chrono::steady_clock::now() < until) {
    resp.Clear();
    if (GetJob(stub, id, &resp).ok() && Terminal(resp.status().state())) break;
    usleep(30 * 1000);
  }
  return resp;
}

}  // namespace impq::service_test

#endif  // IMPQ_TESTS_SERVICE_SERVICE_TEST_UTIL_H_
