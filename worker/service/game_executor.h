// ExecuteOnGame: one work unit of the job pipeline (messages.proto's UnitKind) computed on a
// game (job/game.h) — PREPARE → the facts, BATCH → calibration losses, SEQUENCES →
// the choice set's per-sequence sums, ASSIGNMENTS → held-out losses — with the game's
// prefix-reuse counters of the unit. The engine's executor runs it on a LocalGame; tests run
// it on synthetic games.
#ifndef IMPQ_WORKER_SERVICE_GAME_EXECUTOR_H_
#define IMPQ_WORKER_SERVICE_GAME_EXECUTOR_H_

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"
#include "job/game.h"

namespace impq::worker_service {

// InvalidArgument naming the unit field for a malformed unit (a coalition or assignment
// character, a BATCH on another set, an unknown kind); the game's errors unchanged.
absl::StatusOr<v1::WorkResult> ExecuteOnGame(job::Game& game, const v1::WorkUnit& unit);

}  // namespace impq::worker_service

#endif  // IMPQ_WORKER_SERVICE_GAME_EXECUTOR_H_
