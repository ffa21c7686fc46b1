// UnitGame: the job's game (job/game.h) answered by workers — each call of the
// pipeline becomes work units of its job (Coordinator::RunUnits), split batch_split ways so
// that several workers share every batch:
//   Prepare            → one PREPARE unit (its facts)
//   CalibrationLosses  → BATCH units on the calibration set
//   SelectionSums      → SEQUENCES units on the choice set, split by sequences (every unit
//                        all the coalitions on a part of the set: the per-budget choice's
//                        local search asks one coalition at a time, and workers share it)
//   HeldoutNll         → ASSIGNMENTS units on the evaluation (held-out) set
// A unit's coalitions are consecutive in the pipeline's order (a walk's steps stay together:
// the worker's prefix reuse), and its answer is a worker's LocalGame's, so the pipeline sees
// exactly what it would see in one process.
//
// Thread-compatible (one driver thread uses it).
#ifndef IMPQ_COORDINATOR_UNIT_GAME_H_
#define IMPQ_COORDINATOR_UNIT_GAME_H_

#include <string>
#include <vector>

#include "impq/v1/messages.pb.h"
#include "job/game.h"

namespace impq::coordinator {

class Coordinator;
struct UnitRequest;

// A unit's items (coalition or assignment strings) stay under this many bytes: a batch of
// larger items is cut into more units than batch_split (a real model's batches are far below;
// the bound keeps every lease under gRPC's 4 MiB message limit whatever the player count).
inline constexpr int64_t kMaxUnitItemBytes = int64_t{1} << 20;

class UnitGame : public job::Game {
 public:
  // `coordinator` outlives the game; `widths` are the job's (assignments' characters).
  UnitGame(Coordinator* coordinator, std::string job_id, std::vector<int> widths,
           int batch_split);

  absl::StatusOr<job::GameFacts> Prepare() override;
  absl::StatusOr<std::vector<double>> CalibrationLosses(
      std::span<const solver::Coalition> coalitions) override;
  absl::StatusOr<std::vector<std::vector<double>>> SelectionSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) override;
  absl::StatusOr<std::vector<double>> HeldoutNll(
      std::span<const std::vector<int>> assignments) override;
  job::GameCounters Counters() const override { return counters_; }

 private:
  // Runs `items` (coalition or assignment strings) as up to batch_split units of `kind`.
  absl::StatusOr<std::vector<v1::WorkResult>> Run(int kind, int dataset,
                                                  std::vector<std::string> items);

  Coordinator* const coordinator_;
  const std::string job_id_;
  const std::vector<int> widths_;
  const int batch_split_;
  job::GameCounters counters_;
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_UNIT_GAME_H_
