// UnitExecutor: computes the losses of one work unit. The worker loop owns one and calls it
// from its compute thread only (thread-compatible implementations are fine).
#ifndef IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_
#define IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"

namespace impq::worker_service {

class UnitExecutor {
 public:
  virtual ~UnitExecutor() = default;
  // OK: the WorkResult (job id, unit index, losses, permutation, model info, attempt and
  // evaluation_seconds filled; worker_id is the caller's). Errors: the spec cannot be loaded
  // (files, backend), or the unit does not fit the model (e.g. a permutation of the wrong
  // size). Deterministic: the losses depend on the unit only.
  virtual absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) = 0;
};

// The CPU engine (worker/engine LocalEvaluator with prefix reuse). Loads the model and builds
// the 2- and 4-bit variants once per (model, tokenizer, backend, group size, players), and the
// evaluation sets once per (text, docs, context); keeps the most recent one of each.
std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads);

}  // namespace impq::worker_service

#endif  // IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_
