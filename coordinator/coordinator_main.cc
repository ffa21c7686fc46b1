// impq-coordinator: serves ImpqService + WorkerService over gRPC, with health, reflection and
// Prometheus metrics.
//   impq-coordinator --listen 0.0.0.0:50051 --store /var/lib/impq/impq.db
//     --data_root /data --metrics_listen 0.0.0.0:9464 [--token_file F] [--lease_seconds 30]
//     [--tls_cert server.pem --tls_key server.key [--tls_ca clients-ca.pem]]
//     [--retain_finished_jobs 1000] [--retain_finished_hours 0] [--max_watch_streams 1024]
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <tuple>

#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/token_file.h"
#include "common/flags.h"
#include "common/logging.h"
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
              worker_token_file, worker_token,
              metrics_listen = "127.0.0.1:9464", port_file;
  impq::TlsFiles tls;
  bool new_store = false, recover = false;
  double lease_seconds = 30;
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
  flags.String("data_root", &roots, "comma-separated directories job paths must lie in");
  flags.String("token", &token, "bearer token required on the client API (prefer --token_file)");
  flags.String("token_file", &token_file, "file holding the bearer token");
  flags.String("worker_token_file", &worker_token_file,
               "file holding the workers' bearer token (WorkerService; distinct from the "
               "clients' token; without it any caller may lease units and report results)");
  flags.String("metrics_listen", &metrics_listen, "Prometheus endpoint host:port ('' = off)");
  flags.String("port_file", &port_file, "write 'grpc_port metrics_port' here once listening");
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
  for (auto [flag, file, out] : {std::tuple{"--token_file", &token_file, &token},
                                  std::tuple{"--worker_token_file", &worker_token_file,
                                             &worker_token}}) {
    if (file->empty()) continue;
    absl::StatusOr<std::string> t = impq::ReadTokenFile(*file);
    if (!t.ok()) {
      std::cerr << "impq-coordinator: " << flag << ": " << t.status().message() << "\n";
      return 2;
    }
    *out = *std::move(t);
  }
  if (worker_token.empty()) {
    std::cerr << "impq-coordinator: WARNING: no --worker_token_file: any caller that reaches "
                 "the WorkerService can lease units and report results\n";
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
  for (absl::string_view r : absl::StrSplit(roots, ',', absl::SkipEmpty())) o.limits.data_roots.emplace_back(r);
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
  auto server = impq::coordinator::CoordinatorServer::Start(coordinator->get(), so);
  if (!server.ok()) {
    std::cerr << "impq-coordinator: " << server.status() << "\n";
    return 1;
  }
  IMPQ_LOG(INFO) << "impq-coordinator: gRPC on port " << (*server)->port() << ", metrics on port "
                 << metrics_port << ", store " << store << " (incarnation "
                 << (*coordinator)->incarnation() << ")";
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << (*server)->port() << " " << metrics_port << "\n";
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
