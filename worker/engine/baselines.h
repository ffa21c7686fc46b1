// The isolated per-player metrics IMPQ is compared against (IMPQ §4), computed on the model.
//
// Each metric gives every player a score (higher = more sensitive, keep at 4 bits); the
// allocation is then solver::GreedyImportanceAllocation under the same budget as IMPQ's
// (players dropped to 2 bits in ascending score per byte saved). The random baseline needs
// no score (solver::RandomAllocation).
//
//   isolated Δ   v({i}) − v(∅): measured on the game, solver/isolated_delta.h.
//   LIM          layer importance: the negative cosine similarity of a decoder block's input
//                and output hidden states, averaged over the calibration tokens of the
//                full-precision model. The score is 1 − mean cos = LIM + 1 (same order, but
//                non-negative, which greedy-per-byte needs to rank sensibly). Module players
//                take their block's value (LIM is defined per block), so within a block the
//                greedy order follows bytes saved only.
//   Z-score      the fraction of a player's weights with |w − μ| > 3σ, μ and σ (population)
//                computed within each linear module; a block player pools its modules' counts.
//   act. norm    the Frobenius norm ‖X‖_F of the player's input activations over the
//                calibration tokens of the full-precision model (q/k/v share one input, gate/up
//                another); a block player takes sqrt(Σ over its 7 modules of ‖X‖_F²).
//
// Every function is deterministic and bit for bit independent of the thread count
// (per-sequence partial sums combined in sequence order).
#ifndef IMPQ_WORKER_ENGINE_BASELINES_H_
#define IMPQ_WORKER_ENGINE_BASELINES_H_

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/weight_set.h"
#include "worker/model/model.h"
#include "worker/quant/quantized_model.h"

namespace impq::engine {

// Hidden-state statistics of one pass over a set.
struct ActivationStatistics {
  int64_t tokens = 0;                   // positions run (all rows of all sequences)
  std::vector<double> block_cos;        // [layer] mean over tokens of cos(input, output)
  // [layer][LinearKind] Σ x² over the module's input rows (q/k/v equal, gate/up equal).
  std::vector<std::array<double, model::kNumLinear>> input_sq;
};

// One pass of `weights` over `set` collecting ActivationStatistics. REQUIRES: threads >= 1.
// InvalidArgument for an empty set.
absl::StatusOr<ActivationStatistics> CollectActivationStatistics(
    const forward::LlamaForward& forward, const forward::WeightSet& weights,
    const eval::EvalSet& set, int threads);

// Scores per player (see the file comment), in player order.
std::vector<double> LimScores(const ActivationStatistics& stats,
                              const std::vector<quant::Player>& players);
std::vector<double> ActivationNormScores(const ActivationStatistics& stats,
                                         const std::vector<quant::Player>& players);
std::vector<double> ZScoreScores(const model::Model& model,
                                 const std::vector<quant::Player>& players);

}  // namespace impq::engine

#endif  // IMPQ_WORKER_ENGINE_BASELINES_H_
