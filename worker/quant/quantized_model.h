// A model with every quantizable linear weight prepared at each width of a set (by default
// 2 and 4 bits; any of 2, 3, 4, 8), once.
//
// IMPQ's game needs the loss of thousands of bit assignments. QuantizedModel quantizes each
// linear module with the chosen backend at every width of its set when it is built, keeps the packed
// tensors (for exact memory accounting) and their dequantized float copies, and then turns
// any assignment into a forward::WeightSet by pointer swaps: applying an assignment never
// quantizes anything (tests count Quantizer calls).
//
// Players are the units that receive a width: whole decoder blocks (the paper's choice, all 7
// linears of a block together) or individual linear modules (player = layer * 7 + kind).
// Embeddings, norms and the output head stay in full precision.
//
// GPTQ calibrates each linear on the inputs that the *full-precision* model feeds it
// (CollectCalibration), so every module's version at each width is computed once and does not
// depend on the other modules' widths; the same holds trivially for RTN and HQQ.
//
// Immutable after Build; thread-safe. WeightSets point into this object: it must outlive them.
#ifndef IMPQ_WORKER_QUANT_QUANTIZED_MODEL_H_
#define IMPQ_WORKER_QUANT_QUANTIZED_MODEL_H_

#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/thread_pool.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/forward/weight_set.h"
#include "worker/model/model.h"
#include "worker/quant/calibration.h"
#include "worker/quant/packed_tensor.h"
#include "worker/quant/quantizer.h"

namespace impq::quant {

enum class PlayerGranularity { kBlock, kModule };
// "block" / "module".
const char* PlayerGranularityName(PlayerGranularity g);
absl::StatusOr<PlayerGranularity> ParsePlayerGranularity(const std::string& name);

struct LinearRef {
  int layer;
  model::LinearKind kind;
};

struct Player {
  std::string name;  // "block3" or "layers.3.attn_q"
  std::vector<LinearRef> linears;
};

std::vector<Player> MakePlayers(const model::ModelConfig& config, PlayerGranularity g);

// Per layer and LinearKind, the statistics of that module's input over calibration text.
// q/k/v share one input and gate/up another, so entries may share a CalibrationStats.
class CalibrationSet {
 public:
  const CalibrationStats* Get(int layer, model::LinearKind kind) const;
  int64_t tokens() const { return tokens_; }

 private:
  friend absl::StatusOr<CalibrationSet> CollectCalibration(const forward::LlamaForward&,
                                                           const eval::EvalSet&, int);
  // [layer][distinct input: q/k/v, o, gate/up, down]
  std::vector<std::array<std::shared_ptr<CalibrationStats>, 4>> stats_;
  int64_t tokens_ = 0;
};

// Runs the full-precision model over `set` and accumulates every linear module's input
// statistics (GPTQ's Hessians). Sequences run in set order (threads work inside each
// sequence), so the result is bit for bit the same at any thread count.
// InvalidArgument when threads < 1, a sequence is empty or longer than the model's seq_len, a
// token is outside the vocabulary (names sequence and position), or an activation is not
// finite (names the module).
absl::StatusOr<CalibrationSet> CollectCalibration(const forward::LlamaForward& fwd,
                                                  const eval::EvalSet& set, int threads);

class QuantizedModel {
 public:
  // Quantizes every linear module of `model` at each width of `widths` with `quantizer` and
  // `config` (config.bits and config.pool are ignored; `pool`, optional, runs the
  // row-parallel work). `calib` is required by GPTQ and ignored otherwise. Each width costs
  // one packed and one dequantized (f32) copy of every linear.
  // Errors (InvalidArgument): config.group_size <= 0 (names group_size and the value), an
  // empty `widths`, a width not in {2, 3, 4, 8} or given twice (names it), GPTQ
  // without calibration ("GPTQ needs calibration activations (--calib)"), and anything the
  // quantizer rejects, e.g. a NaN/Inf weight; those messages start with the tensor name and
  // the width ("layers.2.ffn_up at 4 bits (rtn): ...").
  // REQUIRES: `model` is valid and outlives the result.
  static absl::StatusOr<std::unique_ptr<QuantizedModel>> Build(
      const model::Model& model, const Quantizer& quantizer, const QuantConfig& config,
      PlayerGranularity granularity, const CalibrationSet* calib, ThreadPool* pool = nullptr,
      std::span<const int> widths = kDefaultWidths);

  // The widths Build prepares unless told otherwise: IMPQ's binary choice (`--widths 2,4`).
  static constexpr int kDefaultWidths[] = {2, 4};

  const model::Model& model() const { return model_; }
  const std::vector<Player>& players() const { return players_; }
  int num_players() const { return static_cast<int>(players_.size()); }
  PlayerGranularity granularity() const { return granularity_; }
  const std::string& backend() const { return backend_; }
  int group_size() const { return group_size_; }
  // The quantized widths prepared by Build, ascending.
  const std::vector<int>& widths() const { return widths_; }
  // True when `bits` is one of widths() (16 and 32, full precision, are not widths).
  bool HasWidth(int bits) const;

  // WeightSet with player i at bits[i] (one of widths(), or 16/32 for full precision).
  // InvalidArgument when bits.size() != num_players() or a width is neither (names the
  // player and lists the model's widths).
  absl::StatusOr<forward::WeightSet> Apply(std::span<const int> bits) const;
  // All players at one width. REQUIRES: HasWidth(bits) or bits is 16 or 32.
  forward::WeightSet Uniform(int bits) const;

  // Exact storage of player i at a quantized width: packed codes + scales + zeros of its
  // modules (equals the sum of StorageBytes over them); at 16 or 32 bits its f32 storage
  // (PlayerFloatBytes: the model keeps f32 weights). REQUIRES: 0 <= player < num_players(),
  // HasWidth(bits) or bits in {16, 32}.
  int64_t PlayerBytes(int player, int bits) const;
  // Storage of the full-precision (f32) weights of player i.
  int64_t PlayerFloatBytes(int player) const;
  // Number of weights of player i (sum of rows * cols of its modules).
  int64_t PlayerWeights(int player) const;
  // Sum of PlayerBytes(i, bits[i]): the linear weights' memory under an assignment.
  // InvalidArgument as Apply.
  absl::StatusOr<int64_t> AssignmentBytes(std::span<const int> bits) const;

  // REQUIRES (both): HasWidth(bits), layer and kind in range.
  const PackedTensor& Packed(int layer, model::LinearKind kind, int bits) const;
  // Dequantized weights [out, in] of one module at a width of widths().
  const std::vector<float>& Dequantized(int layer, model::LinearKind kind, int bits) const;

  // Seconds spent quantizing in Build.
  double quantize_seconds() const { return quantize_seconds_; }

 private:
  struct Module {
    std::vector<PackedTensor> packed;             // [i]: at widths_[i]
    std::vector<std::vector<float>> dequantized;  // same order
  };
  explicit QuantizedModel(const model::Model& m) : model_(m) {}
  absl::Status CheckAssignment(std::span<const int> bits) const;
  // Index of `bits` in widths_. REQUIRES: HasWidth(bits).
  size_t WidthIndex(int bits) const;
  const Module& Get(int layer, model::LinearKind kind) const {
    return modules_[static_cast<size_t>(layer) * model::kNumLinear + static_cast<int>(kind)];
  }

  const model::Model& model_;
  std::vector<Player> players_;
  PlayerGranularity granularity_ = PlayerGranularity::kBlock;
  std::string backend_;
  int group_size_ = 0;
  std::vector<int> widths_;      // ascending
  std::vector<Module> modules_;  // [layer * 7 + kind]
  double quantize_seconds_ = 0;
};

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_QUANTIZED_MODEL_H_
