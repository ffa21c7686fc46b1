// LocalGame (local_game.h).
#include "worker/engine/local_game.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/engine/baselines.h"
#include "worker/engine/local_evaluator.h"
#include "worker/engine/sequence_evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/fingerprint.h"

namespace impq::engine {

LocalGame::LocalGame(job::JobOptions options, const JobInputs* inputs,
                     EvaluatorFactory calibration_factory)
    : options_(std::move(options)), inputs_(inputs), factory_(std::move(calibration_factory)) {}

LocalGame::~LocalGame() = default;

absl::Status LocalGame::Load() {
  if (inputs_ == nullptr) {
    ASSIGN_OR_RETURN(loaded_, LoadJobInputs(options_));
    inputs_ = loaded_.get();
  }
  return absl::OkStatus();
}

absl::StatusOr<job::GameFacts> LocalGame::StructuralFacts() {
  if (structural_.has_value()) return *structural_;
  RETURN_IF_ERROR(Load());
  const JobInputs& in = *inputs_;
  const quant::QuantizedModel& qm = *in.qmodel;
  job::GameFacts f;
  f.model_config = in.loaded.model.config.ToString();
  f.fingerprint = model::WeightsFingerprint(in.loaded.model);
  f.linear_weights = in.loaded.model.LinearParameterCount();
  for (int i = 0; i < qm.num_players(); ++i) f.player_names.push_back(qm.players()[i].name);
  f.bytes2 = in.bytes.bytes2;
  f.bytes4 = in.bytes.bytes4;
  f.width_bytes = in.width_bytes;
  f.calib_sequences = static_cast<int64_t>(in.calib.sequences.size());
  f.calib_tokens = in.calib.scored_tokens;
  f.calib_processed_tokens = in.calib.processed_tokens;
  f.select_sequences = static_cast<int64_t>(in.select.sequences.size());
  f.select_tokens = in.select.scored_tokens;
  f.select_on_calibration = in.select_on_calibration;
  for (const eval::EvalSequence& s : in.select.sequences) {
    f.select_sequence_tokens.push_back(s.scored());
  }
  f.heldout_sequences = static_cast<int64_t>(in.heldout.sequences.size());
  f.heldout_tokens = in.heldout.scored_tokens;
  f.heldout_processed_tokens = in.heldout.processed_tokens;
  structural_ = f;
  return f;
}

absl::StatusOr<job::GameFacts> LocalGame::Prepare() {
  ASSIGN_OR_RETURN(job::GameFacts f, StructuralFacts());
  const JobInputs& in = *inputs_;
  const quant::QuantizedModel& qm = *in.qmodel;
  const forward::WeightSet fp32 = forward::WeightSet::FromModel(in.loaded.model);
  ASSIGN_OR_RETURN(ActivationStatistics act, CollectActivationStatistics(
                                                 *in.forward, fp32, in.calib, options_.threads));
  f.lim = LimScores(act, qm.players());
  f.actnorm = ActivationNormScores(act, qm.players());
  f.zscore = ZScoreScores(in.loaded.model, qm.players());
  // The held-out reference of the unquantized model: a fresh evaluator (no cache to share).
  LocalEvaluatorOptions ho;
  ho.threads = options_.threads;
  ho.max_cache_bytes = 0;
  ho.widths = options_.widths;
  ASSIGN_OR_RETURN(std::unique_ptr<LocalEvaluator> ev,
                   LocalEvaluator::Create(qm, *in.forward, in.heldout, ho));
  f.heldout_nll_fp32 = ev->NllOf(fp32);
  if (!std::isfinite(f.heldout_nll_fp32)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "job: the unquantized model's held-out loss is not finite (", f.heldout_nll_fp32,
        "): the weights of ", options_.model_path, " hold NaN or Inf"));
  }
  f.load_seconds = in.load_seconds;
  f.quantize_seconds = in.quantize_seconds;
  return f;
}

absl::StatusOr<std::vector<double>> LocalGame::CalibrationLosses(
    std::span<const solver::Coalition> coalitions) {
  if (calib_ == nullptr) {
    RETURN_IF_ERROR(Load());
    if (factory_) {
      ASSIGN_OR_RETURN(calib_, factory_(*inputs_->qmodel, inputs_->calib,
                                        options_.max_cache_bytes));
    }
    if (calib_ == nullptr) {
      LocalEvaluatorOptions eo;
      eo.threads = options_.threads;
      eo.max_cache_bytes = options_.max_cache_bytes;
      eo.widths = options_.widths;
      ASSIGN_OR_RETURN(std::unique_ptr<LocalEvaluator> ev,
                       LocalEvaluator::Create(*inputs_->qmodel, *inputs_->forward,
                                              inputs_->calib, eo));
      calib_local_ = ev.get();
      calib_ = std::move(ev);
    }
  }
  return calib_->Evaluate(coalitions);
}

absl::StatusOr<std::vector<std::vector<double>>> LocalGame::SelectionSums(
    std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) {
  if (select_ == nullptr) {
    RETURN_IF_ERROR(Load());
    ASSIGN_OR_RETURN(select_, SequenceEvaluator::Create(*inputs_->qmodel, *inputs_->forward,
                                                        inputs_->select, options_.threads,
                                                        options_.max_cache_bytes,
                                                        options_.widths));
  }
  return select_->RangeSums(coalitions, begin, end);
}

absl::StatusOr<std::vector<double>> LocalGame::HeldoutNll(
    std::span<const std::vector<int>> assignments) {
  if (heldout_ == nullptr) {
    RETURN_IF_ERROR(Load());
    LocalEvaluatorOptions ho;
    ho.threads = options_.threads;
    ho.max_cache_bytes = options_.max_cache_bytes;
    ho.widths = options_.widths;
    ASSIGN_OR_RETURN(heldout_, LocalEvaluator::Create(*inputs_->qmodel, *inputs_->forward,
                                                      inputs_->heldout, ho));
  }
  std::vector<double> out;
  out.reserve(assignments.size());
  for (const std::vector<int>& bits : assignments) {
    ASSIGN_OR_RETURN(forward::WeightSet w, inputs_->qmodel->Apply(bits));
    const double nll = heldout_->NllOf(w);
    if (!std::isfinite(nll)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "job: held-out loss of an assignment is not finite (", nll, ")"));
    }
    out.push_back(nll);
  }
  return out;
}

job::GameCounters LocalGame::Counters() const {
  job::GameCounters c;
  if (calib_local_ != nullptr) {
    const LocalEvaluatorStats& st = calib_local_->stats();
    c.block_evals_done = st.block_evals_done;
    c.block_evals_full = st.block_evals_full;
    c.cache_bytes = st.cache_bytes;
  }
  return c;
}

// LocalGame loads nothing until the pipeline's first call, and RunPipeline validates the
// options before it.
absl::StatusOr<job::JobResult> RunJob(const job::JobOptions& o) {
  LocalGame game(o);
  return job::RunPipeline(o, game);
}

absl::StatusOr<job::JobResult> RunJobOnInputs(const job::JobOptions& o, const JobInputs& inputs) {
  LocalGame game(o, &inputs);
  return job::RunPipeline(o, game);
}

}  // namespace impq::engine
