// impq-coordinator: serves ImpqService + WorkerService over gRPC, with health, reflection and
// Prometheus metrics.
//   impq-coordinator --listen 0.0.0.0:50051 --store /var/lib/impq/impq.db --data_root /data
//     --token_file client.token --worker_token_file worker.token
//     [--metrics_listen 0.0.0.0:9464] [--health_listen 127.0.0.1:8081] [--lease_seconds 30]
//     [--tls_cert server.pem --tls_key server.key [--tls_ca clients-ca.pem]]
//     [--retain_finished_jobs 1000] [--retain_finished_hours 0] [--max_watch_streams 1024]
// Secure by default: without a client token, a worker token and a data root it refuses to
// start (exit 2) unless --insecure is given. Token files may also be named by
// $IMPQ_TOKEN_FILE / $IMPQ_WORKER_TOKEN_FILE (common/token_file.h).
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/token_file.h"
#include "common/flags.h"
#include "common/logging.h"
#include "common/secure_defaults.h"
#include "coordinator/grpc_server.h"
#include "coordinator/store_recover.h"
#include "prometheus/exposer.h"

int main(int argc, char** argv) {
  // SIGTERM / SIGINT are blocked in every thread (set before any is started) and taken by
  // sigwait below: one arriving during start-up still gets the graceful shutdown.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // Debian's Abseil is built with mutex deadlock detection on, which gRPC's locks go through
  // as well: a global graph update on every nested lock. The service's lock order is fixed.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  std::string listen = "127.0.0.1:50051", store = "impq.db", roots, token, token_file,
              worker_token_file, worker_token, metrics_listen = "127.0.0.1:9464", port_file,
              health_listen;
  impq::TlsFiles tls;
  bool new_store = false, recover = false;
  double lease_seconds = 30;
  bool insecure = false;
  std::string metrics_auth_file;
  int64_t units_per_lease = 8, batch_split = 2, max_unit_failures = 3, max_running_jobs = 4;
  int64_t retain_finished_jobs = 1000, max_watch_streams = 1024;
  double retain_finished_hours = 0;
  impq::FlagSet flags("impq-coordinator");
  flags.String("listen", &listen, "gRPC address host:port (port 0: pick one)");
  flags.String("store", &store,
               "SQLite store file (created on first start; later a missing store is an error)");
  flags.Bool("new_store", &new_store,
             "begin with an empty store although one was kept at --store (its jobs are lost)");
  flags.Bool("recover", &recover,
             "salvage the readable jobs of a damaged --store into a fresh one, keep the damaged "
             "file beside it, and exit (README: Store recovery)");
  flags.String("data_root", &roots,
               "comma-separated directories job files must resolve into (realpath; required "
               "unless --insecure)");
  flags.String("token_file", &token_file,
               "file holding the clients' bearer token (ImpqService); default $IMPQ_TOKEN_FILE; "
               "required unless --insecure");
  flags.String("worker_token_file", &worker_token_file,
               "file holding the workers' bearer token (WorkerService; distinct from the "
               "clients'); default $IMPQ_WORKER_TOKEN_FILE; required unless --insecure");
  flags.String("token", &token, "DEPRECATED (argv is visible in ps): use --token_file");
  flags.Bool("insecure", &insecure,
             "start even without --token_file, --worker_token_file or --data_root (anyone "
             "reaching the port may then submit jobs naming any file, or lease units)");
  flags.String("metrics_listen", &metrics_listen, "Prometheus endpoint host:port ('' = off)");
  flags.String("metrics_auth_file", &metrics_auth_file,
               "file holding 'user:password': the metrics endpoint then requires HTTP basic "
               "auth (Prometheus: basic_auth with password_file)");
  flags.String("health_listen", &health_listen,
               "plaintext host:port serving only grpc.health.v1 (for probes under mutual TLS; "
               "bind it to 127.0.0.1) ('' = off)");
  flags.String("port_file", &port_file,
               "write 'grpc_port metrics_port health_port' here once listening");
  flags.String("tls_cert", &tls.cert, "PEM certificate: serve both services over TLS");
  flags.String("tls_key", &tls.key, "PEM private key of --tls_cert");
  flags.String("tls_ca", &tls.ca, "PEM CA: also require client certificates signed by it (mTLS)");
  flags.Double("lease_seconds", &lease_seconds, "lease duration");
  flags.Int("units_per_lease", &units_per_lease, "max units per lease");
  flags.Int("batch_split", &batch_split, "units each pipeline batch is split into");
  flags.Int("max_unit_failures", &max_unit_failures,
            "reported failures of one unit before its job fails");
  flags.Int("max_running_jobs", &max_running_jobs, "job pipelines driven at once");
  flags.Int("retain_finished_jobs", &retain_finished_jobs,
            "finished (done, failed, cancelled) jobs kept; older ones are deleted from memory "
            "and the store (-1: keep all)");
  flags.Double("retain_finished_hours", &retain_finished_hours,
               "finished jobs older than this are deleted (0: no age limit)");
  flags.Int("max_watch_streams", &max_watch_streams,
            "WatchJob streams open at once; one more gets RESOURCE_EXHAUSTED");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (recover) {
    absl::StatusOr<impq::coordinator::StoreRecoveryReport> r =
        impq::coordinator::RecoverStore(store);
    if (!r.ok()) {
      std::cerr << "impq-coordinator: --recover: " << r.status().message() << "\n";
      return 1;
    }
    std::cout << "recovered " << store << ": " << r->jobs << " jobs, " << r->results
              << " unit results; " << r->quarantined << " rows quarantined; "
              << r->damaged_regions << " damaged regions skipped"
              << (r->header_rebuilt ? "; header rebuilt" : "")
              << (r->padded ? "; file was cut short" : "") << "\nthe damaged file is kept as "
              << r->damaged_copy << "\n";
    return 0;
  }
  if (retain_finished_jobs < -1 || !(retain_finished_hours >= 0) || max_watch_streams < 1 ||
      max_watch_streams > (1 << 20)) {
    std::cerr << "impq-coordinator: --retain_finished_jobs must be >= -1, "
                 "--retain_finished_hours >= 0 and --max_watch_streams in [1, 2^20]\n";
    return 2;
  }
  if (!token.empty()) {
    std::cerr << impq::ArgvTokenWarning("impq-coordinator", "--token", "--token_file",
                                        impq::kTokenFileEnv);
  }
  for (auto [flag, file, env, out] :
       {std::tuple{"--token_file", &token_file, impq::kTokenFileEnv, &token},
        std::tuple{"--worker_token_file", &worker_token_file, impq::kWorkerTokenFileEnv,
                   &worker_token}}) {
    absl::StatusOr<std::string> t = impq::ReadTokenFromFlagOrEnv(flag, *file, env);
    if (!t.ok()) {
      std::cerr << "impq-coordinator: " << t.status().message() << "\n";
      return 2;
    }
    if (!t->empty()) *out = *std::move(t);
  }
  if (!worker_token.empty() && worker_token == token) {
    std::cerr << "impq-coordinator: the workers' token (--worker_token_file) equals the "
                 "clients' (--token_file): a client could then lease units and report results; "
                 "generate a distinct one\n";
    return 2;
  }
  absl::StatusOr<std::vector<std::string>> data_roots = impq::ParseDataRoots(roots);
  if (!data_roots.ok()) {
    std::cerr << "impq-coordinator: " << data_roots.status().message() << "\n";
    return 2;
  }
  // Secure defaults: what an anonymous caller could do without each of these.
  std::vector<std::string> missing;
  if (token.empty()) {
    missing.push_back("no client token: pass --token_file FILE or set IMPQ_TOKEN_FILE "
                      "(without it anyone reaching the port submits, reads and cancels jobs)");
  }
  if (worker_token.empty()) {
    missing.push_back("no worker token: pass --worker_token_file FILE or set "
                      "IMPQ_WORKER_TOKEN_FILE (without it anyone reaching the port leases units "
                      "and reports invented results)");
  }
  if (data_roots->empty()) {
    missing.push_back("no data root: pass --data_root DIR[,DIR] (without it a job may name any "
                      "file this machine and the workers can read)");
  }
  if (std::optional<int> exit_code = impq::RefuseToStartUnlessInsecure(
          "impq-coordinator", missing, insecure,
          "  Make each token file with: (umask 077; head -c 32 /dev/urandom | base64 > FILE)\n"
          "  The two tokens must differ.\n")) {
    return *exit_code;
  }
  prometheus::Registry* registry_ptr = nullptr;
  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<prometheus::Exposer> exposer;
  int metrics_port = 0;
  if (!metrics_listen.empty()) {
    try {
      exposer = std::make_unique<prometheus::Exposer>(metrics_listen);
    } catch (const std::exception& e) {
      std::cerr << "metrics: cannot listen on " << metrics_listen << ": " << e.what() << "\n";
      return 1;
    }
    if (!metrics_auth_file.empty()) {
      absl::StatusOr<std::string> auth = impq::ReadTokenFile(metrics_auth_file);
      const size_t colon = auth.ok() ? auth->find(':') : std::string::npos;
      if (!auth.ok() || colon == 0 || colon == std::string::npos) {
        std::cerr << "impq-coordinator: --metrics_auth_file: "
                  << (auth.ok() ? metrics_auth_file + ": expected one line 'user:password'"
                                : std::string(auth.status().message()))
                  << "\n";
        return 2;
      }
      exposer->RegisterAuth(
          [user = auth->substr(0, colon), password = auth->substr(colon + 1)](
              const std::string& u, const std::string& p) {
            // Both compared, in constant time, whatever the first gives.
            const bool user_ok = impq::ConstantTimeEquals(u, user);
            const bool password_ok = impq::ConstantTimeEquals(p, password);
            return user_ok && password_ok;
          });
    } else if (!absl::StartsWith(metrics_listen, "127.0.0.1:") &&
               !absl::StartsWith(metrics_listen, "localhost:") &&
               !absl::StartsWith(metrics_listen, "[::1]:")) {
      std::cerr << "impq-coordinator: WARNING: metrics on " << metrics_listen
                << " without --metrics_auth_file: anyone reaching that port reads the job "
                   "counts and worker names (restrict it by network policy, or set it)\n";
    }
    exposer->RegisterCollectable(registry);
    metrics_port = exposer->GetListeningPorts().empty() ? 0 : exposer->GetListeningPorts()[0];
    registry_ptr = registry.get();
  }
  std::unique_ptr<impq::coordinator::CoordinatorMetrics> metrics;
  if (registry_ptr != nullptr) metrics = std::make_unique<impq::coordinator::CoordinatorMetrics>(*registry_ptr);

  impq::coordinator::CoordinatorOptions o;
  o.store_path = store;
  o.new_store = new_store;
  o.lease_duration = absl::Seconds(lease_seconds);
  o.max_units_per_lease = static_cast<int>(units_per_lease);
  o.batch_split = static_cast<int>(batch_split);
  o.max_unit_failures = static_cast<int>(max_unit_failures);
  o.max_running_jobs = static_cast<int>(max_running_jobs);
  o.retention.max_finished_jobs = retain_finished_jobs;
  o.retention.max_age = absl::Hours(retain_finished_hours);
  o.limits.data_roots = *data_roots;
  o.metrics = metrics.get();
  auto coordinator = impq::coordinator::Coordinator::Open(o);
  if (!coordinator.ok()) {
    std::cerr << "impq-coordinator: " << coordinator.status() << "\n";
    return 1;
  }
  (*coordinator)->StartBackground(absl::Milliseconds(100));
  impq::coordinator::ServerOptions so;
  so.listen = listen;
  so.token = token;
  so.worker_token = worker_token;
  so.lease_duration = o.lease_duration;
  so.max_watch_streams = static_cast<int>(max_watch_streams);
  so.tls = tls;
  so.health_listen = health_listen;
  auto server = impq::coordinator::CoordinatorServer::Start(coordinator->get(), so);
  if (!server.ok()) {
    std::cerr << "impq-coordinator: " << server.status() << "\n";
    return 1;
  }
  IMPQ_LOG(INFO) << "impq-coordinator: gRPC on port " << (*server)->port() << ", metrics on port "
                 << metrics_port << ", health on port " << (*server)->health_port()
                 << ", store " << store << " (incarnation "
                 << (*coordinator)->incarnation() << ")";
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << " " << metrics_port << " "
                       << (*server)->health_port() << "\n";
    std::rename(tmp.c_str(), port_file.c_str());
  }
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  // Graceful: stop intake, drain the calls in flight (every accepted report is durable before
  // its call returns), close the connections and the store.
  IMPQ_LOG(INFO) << "impq-coordinator: signal " << signal_number << ", shutting down";
  const absl::Time t0 = absl::Now();
  (*coordinator)->Shutdown();
  (*server)->Shutdown(absl::Seconds(5));
  server->reset();
  coordinator->reset();  // closes the store
  IMPQ_LOG(INFO) << "impq-coordinator: stopped in " << absl::FormatDuration(absl::Now() - t0);
  // The Prometheus exposer is not destroyed: civetweb's shutdown polls its listening socket
  // for up to 2 s (../shared/TOOLCHAIN.md, pitfall 9), and nothing is left to flush.
  std::fflush(nullptr);
  std::_Exit(0);
}
