// The job pipeline's phases, each in its own file, run in this order by RunPipeline
// (pipeline.cc) on one PipelineState:
//
//   phase_prepare.cc       the game's facts (players, bytes, sets), the budgets, the step game
//   phase_baselines.cc     isolated Δ, measured on the game; LIM, Z-score, act. norm from facts
//   phase_spqe.cc          the SPQE walks (IMPQ §3.2) and their stopping rule
//   phase_interactions.cc  the interaction estimators' objectives (IMPQ §3.3), the budget-aware
//                          ones per budget
//   phase_allocate.cc      every method's allocation per budget: the estimators' exact
//                          allocations and the baselines' rules (solver/allocate.h)
//   phase_select.cc        the measured per-budget choice: candidates, local search, tier rule
//   phase_measure.cc       every allocation measured on the held-out set; the result's budgets
//
// A phase reads what the phases before it left in the state and adds its own part; every
// evaluation goes through the state's Game (game.h), so wherever the pipeline runs — the
// coordinator with leased work units, or a LocalGame in this process — the phases are the
// same code.
#ifndef IMPQ_JOB_PHASES_H_
#define IMPQ_JOB_PHASES_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "job/game.h"
#include "job/job.h"
#include "job/work_plan.h"
#include "solver/allocate.h"
#include "solver/allocation_problem.h"
#include "solver/coalition_evaluator.h"
#include "solver/interactions.h"
#include "solver/isolated_delta.h"
#include "solver/paired_losses.h"
#include "solver/quadratic_objective.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"

namespace impq::job {

using PipelineClock = std::chrono::steady_clock;
double SecondsSince(PipelineClock::time_point t);

// The game's calibration losses as a CoalitionEvaluator (SPQE, isolated Δ), each checked
// finite, counted.
class CalibrationEvaluator : public solver::CoalitionEvaluator {
 public:
  explicit CalibrationEvaluator(Game& game) : game_(game) {}
  absl::StatusOr<std::vector<double>> Evaluate(
      std::span<const solver::Coalition> coalitions) override;
  int64_t evaluated() const { return evaluated_; }

 private:
  Game& game_;
  int64_t evaluated_ = 0;
};

// An allocation of the table: a method's coalition over the game's players for one budget.
struct PlannedAllocation {
  std::string method;
  solver::Coalition q;
  std::optional<solver::AllocationResult> solved;  // the estimators' exact allocations
  // Candidates of the per-budget choice: 0 the isolated metrics and uniform, 1 the
  // estimators, 2 the measured local search; -1 not a candidate (random).
  int tier = 0;
};

// The budget-aware estimators' objectives at one budget (solver/budget_aware_interactions.h).
struct BudgetObjectives {
  solver::QuadraticObjective window, window_top;
  std::optional<solver::QuadraticObjective> local;  // binary games only
};

struct PipelineState {
  PipelineState(const JobOptions& options, Game& game);
  // Calls options.progress, if any: `phase` has done `done` of `total` units since
  // `phase_start`.
  void Report(const std::string& phase, int64_t done, int64_t total,
              PipelineClock::time_point phase_start) const;

  const JobOptions& o;
  Game& game;
  JobResult r;  // what the phases found, as the job's result
  const PipelineClock::time_point job_start;
  CalibrationEvaluator calib_eval;
  JobWorkPlan work_plan;  // set by prepare

  // prepare
  GameFacts facts;
  int n = 0;                          // players
  solver::PlayerBytes bytes;          // per player at 2 and 4 bits
  std::vector<int64_t> budgets;       // per JobOptions::average_bits, on bytes' scale
  std::optional<solver::WidthLadder> ladder;
  int ns = 0;                         // the game's players: the ladder's steps
  std::optional<solver::StepGame> step_game;
  std::vector<int64_t> game_budgets;  // budgets in the step game's terms
  // baselines
  solver::IsolatedDelta iso;
  // spqe
  solver::SpqeResult spqe;
  // interactions
  solver::QuadraticObjective cov, sur;  // sur: binary games only (fit_surrogates)
  bool fit_surrogates = false;
  std::vector<BudgetObjectives> per_budget;
  std::vector<solver::Observation> all_obs;  // the walks' and isolated Δ's coalitions
  double bandwidth = 0;                      // the local surrogate's kernel width
  // allocate: per budget, in table order
  std::vector<std::vector<PlannedAllocation>> plan;
  // select: per budget
  std::vector<std::vector<double>> calib_loss;  // per plan entry (0 for non-candidates)
  std::vector<int> chosen_index, simpler_index;
  std::vector<solver::PairedDifference> chosen_vs_simpler;
};

absl::Status PreparePhase(PipelineState& s);
absl::Status BaselinesPhase(PipelineState& s);
absl::Status SpqePhase(PipelineState& s);
absl::Status InteractionsPhase(PipelineState& s);
absl::Status AllocatePhase(PipelineState& s);
absl::Status SelectPhase(PipelineState& s);
absl::Status MeasurePhase(PipelineState& s);

// The exact allocation of `objective` at every budget (solver::SolveExactAllocation), in the
// order of JobOptions::average_bits. REQUIRES: prepare has run.
absl::StatusOr<std::vector<solver::AllocationResult>> SolveEveryBudget(
    const PipelineState& s, const solver::QuadraticObjective& objective);

}  // namespace impq::job

#endif  // IMPQ_JOB_PHASES_H_
