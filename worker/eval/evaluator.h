// Loss of a model (under some WeightSet) on an EvalSet: mean NLL, perplexity, and the KL
// divergence of its next-token distributions against a reference WeightSet's.
//
// Sequences are independent: with several threads the evaluator runs whole sequences
// concurrently (one Workspace each) when there are at least as many sequences as threads, and
// otherwise parallelises inside the forward pass. Per-sequence sums are combined in sequence
// order, and the forward pass is thread-count invariant, so every figure is bit for bit the
// same at any thread count.
//
// Thread-compatible: one Evaluate call at a time per Evaluator.
#ifndef IMPQ_WORKER_EVAL_EVALUATOR_H_
#define IMPQ_WORKER_EVAL_EVALUATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"

namespace impq::eval {

struct NllResult {
  int64_t tokens = 0;            // scored tokens
  int64_t processed_tokens = 0;  // positions run through the model
  double nll = 0;                // mean negative log-likelihood, nats per scored token
  double ppl = 0;                // exp(nll)
  double seconds = 0;            // wall time of the evaluation
  double tokens_per_s = 0;       // processed_tokens / seconds
  std::vector<double> sequence_nll_sums;  // per sequence, in EvalSet order
};

struct KlResult {
  int64_t tokens = 0;
  double kl = 0;           // mean KL(P_ref || P_test) per scored token, nats
  double kl_max = 0;       // largest per-token KL
  double top1_agree = 0;   // fraction of tokens where both argmax agree
  double nll_ref = 0, nll_test = 0;
  double seconds = 0;
};

// Called after each finished sequence with (sequences done, total).
using ProgressFn = std::function<void(int64_t, int64_t)>;

class Evaluator {
 public:
  // REQUIRES: threads >= 1; `forward` outlives the evaluator.
  Evaluator(const forward::LlamaForward& forward, int threads);
  ~Evaluator();

  int threads() const { return pool_.num_threads(); }

  // Mean NLL of `weights` on `set`. Errors: a token id outside the model's vocabulary, a
  // sequence longer than the model's seq_len.
  absl::StatusOr<NllResult> Nll(const forward::WeightSet& weights, const EvalSet& set,
                                const ProgressFn& progress = nullptr);

  // KL(P_ref || P_test) over the scored tokens of `set`.
  absl::StatusOr<KlResult> Kl(const forward::WeightSet& ref, const forward::WeightSet& test,
                              const EvalSet& set, const ProgressFn& progress = nullptr);

 private:
  // Runs fn(sequence index, per-sequence workspaces, intra-op pool or null) for every sequence.
  void ForEachSequence(const EvalSet& set, int workspaces_per_sequence,
                       const std::function<void(size_t, forward::Workspace**, ThreadPool*)>& fn,
                       const ProgressFn& progress);

  const forward::LlamaForward& forward_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<forward::Workspace>> workspaces_;
};

}  // namespace impq::eval

#endif  // IMPQ_WORKER_EVAL_EVALUATOR_H_
