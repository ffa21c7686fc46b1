// impq-worker: pulls work units from an impq-coordinator and evaluates them on CUDA device 0
// when there is one (the GPU path), else on the CPU engine (--device, default $IMPQ_DEVICE or
// auto; worker/service/unit_executor.h). Exits 1 when the executor stops serving (e.g. a GPU
// failure), so the orchestrator can replace it; its leases expire and go to other workers.
//   impq-worker --coordinator 127.0.0.1:50051 --token_file worker.token --data_root /data
//     [--worker_id w1] [--threads 2] [--capacity 1] [--device auto|cpu|gpu]
//     [--tls_ca ca.pem [--tls_cert client.pem --tls_key client.key] [--tls_server_name N]]
// Secure by default: without the workers' token (--token_file or $IMPQ_WORKER_TOKEN_FILE) and
// a --data_root it refuses to start (exit 2) unless --insecure is given.
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "common/file_util.h"
#include "common/token_file.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/secure_defaults.h"
#include "worker/service/worker_loop.h"

namespace {
impq::worker_service::WorkerLoop* g_loop = nullptr;
void OnSignal(int) {
  if (g_loop != nullptr) g_loop->Stop();  // an atomic store: async-signal-safe
}
}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil has mutex deadlock detection on (a global graph update on every nested
  // lock, gRPC's included); the worker's lock order is fixed, as the coordinator's.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string target = "127.0.0.1:50051", worker_id, token, token_file, roots;
  impq::TlsFiles tls;
  int64_t threads = 1, capacity = 1, max_units = 0;
  bool insecure = false;
  const char* device_env = std::getenv("IMPQ_DEVICE");
  std::string device = device_env != nullptr && *device_env != '\0' ? device_env : "auto";
  impq::FlagSet flags("impq-worker");
  flags.String("coordinator", &target, "coordinator WorkerService address host:port");
  flags.String("worker_id", &worker_id, "stable id of this worker (default: hostname-pid)");
  flags.String("token_file", &token_file,
               "file holding the workers' bearer token (the coordinator's --worker_token_file); "
               "default $IMPQ_WORKER_TOKEN_FILE; required unless --insecure");
  flags.String("token", &token, "DEPRECATED (argv is visible in ps): use --token_file");
  flags.String("data_root", &roots,
               "comma-separated directories a unit's files must resolve into (checked again "
               "here before any is opened); required unless --insecure");
  flags.Bool("insecure", &insecure,
             "start even without a token or --data_root (open any file a unit names)");
  flags.String("tls_ca", &tls.ca, "PEM CA to verify the coordinator: connect over TLS");
  flags.String("tls_cert", &tls.cert, "PEM client certificate (mutual TLS; implies TLS)");
  flags.String("tls_key", &tls.key, "PEM private key of --tls_cert");
  flags.String("tls_server_name", &tls.server_name, "name expected in the server certificate");
  flags.Int("threads", &threads, "compute threads of the CPU engine");
  flags.String("device", &device,
               "auto (CUDA device 0 when present, else CPU), cpu, or gpu (required); "
               "default $IMPQ_DEVICE or auto");
  flags.Int("capacity", &capacity, "units asked per lease");
  flags.Int("max_units", &max_units, "exit after reporting this many units (0: never)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (!token.empty()) {
    std::cerr << impq::ArgvTokenWarning("impq-worker", "--token", "--token_file",
                                        impq::kWorkerTokenFileEnv);
  }
  absl::StatusOr<std::string> t =
      impq::ReadTokenFromFlagOrEnv("--token_file", token_file, impq::kWorkerTokenFileEnv);
  if (!t.ok()) {
    std::cerr << "impq-worker: " << t.status().message() << "\n";
    return 2;
  }
  if (!t->empty()) token = *std::move(t);
  absl::StatusOr<std::vector<std::string>> data_roots = impq::ParseDataRoots(roots);
  if (!data_roots.ok()) {
    std::cerr << "impq-worker: " << data_roots.status().message() << "\n";
    return 2;
  }
  std::vector<std::string> missing;
  if (token.empty()) {
    missing.push_back("no worker token: pass --token_file FILE or set IMPQ_WORKER_TOKEN_FILE "
                      "(the coordinator's --worker_token_file)");
  }
  if (data_roots->empty()) {
    missing.push_back("no data root: pass --data_root DIR[,DIR] (where the job files are "
                      "mounted; a unit naming a file elsewhere is refused)");
  }
  if (std::optional<int> exit_code =
          impq::RefuseToStartUnlessInsecure("impq-worker", missing, insecure, "")) {
    return *exit_code;
  }
  if (worker_id.empty()) {
    char host[256] = {0};
    gethostname(host, sizeof(host) - 1);
    worker_id = std::string(host) + "-" + std::to_string(getpid());
  }
  impq::worker_service::GrpcClientOptions co;
  co.target = target;
  co.token = token;
  co.rpc_timeout_ms = 30000;
  co.tls = tls;
  auto client_or = impq::worker_service::NewGrpcWorkerClient(co);
  if (!client_or.ok()) {
    std::cerr << "impq-worker: " << client_or.status().message() << "\n";
    return 2;
  }
  std::unique_ptr<impq::worker_service::WorkerClient> client = *std::move(client_or);
  absl::StatusOr<impq::worker_service::EngineDevice> engine_device =
      impq::worker_service::ParseEngineDevice(device);
  if (!engine_device.ok()) {
    std::cerr << "impq-worker: --device: " << engine_device.status().message() << "\n";
    return 2;
  }
  auto executor =
      impq::worker_service::NewEngineExecutor(static_cast<int>(threads), *engine_device,
                                              *data_roots);
  impq::worker_service::WorkerLoopOptions o;
  o.worker_id = worker_id;
  o.capacity = static_cast<int>(capacity);
  o.max_units = max_units;
  impq::worker_service::WorkerLoop loop(client.get(), executor.get(), o);
  g_loop = &loop;
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  IMPQ_LOG(INFO) << "impq-worker " << worker_id << " polling " << target;
  const auto st = loop.Run();
  g_loop = nullptr;
  IMPQ_LOG(INFO) << "impq-worker " << worker_id << " stopping: " << st.accepted << " accepted, "
                 << st.duplicate << " duplicate, " << st.stale << " stale, " << st.errors
                 << " errors";
  if (!st.health.ok()) {
    // Not serving (e.g. the GPU failed): a non-zero exit lets the orchestrator restart or
    // replace this worker; its leases expire and other workers take the units.
    std::cerr << "impq-worker: " << st.health.message() << "\n";
    return 1;
  }
  return 0;
}
