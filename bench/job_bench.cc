// job_bench: how long does the main job (`impq run`, the README's first command) take, phase by
// phase, and how fast does each phase evaluate? (issue 15)
//
// Runs the real binary — `impq run --quiet --json TMP [--threads K] [extra flags]` — once per
// entry of --threads (default "2,1": the machine's two cores, then one), times the process
// from the outside, and reads what the job wrote: each phase's seconds (load, quantize,
// baselines, SPQE, solve, select, measure), the evaluations each phase made and the chosen
// allocation's held-out perplexity per budget, so that one table shows speed and shows that the
// result did not change with the thread count. The machine's load average before and after
// each run is printed with it: these machines are shared, and a wall time means little without
// it.
//
// --configs runs the job once per "M:F" entry instead (M SPQE permutations, F the choice's
// extra-evaluation fraction) and prints held-out PPL per budget against the evaluations spent:
// does the estimation's and the choice's spending pay for itself?
//
//   build/bench/job_bench [--threads 2,1] [--impq build/cli/impq] [--extra "--seed 1"]
//   build/bench/job_bench --configs 24:0.25,24:0,16:0.25,12:0.25,24:0.25:3 [--threads 2]
//     (M:F[:S], S: stop SPQE once the allocation is stable for S batches of 2 walks)
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"

namespace impq {
namespace {

using nlohmann::json;

std::string SelfDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  return absl::StrFormat("%.2f %.2f %.2f", a, b, c);
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'') {
      out += "'\\''";
    } else {
      out += ch;
    }
  }
  return out + "'";
}

double ChildrenCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_CHILDREN, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

struct RunOutcome {
  json result;
  double wall_seconds = 0;
  double cpu_seconds = 0;  // user + system of the job's process: less sensitive to other load
  std::string load_before, load_after;
};

// Runs `impq run` with `args` (already quoted) and the JSON going to `json_path`.
std::optional<RunOutcome> RunJob(const std::string& impq, const std::string& args,
                                 const std::string& json_path) {
  RunOutcome out;
  out.load_before = LoadAverage();
  const std::string cmd = ShellQuote(impq) + " run --quiet --json " + ShellQuote(json_path) + " " +
                          args + " > /dev/null";
  std::cerr << "job_bench: " << cmd << "\n";
  const double cpu0 = ChildrenCpuSeconds();
  const auto start = std::chrono::steady_clock::now();
  const int status = std::system(cmd.c_str());
  out.wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.cpu_seconds = ChildrenCpuSeconds() - cpu0;
  out.load_after = LoadAverage();
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::cerr << "job_bench: impq run failed (status " << status << "): " << cmd << "\n";
    return std::nullopt;
  }
  std::ifstream in(json_path);
  try {
    out.result = json::parse(in);
  } catch (const std::exception& e) {
    std::cerr << "job_bench: " << json_path << ": " << e.what() << "\n";
    return std::nullopt;
  }
  return out;
}

// The chosen allocation's held-out PPL per budget, "b:ppl" joined.
std::string ChosenPpl(const json& r) {
  std::vector<std::string> parts;
  for (const json& b : r.at("budgets")) {
    parts.push_back(absl::StrFormat("%.3f", b.at("chosen").at("heldout_ppl").get<double>()));
  }
  return absl::StrJoin(parts, " / ");
}

double Rate(double n, double s) { return s > 0 ? n / s : 0; }

int Main(int argc, char** argv) {
  std::string threads_text = "2,1", impq = SelfDir() + "/../cli/impq", extra, configs;
  std::string tmp = "/tmp/impq_job_bench." + std::to_string(getpid()) + ".json";
  FlagSet flags("job_bench");
  flags.String("threads", &threads_text, "thread counts to run the job at, comma-separated");
  flags.String("impq", &impq, "the impq binary");
  flags.String("extra", &extra, "extra flags for `impq run`, split at spaces");
  flags.String("configs", &configs,
               "M:F,... run once per SPQE permutations M and extra-evaluation fraction F and "
               "print PPL per budget against evaluations spent (first --threads entry)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  std::vector<int64_t> threads;
  for (absl::string_view part : absl::StrSplit(threads_text, ',', absl::SkipWhitespace())) {
    int64_t t = 0;
    if (!absl::SimpleAtoi(part, &t) || t < 1) {
      std::cerr << "job_bench: --threads: '" << part << "' is not a thread count >= 1\n";
      return 2;
    }
    threads.push_back(t);
  }
  if (threads.empty()) {
    std::cerr << "job_bench: --threads: empty list\n";
    return 2;
  }
  std::string extra_args;
  for (absl::string_view part : absl::StrSplit(extra, ' ', absl::SkipWhitespace())) {
    extra_args += " " + ShellQuote(std::string(part));
  }

  if (!configs.empty()) {
    std::string table =
        "| permutations M (walks run) | extra fraction F | stable batches S | SPQE evaluations | "
        "choice evaluations | "
        "calibration evaluations | wall s | chosen held-out PPL per budget | load avg before / "
        "after |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
    std::string budgets;
    for (absl::string_view part : absl::StrSplit(configs, ',', absl::SkipWhitespace())) {
      std::vector<std::string> mf = absl::StrSplit(part, ':');
      int64_t m = 0, stable = 0;
      double f = 0;
      if ((mf.size() != 2 && mf.size() != 3) || !absl::SimpleAtoi(mf[0], &m) ||
          !absl::SimpleAtod(mf[1], &f) || (mf.size() == 3 && !absl::SimpleAtoi(mf[2], &stable))) {
        std::cerr << "job_bench: --configs: '" << part
                  << "' is not M:F or M:F:S (e.g. 24:0.25 or 24:0.25:3)\n";
        return 2;
      }
      const std::string args =
          absl::StrFormat(" --threads %d --permutations %d --extra-fraction %s --stable-batches %d",
                          threads[0], m, std::string(mf[1]), stable) +
          extra_args;
      std::optional<RunOutcome> o = RunJob(impq, args, tmp);
      if (!o) return 1;
      const json& r = o->result;
      if (budgets.empty()) {
        std::vector<std::string> b;
        for (const json& x : r.at("budgets"))
          b.push_back(absl::StrFormat("%.2f", x.at("average_bits").get<double>()));
        budgets = absl::StrJoin(b, " / ");
      }
      const json& cost = r.at("cost");
      absl::StrAppendFormat(&table, "| %d (%d) | %s | %d | %d | %d | %d | %.1f | %s | %s / %s |\n",
                            m, r.at("spqe").at("permutations").get<int64_t>(), mf[1], stable,
                            r.at("spqe").at("coalitions_evaluated").get<int64_t>(),
                            cost.at("selection_evaluations").get<int64_t>(),
                            cost.at("calibration_evaluations").get<int64_t>(), o->wall_seconds,
                            ChosenPpl(r), o->load_before, o->load_after);
    }
    std::remove(tmp.c_str());
    std::cout << "\nBudgets (average bits): " << budgets << "\n\n" << table;
    return 0;
  }

  std::string table =
      "| threads | wall s (process) | CPU s (process) | load | quantize | baselines | SPQE | solve "
      "| select | "
      "measure | job total | SPQE eval/s | select eval/s | held-out eval/s | chosen held-out PPL "
      "per budget | load avg before / after |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n";
  for (int64_t t : threads) {
    std::optional<RunOutcome> o =
        RunJob(impq, absl::StrFormat(" --threads %d", t) + extra_args, tmp);
    if (!o) return 1;
    const json& r = o->result;
    const json& ti = r.at("timings");
    const json& cost = r.at("cost");
    const double spqe_evals = r.at("spqe").at("coalitions_evaluated").get<double>();
    const double select_evals = cost.at("selection_evaluations").get<double>();
    const double heldout_evals = cost.at("heldout_evaluations").get<double>();
    absl::StrAppendFormat(&table,
                          "| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | "
                          "%.1f | %.2f | %.2f | %.2f | %s | %s / %s |\n",
                          t, o->wall_seconds, o->cpu_seconds, ti.at("load_s").get<double>(),
                          ti.at("quantize_s").get<double>(), ti.at("baselines_s").get<double>(),
                          ti.at("spqe_s").get<double>(), ti.at("solve_s").get<double>(),
                          ti.at("select_s").get<double>(), ti.at("measure_s").get<double>(),
                          ti.at("total_s").get<double>(),
                          Rate(spqe_evals, ti.at("spqe_s").get<double>()),
                          Rate(select_evals, ti.at("select_s").get<double>()),
                          Rate(heldout_evals, ti.at("measure_s").get<double>()), ChosenPpl(r),
                          o->load_before, o->load_after);
  }
  std::remove(tmp.c_str());
  std::cout << table;
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
