// LocalGame: the job's game (game.h) evaluated in this process — the one place that prepares
// a job's game from its options (model → calibration / choice / held-out sets → quantized
// players: LoadJobInputs) and evaluates it: calibration losses with engine::LocalEvaluator
// (prefix reuse), the choice set's per-sequence sums with SequenceEvaluator, held-out losses
// of assignments with a LocalEvaluator's NllOf. A worker executes a coordinator job's units
// with one (worker/service/engine_executor.cc); RunJob runs the pipeline on one directly.
//
// Loads lazily (the first call of any method), so a worker that never saw the job's PREPARE
// unit can serve its other units. Deterministic: every answer depends on the options only,
// never on the order of calls or the thread count (LocalEvaluator's losses are those of full
// evaluations).
//
// Thread-compatible.
#ifndef IMPQ_WORKER_ENGINE_LOCAL_GAME_H_
#define IMPQ_WORKER_ENGINE_LOCAL_GAME_H_

#include <functional>
#include <memory>
#include <optional>

#include "job/game.h"
#include "job/job.h"
#include "worker/engine/job_inputs.h"

namespace impq::engine {

class LocalEvaluator;
class SequenceEvaluator;

// Optional: builds the evaluator of a set instead of the CPU LocalEvaluator (a GPU worker
// passes its GPU evaluator here). Returning nullptr (OK) falls back to the CPU.
using EvaluatorFactory =
    std::function<absl::StatusOr<std::unique_ptr<solver::CoalitionEvaluator>>(
        const quant::QuantizedModel& qmodel, const eval::EvalSet& set, int64_t max_cache_bytes)>;

class LocalGame : public job::Game {
 public:
  // `options` as RunJob takes them (validated by the caller); `inputs`, when given, are
  // LoadJobInputs(options)'s and must outlive the game.
  explicit LocalGame(job::JobOptions options, const JobInputs* inputs = nullptr,
                     EvaluatorFactory calibration_factory = nullptr);
  ~LocalGame() override;

  absl::StatusOr<job::GameFacts> Prepare() override;
  absl::StatusOr<job::GameFacts> StructuralFacts() override;
  absl::StatusOr<std::vector<double>> CalibrationLosses(
      std::span<const solver::Coalition> coalitions) override;
  absl::StatusOr<std::vector<std::vector<double>>> SelectionSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) override;
  absl::StatusOr<std::vector<double>> HeldoutNll(
      std::span<const std::vector<int>> assignments) override;
  job::GameCounters Counters() const override;

 private:
  absl::Status Load();

  const job::JobOptions options_;
  const JobInputs* inputs_;  // given, or loaded_.get()
  EvaluatorFactory factory_;
  std::unique_ptr<JobInputs> loaded_;
  std::optional<job::GameFacts> structural_;  // StructuralFacts(), computed once
  std::unique_ptr<solver::CoalitionEvaluator> calib_;
  LocalEvaluator* calib_local_ = nullptr;  // = calib_ when it runs on this CPU
  std::unique_ptr<SequenceEvaluator> select_;
  std::unique_ptr<LocalEvaluator> heldout_;
};

// The job pipeline (job/job.h: RunPipeline) on a LocalGame of `options`, in this process
// (tests, benches). Errors: invalid options (ValidateJobOptions), unreadable files,
// model/backend errors, and RunPipeline's.
absl::StatusOr<job::JobResult> RunJob(const job::JobOptions& options);

}  // namespace impq::engine

#endif  // IMPQ_WORKER_ENGINE_LOCAL_GAME_H_
