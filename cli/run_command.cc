// impq run: the whole IMPQ job on the embedded default (the shared stories260K model).
//
// Quantize every linear module at 2 and 4 bits, estimate each player's Shapley value (SPQE,
// IMPQ §3.2) and the interactions (IMPQ §3.3) on calibration text, solve the allocation for
// every target average bit-width (from the paper's estimator, the global surrogate and the
// budget-aware window semivalue and local surrogate), allocate with the isolated baselines under
// the same budgets, choose per budget the candidate with the lowest measured calibration loss
// (issue 8), and measure every allocation's perplexity on held-out text. `--json FILE` output
// is accepted by `impq quantize-eval --assign FILE --assign-budget B [--assign-method NAME]`.
// This file is flags, progress and printing.
//
// `impq run` is the service embedded: an in-process coordinator (coordinator/embedded.h) drives
// the job pipeline (job/job.h), and an in-process worker loop executes its work
// units — the code impq-coordinator and impq-worker run. `--in-process` runs the same pipeline
// on this thread's game, without work units (same document; cli_test checks it). The job's
// flags are cli/job_flags.h's, which `impqctl submit` shares.
//
// Defaults are chosen to finish in under 2 minutes on 2 cores (bench/job_bench; see README).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/run_file.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "coordinator/embedded.h"
#include "job/spec_options.h"
#include "cli/job_flags.h"
#include "job/job.h"
#include "worker/engine/local_game.h"

namespace impq::cli {
namespace {

std::string FormatSeconds(double s) {
  const int t = static_cast<int>(s + 0.5);
  return absl::StrFormat("%d:%02d", t / 60, t % 60);
}

// One progress line (the in-process pipeline's JobProgress and the coordinator's JobStatus
// both end up here).
void PrintProgress(const std::string& phase, int64_t done, int64_t total, int64_t evaluations,
                   double phase_seconds, double eta_seconds, double elapsed_seconds,
                   double job_eta_seconds) {
  std::string line;
  if (phase == "spqe") {
    line = absl::StrFormat("spqe: %d/%d permutations, %d evaluations", done, total, evaluations);
    if (phase_seconds > 0 && done > 0) {
      absl::StrAppendFormat(&line, ", %.2f permutations/min, ETA %s",
                            60.0 * done / phase_seconds, FormatSeconds(eta_seconds));
    }
  } else {
    line = absl::StrFormat("%s: %d/%d", phase, done, total);
    if (done > 0 && done < total) {
      absl::StrAppendFormat(&line, ", ETA %s", FormatSeconds(eta_seconds));
    }
  }
  absl::StrAppendFormat(&line, "  [%s elapsed", FormatSeconds(elapsed_seconds));
  if (job_eta_seconds > 0) {
    absl::StrAppendFormat(&line, ", job ~%s left", FormatSeconds(job_eta_seconds));
  }
  line += "]";
  // On a terminal one line per phase, rewritten in place; in a log one line per report.
  static const bool tty = isatty(fileno(stderr)) != 0;
  if (tty) {
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), done == total ? "\n" : "");
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace

int RunCommand(const std::vector<std::string>& args) {
  std::string data = SharedDataDir(), json_path;
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  bool quiet = false, in_process = false;
  FlagSet flags("impq run");
  flags.String("data", &data,
               "directory the default model, tokenizer and texts (and bare file names) are in");
  JobFlags job_flags;  // the settings, named as `impqctl submit` names them
  job_flags.Register(flags);
  flags.Int("threads", &threads, "worker threads (results do not depend on it)");
  flags.String("json", &json_path, "also write every result to this JSON file");
  flags.Bool("quiet", &quiet, "no progress on stderr");
  flags.Bool("in-process", &in_process,
             "run the pipeline on this thread's game instead of through the embedded "
             "coordinator's work units (same results)");
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;
  auto usage_error = [&](const absl::Status& s) {
    std::cerr << "impq run: " << s.message() << "\n";
    return 2;
  };
  v1::JobSpec spec = JobFlags::DefaultSpec();
  if (absl::Status s = job_flags.ApplyTo(flags, spec); !s.ok()) return usage_error(s);
  absl::StatusOr<job::JobOptions> options = job::JobOptionsFromSpec(spec);
  if (!options.ok()) return usage_error(options.status());
  job::JobOptions o = *std::move(options);
  o.threads = static_cast<int>(threads);
  // Bare file names are in --data; paths as the job runs them are absolute (the
  // coordinator's spec needs them so, and both modes write the same settings).
  for (std::string* p : {&o.model_path, &o.tokenizer_path, &o.calib_text_path,
                         &o.heldout_text_path}) {
    if (p->empty()) continue;
    if (p->find('/') == std::string::npos) *p = data + "/" + *p;
    *p = AbsolutePath(*p);
  }
  if (absl::Status s = job::ValidateJobOptions(o); !s.ok()) return usage_error(s);

  absl::StatusOr<job::JobResult> r;
  if (in_process) {
    // The same pipeline on a LocalGame in this thread (no coordinator, no work units).
    if (!quiet) {
      o.progress = [](const job::JobProgress& p) {
        PrintProgress(p.phase, p.done, p.total, p.evaluations, p.phase_seconds, p.eta_seconds,
                      p.elapsed_seconds, p.job_eta_seconds);
      };
    }
    r = engine::RunJob(o);
  } else {
    // The embedded coordinator drives the pipeline; an in-process worker loop executes its
    // units — the code impq-coordinator and impq-worker run.
    spec = job::SpecFromJobOptions(o);  // paths resolved
    spec.set_name("impq run");
    coordinator::EmbeddedOptions eo;
    eo.workers = 1;
    eo.threads_per_worker = o.threads;
    if (!quiet) {
      eo.pipeline_progress = [](const job::JobProgress& p) {
        PrintProgress(p.phase, p.done, p.total, p.evaluations, p.phase_seconds, p.eta_seconds,
                      p.elapsed_seconds, p.job_eta_seconds);
      };
    }
    absl::StatusOr<coordinator::EmbeddedResult> er = coordinator::RunEmbedded(spec, eo);
    if (!er.ok()) {
      r = er.status();
    } else if (er->pipeline == nullptr) {
      r = absl::InternalError("the embedded coordinator kept no pipeline result");
    } else {
      r = *er->pipeline;
    }
  }
  if (!r.ok()) {
    std::cerr << "\nimpq run: " << r.status().message() << "\n";
    return 1;
  }
  std::cout << job::JobResultToMarkdown(*r);
  std::cout << absl::StrFormat(
      "\nWall time %.1f s (load %.1f, quantize %.1f, baselines %.1f, SPQE %.1f, solve %.1f, "
      "select %.1f, measure %.1f) at %d threads.\n",
      r->total_seconds, r->load_seconds, r->quantize_seconds, r->baselines_seconds,
      r->spqe_seconds, r->solve_seconds, r->select_seconds, r->measure_seconds, o.threads);
  if (!json_path.empty()) {
    // The one result document (the coordinator's v1::JobResult.document is the same text).
    absl::Status s = WriteFileAtomically(json_path, job::JobResultToJson(*r));
    if (!s.ok()) {
      std::cerr << "impq run: " << s.message() << "\n";
      return 1;
    }
    if (!quiet) std::cerr << "wrote " << json_path << "\n";
  }
  return 0;
}

}  // namespace impq::cli
