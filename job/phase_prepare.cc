// Phase "prepare": the game prepares itself (load, quantize, sets; game.h) and reports its
// facts; the pipeline checks them, sets the budgets in bytes and the game SPQE plays (the
// players with widths {2, 4}, the ladder's steps otherwise: solver/width_ladder.h).
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "job/phases.h"

namespace impq::job {

absl::Status PreparePhase(PipelineState& s) {
  const JobOptions& o = s.o;
  JobResult& r = s.r;
  const auto t0 = PipelineClock::now();
  s.Report("prepare", 0, 1, t0);
  ASSIGN_OR_RETURN(s.facts, s.game.Prepare());
  s.Report("prepare", 1, 1, t0);
  const GameFacts& facts = s.facts;
  const int n = static_cast<int>(facts.player_names.size());
  const size_t nw = o.widths.size();
  if (n < 1 || facts.bytes2.size() != static_cast<size_t>(n) ||
      facts.bytes4.size() != static_cast<size_t>(n) ||
      facts.width_bytes.size() != static_cast<size_t>(n) * nw ||
      facts.lim.size() != static_cast<size_t>(n) || facts.zscore.size() != static_cast<size_t>(n) ||
      facts.actnorm.size() != static_cast<size_t>(n) ||
      facts.select_sequence_tokens.size() != static_cast<size_t>(facts.select_sequences)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job: the prepared game is inconsistent (", n, " players, ", facts.bytes2.size(), "/",
        facts.bytes4.size(), " byte counts, ", facts.width_bytes.size(), " width bytes for ", nw,
        " widths, ", facts.select_sequence_tokens.size(), " token counts for ",
        facts.select_sequences, " choice sequences)"));
  }
  s.n = n;
  s.bytes.bytes2 = facts.bytes2;
  s.bytes.bytes4 = facts.bytes4;
  for (double b : o.average_bits) {
    ASSIGN_OR_RETURN(int64_t budget, solver::BudgetForAverageBits(s.bytes, b));
    s.budgets.push_back(budget);
  }
  ASSIGN_OR_RETURN(s.ladder, solver::WidthLadder::Create(n, o.widths));
  s.ns = s.ladder->num_steps();
  ASSIGN_OR_RETURN(s.step_game, solver::StepGame::Create(*s.ladder, s.bytes, facts.width_bytes));
  for (size_t b = 0; b < s.budgets.size(); ++b) {
    absl::StatusOr<int64_t> budget = s.step_game->Budget(s.budgets[b]);
    if (!budget.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("job: average bit-width ", o.average_bits[b],
                                                     ": ", budget.status().message()));
    }
    s.game_budgets.push_back(*budget);
  }

  r.model_config = facts.model_config;
  r.model_fingerprint = facts.fingerprint;
  r.model_linear_weights = facts.linear_weights;
  r.select_on_calibration = facts.select_on_calibration;
  r.calib_sequences = facts.calib_sequences;
  r.calib_tokens = facts.calib_tokens;
  r.select_sequences = facts.select_sequences;
  r.select_tokens = facts.select_tokens;
  r.heldout_sequences = facts.heldout_sequences;
  r.heldout_tokens = facts.heldout_tokens;
  r.player_names = facts.player_names;
  r.bytes2 = s.bytes.bytes2;
  r.bytes4 = s.bytes.bytes4;
  for (int i = 0; i < n; ++i) r.all2_bytes += s.bytes.bytes2[i], r.all4_bytes += s.bytes.bytes4[i];
  r.width_bytes = facts.width_bytes;
  r.load_seconds = facts.load_seconds;
  r.quantize_seconds = facts.quantize_seconds;
  s.work_plan =
      JobWorkPlan(o, s.ns, facts.calib_processed_tokens, facts.heldout_processed_tokens);
  return absl::OkStatus();
}

}  // namespace impq::job
