// The seam between the job pipeline (job.h: RunPipeline) and whatever evaluates the model.
//
// The pipeline never touches weights, tokens or activations: everything it measures goes
// through a Game. Two implementations:
//   - LocalGame (local_game.h): loads, quantizes and evaluates in this process. A worker's
//     engine executes the units of a coordinator job with it, and RunJob (tests, benches)
//     runs the pipeline on it directly.
//   - the coordinator's (coordinator/unit_game.h): every call becomes leased work units that
//     workers execute with their LocalGame, every reported unit is durable, so the very same
//     pipeline runs across N workers and resumes after a restart.
// Both answer every call with the same numbers (LocalGame is deterministic, and the
// coordinator's answers are LocalGame's), so the pipeline's result never depends on where it
// ran.
#ifndef IMPQ_JOB_GAME_H_
#define IMPQ_JOB_GAME_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"

namespace impq::job {

// What preparing the game establishes (v1::GameFacts on the wire): the model's players and
// their bytes, the sets' sizes, and the baselines' per-player scores that need the weights or
// the full-precision activations.
struct GameFacts {
  std::string model_config;               // ModelConfig::ToString()
  std::string fingerprint;                // model::WeightsFingerprint: the weights' identity
  int64_t linear_weights = 0;             // Model::LinearParameterCount()
  std::vector<std::string> player_names;
  std::vector<int64_t> bytes2, bytes4;    // per player
  std::vector<int64_t> width_bytes;       // [i·m + w]: player i at JobOptions::widths[w]
  int64_t calib_sequences = 0, calib_tokens = 0, calib_processed_tokens = 0;
  int64_t select_sequences = 0, select_tokens = 0;
  bool select_on_calibration = true;
  std::vector<int64_t> select_sequence_tokens;  // scored tokens of each choice-set sequence
  int64_t heldout_sequences = 0, heldout_tokens = 0, heldout_processed_tokens = 0;
  std::vector<double> lim, zscore, actnorm;     // baselines.h, per player
  double heldout_nll_fp32 = 0;                  // the unquantized model on the held-out set
  double load_seconds = 0, quantize_seconds = 0;
};

// Prefix-reuse counters of the evaluations so far (costs, not results).
struct GameCounters {
  int64_t block_evals_done = 0, block_evals_full = 0;
  int64_t cache_bytes = 0;
};

// Thread-compatible: the pipeline calls one method at a time.
class Game {
 public:
  virtual ~Game() = default;
  // Loads and quantizes (once), then reports the facts. Errors: unreadable files, model or
  // backend errors, settings the model cannot serve (ctx beyond seq_len, ...).
  virtual absl::StatusOr<GameFacts> Prepare() = 0;
  // The facts FactsDigest (facts_proto.h) covers, without what needs activations or timing
  // (lim, zscore, actnorm, heldout_nll_fp32, seconds stay empty): cheap once loaded, and what
  // a worker vouches for with every unit it answers. Default: Prepare()'s.
  virtual absl::StatusOr<GameFacts> StructuralFacts() { return Prepare(); }
  // v(q), the mean NLL on the calibration set, of each coalition over the game's steps
  // (solver/width_ladder.h; players with widths {2, 4}).
  virtual absl::StatusOr<std::vector<double>> CalibrationLosses(
      std::span<const solver::Coalition> coalitions) = 0;
  // The NLL sums of the choice set's sequences [begin, end), for each coalition
  // (0 <= begin < end <= GameFacts::select_sequences).
  virtual absl::StatusOr<std::vector<std::vector<double>>> SelectionSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) = 0;
  // The mean NLL on the held-out set of each assignment (bits per player; each one of the
  // game's widths or 2 or 4).
  virtual absl::StatusOr<std::vector<double>> HeldoutNll(
      std::span<const std::vector<int>> assignments) = 0;
  virtual GameCounters Counters() const = 0;
};

}  // namespace impq::job

#endif  // IMPQ_JOB_GAME_H_
