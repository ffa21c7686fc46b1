// What a job measures on, prepared once: the model and tokenizer, the calibration, choice and
// held-out sets, and every player quantized at 2 and 4 bits with the budgets in bytes.
//
// RunJob (job.h) starts with it; a program that must also measure allocations on exactly the
// job's game loads them once and runs the job on them (RunJobOnInputs below;
// bench/choice_bound_bench.cc searches the same v(q) far longer than the job may). Given the
// same JobOptions the inputs are the same, bit for bit.
#ifndef IMPQ_WORKER_ENGINE_JOB_INPUTS_H_
#define IMPQ_WORKER_ENGINE_JOB_INPUTS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "job/job.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"

namespace impq::engine {

// Heap-held (LoadJobInputs returns a unique_ptr): `forward` and `qmodel` refer to the model.
struct JobInputs {
  model::LoadedModel loaded;
  std::unique_ptr<forward::LlamaForward> forward;
  eval::EvalSet calib;    // first calib_docs documents of the calibration text
  eval::EvalSet select;   // the per-budget choice's set (the next select_docs, or calib)
  bool select_on_calibration = true;
  eval::EvalSet heldout;  // first heldout_docs documents of the held-out text
  std::unique_ptr<quant::QuantizedModel> qmodel;
  solver::PlayerBytes bytes;     // per player at 2 and 4 bits
  std::vector<int64_t> width_bytes;  // [i·m + w]: player i at JobOptions::widths[w]
  std::vector<int64_t> budgets;  // bytes, one per JobOptions::average_bits
  double load_seconds = 0, quantize_seconds = 0;
};

// The widths a job's QuantizedModel prepares, ascending: the game's (JobOptions::widths),
// plus 2 and 4 bits — the budgets' scale and the held-out references — when it lacks them.
// The worker's engine prepares the same for a coordinator job.
std::vector<int> PreparedWidths(const std::vector<int>& game_widths);

// The first `docs` sequences (docs <= 0: all) of the text at `path`, as an evaluation set
// (eval::BuildEvalSet's mode, ctx and max_ctx) with its token totals recounted: how a job
// takes its calibration set, and how `impq quantize-eval --calib-docs` and `impq export` take
// GPTQ's, so that they calibrate exactly as the job did. Errors: unreadable file, text the
// tokenizer or the set cannot take (each naming `path`).
absl::StatusOr<eval::EvalSet> LoadFirstSequences(const model::Tokenizer& tokenizer,
                                                 const std::string& path, eval::EvalMode mode,
                                                 int64_t ctx, int64_t max_ctx, int64_t docs);

// How a game's players are quantized — the one recipe, followed by LoadJobInputs, `impq
// quantize-eval` and `impq export`.
struct QuantizeRecipe {
  std::string backend;           // rtn | hqq | gptq
  int group_size = 64;
  quant::PlayerGranularity players = quant::PlayerGranularity::kModule;
  std::vector<int> widths;       // ascending; every player is prepared at each
  const eval::EvalSet* calibration = nullptr;  // GPTQ's activations (required by gptq)
  int threads = 1;
};
// Every player of `forward`'s model at every width of `recipe` (GPTQ: calibrated on the
// full-precision model's activations over recipe.calibration). Errors: an unknown backend
// and QuantizedModel::Build's (GPTQ without a calibration set among them).
absl::StatusOr<std::unique_ptr<quant::QuantizedModel>> QuantizePlayers(
    const forward::LlamaForward& forward, const QuantizeRecipe& recipe);

// Called at the start and end of the "load" and "quantize" phases: (phase, done, total, the
// phase's start).
using PhaseReport = std::function<void(const std::string& phase, int64_t done, int64_t total,
                                       std::chrono::steady_clock::time_point start)>;

// Loads and quantizes (GPTQ calibrated on the calibration set). REQUIRES: ValidateJobOptions(o)
// is OK. Errors: unreadable files, model/backend errors, ctx beyond the model's seq_len, and
// budgets the model cannot meet (InvalidArgument naming b_avg and the bytes).
absl::StatusOr<std::unique_ptr<JobInputs>> LoadJobInputs(const job::JobOptions& o,
                                                         const PhaseReport& report = nullptr);

// RunJob on inputs already loaded for the same options (inputs = *LoadJobInputs(o)), for a
// program that also measures the job's game itself; the result is RunJob(o)'s. RunJob(o) is
// LoadJobInputs(o) followed by this.
absl::StatusOr<job::JobResult> RunJobOnInputs(const job::JobOptions& o, const JobInputs& inputs);

}  // namespace impq::engine

#endif  // IMPQ_WORKER_ENGINE_JOB_INPUTS_H_
