// The seam between the estimators and whatever computes v(q).
//
// The distributed service (coordinator → workers) and the local engine implement the same
// interface, so SPQE (spqe.h) and exact Shapley (exact_shapley.h) run unchanged on either.
#ifndef IMPQ_SOLVER_COALITION_EVALUATOR_H_
#define IMPQ_SOLVER_COALITION_EVALUATOR_H_

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"

namespace impq::solver {

class CoalitionEvaluator {
 public:
  virtual ~CoalitionEvaluator();

  // Returns v(q) (mean NLL) for each coalition, in the same order. Coalitions are passed as a
  // batch so a backend can reuse work (shared prefixes, one model load). On OK the result has
  // exactly coalitions.size() finite entries; non-OK means no loss of the batch is usable.
  // Results must depend on the coalition only, never on batch composition or order.
  // Thread-compatibility is up to the implementation, which must document it; callers in this
  // library never call one evaluator from two threads at once.
  virtual absl::StatusOr<std::vector<double>> Evaluate(std::span<const Coalition> coalitions) = 0;
};

// Adapts a plain function (synthetic games in tests, an in-process engine). Counts its work.
// Thread-compatible.
class FunctionEvaluator : public CoalitionEvaluator {
 public:
  explicit FunctionEvaluator(std::function<double(const Coalition&)> fn);

  // Always OK unless fn returns a non-finite value (then InvalidArgument naming the coalition).
  absl::StatusOr<std::vector<double>> Evaluate(std::span<const Coalition> coalitions) override;

  // Number of Evaluate calls and of coalitions evaluated so far.
  int64_t num_calls() const { return num_calls_; }
  int64_t num_coalitions() const { return num_coalitions_; }

 private:
  std::function<double(const Coalition&)> fn_;
  int64_t num_calls_ = 0;
  int64_t num_coalitions_ = 0;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_COALITION_EVALUATOR_H_
