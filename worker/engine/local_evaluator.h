// LocalEvaluator: the IMPQ game's value function v(q) computed in this process.
//
// v(q) = mean NLL over the scored tokens of an EvalSet when the players in q run at 2 bits and
// all others at 4 bits (IMPQ §3: "absent" = 2-bit, "present" = 4-bit). It plugs into SPQE and
// exact Shapley through solver::CoalitionEvaluator, exactly as the distributed service will.
//
// Prefix reuse. Along a permutation walk consecutive coalitions differ in one player, so the
// sublayers before that player's module see unchanged weights and compute unchanged hidden
// states. For every sequence the evaluator keeps the hidden states at the input of every
// decoder *sublayer* from the previous evaluation it ran: stage 2l is the input of block l's
// attention sublayer (stage 0 is the embedding), stage 2l + 1 the input of its feed-forward
// sublayer; together with the weight pointers those states were computed with. Evaluating a
// new coalition finds the first stage whose weights differ from the cached ones (q/k/v/o
// count for the attention stage, gate/up/down for the feed-forward one), copies that stage's
// state into the residual stream and runs from there (storing the later stages' inputs as it
// goes), then the output head. Because the forward pass is deterministic and the copy is
// exact, the result is bit for bit the loss of a full evaluation (Evaluator::Nll on
// QuantizedModel::Apply(q)); engine_test checks it.
//
// Memory: the cache holds 2 · L · T_s · dim floats per cached sequence s, i.e.
// 8 · L · dim · processed_tokens bytes in all (stories260K, the first 50 stories of
// tinystories_v2_valid_100.txt, 18,630 tokens: 8 · 5 · 64 · 18,630 = 47.7 MB), times
// cache_slots. `max_cache_bytes` caps it: sequences are admitted to the cache in EvalSet order
// while the running total fits; the others are evaluated in full every time (still bit-identical, only
// slower). 0 disables reuse altogether.
//
// Saved work: a walk step changes one module player, of a block l uniform over 0..L−1. With
// block-granular restarts it runs blocks l..L−1, (L + 1)/2 of L blocks on average, saving
// (L − 1)/(2L) = 40% for L = 5. Restarting at the feed-forward sublayer when the changed
// module is gate/up/down (3 of the 7 module players of a block) also skips that block's
// attention sublayer: a step runs L + 1 of 2L sublayers after an attention module and L after
// a feed-forward one, (L + 4/7) on average, saving (L − 4/7)/(2L) = 44.3% of the sublayer
// evaluations for L = 5. bench/prefix_reuse_bench prints the measured block, sublayer and
// FLOP-weighted fractions.
// The output head runs every time.
//
// Threads: sequences are independent. A batch is run as one parallel loop over sequences
// (each walking the whole batch in order through its own cache) when there are at least as
// many sequences as threads, else sequence by sequence with the threads inside the forward
// pass. Per-sequence NLL sums are added in sequence order, exactly as Evaluator::Nll does, so
// every loss is bit for bit the same at any thread count and batch composition.
//
// Thread-compatible: one Evaluate call at a time.
#ifndef IMPQ_WORKER_ENGINE_LOCAL_EVALUATOR_H_
#define IMPQ_WORKER_ENGINE_LOCAL_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"
#include "solver/width_ladder.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/weight_set.h"
#include "worker/quant/quantized_model.h"

namespace impq::engine {

struct LocalEvaluatorOptions {
  int threads = 1;  // >= 1
  // Upper bound on the prefix cache (see the file comment); 0 disables prefix reuse.
  int64_t max_cache_bytes = int64_t{1} << 30;
  // Evaluations whose states each sequence keeps (1 or 2; the bytes count against
  // max_cache_bytes). With 2, an evaluation restarts from whichever of the two shares more
  // leading sublayers with it and replaces the other, so the states of a coalition that many
  // others are compared with (a local search's incumbent) stay while its neighbours pass
  // through. A walk, whose steps each differ from the previous one only, needs 1.
  int cache_slots = 1;
  // The game's widths (solver/width_ladder.h), each prepared by the QuantizedModel. {2, 4}:
  // q_i = 1 puts player i at 2 bits, 0 at 4 (IMPQ's binary game). More widths: coalitions
  // range over the ladder's n·(m−1) steps and must be closed; q picks each player's width.
  std::vector<int> widths = {2, 4};
};

// Work counters, per sequence. A "block evaluation" is one decoder block run (entirely or
// from its feed-forward sublayer on) on one sequence; a "sublayer evaluation" is one attention
// or feed-forward sublayer run on one sequence (2 per block).
struct LocalEvaluatorStats {
  int64_t coalitions = 0;         // coalitions evaluated
  int64_t block_evals_done = 0;   // blocks entered
  int64_t block_evals_full = 0;   // blocks a full evaluation of each coalition would run
  int64_t sublayer_evals_done = 0;
  int64_t sublayer_evals_full = 0;
  double decoder_flops_done = 0;  // estimated FLOPs of the sublayers run
  double decoder_flops_full = 0;  // ... of those a full evaluation would run
  int64_t cached_sequences = 0;   // sequences admitted to the prefix cache
  int64_t cache_bytes = 0;        // bytes held by the prefix cache
  double seconds = 0;             // wall time inside Evaluate
  // 1 - done / full: the fraction of decoder-block work prefix reuse saved (0 when none ran).
  double SavedFraction() const {
    return block_evals_full > 0
               ? 1.0 - static_cast<double>(block_evals_done) / static_cast<double>(block_evals_full)
               : 0.0;
  }
  // 1 - done / full over sublayer evaluations, and over their estimated FLOPs (the compute
  // actually saved: the sublayers differ in cost).
  double SublayerSavedFraction() const;
  double FlopSavedFraction() const;
};

class LocalEvaluator : public solver::CoalitionEvaluator {
 public:
  // REQUIRES: `qmodel`, `forward` (built on qmodel.model()) and `set` outlive the evaluator.
  // InvalidArgument: options.threads < 1, a sequence longer than the model's seq_len, a token
  // outside the vocabulary, a sequence scoring no token, or an empty set.
  static absl::StatusOr<std::unique_ptr<LocalEvaluator>> Create(
      const quant::QuantizedModel& qmodel, const forward::LlamaForward& forward,
      const eval::EvalSet& set, const LocalEvaluatorOptions& options);
  ~LocalEvaluator() override;

  // v(q) for each coalition (q_i = 1: player i at 2 bits; with more widths, q over the
  // ladder's steps). InvalidArgument when a coalition is not valid (ValidateCoalition, naming
  // it); nothing is evaluated then.
  absl::StatusOr<std::vector<double>> Evaluate(
      std::span<const solver::Coalition> coalitions) override;

  // Mean NLL under an arbitrary WeightSet (e.g. full precision) with the same arithmetic and
  // the prefix cache (so a WeightSet sharing early blocks with the last one is cheap too).
  // The WeightSet's pointers must stay valid until the next call (they key the cache).
  double NllOf(const forward::WeightSet& weights);

  int num_players() const { return qmodel_.num_players(); }
  // Entries of a coalition: num_players() with widths {2, 4}, the ladder's steps otherwise.
  int num_steps() const { return ladder_.num_steps(); }
  const solver::WidthLadder& ladder() const { return ladder_; }
  // OK iff q has num_steps() entries of 0/1 and (more than two widths) is closed.
  absl::Status ValidateCoalition(const solver::Coalition& q) const;
  // Bits per player of a valid coalition. Errors as ValidateCoalition.
  absl::StatusOr<std::vector<int>> BitsOf(const solver::Coalition& q) const;
  const LocalEvaluatorStats& stats() const { return stats_; }
  const eval::EvalSet& set() const { return set_; }

 private:
  struct SequenceCache;
  LocalEvaluator(const quant::QuantizedModel& qmodel, const forward::LlamaForward& forward,
                 const eval::EvalSet& set, const LocalEvaluatorOptions& options,
                 solver::WidthLadder ladder);
  // Losses of each WeightSet in order. Updates stats_.
  std::vector<double> Run(std::span<const forward::WeightSet> weights);
  struct Work {
    int64_t blocks = 0, sublayers = 0;
    double flops = 0;
  };
  struct SublayerFlops {
    double attention = 0, ffn = 0;
  };
  static SublayerFlops SublayerFlopsOf(const model::ModelConfig& c, int64_t T);
  // NLL sum of sequence `s` under `w`; runs sublayers from the first changed one, adding what
  // it ran to *work.
  double RunSequence(size_t s, const forward::WeightSet& w, forward::Workspace& ws,
                     ThreadPool* inner, Work* work);

  const quant::QuantizedModel& qmodel_;
  const forward::LlamaForward& forward_;
  const eval::EvalSet& set_;
  const LocalEvaluatorOptions options_;
  const solver::WidthLadder ladder_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<SequenceCache>> caches_;     // one per sequence
  std::vector<std::unique_ptr<forward::Workspace>> workspaces_;  // one per thread
  LocalEvaluatorStats stats_;
};

}  // namespace impq::engine

#endif  // IMPQ_WORKER_ENGINE_LOCAL_EVALUATOR_H_
