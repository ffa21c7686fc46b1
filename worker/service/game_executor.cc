// ExecuteOnGame (game_executor.h).
#include "worker/service/game_executor.h"

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "job/facts_proto.h"

namespace impq::worker_service {
namespace {

// Parses a unit's coalition strings ('0'/'1', one per step of the game).
absl::StatusOr<std::vector<solver::Coalition>> Coalitions(const v1::WorkUnit& unit) {
  std::vector<solver::Coalition> out;
  for (int k = 0; k < unit.coalitions_size(); ++k) {
    const std::string& s = unit.coalitions(k);
    solver::Coalition q;
    for (char c : s) {
      if (c != '0' && c != '1') {
        return absl::InvalidArgumentError(absl::StrCat("unit.coalitions[", k, "]: character '",
                                                       std::string(1, c), "'; expected 0 or 1"));
      }
      q.push_back(c == '1' ? 1 : 0);
    }
    out.push_back(std::move(q));
  }
  return out;
}

// Parses a unit's assignment strings (one bit-width digit per player).
absl::StatusOr<std::vector<std::vector<int>>> Assignments(const v1::WorkUnit& unit) {
  std::vector<std::vector<int>> out;
  for (int k = 0; k < unit.assignments_size(); ++k) {
    std::vector<int> bits;
    for (char c : unit.assignments(k)) {
      if (c != '2' && c != '3' && c != '4' && c != '8') {
        return absl::InvalidArgumentError(absl::StrCat("unit.assignments[", k, "]: character '",
                                                       std::string(1, c),
                                                       "'; expected a bit-width of 2, 3, 4 or 8"));
      }
      bits.push_back(c - '0');
    }
    out.push_back(std::move(bits));
  }
  return out;
}

}  // namespace

absl::StatusOr<v1::WorkResult> ExecuteOnGame(job::Game& game, const v1::WorkUnit& unit) {
  const job::GameCounters before = game.Counters();
  v1::WorkResult r;
  r.set_job_id(unit.job_id());
  r.set_unit_index(unit.unit_index());
  r.set_attempt(unit.attempt());
  switch (unit.kind()) {
    case v1::UNIT_KIND_PREPARE: {
      ASSIGN_OR_RETURN(job::GameFacts f, game.Prepare());
      *r.mutable_facts() = job::FactsToProto(f);
      break;
    }
    case v1::UNIT_KIND_BATCH: {
      if (unit.dataset() != v1::DATASET_CALIBRATION) {
        return absl::InvalidArgumentError("unit: BATCH units evaluate the calibration set");
      }
      ASSIGN_OR_RETURN(std::vector<solver::Coalition> qs, Coalitions(unit));
      ASSIGN_OR_RETURN(std::vector<double> losses, game.CalibrationLosses(qs));
      for (double l : losses) r.add_losses(l);
      break;
    }
    case v1::UNIT_KIND_SEQUENCES: {
      ASSIGN_OR_RETURN(std::vector<solver::Coalition> qs, Coalitions(unit));
      ASSIGN_OR_RETURN(std::vector<std::vector<double>> sums,
                       game.SelectionSums(qs, unit.sequence_begin(), unit.sequence_end()));
      for (const std::vector<double>& s : sums) {
        v1::SequenceSums *out = r.add_sequence_sums();
        for (double x : s) out->add_sums(x);
      }
      break;
    }
    case v1::UNIT_KIND_ASSIGNMENTS: {
      ASSIGN_OR_RETURN(std::vector<std::vector<int>> bits, Assignments(unit));
      ASSIGN_OR_RETURN(std::vector<double> nll, game.HeldoutNll(bits));
      for (double l : nll) r.add_losses(l);
      break;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unit.kind ", v1::UnitKind_Name(unit.kind()), " is not served"));
  }
  // Which game this worker evaluated (the coordinator refuses answers about another one).
  ASSIGN_OR_RETURN(const job::GameFacts facts, game.StructuralFacts());
  r.set_facts_digest(job::FactsDigest(facts));
  const job::GameCounters after = game.Counters();
  r.set_block_evals_done(after.block_evals_done - before.block_evals_done);
  r.set_block_evals_full(after.block_evals_full - before.block_evals_full);
  return r;
}

}  // namespace impq::worker_service
