// choice_bound_bench: how far is the per-budget choice (issue 8) from the best allocation a
// long measured search finds on the same game?
//
// impq_bench shows the chosen allocation against the baselines; it cannot say whether a
// budget's shortfall (e.g. chosen / isolated Δ above 0.75) is the choice's fault or the
// game's: perhaps no allocation under that budget is much better. This program runs the job
// (job/job.h) and then, per budget, spends many times the job's evaluation allowance
// on simulated annealing over the budget-feasible allocations, on the job's own calibration
// game v(q) (the same sets and quantized weights: engine::LoadJobInputs). Chains start from
// the chosen allocation, the paper's (IMPQ, covariance), isolated Δ's and --random-chains
// random feasible ones, and share one memo (no allocation is measured twice); the moves and
// the schedule are solver/annealing_search.h's (raise one or two 2-bit players, drop random
// 4-bit ones until the footprint fits; Metropolis at T falling from --t0 to --t1 nats).
// The --top allocations lowest on calibration are then measured on the CPU (calibration and
// held-out; the same evaluator as the job's tables) and compared with the choice.
// --search-on heldout searches the held-out loss instead: an oracle no method may use, hence
// the best held-out PPL any allocation under the budget was found to reach.
//
// --device gpu runs the search's evaluations through the CUDA plugin (GpuEvaluator: bf16, so
// its losses differ slightly from the CPU's; the top allocations are re-measured on the CPU).
// Reproducible from --seed on one device (the order of the evaluations does not depend on
// timing).
//
//   build/bench/choice_bound_bench [--backends rtn] [--group-size 64] [--budgets 2.25,2.5,3.0,3.5]
//       [--permutations 12] [--seed 0] [--heldout-docs 500] [--threads 2] [--device cpu|gpu]
//       [--evaluations 2000] [--random-chains 1] [--t0 0.02] [--t1 0.0005] [--top 8]
//       [--search-on calibration|heldout]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/stories_job.h"
#include "common/flags.h"
#include "common/rng.h"
#include "common/status.h"
#include "solver/allocation_problem.h"
#include "solver/annealing_search.h"
#include "solver/baselines.h"
#include "solver/coalition.h"
#include "job/job.h"
#include "worker/engine/local_game.h"
#include "worker/engine/job_inputs.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#ifdef IMPQ_BENCH_WITH_GPU
#include "worker/gpu/gpu_evaluator.h"
#include "worker/gpu/gpu_runtime.h"
#endif

namespace impq {
namespace {

using solver::Coalition;

Coalition CoalitionOfBits(const std::vector<int>& bits) {
  Coalition q;
  for (int b : bits) q.push_back(b == 2 ? 1 : 0);
  return q;
}

const job::MeasuredAllocation* Find(const job::BudgetResult& b, const std::string& method) {
  for (const auto& m : b.allocations) {
    if (m.method == method) return &m;
  }
  return nullptr;
}

absl::StatusOr<std::unique_ptr<solver::CoalitionEvaluator>> SearchEvaluator(
    const std::string& device, const engine::JobInputs& in, const eval::EvalSet& set,
    int threads, std::shared_ptr<void>& keep_alive) {
  if (device == "cpu") {
    engine::LocalEvaluatorOptions eo;
    eo.threads = threads;
    ASSIGN_OR_RETURN(std::unique_ptr<engine::LocalEvaluator> ev,
                     engine::LocalEvaluator::Create(*in.qmodel, *in.forward, set, eo));
    return std::unique_ptr<solver::CoalitionEvaluator>(std::move(ev));
  }
#ifdef IMPQ_BENCH_WITH_GPU
  if (device == "gpu") {
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuRuntime> rt, gpu::GpuRuntime::Load());
    if (rt->device_count() == 0) {
      return absl::UnavailableError(
          absl::StrCat("--device gpu: no CUDA device: ", rt->no_device_reason()));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<gpu::GpuEvaluator> ev,
                     gpu::GpuEvaluator::Create(rt.get(), 0, *in.qmodel, set, {}));
    keep_alive = std::shared_ptr<gpu::GpuRuntime>(std::move(rt));
    return std::unique_ptr<solver::CoalitionEvaluator>(std::move(ev));
  }
#endif
  return absl::InvalidArgumentError(absl::StrCat(
      "--device: '", device, "' is not one of cpu",
#ifdef IMPQ_BENCH_WITH_GPU
      ", gpu"
#else
      " (this build has no GPU path)"
#endif
      ));
}

int Main(int argc, char** argv) {
  int64_t evaluations = 2000, top = 8, random_chains = 1;
  double t0 = 0.02, t1 = 0.0005;
  std::string device = "cpu", search_on = "calibration";
  bench::StoriesJobFlags stories("rtn");
  FlagSet flags("choice_bound_bench");
  stories.Register(flags);
  flags.String("device", &device, "the search's evaluator: cpu | gpu");
  flags.String("search-on", &search_on,
               "the loss the search minimises: calibration (what a choice may use) | heldout "
               "(an oracle: the best any method could reach on the held-out text)");
  flags.Int("evaluations", &evaluations, "new evaluations per chain (3 + random-chains chains)");
  flags.Int("random-chains", &random_chains, "chains from random feasible allocations");
  flags.Double("t0", &t0, "starting temperature (nats)");
  flags.Double("t1", &t1, "final temperature (nats)");
  flags.Int("top", &top, "lowest-calibration allocations re-measured on the CPU per budget");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  std::string bad;
  if (absl::Status s = stories.Finish(); !s.ok()) bad = std::string(s.message());
  if (evaluations < 1) bad = "--evaluations must be >= 1";
  if (random_chains < 0) bad = "--random-chains must be >= 0";
  if (top < 1) bad = "--top must be >= 1";
  if (search_on != "calibration" && search_on != "heldout") {
    bad = "--search-on must be calibration or heldout, not '" + search_on + "'";
  }
  const bool on_heldout = search_on == "heldout";
  if (!(t0 > 0 && t1 > 0 && t1 <= t0)) bad = "--t0 and --t1 must satisfy 0 < t1 <= t0";
  if (!bad.empty()) {
    std::cerr << "choice_bound_bench: " << bad << "\n";
    return 2;
  }

  std::string table =
      "| backend | b_avg | isolated Δ | chosen (from) | chosen calib | search on | search "
      "evaluations | search best: calib | search best: held-out | best held-out of top | "
      "chosen / isolated Δ | search best / isolated Δ |\n"
      "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n";
  auto fail = [](const absl::Status& s) {
    std::cerr << "choice_bound_bench: " << s.message() << "\n";
    return 1;
  };
  for (const std::string& backend : stories.backends()) {
    const job::JobOptions o = stories.Options(backend);
    std::cerr << "choice_bound_bench: " << backend << ": the job ...\n";
    absl::StatusOr<std::unique_ptr<engine::JobInputs>> in = engine::LoadJobInputs(o);
    if (!in.ok()) return fail(in.status());
    absl::StatusOr<job::JobResult> job = engine::RunJobOnInputs(o, **in);
    if (!job.ok()) return fail(job.status());
    std::shared_ptr<void> runtime;
    auto search_ev = SearchEvaluator(device, **in, on_heldout ? (*in)->heldout : (*in)->select,
                                     stories.threads(), runtime);
    if (!search_ev.ok()) return fail(search_ev.status());
    // The CPU measurements of the job's tables: calibration (prefix reuse) and held-out.
    engine::LocalEvaluatorOptions co;
    co.threads = stories.threads();
    auto calib_ev = engine::LocalEvaluator::Create(*(*in)->qmodel, *(*in)->forward,
                                                   (*in)->select, co);
    co.max_cache_bytes = 0;
    auto heldout_ev = engine::LocalEvaluator::Create(*(*in)->qmodel, *(*in)->forward,
                                                     (*in)->heldout, co);
    if (!calib_ev.ok()) return fail(calib_ev.status());
    if (!heldout_ev.ok()) return fail(heldout_ev.status());
    solver::MeasuredGame cpu_calib(**calib_ev), cpu_heldout(**heldout_ev);

    for (size_t b = 0; b < job->budgets.size(); ++b) {
      const job::BudgetResult& br = job->budgets[b];
      const job::MeasuredAllocation& chosen = br.Chosen();
      const job::MeasuredAllocation* iso = Find(br, "isolated");
      if (iso == nullptr) return fail(absl::InternalError("the job measured no isolated Δ"));
      solver::MeasuredGame game(**search_ev);
      Rng rng(stories.seed() * 1000003 + b);
      solver::AnnealingOptions ao;
      ao.evaluations = evaluations;
      ao.t0 = t0;
      ao.t1 = t1;
      std::vector<std::pair<std::string, Coalition>> starts = {
          {"chosen", CoalitionOfBits(chosen.bits)}, {"isolated", CoalitionOfBits(iso->bits)}};
      if (const auto* impq = Find(br, "impq")) {
        starts.push_back({"impq", CoalitionOfBits(impq->bits)});
      }
      for (int64_t c = 0; c < random_chains; ++c) {
        auto q = solver::RandomAllocation((*in)->bytes, br.budget_bytes, rng.NextU64());
        if (!q.ok()) return fail(q.status());
        starts.push_back({absl::StrCat("random", c), *q});
      }
      const auto start = std::chrono::steady_clock::now();
      for (const auto& [name, q] : starts) {
        const std::string label = absl::StrFormat("%s %.2f bits, from %s", backend,
                                                  br.average_bits, name);
        const auto chain_start = std::chrono::steady_clock::now();
        auto progress = [&](int64_t done, double t, double current, double best) {
          const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                         chain_start).count();
          std::cerr << absl::StrFormat(
              "  %s: %d evaluations, T %.5f, current %.4f, best %.4f (%.1f/s)\n", label, done, t,
              current, best, done / s);
        };
        auto run = solver::Anneal(game, (*in)->bytes, br.budget_bytes, q, ao, rng, progress);
        if (!run.ok()) return fail(run.status());
      }
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      // Re-measure the lowest on the CPU; the best is the lowest CPU loss on the searched set.
      double best_loss = 1e300, best_calib = 0, best_calib_heldout = 0, best_heldout = 1e300;
      for (const solver::Observation& ob : game.Lowest(static_cast<size_t>(top))) {
        // A CPU search already measured the set it searched: reuse that loss.
        const bool cpu = device == "cpu";
        absl::StatusOr<double> c =
            cpu && !on_heldout ? absl::StatusOr<double>(ob.loss) : cpu_calib.Loss(ob.coalition);
        absl::StatusOr<double> h =
            cpu && on_heldout ? absl::StatusOr<double>(ob.loss) : cpu_heldout.Loss(ob.coalition);
        if (!c.ok()) return fail(c.status());
        if (!h.ok()) return fail(h.status());
        std::cerr << absl::StrFormat(
            "  %.2f bits: %s search %.5f, CPU calib %.5f, held-out PPL %.3f\n", br.average_bits,
            solver::CoalitionToString(ob.coalition), ob.loss, *c, std::exp(*h));
        best_heldout = std::min(best_heldout, std::exp(*h));
        if (const double loss = on_heldout ? *h : *c; loss < best_loss) {
          best_loss = loss;
          best_calib = *c;
          best_calib_heldout = std::exp(*h);
        }
      }
      std::cerr << absl::StrFormat("choice_bound_bench: %s %.2f bits: %d evaluations in %.0f s\n",
                                   backend, br.average_bits, game.evaluations(), secs);
      absl::StrAppendFormat(
          &table,
          "| %s | %.2f | %.3f | %.3f (%s) | %.3f | %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
          backend, br.average_bits, iso->heldout_ppl, chosen.heldout_ppl, chosen.method,
          chosen.calib_ppl, search_on, game.evaluations(), std::exp(best_calib),
          best_calib_heldout, best_heldout, chosen.heldout_ppl / iso->heldout_ppl,
          best_calib_heldout / iso->heldout_ppl);
    }
  }
  std::cout << absl::StrFormat(
      "Per-budget choice vs a long measured search (simulated annealing, %d chains × %d "
      "evaluations per budget, T %.4f → %.5f nats, device %s) on stories260K: 35 module "
      "players, group size %d, job with %d SPQE permutations, seed %d. PPL: calibration = the "
      "first 50 stories of tinystories_v2_valid_100.txt; held-out = the first %d paragraphs of "
      "tinystories_valid_a.txt; both on the CPU. \"search best\": the search's allocation "
      "lowest on the set it searched; \"best held-out of top\": the lowest held-out PPL among "
      "its %d lowest there (an oracle: it looks at held-out text).\n\n",
      3 + random_chains, evaluations, t0, t1, device, stories.group_size(), stories.permutations(),
      stories.seed(), stories.heldout_docs(), top);
  std::cout << table;
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
