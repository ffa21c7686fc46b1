// service_bench: how the distributed service scales, and what one lease costs the coordinator.
//
//  1. Throughput (evaluations/s) of one job with 1, 2 and 4 workers, and the scaling
//     efficiency thr(k) / (k · thr(1)). Workers are threads in this process, each a full
//     WorkerLoop with its own gRPC channel (own TCP connection) to a CoordinatorServer on
//     127.0.0.1 — the same code path as impq-worker processes. Units are synthetic: the whole
//     job pipeline on the 20-player test game (coordinator/test_game.h), each unit *sleeping* a
//     fixed time instead of computing, so 4 workers can scale on a 2-core machine; the job is
//     timed from submission to DONE, with a SQLite file store. The pipeline's sequential parts
//     (the per-budget choice's local search, one coalition a step) bound the speed-up.
//  2. Lease round trips/s: client threads, each with its own channel, doing AcquireLease +
//     ReportResult (the synthetic game's answer) as fast as they can against the
//     in-process server over real gRPC loopback, with a ":memory:" store (coordinator logic
//     + RPC cost) and a file store (plus the fsync'ed SQLite commits: concurrent reports share
//     one, see "Group commit" in coordinator/coordinator.h).
//
// Prints Markdown tables. Goals (issue 5): >= 90% efficiency at 4 workers, >= 5,000 lease
// round trips/s.
//   service_bench [--unit_ms 10] [--walks 120] [--rt_seconds 2] [--rt_clients 8]
//                 [--throughput=false] [--round_trips=false] [--stores memory,file]
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/logging.h"
#include "coordinator/coordinator.h"
#include "coordinator/grpc_server.h"
#include "coordinator/metrics.h"
#include "coordinator/test_game.h"
#include "worker/service/worker_client.h"
#include "worker/service/worker_loop.h"

namespace impq {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPlayers = 20;  // 2^20 coalitions: the walks do not exhaust them

class SleepExecutor : public worker_service::UnitExecutor {
 public:
  explicit SleepExecutor(absl::Duration d) : d_(d) {}
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    absl::SleepFor(d_);
    return game_.Execute(unit);
  }

 private:
  const absl::Duration d_;
  coordinator::SyntheticExecutor game_{kPlayers};
};

v1::JobSpec GameSpec(int64_t walks, uint64_t seed = 1) {
  v1::JobSpec s;
  s.set_model_path("/bench/m");
  s.set_tokenizer_path("/bench/t");
  s.set_calibration_text_path("/bench/c");
  s.set_evaluation_text_path("/bench/e");
  s.set_permutations(walks);
  s.set_seed(seed);
  s.add_average_bits(3.0);
  return s;
}

struct Served {
  // Declared first: the coordinator reports into them until it is destroyed.
  std::unique_ptr<prometheus::Registry> registry;
  std::unique_ptr<coordinator::CoordinatorMetrics> metrics;
  std::unique_ptr<coordinator::Coordinator> coordinator;
  std::unique_ptr<coordinator::CoordinatorServer> server;
  std::string target;
};

// A coordinator as impq-coordinator runs it (metrics on), serving on an ephemeral port.
Served Serve(const std::string& store, int batch_split = 2) {
  Served s;
  s.registry = std::make_unique<prometheus::Registry>();
  s.metrics = std::make_unique<coordinator::CoordinatorMetrics>(*s.registry);
  coordinator::CoordinatorOptions o;
  o.store_path = store;
  o.lease_duration = absl::Seconds(30);
  o.metrics = s.metrics.get();
  o.max_running_jobs = 64;  // the round trips keep 64 jobs' pipelines asking for units
  o.batch_split = batch_split;
  auto c = coordinator::Coordinator::Open(o);
  IMPQ_CHECK(c.ok()) << c.status();
  s.coordinator = *std::move(c);
  s.coordinator->StartBackground(absl::Milliseconds(2));
  coordinator::ServerOptions so;
  so.listen = "127.0.0.1:0";
  auto server = coordinator::CoordinatorServer::Start(s.coordinator.get(), so);
  IMPQ_CHECK(server.ok()) << server.status();
  s.server = *std::move(server);
  s.target = "127.0.0.1:" + std::to_string(s.server->port());
  return s;
}

std::string FreshStore(const std::string& name) {
  const std::string path = "/tmp/impq_service_bench_" + std::to_string(getpid()) + "_" + name + ".db";
  for (const char* suffix : {"", "-wal", "-shm", ".id"}) std::remove((path + suffix).c_str());
  return path;
}

struct ThroughputRow {
  int workers = 0;
  int64_t evaluations = 0;
  double seconds = 0;
  double rate() const { return static_cast<double>(evaluations) / seconds; }
};

ThroughputRow Throughput(int workers, int64_t walks, absl::Duration unit) {
  const std::string store = FreshStore("thr" + std::to_string(workers));
  // Every pipeline batch split as many ways as there are workers (impq-coordinator
  // --batch_split; the default, 2, keeps a walk's prefix reuse on one worker).
  Served s = Serve(store, std::max(2, workers));
  std::vector<std::unique_ptr<worker_service::WorkerClient>> clients;
  std::vector<std::unique_ptr<worker_service::UnitExecutor>> executors;
  std::vector<std::unique_ptr<worker_service::WorkerLoop>> loops;
  for (int w = 0; w < workers; ++w) {
    worker_service::GrpcClientOptions co;
    co.target = s.target;
    auto client = worker_service::NewGrpcWorkerClient(co);
    IMPQ_CHECK(client.ok()) << client.status();
    clients.push_back(*std::move(client));
    executors.push_back(std::make_unique<SleepExecutor>(unit));
    worker_service::WorkerLoopOptions lo;
    lo.worker_id = "bench-" + std::to_string(w);
    lo.idle_poll = absl::Milliseconds(1);
    loops.push_back(std::make_unique<worker_service::WorkerLoop>(clients.back().get(),
                                                                 executors.back().get(), lo));
  }
  std::vector<std::thread> threads;
  for (auto& l : loops) threads.emplace_back([p = l.get()] { p->Run(); });
  absl::SleepFor(absl::Milliseconds(100));  // channels connected, loops idle-polling
  const auto t0 = Clock::now();
  auto st = s.coordinator->SubmitJob(GameSpec(walks));
  IMPQ_CHECK(st.ok()) << st.status();
  v1::JobStatus js = *st;
  while (js.state() != v1::JOB_STATE_DONE && js.state() != v1::JOB_STATE_FAILED) {
    js = *s.coordinator->WaitForChange(js.job_id(), js.version(), absl::Seconds(1));
  }
  ThroughputRow row;
  row.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  IMPQ_CHECK(js.state() == v1::JOB_STATE_DONE) << js.error();
  row.workers = workers;
  row.evaluations = js.evaluations_done();
  for (auto& l : loops) l->Stop();
  for (auto& t : threads) t.join();
  s.server->Shutdown(absl::ZeroDuration());
  s.coordinator->Shutdown();
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((store + suffix).c_str());
  return row;
}

// CPU seconds (user + system) of this whole process so far.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct RoundTripRow {
  std::string store;
  double cpu_seconds = 0;  // client and server together (one process)
  int clients = 0;
  int64_t round_trips = 0;
  double seconds = 0;
  double reports_per_commit = 0;  // accepted reports per store transaction (group commit)
  double per_second() const { return static_cast<double>(round_trips) / seconds; }
};

RoundTripRow RoundTrips(const std::string& store_kind, int clients, double seconds) {
  const std::string store = store_kind == "memory" ? ":memory:" : FreshStore("rt");
  Served s = Serve(store);
  for (uint64_t seed = 0; seed < 64; ++seed) {
    auto st = s.coordinator->SubmitJob(GameSpec(100000, seed));
    IMPQ_CHECK(st.ok()) << st.status();
  }
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      worker_service::GrpcClientOptions co;
      co.target = s.target;
      auto client = worker_service::NewGrpcWorkerClient(co);
      IMPQ_CHECK(client.ok()) << client.status();
      coordinator::SyntheticExecutor game(kPlayers);
      const std::string id = "rt-" + std::to_string(t);
      while (!stop.load()) {
        auto lease = (*client)->AcquireLease(id, 1);
        if (!lease.ok()) {
          ++errors;
          continue;
        }
        if (!lease->has_lease) continue;  // every pipeline waits for its batch: ask again
        absl::StatusOr<v1::WorkResult> evaluated = game.Execute(lease->units[0]);
        IMPQ_CHECK(evaluated.ok()) << evaluated.status();
        v1::WorkResult r = *std::move(evaluated);
        r.set_worker_id(id);
        auto out = (*client)->ReportResult(lease->lease_id, r);
        if (!out.ok() || *out != v1::REPORT_OUTCOME_ACCEPTED) {
          ++errors;
          continue;
        }
        ++done;
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(200));  // warm up: connections, first leases
  const int64_t d0 = done.load();
  const double reports0 = s.metrics->reports_accepted.Value();
  const double commits0 = s.metrics->store_commits.Value();
  const auto t0 = Clock::now();
  const double cpu0 = ProcessCpuSeconds();
  absl::SleepFor(absl::Seconds(seconds));
  RoundTripRow row;
  row.round_trips = done.load() - d0;
  row.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  row.cpu_seconds = ProcessCpuSeconds() - cpu0;
  row.reports_per_commit = (s.metrics->reports_accepted.Value() - reports0) /
                           std::max(1.0, s.metrics->store_commits.Value() - commits0);
  stop.store(true);
  for (auto& t : threads) t.join();
  IMPQ_CHECK(errors.load() == 0) << errors.load() << " failed round trips";
  row.store = store_kind == "memory" ? ":memory:" : "SQLite file (WAL, synchronous=FULL)";
  row.clients = clients;
  s.server->Shutdown(absl::ZeroDuration());
  s.coordinator->Shutdown();
  if (store != ":memory:") {
    for (const char* suffix : {"", "-wal", "-shm"}) std::remove((store + suffix).c_str());
  }
  return row;
}

void PrintThroughput(int64_t walks, int64_t unit_ms) {
  std::printf(
      "## Throughput: one synthetic job of %d walks (%d players), %d ms sleep per unit\n\n"
      "Workers are threads running WorkerLoop, each with its own gRPC channel to a "
      "CoordinatorServer on 127.0.0.1; SQLite file store.\n\n"
      "| workers | evaluations | seconds | evaluations/s | speed-up | efficiency |\n"
      "|---:|---:|---:|---:|---:|---:|\n",
      static_cast<int>(walks), kPlayers, static_cast<int>(unit_ms));
  double base = 0;
  for (int w : {1, 2, 4}) {
    const ThroughputRow r = Throughput(w, walks, absl::Milliseconds(unit_ms));
    if (w == 1) base = r.rate();
    std::printf("| %d | %lld | %.3f | %.0f | %.2fx | %.1f%% |\n", w,
                static_cast<long long>(r.evaluations), r.seconds, r.rate(), r.rate() / base,
                100.0 * r.rate() / (w * base));
    std::fflush(stdout);
  }
}

void PrintRoundTrips(int clients, double seconds, const std::vector<std::string>& stores) {
  std::printf(
      "\n## Coordinator overhead per lease: AcquireLease + ReportResult over gRPC loopback\n\n"
      "CPU us: user + system time of client and server together (one process) per round trip; "
      "it varies less with the load of a shared machine than wall time does. Reports per "
      "commit: accepted reports per store transaction (group commit).\n\n"
      "| store | client threads | round trips | seconds | round trips/s | wall us per round trip |"
      " CPU us per round trip | reports per commit |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const std::string& kind : stores) {
    const RoundTripRow r = RoundTrips(kind, clients, seconds);
    std::printf("| %s | %d | %lld | %.2f | %.0f | %.1f | %.1f | %.2f |\n", r.store.c_str(),
                r.clients, static_cast<long long>(r.round_trips), r.seconds, r.per_second(),
                1e6 / r.per_second(), 1e6 * r.cpu_seconds / static_cast<double>(r.round_trips),
                r.reports_per_commit);
    std::fflush(stdout);
  }
}

int Main(int argc, char** argv) {
  int64_t unit_ms = 10, walks = 120, rt_clients = 8;
  double rt_seconds = 2;
  bool throughput = true, round_trips = true;
  std::string stores = "memory,file";
  FlagSet flags("service_bench");
  flags.Int("unit_ms", &unit_ms, "sleep per synthetic unit (ms)");
  flags.Int("walks", &walks, "units (walks) of the throughput job");
  flags.Double("rt_seconds", &rt_seconds, "measuring time of each round-trip run");
  flags.Int("rt_clients", &rt_clients, "client threads of the round-trip runs");
  flags.Bool("throughput", &throughput, "print the throughput table");
  flags.Bool("round_trips", &round_trips, "print the round-trip table");
  flags.String("stores", &stores, "stores of the round-trip table: memory, file or both");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (throughput) PrintThroughput(walks, unit_ms);
  std::vector<std::string> store_kinds;
  for (absl::string_view k : absl::StrSplit(stores, ',', absl::SkipEmpty())) {
    if (k != "memory" && k != "file") {
      std::fprintf(stderr, "--stores: '%s' is neither memory nor file\n", std::string(k).c_str());
      return 2;
    }
    store_kinds.emplace_back(k);
  }
  if (round_trips) PrintRoundTrips(static_cast<int>(rt_clients), rt_seconds, store_kinds);
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) {
  // As impq-coordinator does (coordinator_main.cc): Debian's Abseil checks every lock for
  // deadlock cycles, gRPC's included.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return impq::Main(argc, argv);
}
