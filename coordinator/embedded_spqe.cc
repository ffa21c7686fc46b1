#include "coordinator/embedded_spqe.h"

#include <map>
#include <memory>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "coordinator/job_spec.h"
#include "solver/coalition_cache.h"
#include "solver/permutation_sampler.h"
#include "solver/shapley_estimate.h"

namespace impq::coordinator {
namespace {

// What the worker's executor shares with the driver. The executor runs on the worker loop's
// compute thread; the driver reads after the run.
struct WalkState {
  solver::CoalitionEvaluator* evaluator = nullptr;
  const solver::SpqeOptions* options = nullptr;
  v1::ModelInfo model;
  absl::Mutex mu;
  solver::CoalitionCache cache ABSL_GUARDED_BY(mu);                       // RunSpqe's cache
  std::map<int64_t, std::vector<double>> walk_losses ABSL_GUARDED_BY(mu);  // by walk index
};

// The worker's engine in embedded SPQE: walk k on the caller's evaluator, each distinct
// coalition evaluated once over the whole run.
class WalkExecutor : public worker_service::UnitExecutor {
 public:
  explicit WalkExecutor(WalkState* state) : s_(state) {}

  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    const absl::Time start = absl::Now();
    const int n = s_->options->num_players;  // the game's players (steps with a width set)
    if (unit.kind() != v1::UNIT_KIND_WALK) {
      return absl::InvalidArgumentError(absl::StrCat(
          "embedded SPQE: unit ", unit.unit_index(), " is not a walk (no measurement unit)"));
    }
    solver::Permutation perm(unit.permutation().begin(), unit.permutation().end());
    if (perm.empty()) {
      ASSIGN_OR_RETURN(perm, JobWalkPermutation(unit.spec(), s_->model.num_players(),
                                                unit.permutation_index()));
    }
    RETURN_IF_ERROR(solver::ValidatePermutation(perm, n));
    const std::vector<solver::Coalition> walk = solver::WalkCoalitions(perm);
    v1::WorkResult r;
    solver::SpqeProgress progress;
    {
      absl::MutexLock lock(&s_->mu);
      std::vector<solver::Coalition> fresh;
      absl::flat_hash_set<solver::Coalition> in_fresh;
      for (const solver::Coalition& q : walk) {
        if (!s_->cache.Lookup(q).has_value() && in_fresh.insert(q).second) fresh.push_back(q);
      }
      if (!fresh.empty()) {
        ASSIGN_OR_RETURN(std::vector<double> losses,
                         s_->evaluator->Evaluate(std::span<const solver::Coalition>(fresh)));
        if (losses.size() != fresh.size()) {
          return absl::InternalError(absl::StrCat("evaluator returned ", losses.size(),
                                                  " losses for ", fresh.size(), " coalitions"));
        }
        for (size_t j = 0; j < fresh.size(); ++j) s_->cache.Insert(fresh[j], losses[j]);
      }
      std::vector<double> losses;
      losses.reserve(walk.size());
      for (const solver::Coalition& q : walk) losses.push_back(*s_->cache.Lookup(q));
      r.mutable_losses()->Assign(losses.begin(), losses.end());
      s_->walk_losses[unit.permutation_index()] = std::move(losses);
      const int64_t walks = static_cast<int64_t>(s_->walk_losses.size());
      progress.permutations_done = walks;
      progress.coalitions_evaluated = s_->cache.size();
      progress.cache_hits = walks * (n + 1) - s_->cache.size();
    }
    r.set_job_id(unit.job_id());
    r.set_unit_index(unit.unit_index());
    r.mutable_permutation()->Assign(perm.begin(), perm.end());
    *r.mutable_model() = s_->model;
    r.set_attempt(unit.attempt());
    r.set_evaluation_seconds(absl::ToDoubleSeconds(absl::Now() - start));
    if (s_->options->progress_callback) s_->options->progress_callback(progress);
    return r;
  }

 private:
  WalkState* const s_;
};

// Walks the sampler must agree with the coordinator on before the run (all the walks used are
// checked after it).
constexpr int64_t kSamplerWalksCheckedFirst = 2;

absl::Status CheckSampler(const EmbeddedSpqeInput& in, int64_t walks) {
  const solver::PermutationSampler* sampler = in.options.sampler;
  if (sampler == nullptr) return absl::OkStatus();
  for (int64_t k = 0; k < walks; ++k) {
    ASSIGN_OR_RETURN(solver::Permutation want,
                     JobWalkPermutation(in.spec, in.model.num_players(), k));
    if (sampler->Get(static_cast<uint64_t>(k)) != want) {
      return absl::InvalidArgumentError(absl::StrCat(
          "embedded SPQE: options.sampler: permutation ", k, " is not the coordinator's walk ", k,
          " (", BinaryWidths(in.spec) ? "SeededPermutationSampler" : "LadderPermutationSampler",
          " over widths [", absl::StrJoin(JobWidths(in.spec), ","), "], seed ", in.spec.seed(),
          ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckInput(const EmbeddedSpqeInput& in) {
  const solver::SpqeOptions& o = in.options;
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError("embedded SPQE: " + m); };
  if (in.evaluator == nullptr) return bad("evaluator is null");
  if (o.stop_callback) {
    return bad("options.stop_callback: the coordinator's stopping rule is the SE threshold only");
  }
  const int n = in.model.num_players();
  if (absl::Status st = JobLadder(in.spec, std::max(n, 1)).status(); !st.ok()) {
    return bad(std::string(st.message()));  // spec.widths
  }
  const bool binary = BinaryWidths(in.spec);
  if (n < 1 || o.num_players != JobGamePlayers(in.spec, n)) {
    const std::string steps =
        binary ? "" : absl::StrCat(" (", JobGamePlayers(in.spec, std::max(n, 1)),
                                   " ladder steps over widths [",
                                   absl::StrJoin(JobWidths(in.spec), ","), "] expected)");
    return bad(absl::StrCat("options.num_players = ", o.num_players,
                            ", model.num_players = ", n, steps));
  }
  if (in.model.player_names_size() != n || in.model.bytes2_size() != n ||
      in.model.bytes4_size() != n) {
    return bad(absl::StrCat("model: ", in.model.player_names_size(), " names, ",
                            in.model.bytes2_size(), "/", in.model.bytes4_size(),
                            " byte counts for ", n, " players"));
  }
  if (!binary) {
    ASSIGN_OR_RETURN(solver::WidthLadder ladder, JobLadder(in.spec, n));
    const std::vector<int64_t> wb(in.model.width_bytes().begin(), in.model.width_bytes().end());
    if (wb.size() != static_cast<size_t>(n * ladder.num_widths())) {
      return bad(absl::StrCat("model.width_bytes has ", wb.size(), " entries; ", n,
                              " players at widths [", absl::StrJoin(ladder.widths(), ","),
                              "] need ", n * ladder.num_widths()));
    }
    if (absl::Status st = ladder.ValidateWidthBytes(wb); !st.ok()) {
      return bad(absl::StrCat("model.width_bytes: ", st.message()));
    }
  }
  if (o.sampler != nullptr &&
      (o.sampler->num_players() != o.num_players || o.sampler->antithetic() != o.antithetic)) {
    return bad(absl::StrCat("options.sampler: ", o.sampler->num_players(), " players, antithetic ",
                            o.sampler->antithetic(), "; the job's walks have ", o.num_players,
                            ", antithetic ", o.antithetic));
  }
  const int64_t spec_min = in.spec.min_permutations() != 0 ? in.spec.min_permutations()
                           : in.spec.antithetic()        ? 4
                                                         : 2;
  if (in.spec.permutations() != o.max_permutations || in.spec.antithetic() != o.antithetic ||
      in.spec.seed() != o.seed || in.spec.se_threshold() != o.se_threshold ||
      (o.se_threshold > 0 && spec_min != o.min_permutations)) {
    return bad(absl::StrCat(
        "spec (permutations ", in.spec.permutations(), ", antithetic ", in.spec.antithetic(),
        ", seed ", in.spec.seed(), ", se_threshold ", in.spec.se_threshold(),
        ", min_permutations ", spec_min, ") disagrees with options (", o.max_permutations, ", ",
        o.antithetic, ", ", o.seed, ", ", o.se_threshold, ", ", o.min_permutations, ")"));
  }
  return CheckSampler(in, std::min(o.max_permutations, kSamplerWalksCheckedFirst));
}

solver::SpqeStopReason StopReason(const std::string& name) {
  return name == "standard_error" ? solver::SpqeStopReason::kStandardError
                                  : solver::SpqeStopReason::kMaxPermutations;
}

}  // namespace

absl::StatusOr<EmbeddedSpqeResult> RunSpqeThroughCoordinator(const EmbeddedSpqeInput& in) {
  RETURN_IF_ERROR(CheckInput(in));
  const int n = in.options.num_players;
  WalkState state;
  state.evaluator = in.evaluator;
  state.options = &in.options;
  state.model = in.model;
  v1::JobSpec spec = in.spec;
  spec.clear_evaluation_text_path();  // estimation and allocation only: no measurement unit
  spec.clear_evaluation_docs();
  EmbeddedOptions eo;
  eo.workers = 1;   // one engine, one evaluator: the evaluator is not thread-safe
  eo.capacity = 1;  // a walk per lease: no walk past the stopping rule is evaluated
  eo.make_executor = [&state] { return std::make_unique<WalkExecutor>(&state); };
  ASSIGN_OR_RETURN(EmbeddedResult run, RunEmbedded(spec, eo));

  EmbeddedSpqeResult out;
  out.job = std::move(run.result);
  const v1::JobResult& job = out.job;
  const int64_t m = job.permutations_used();
  solver::SpqeResult& r = out.spqe;
  absl::MutexLock lock(&state.mu);
  if (m < 1 || static_cast<int64_t>(state.walk_losses.size()) != m ||
      state.walk_losses.rbegin()->first != m - 1) {
    return absl::InternalError(absl::StrCat("embedded SPQE: the coordinator used ", m,
                                            " walks; the worker evaluated ",
                                            state.walk_losses.size()));
  }
  // The walks the coordinator issued (and the worker echoed, checked by the coordinator);
  // a caller's sampler must agree on every one of them.
  RETURN_IF_ERROR(CheckSampler(in, m));
  for (int64_t k = 0; k < m; ++k) {
    ASSIGN_OR_RETURN(solver::Permutation perm,
                     JobWalkPermutation(spec, in.model.num_players(), k));
    ASSIGN_OR_RETURN(std::vector<double> marginals,
                     solver::MarginalsFromWalk(perm, state.walk_losses.at(k)));
    r.marginals.push_back(std::move(marginals));
    r.permutations.push_back(std::move(perm));
  }
  ASSIGN_OR_RETURN(r.estimate, solver::AggregateMarginals(r.marginals, spec.antithetic()));
  // The coordinator aggregated the same walks: its φ and SE are these, bit for bit.
  if (!std::equal(r.estimate.phi.begin(), r.estimate.phi.end(), job.phi().begin(),
                  job.phi().end()) ||
      !std::equal(r.estimate.standard_error.begin(), r.estimate.standard_error.end(),
                  job.standard_error().begin(), job.standard_error().end())) {
    return absl::InternalError("embedded SPQE: the coordinator's estimate differs from its walks'");
  }
  r.observations = state.cache.observations();
  r.coalitions_requested = m * (n + 1);
  r.coalitions_evaluated = state.cache.size();
  r.cache_hits = r.coalitions_requested - r.coalitions_evaluated;
  r.stop_reason = StopReason(job.stop_reason());
  return out;
}

}  // namespace impq::coordinator
