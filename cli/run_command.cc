// impq run: the whole IMPQ job on the embedded default (the shared stories260K model).
//
// Quantize every linear module at 2 and 4 bits, estimate each player's Shapley value (SPQE,
// IMPQ §3.2) and the interactions (IMPQ §3.3) on calibration text, solve the allocation for
// every target average bit-width (from the paper's estimator, the global surrogate and the
// budget-aware window semivalue and local surrogate), allocate with the isolated baselines under
// the same budgets, choose per budget the candidate with the lowest measured calibration loss
// (issue 8), and measure every allocation's perplexity on held-out text. `--json FILE` output
// is accepted by `impq quantize-eval --assign FILE --assign-budget B [--assign-method NAME]`. The pipeline itself is
// engine::RunJob (worker/engine/job.h); this file is flags, progress and printing.
//
// SPQE, the expensive part, runs through the cluster's coordinator code (the embedded mode,
// coordinator/embedded_spqe.h): the walks are a coordinator job in this process, leased to an
// in-process worker loop whose engine is RunJob's own calibration evaluator, and the
// coordinator ends the estimation and aggregates it — the code impq-coordinator and
// impq-worker run. The output is identical to estimating in-process (`--in-process`;
// cli_test checks it). --stable-batches and --mode stream, which a coordinator job cannot
// express, estimate in-process.
//
// Defaults are chosen to finish in under 2 minutes on 2 cores (bench/job_bench; see README).
#include <algorithm>
#include <cstdio>
#include <filesystem>
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
#include "worker/engine/spec_options.h"
#include "worker/engine/choice_flags.h"
#include "worker/engine/job.h"

namespace impq::cli {
namespace {

// A comma-separated list of `flag`, each item parsed by `parse` (false: not `what`).
template <typename T, typename Parse>
absl::StatusOr<std::vector<T>> ParseList(const std::string& flag, const std::string& text,
                                         const char* what, Parse parse) {
  std::vector<T> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    T v;
    if (!parse(part, &v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", std::string(part), "' is not ", what));
    }
    out.push_back(v);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": empty list"));
  return out;
}

absl::StatusOr<std::vector<double>> ParseBudgets(const std::string& text) {
  return ParseList<double>("budgets", text, "a number",
                           [](absl::string_view p, double* v) { return absl::SimpleAtod(p, v); });
}

// ValidateJobOptions checks the set.
absl::StatusOr<std::vector<int>> ParseWidths(const std::string& text) {
  return ParseList<int>("widths", text, "a whole number of bits",
                        [](absl::string_view p, int* v) { return absl::SimpleAtoi(p, v); });
}

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
  std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), done == total ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace

int RunCommand(const std::vector<std::string>& args) {
  std::string data = SharedDataDir();
  std::string model_path, tokenizer_path;
  std::string calib_text = "tinystories_v2_valid_100.txt";
  std::string heldout_text = "tinystories_valid_a.txt";
  std::string players = "module", backend = "rtn", budgets_text = "2.25,2.5,3.0,3.5";
  std::string estimator = "covariance", json_path, mode = "document", widths_text = "2,4";
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  // 12 walks, not more: by bench/job_bench --configs (README, "The main job, phase by phase"),
  // 24 walks chose the same allocations at 2.25, 2.5 and 3.0 bits and a worse one at 3.5 bits
  // (held-out 8.368 vs 8.171) at twice the estimation cost.
  int64_t permutations = 12, group_size = 64, calib_docs = 50, heldout_docs = 500, ctx = 512;
  int64_t seed = 0, random_draws = 3;
  double se_threshold = 0;
  int64_t stable_batches = 0;
  bool antithetic = true, quiet = false, in_process = false;

  FlagSet flags("impq run");
  flags.String("data", &data, "directory with stories260K.bin, tok512.bin and the texts");
  flags.String("model", &model_path,
               "model: llama2.c .bin, GGUF file or Hugging Face directory (default: stories260K.bin in --data)");
  flags.String("tokenizer", &tokenizer_path,
               "tokenizer (default: tok512.bin in --data for the default model, else the model's own)");
  flags.String("calib-text", &calib_text, "calibration text (file in --data, or a path)");
  flags.String("heldout-text", &heldout_text, "held-out text for measuring (file in --data, or a path)");
  flags.Int("calib-docs", &calib_docs, "first N documents of the calibration text (0 = all)");
  flags.Int("heldout-docs", &heldout_docs, "first N documents of the held-out text (0 = all 2,106)");
  flags.String("mode", &mode, "evaluation protocol of both texts: document | stream");
  flags.Int("ctx", &ctx, "tokens per sequence");
  flags.String("players", &players, "player granularity: module (35 linears) | block (5 blocks)");
  flags.String("backend", &backend, "quantizer: rtn | hqq | gptq");
  flags.Int("group-size", &group_size, "quantization group size (input columns per scale)");
  flags.Int("permutations", &permutations, "SPQE permutations M (even with --antithetic)");
  flags.Bool("antithetic", &antithetic, "antithetic pairs (π, reverse π); --antithetic=false to disable");
  flags.Int("seed", &seed, "seed of the permutations and the random baseline");
  flags.Double("se-threshold", &se_threshold, "stop SPQE early once max SE(φ) is below this (0: never)");
  flags.Int("stable-batches", &stable_batches,
            "stop SPQE early once the allocation has not changed for this many batches of 2 walks (0: never)");
  flags.String("estimator", &estimator, "objective of the IMPQ allocation: covariance (paper) | surrogate");
  flags.String("budgets", &budgets_text, "target average bit-widths, comma-separated, each in [2, 4]");
  flags.String("widths", &widths_text,
               "bit-widths a player may take, comma-separated, of 2, 3, 4, 8 (more than two: "
               "SPQE walks a ladder of steps, the allocation is multiple-choice; budgets keep "
               "the 2/4-bit scale)");
  flags.Int("random-draws", &random_draws, "random baseline: allocations averaged");
  flags.Int("threads", &threads, "worker threads (results do not depend on it)");
  flags.String("json", &json_path, "also write every result to this JSON file");
  flags.Bool("quiet", &quiet, "no progress on stderr");
  engine::ChoiceFlags choice;
  choice.Register(flags);
  flags.Bool("in-process", &in_process,
             "estimate with solver::RunSpqe directly instead of through the coordinator code "
             "(same results)");
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;
  auto in_data = [&](const std::string& f) {
    return f.find('/') == std::string::npos ? data + "/" + f : f;
  };
  engine::JobOptions o;
  o.model_path = model_path.empty() ? data + "/stories260K.bin" : model_path;
  // Paths as the job runs them: absolute (the coordinator's spec needs them so, and the two
  // modes write the same settings).
  o.tokenizer_path = !tokenizer_path.empty() ? tokenizer_path
                     : model_path.empty()    ? data + "/tok512.bin"
                                             : "";
  o.calib_text_path = in_data(calib_text);
  o.heldout_text_path = in_data(heldout_text);
  for (std::string* p : {&o.model_path, &o.tokenizer_path, &o.calib_text_path,
                         &o.heldout_text_path}) {
    if (p->empty()) continue;
    std::error_code ec;
    const std::filesystem::path a = std::filesystem::absolute(*p, ec);
    if (!ec) *p = a.lexically_normal().string();
  }
  o.calib_docs = calib_docs;
  o.heldout_docs = heldout_docs;
  o.ctx = ctx;
  o.backend = backend;
  o.group_size = static_cast<int>(group_size);
  o.permutations = permutations;
  o.antithetic = antithetic;
  o.seed = static_cast<uint64_t>(seed);
  o.se_threshold = se_threshold;
  o.stable_batches = stable_batches;
  o.estimator = estimator;
  o.random_draws = static_cast<int>(random_draws);
  o.threads = static_cast<int>(threads);
  choice.ApplyTo(o);
  auto usage_error = [&](const absl::Status& s) {
    std::cerr << "impq run: " << s.message() << "\n";
    return 2;
  };
  auto g = quant::ParsePlayerGranularity(players);
  if (!g.ok()) return usage_error(g.status());
  o.players = *g;
  auto m = eval::ParseEvalMode(mode);
  if (!m.ok()) return usage_error(m.status());
  o.mode = *m;
  auto b = ParseBudgets(budgets_text);
  if (!b.ok()) return usage_error(b.status());
  o.average_bits = *b;
  auto w = ParseWidths(widths_text);
  if (!w.ok()) return usage_error(w.status());
  o.widths = *w;
  if (absl::Status s = engine::ValidateJobOptions(o); !s.ok()) return usage_error(s);
  absl::StatusOr<engine::JobResult> r;
  if (in_process) {
    // The same pipeline on a LocalGame in this thread (no coordinator, no work units).
    if (!quiet) {
      o.progress = [](const engine::JobProgress& p) {
        PrintProgress(p.phase, p.done, p.total, p.evaluations, p.phase_seconds, p.eta_seconds,
                      p.elapsed_seconds, p.job_eta_seconds);
      };
    }
    r = engine::RunJob(o);
  } else {
    // The embedded coordinator drives the pipeline; an in-process worker loop executes its
    // units — the code impq-coordinator and impq-worker run.
    v1::JobSpec spec = engine::SpecFromJobOptions(o);
    spec.set_name("impq run");
    coordinator::EmbeddedOptions eo;
    eo.workers = 1;
    eo.threads_per_worker = o.threads;
    if (!quiet) {
      eo.progress = [last = std::string()](const v1::JobStatus& st) mutable {
        if (st.phase().empty() || st.phase() == "done") return;
        // One line per unit of pipeline work (statuses also change per lease and report).
        const std::string key = absl::StrCat(st.phase(), "/", st.phase_done(), "/", st.phase_total());
        if (key == last) return;
        last = key;
        PrintProgress(st.phase(), st.phase_done(), st.phase_total(), st.evaluations_done(),
                      st.phase_seconds(), st.phase_eta_seconds(), st.elapsed_seconds(),
                      st.job_eta_seconds());
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
  std::cout << engine::JobResultToMarkdown(*r);
  std::cout << absl::StrFormat(
      "\nWall time %.1f s (load %.1f, quantize %.1f, baselines %.1f, SPQE %.1f, solve %.1f, "
      "select %.1f, measure %.1f) at %d threads.\n",
      r->total_seconds, r->load_seconds, r->quantize_seconds, r->baselines_seconds,
      r->spqe_seconds, r->solve_seconds, r->select_seconds, r->measure_seconds, o.threads);
  if (!json_path.empty()) {
    // The one result document (the coordinator's v1::JobResult.document is the same text).
    absl::Status s = WriteFileAtomically(json_path, engine::JobResultToJson(*r));
    if (!s.ok()) {
      std::cerr << "impq run: " << s.message() << "\n";
      return 1;
    }
    if (!quiet) std::cerr << "wrote " << json_path << "\n";
  }
  return 0;
}

}  // namespace impq::cli
