// GpuEvaluator: the IMPQ game's value function v(q) on a CUDA device, through the plugin's
// resident model (gpu_api.h, model_* entry points).
//
// The same game as engine::LocalEvaluator: v(q) = mean NLL over the scored tokens of an
// EvalSet when the players in q run at 2 bits and all others at 4 bits, or, with more widths
// (GpuEvaluatorOptions::widths, e.g. {2, 3, 4, 8}), the ladder game of solver/width_ladder.h
// whose closed coalitions pick one width per player. Create() uploads the model once
// (embedding and norms f32, output head bf16, the CPU's own rotary tables and norm
// multipliers), every linear module's packed tensors at each of the game's widths
// (dequantized to bf16 on the device and kept there, so a coalition only selects pointers)
// and the evaluation set. Device memory for the weights: one bf16 copy of the linear modules
// per width (2 bytes per weight per width; Llama-3.1-8B's 7e9 linear weights take 13 GiB per
// width, 52 GiB for {2, 3, 4, 8}).
// Evaluate() maps each coalition to one variant per module and calls model_evaluate, which
// reuses the hidden states at the input of every block along a permutation walk (prefix
// reuse, as LocalEvaluator does on the CPU) within options.max_cache_bytes of device memory.
//
// Numerics: the plugin's bf16 contract (worker/gpu/cuda/kernels.cuh; CPU mirror:
// gpu_model_reference.h). Losses are therefore NOT bit-identical to LocalEvaluator's f32
// ones; gpu_model_test.cc states the tolerances. Per-sequence sums are added in sequence
// order, in double, so the result does not depend on batch composition.
//
// Thread-compatible: one call at a time. The runtime and the device must outlive it.
#ifndef IMPQ_WORKER_GPU_GPU_EVALUATOR_H_
#define IMPQ_WORKER_GPU_GPU_EVALUATOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"
#include "solver/coalition_evaluator.h"
#include "solver/width_ladder.h"
#include "worker/eval/eval_set.h"
#include "worker/gpu/gpu_api.h"
#include "worker/gpu/gpu_model_reference.h"
#include "worker/gpu/gpu_runtime.h"
#include "worker/quant/quantized_model.h"

namespace impq::gpu {

struct GpuEvaluatorOptions {
  // Upper bound on the device memory of the prefix cache; 0 disables prefix reuse. The plugin
  // also never lets the cache eat into the memory it needs for scratch (gpu_api.h).
  int64_t max_cache_bytes = int64_t{16} << 30;
  // Also upload the full-precision weights (as bf16), for NllOfBits with 16/32-bit players.
  bool upload_full = false;
  // The game's widths (LocalEvaluatorOptions::widths): ascending, each of 2, 3, 4, 8 and
  // prepared by the QuantizedModel. {2, 4}: q_i = 1 puts player i at 2 bits (the binary
  // game); more widths: coalitions over the ladder's steps, which must be closed. Only these
  // widths are uploaded.
  std::vector<int> widths = {2, 4};
};

// The plugin's description of everything but the linear modules (model_create's argument),
// exactly as LlamaForward multiplies by it: `desc` points into `tables` and `norms`, hence
// handed out behind a pointer and never copied.
struct GpuModelDescription {
  GpuModelTables tables;
  std::vector<ImpqGpuLayerNorms> norms;
  ImpqGpuModelDesc desc{};
};
// For sequences of up to `positions` tokens (desc.seq_len = positions: the rotary tables and
// the plugin's checks follow what will be evaluated, not the context length the model file
// claims). REQUIRES: m.Validate().ok(), 2 <= positions <= m.config.seq_len; m outlives the
// result (desc points at its embedding and head).
std::unique_ptr<const GpuModelDescription> MakeGpuModelDescription(const model::Model& m,
                                                                   int positions);

// The plugin's variant table (model_evaluate's argument): variants[layer * 7 + kind] in
// IMPQ_GPU_VARIANT_* with the modules of player i at bits[i], one of `held` (the quantized
// widths on the device) or 16/32 (the full-precision weights, which need `full`). Modules of
// no player get the variant of the widest held width. Errors: InvalidArgument when bits has
// not num_players() entries or a width is neither held nor 16/32 (naming the player and the
// held widths); FailedPrecondition for 16/32 without `full`. Pure (tested on the CPU).
absl::StatusOr<std::vector<uint8_t>> VariantTable(const quant::QuantizedModel& qmodel,
                                                  std::span<const int> bits,
                                                  std::span<const int> held, bool full);

// Work counters. A "block evaluation" is one decoder block run on one sequence.
struct GpuEvaluatorStats {
  int64_t coalitions = 0;
  int64_t block_evals_done = 0;
  int64_t block_evals_full = 0;
  int64_t cached_sequences = 0;
  int64_t cache_bytes = 0;     // device bytes of the prefix cache
  int64_t resident_bytes = 0;  // device bytes of the weight variants
  double seconds = 0;          // wall time inside Evaluate / NllOfBits / SequenceSums
  double SavedFraction() const {
    return block_evals_full > 0
               ? 1.0 - static_cast<double>(block_evals_done) / static_cast<double>(block_evals_full)
               : 0.0;
  }
};

class GpuEvaluator : public solver::CoalitionEvaluator {
 public:
  // REQUIRES: `runtime`, `qmodel` (and its model) and `set` outlive the evaluator.
  // Errors: InvalidArgument for a bad device ordinal, a set that does not fit the model
  // (eval::ValidateEvalSet), widths that are no ladder (solver::WidthLadder::Create) or that
  // the QuantizedModel did not prepare (naming the width), or a model the plugin rejects
  // (naming the field); FailedPrecondition when the plugin is too old for a width (a version-1
  // plugin and 3 or 8 bits: GpuRuntime::CheckWidths' message); ResourceExhausted when the
  // weights do not fit the device; Internal for a CUDA failure (device_failed() is then true);
  // Unavailable when the device is not usable.
  static absl::StatusOr<std::unique_ptr<GpuEvaluator>> Create(GpuRuntime* runtime, int device,
                                                              const quant::QuantizedModel& qmodel,
                                                              const eval::EvalSet& set,
                                                              const GpuEvaluatorOptions& options);
  ~GpuEvaluator() override;

  // v(q) for each coalition (q_i = 1: player i at 2 bits, else 4 bits; with more widths, q
  // over the ladder's steps). InvalidArgument when a coalition is not valid (num_steps()
  // entries of 0/1, closed with more than two widths; nothing is evaluated then).
  absl::StatusOr<std::vector<double>> Evaluate(
      std::span<const solver::Coalition> coalitions) override;

  // Mean NLL with player i at bits[i], one of the game's widths or 16/32; 16 and 32 mean the
  // full-precision weights and need options.upload_full (else FailedPrecondition).
  // InvalidArgument for any other width (naming the player and the widths held).
  absl::StatusOr<double> NllOfBits(std::span<const int> bits);
  // The per-sequence NLL sums (EvalSet order) of the same assignment.
  absl::StatusOr<std::vector<double>> SequenceSums(std::span<const int> bits);
  // Same, from a raw variant table variants[layer * 7 + kind] in IMPQ_GPU_VARIANT_*: the
  // plugin checks it (for tests of its argument checks).
  absl::StatusOr<std::vector<double>> SequenceSumsOfVariants(std::span<const uint8_t> variants);

  int num_players() const { return qmodel_.num_players(); }
  // Entries of a coalition: num_players() with two widths, the ladder's steps otherwise.
  int num_steps() const { return ladder_.num_steps(); }
  const solver::WidthLadder& ladder() const { return ladder_; }
  const eval::EvalSet& set() const { return set_; }
  // Counters; the cache and block figures come from the plugin (model_stats).
  absl::StatusOr<GpuEvaluatorStats> stats() const;
  // True once a call failed with IMPQ_GPU_EDEVICE: the device is unusable (gpu_api.h) and
  // the owner should stop using it (the worker reports itself not serving).
  bool device_failed() const { return device_failed_; }

 private:
  GpuEvaluator(GpuRuntime* runtime, const quant::QuantizedModel& qmodel, const eval::EvalSet& set,
               solver::WidthLadder ladder);
  // rc -> Status; remembers EDEVICE.
  absl::Status Check(int rc, const ImpqGpuError& err, absl::string_view what);
  absl::StatusOr<std::vector<uint8_t>> Variants(std::span<const int> bits) const;
  absl::StatusOr<std::vector<double>> Run(const std::vector<uint8_t>& variants);
  double Mean(const std::vector<double>& sums) const;

  GpuRuntime* const runtime_;
  const quant::QuantizedModel& qmodel_;
  const eval::EvalSet& set_;
  const solver::WidthLadder ladder_;
  bool full_uploaded_ = false;
  ImpqGpuModel* model_ = nullptr;  // owned: model_destroy in the destructor
  bool device_failed_ = false;
  int64_t coalitions_ = 0;
  double seconds_ = 0;
};

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_GPU_EVALUATOR_H_
