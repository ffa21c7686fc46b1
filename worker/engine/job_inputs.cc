#include "worker/engine/job_inputs.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "worker/quant/quantizer.h"

namespace impq::engine {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Recomputes a set's token totals from its sequences.
void Recount(eval::EvalSet& set) {
  set.scored_tokens = 0;
  set.processed_tokens = 0;
  for (const auto& s : set.sequences) {
    set.scored_tokens += s.scored();
    set.processed_tokens += static_cast<int64_t>(s.tokens.size());
  }
}

// Keeps the first n sequences of a set (n <= 0 or >= size: all) and recounts the totals.
void TakeFirstSequences(eval::EvalSet& set, int64_t n) {
  if (n > 0 && static_cast<size_t>(n) < set.sequences.size()) {
    set.sequences.resize(static_cast<size_t>(n));
  }
  Recount(set);
}

// The sequences [first, first + n) of `set` (fewer when it ends; n <= 0: to the end).
eval::EvalSet SequenceRange(const eval::EvalSet& set, int64_t first, int64_t n) {
  eval::EvalSet out;
  out.mode = set.mode;
  out.ctx = set.ctx;
  const size_t size = set.sequences.size();
  const size_t begin = std::min(size, static_cast<size_t>(first));
  const size_t end = n > 0 ? std::min(size, begin + static_cast<size_t>(n)) : size;
  out.sequences.assign(set.sequences.begin() + begin, set.sequences.begin() + end);
  Recount(out);
  return out;
}

}  // namespace

absl::StatusOr<eval::EvalSet> LoadFirstSequences(const model::Tokenizer& tokenizer,
                                                 const std::string& path, eval::EvalMode mode,
                                                 int64_t ctx, int64_t max_ctx, int64_t docs) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  ASSIGN_OR_RETURN(eval::EvalSet set, eval::BuildEvalSet(tokenizer, text, mode, ctx, max_ctx, path));
  TakeFirstSequences(set, docs);
  return set;
}

absl::StatusOr<std::unique_ptr<quant::QuantizedModel>> QuantizePlayers(
    const forward::LlamaForward& forward, const QuantizeRecipe& recipe) {
  ASSIGN_OR_RETURN(std::unique_ptr<quant::Quantizer> quantizer,
                   quant::MakeQuantizer(recipe.backend));
  std::unique_ptr<quant::CalibrationSet> calibration;
  if (recipe.backend == "gptq" && recipe.calibration != nullptr) {
    ASSIGN_OR_RETURN(quant::CalibrationSet cs,
                     quant::CollectCalibration(forward, *recipe.calibration, recipe.threads));
    calibration = std::make_unique<quant::CalibrationSet>(std::move(cs));
  }
  quant::QuantConfig config;
  config.group_size = recipe.group_size;
  ThreadPool pool(recipe.threads);
  return quant::QuantizedModel::Build(forward.model(), *quantizer, config, recipe.players,
                                      calibration.get(), &pool, recipe.widths);
}

std::vector<int> PreparedWidths(const std::vector<int>& game_widths) {
  std::vector<int> widths = game_widths;
  for (int b : {2, 4}) {
    if (std::find(widths.begin(), widths.end(), b) == widths.end()) widths.push_back(b);
  }
  std::sort(widths.begin(), widths.end());
  return widths;
}

absl::StatusOr<std::unique_ptr<JobInputs>> LoadJobInputs(const job::JobOptions& o,
                                                         const PhaseReport& report_or_null) {
  const PhaseReport report =
      report_or_null ? report_or_null
                     : [](const std::string&, int64_t, int64_t, Clock::time_point) {};
  auto in = std::make_unique<JobInputs>();
  auto t0 = Clock::now();
  report("load", 0, 1, t0);
  ASSIGN_OR_RETURN(in->loaded, model::LoadModelAndTokenizer(o.model_path, o.tokenizer_path));
  const model::Model& model = in->loaded.model;
  if (o.ctx > model.config.seq_len) {
    return absl::InvalidArgumentError(absl::StrCat("job: ctx = ", o.ctx,
                                                   " exceeds the model's seq_len ",
                                                   model.config.seq_len));
  }
  // The calibration text's first calib_docs sequences calibrate (SPQE, the baselines, GPTQ);
  // the next select_docs, when there are any, measure the per-budget choice.
  ASSIGN_OR_RETURN(eval::EvalSet calib_text,
                   LoadFirstSequences(*in->loaded.tokenizer, o.calib_text_path, o.mode, o.ctx,
                                      model.config.seq_len, /*docs=*/0));
  in->calib = SequenceRange(calib_text, 0, o.calib_docs);
  if (o.select_docs > 0 && o.calib_docs > 0) {
    in->select = SequenceRange(calib_text, o.calib_docs, o.select_docs);
  }
  in->select_on_calibration = in->select.sequences.empty();
  if (in->select_on_calibration) in->select = in->calib;
  calib_text = eval::EvalSet();
  ASSIGN_OR_RETURN(in->heldout,
                   LoadFirstSequences(*in->loaded.tokenizer, o.heldout_text_path, o.mode, o.ctx,
                                      model.config.seq_len, o.heldout_docs));
  in->forward = std::make_unique<forward::LlamaForward>(model);
  in->load_seconds = Since(t0);
  report("load", 1, 1, t0);

  // Quantize every linear at every width of the game, and at 2 and 4 bits (the budgets'
  // scale and the references) if the game lacks them.
  t0 = Clock::now();
  report("quantize", 0, 1, t0);
  QuantizeRecipe recipe;
  recipe.backend = o.backend;
  recipe.group_size = o.group_size;
  recipe.players = o.players;
  recipe.widths = PreparedWidths(o.widths);
  recipe.calibration = &in->calib;
  recipe.threads = o.threads;
  ASSIGN_OR_RETURN(in->qmodel, QuantizePlayers(*in->forward, recipe));
  for (int i = 0; i < in->qmodel->num_players(); ++i) {
    in->bytes.bytes2.push_back(in->qmodel->PlayerBytes(i, 2));
    in->bytes.bytes4.push_back(in->qmodel->PlayerBytes(i, 4));
    for (int b : o.widths) in->width_bytes.push_back(in->qmodel->PlayerBytes(i, b));
  }
  for (double b : o.average_bits) {
    ASSIGN_OR_RETURN(int64_t budget, solver::BudgetForAverageBits(in->bytes, b));
    in->budgets.push_back(budget);
  }
  in->quantize_seconds = Since(t0);
  report("quantize", 1, 1, t0);
  return in;
}

}  // namespace impq::engine
