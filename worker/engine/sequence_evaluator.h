// SequenceEvaluator: v(q) on an EvalSet together with every sequence's NLL sum, so that two
// coalitions can be compared *paired* — per sequence — with a standard error (issue 8's
// per-budget choice: is candidate A's lower calibration loss more than noise?).
//
// Each sequence gets its own LocalEvaluator (one thread, its own two-slot prefix cache), and a batch
// runs as one parallel loop over sequences, each walking the whole batch in order through its
// cache; so consecutive coalitions of a batch (or of consecutive calls) that share early
// weights reuse those blocks' hidden states exactly as LocalEvaluator does.
//
// v(q) = Σ_s nll_s(q) / Σ_s t_s, with nll_s the NLL sum of sequence s (its LocalEvaluator's
// mean × its scored tokens t_s), added in sequence order: deterministic and independent of the
// thread count, equal to LocalEvaluator's value on the whole set up to rounding (not bit for
// bit: the sums are grouped differently).
//
// Thread-compatible: one Evaluate call at a time.
#ifndef IMPQ_WORKER_ENGINE_SEQUENCE_EVALUATOR_H_
#define IMPQ_WORKER_ENGINE_SEQUENCE_EVALUATOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"
#include "solver/paired_losses.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/quant/quantized_model.h"

namespace impq::engine {

class SequenceEvaluator : public solver::CoalitionEvaluator {
 public:
  // REQUIRES: `qmodel` and `forward` (built on qmodel.model()) outlive the evaluator; `set` is
  // copied. `max_cache_bytes` bounds the prefix caches together (shared in proportion to the
  // sequences' lengths); 0 disables prefix reuse. `widths`: the game's (LocalEvaluatorOptions::
  // widths; coalitions over the ladder's steps when more than two). InvalidArgument: threads < 1 and what
  // LocalEvaluator::Create refuses (empty set, a token outside the vocabulary, ...).
  static absl::StatusOr<std::unique_ptr<SequenceEvaluator>> Create(
      const quant::QuantizedModel& qmodel, const forward::LlamaForward& forward,
      const eval::EvalSet& set, int threads, int64_t max_cache_bytes,
      const std::vector<int>& widths = {2, 4});
  ~SequenceEvaluator() override;

  // v(q) for each coalition; remembers every sequence's NLL sum. A coalition evaluated before
  // is answered from memory (not counted again). InvalidArgument as LocalEvaluator::Evaluate.
  absl::StatusOr<std::vector<double>> Evaluate(
      std::span<const solver::Coalition> coalitions) override;

  // The NLL sums of sequences [begin, end) for each coalition, evaluated now (nothing
  // remembered; each sequence's cache still reuses prefixes across calls): the values
  // Evaluate would remember. InvalidArgument for a bad range or coalition.
  absl::StatusOr<std::vector<std::vector<double>>> RangeSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end);

  // The per-sequence NLL sums of a coalition evaluated before; nullptr if it was not.
  const std::vector<double>* SequenceSums(const solver::Coalition& q) const;
  // v(a) − v(b) with its standard error (the linearised ratio estimator over sequences:
  // SE = sqrt(S/(S−1) · Σ_s (D_s − t_s·mean)²) / Σ_s t_s, D_s the difference of the NLL sums).
  // REQUIRES: both evaluated before (else FailedPrecondition naming the coalition).
  absl::StatusOr<solver::PairedDifference> Compare(const solver::Coalition& a,
                                           const solver::Coalition& b) const;

  int64_t evaluations() const { return static_cast<int64_t>(sums_.size()); }
  int64_t num_sequences() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t scored_tokens() const { return total_tokens_; }

 private:
  explicit SequenceEvaluator(int threads);

  ThreadPool pool_;
  std::vector<std::unique_ptr<eval::EvalSet>> sets_;  // one sequence each
  std::vector<std::unique_ptr<LocalEvaluator>> evaluators_;
  std::vector<int64_t> tokens_;  // scored tokens per sequence
  int64_t total_tokens_ = 0;
  std::map<solver::Coalition, std::vector<double>> sums_;
};

}  // namespace impq::engine

#endif  // IMPQ_WORKER_ENGINE_SEQUENCE_EVALUATOR_H_
