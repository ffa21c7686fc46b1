// cluster_bench (issue 19): the default job (`impq run`'s, every setting at its default) through
// impq-coordinator with 1 and with 2 impq-worker processes (1 thread each) on this machine:
// wall time and evaluations/s per phase of the pipeline, the speed-up of 2 workers over 1, and
// the chosen held-out PPL per budget (the result must not move with the worker count).
//
// Real processes on 127.0.0.1: the coordinator (SQLite file store in a temporary directory),
// the workers, and this program as the client (gRPC, polling GetJob every 100 ms: a phase's
// time is from the first status in it to the first status in the next, so each figure is
// within ±0.1 s). Prints a Markdown table. The load average before and after each run is
// printed with it: these machines are shared.
//   cluster_bench [--workers 1,2] [--threads 1] [--data ../shared/data]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/test_paths.h"
#include "impq/v1/services.grpc.pb.h"
#include "nlohmann/json.hpp"

namespace impq {
namespace {

using Clock = std::chrono::steady_clock;
const char* const kPhases[] = {"prepare", "baselines", "spqe", "solve", "select", "measure"};

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* f = std::fopen(log.c_str(), "w");
    if (f != nullptr) {
      dup2(fileno(f), 1);
      dup2(fileno(f), 2);
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

void Stop(pid_t pid) {
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

struct PhaseTime {
  double start = -1, end = -1;
  int64_t evaluations_start = 0, evaluations_end = 0;
};

struct Run {
  int workers = 0;
  double wall = 0;
  std::map<std::string, PhaseTime> phases;
  std::string chosen_ppl, load_before, load_after;
};

std::optional<Run> RunCluster(int workers, int threads, const std::string& data,
                              const std::string& bin) {
  Run run;
  run.workers = workers;
  run.load_before = LoadAverage();
  const std::string dir = "/tmp/impq_cluster_bench." + std::to_string(getpid()) + "." +
                          std::to_string(workers);
  if (std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()) != 0) return std::nullopt;
  std::ofstream(dir + "/token") << "bench-token\n";
  std::ofstream(dir + "/worker_token") << "bench-worker-token\n";
  const pid_t coord = Spawn({bin + "/coordinator/impq-coordinator", "--listen", "127.0.0.1:0",
                             "--metrics_listen", "", "--store", dir + "/c.db", "--data_root", data,
                             "--token_file", dir + "/token", "--worker_token_file",
                             dir + "/worker_token", "--port_file", dir + "/ports"},
                            dir + "/coordinator.log");
  int port = 0, metrics = 0;
  for (int i = 0; i < 200 && port == 0; ++i) {
    std::ifstream(dir + "/ports") >> port >> metrics;
    if (port == 0) usleep(50 * 1000);
  }
  if (port == 0) {
    std::cerr << "cluster_bench: the coordinator did not start; see " << dir << "\n";
    Stop(coord);
    return std::nullopt;
  }
  const std::string target = "127.0.0.1:" + std::to_string(port);
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    pids.push_back(Spawn({bin + "/worker/service/impq-worker", "--coordinator", target,
                          "--token_file", dir + "/worker_token", "--data_root", data,
                          "--worker_id",
                          "w" + std::to_string(w),
                          "--threads", std::to_string(threads), "--device", "cpu"},
                         dir + "/w" + std::to_string(w) + ".log"));
  }
  auto stub = v1::ImpqService::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  auto call = [&](auto method, const auto& req, auto* resp) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer bench-token");
    return ((*stub).*method)(&ctx, req, resp);
  };
  // The default job: every setting unset (the coordinator fills `impq run`'s defaults), the
  // default files by name in the data root.
  v1::SubmitJobRequest sreq;
  sreq.mutable_spec()->set_model_path("stories260K.bin");
  sreq.mutable_spec()->set_tokenizer_path("tok512.bin");
  sreq.mutable_spec()->set_calibration_text_path("tinystories_v2_valid_100.txt");
  sreq.mutable_spec()->set_evaluation_text_path("tinystories_valid_a.txt");
  v1::SubmitJobResponse sresp;
  const auto t0 = Clock::now();
  grpc::Status st = call(&v1::ImpqService::Stub::SubmitJob, sreq, &sresp);
  std::optional<Run> out;
  if (!st.ok()) {
    std::cerr << "cluster_bench: submit: " << st.error_message() << "\n";
  } else {
    v1::GetJobRequest greq;
    greq.set_job_id(sresp.job_id());
    std::string phase;
    while (true) {
      v1::GetJobResponse g;
      if (!call(&v1::ImpqService::Stub::GetJob, greq, &g).ok()) break;
      const double now = std::chrono::duration<double>(Clock::now() - t0).count();
      const v1::JobStatus& s = g.status();
      if (s.phase() != phase) {
        if (!phase.empty()) {
          run.phases[phase].end = now;
          run.phases[phase].evaluations_end = s.evaluations_done();
        }
        phase = s.phase();
        run.phases[phase].start = now;
        run.phases[phase].evaluations_start = s.evaluations_done();
      }
      if (s.state() == v1::JOB_STATE_DONE) {
        run.wall = now;
        nlohmann::json doc = nlohmann::json::parse(g.result().document(), nullptr, false);
        std::vector<std::string> ppl;
        if (!doc.is_discarded()) {
          for (const auto& b : doc["budgets"]) {
            ppl.push_back(absl::StrFormat("%.3f", b["chosen"]["heldout_ppl"].get<double>()));
          }
        }
        run.chosen_ppl = absl::StrJoin(ppl, " / ");
        out = run;
        break;
      }
      if (s.state() == v1::JOB_STATE_FAILED || s.state() == v1::JOB_STATE_CANCELLED) {
        std::cerr << "cluster_bench: job ended " << v1::JobState_Name(s.state()) << ": "
                  << s.error() << "\n";
        break;
      }
      usleep(100 * 1000);
    }
  }
  for (pid_t p : pids) Stop(p);
  stub.reset();
  Stop(coord);
  if (out) out->load_after = LoadAverage();
  std::system(("rm -rf " + dir).c_str());
  return out;
}

int Main(int argc, char** argv) {
  std::string workers_text = "1,2", data = SharedDataPath("");
  int64_t threads = 1;
  FlagSet flags("cluster_bench");
  flags.String("workers", &workers_text, "worker process counts, comma-separated");
  flags.Int("threads", &threads, "engine threads of each worker");
  flags.String("data", &data, "the coordinator's data root (the shared data)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  char self[4096] = {0};
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  std::string bin = n > 0 ? std::string(self, static_cast<size_t>(n)) : "";
  bin = bin.substr(0, bin.rfind('/'));  // build/bench
  bin = bin.substr(0, bin.rfind('/'));  // build
  std::printf(
      "| workers × threads | wall s | prepare | baselines | spqe | solve | select | measure | "
      "spqe eval/s | select eval/s | measure eval/s | speed-up | chosen held-out PPL per budget | "
      "load avg before / after |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n");
  double base = 0;
  for (absl::string_view w : absl::StrSplit(workers_text, ',', absl::SkipEmpty())) {
    int workers = 0;
    if (!absl::SimpleAtoi(w, &workers) || workers < 1) {
      std::cerr << "--workers: '" << w << "' is not a positive count\n";
      return 2;
    }
    std::optional<Run> r = RunCluster(workers, static_cast<int>(threads), data, bin);
    if (!r) return 1;
    if (base == 0) base = r->wall;
    auto secs = [&](const char* p) {
      auto it = r->phases.find(p);
      if (it == r->phases.end() || it->second.end < 0) return 0.0;
      return it->second.end - it->second.start;
    };
    auto rate = [&](const char* p) {
      auto it = r->phases.find(p);
      const double s = secs(p);
      return it == r->phases.end() || s <= 0
                 ? 0.0
                 : static_cast<double>(it->second.evaluations_end - it->second.evaluations_start) / s;
    };
    // The last phase ends with the job.
    if (auto it = r->phases.find("measure"); it != r->phases.end() && it->second.end < 0) {
      it->second.end = r->wall;
    }
    std::printf("| %d × %d | %.1f |", workers, static_cast<int>(threads), r->wall);
    for (const char* p : kPhases) std::printf(" %.1f |", secs(p));
    std::printf(" %.2f | %.2f | %.2f | %.2fx | %s | %s / %s |\n", rate("spqe"), rate("select"),
                rate("measure"), base / r->wall, r->chosen_ppl.c_str(), r->load_before.c_str(),
                r->load_after.c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
