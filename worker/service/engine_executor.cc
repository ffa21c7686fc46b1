#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"
#include "worker/quant/quantizer.h"
#include "worker/service/unit_executor.h"

namespace impq::worker_service {
namespace {

// Everything derived from the model and the quantization settings.
struct Loaded {
  std::string key;
  model::LoadedModel model;
  std::unique_ptr<forward::LlamaForward> forward;
  std::unique_ptr<quant::QuantizedModel> qmodel;
  v1::ModelInfo info;
};

// An evaluation set with its evaluator (prefix cache included).
struct Dataset {
  std::string key;
  eval::EvalSet set;
  std::unique_ptr<engine::LocalEvaluator> evaluator;
};

class EngineExecutor : public UnitExecutor {
 public:
  explicit EngineExecutor(int threads) : threads_(threads) {}

  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    const auto t0 = std::chrono::steady_clock::now();
    const v1::JobSpec& spec = unit.spec();
    RETURN_IF_ERROR(Load(spec));
    const bool calib = unit.dataset() != v1::DATASET_EVALUATION;
    ASSIGN_OR_RETURN(Dataset * ds,
                     Data(calib ? spec.calibration_text_path() : spec.evaluation_text_path(),
                          calib ? spec.calibration_docs() : spec.evaluation_docs(), spec, calib));
    const int n = loaded_->qmodel->num_players();
    v1::WorkResult r;
    r.set_job_id(unit.job_id());
    r.set_unit_index(unit.unit_index());
    r.set_attempt(unit.attempt());
    *r.mutable_model() = loaded_->info;
    std::vector<solver::Coalition> coalitions;
    if (unit.kind() == v1::UNIT_KIND_WALK) {
      solver::Permutation perm(unit.permutation().begin(), unit.permutation().end());
      if (perm.empty()) {
        perm = solver::SeededPermutationSampler(n, spec.seed(), spec.antithetic())
                   .Get(static_cast<uint64_t>(unit.permutation_index()));
      }
      RETURN_IF_ERROR(solver::ValidatePermutation(perm, n));
      for (int p : perm) r.add_permutation(p);
      coalitions = solver::WalkCoalitions(perm);
    } else {
      for (const std::string& s : unit.coalitions()) {
        solver::Coalition q;
        for (char c : s) q.push_back(c == '1' ? 1 : 0);
        RETURN_IF_ERROR(solver::ValidateCoalition(q, n));
        coalitions.push_back(std::move(q));
      }
    }
    ASSIGN_OR_RETURN(std::vector<double> losses, ds->evaluator->Evaluate(coalitions));
    for (double l : losses) r.add_losses(l);
    r.set_evaluation_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return r;
  }

 private:
  absl::Status Load(const v1::JobSpec& spec) {
    const std::string key = absl::StrCat(spec.model_path(), "\n", spec.tokenizer_path(), "\n",
                                         spec.backend(), "\n", spec.group_size(), "\n",
                                         spec.players(), "\n", spec.calibration_text_path(), "\n",
                                         spec.calibration_docs(), "\n", spec.context());
    if (loaded_ != nullptr && loaded_->key == key) return absl::OkStatus();
    calib_.reset();
    eval_.reset();
    loaded_.reset();
    auto l = std::make_unique<Loaded>();
    l->key = key;
    ASSIGN_OR_RETURN(l->model, model::LoadModelAndTokenizer(spec.model_path(), spec.tokenizer_path()));
    l->forward = std::make_unique<forward::LlamaForward>(l->model.model);
    ASSIGN_OR_RETURN(quant::PlayerGranularity g, quant::ParsePlayerGranularity(spec.players()));
    ASSIGN_OR_RETURN(std::unique_ptr<quant::Quantizer> q, quant::MakeQuantizer(spec.backend()));
    quant::QuantConfig cfg;
    cfg.group_size = spec.group_size();
    std::unique_ptr<quant::CalibrationSet> qcalib;
    loaded_ = std::move(l);
    if (spec.backend() == "gptq") {
      // GPTQ calibrates on the job's calibration set.
      ASSIGN_OR_RETURN(Dataset * ds, Data(spec.calibration_text_path(), spec.calibration_docs(),
                                          spec, /*calib=*/true, /*with_evaluator=*/false));
      ASSIGN_OR_RETURN(quant::CalibrationSet cs,
                       quant::CollectCalibration(*loaded_->forward, ds->set, threads_));
      qcalib = std::make_unique<quant::CalibrationSet>(std::move(cs));
      calib_.reset();
    }
    ThreadPool pool(threads_);
    absl::StatusOr<std::unique_ptr<quant::QuantizedModel>> qm = quant::QuantizedModel::Build(
        loaded_->model.model, *q, cfg, g, qcalib.get(), &pool);
    if (!qm.ok()) {
      loaded_.reset();
      return qm.status();
    }
    loaded_->qmodel = *std::move(qm);
    v1::ModelInfo& info = loaded_->info;
    info.set_num_players(loaded_->qmodel->num_players());
    for (int i = 0; i < loaded_->qmodel->num_players(); ++i) {
      info.add_player_names(loaded_->qmodel->players()[i].name);
      info.add_bytes2(loaded_->qmodel->PlayerBytes(i, 2));
      info.add_bytes4(loaded_->qmodel->PlayerBytes(i, 4));
    }
    info.set_model_config(loaded_->model.model.config.ToString());
    return absl::OkStatus();
  }

  absl::StatusOr<Dataset*> Data(const std::string& path, int64_t docs, const v1::JobSpec& spec,
                                bool calib, bool with_evaluator = true) {
    std::unique_ptr<Dataset>& slot = calib ? calib_ : eval_;
    const std::string key = absl::StrCat(path, "\n", docs, "\n", spec.context());
    if (slot != nullptr && slot->key == key && (slot->evaluator != nullptr || !with_evaluator)) {
      return slot.get();
    }
    if (path.empty()) return absl::InvalidArgumentError("unit needs spec.evaluation_text_path");
    auto d = std::make_unique<Dataset>();
    d->key = key;
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
    const int64_t max_ctx = loaded_->model.model.config.seq_len;
    ASSIGN_OR_RETURN(d->set, eval::BuildEvalSet(*loaded_->model.tokenizer, text,
                                                eval::EvalMode::kDocument,
                                                std::min<int64_t>(spec.context(), max_ctx),
                                                max_ctx, path));
    // The first `docs` documents, as worker/engine/job.cc takes them.
    if (docs > 0 && static_cast<size_t>(docs) < d->set.sequences.size()) {
      d->set.sequences.resize(static_cast<size_t>(docs));
    }
    d->set.scored_tokens = d->set.processed_tokens = 0;
    for (const auto& s : d->set.sequences) {
      d->set.scored_tokens += s.scored();
      d->set.processed_tokens += static_cast<int64_t>(s.tokens.size());
    }
    if (with_evaluator) {
      engine::LocalEvaluatorOptions eo;
      eo.threads = threads_;
      eo.max_cache_bytes = calib ? int64_t{1} << 30 : 0;
      ASSIGN_OR_RETURN(d->evaluator, engine::LocalEvaluator::Create(*loaded_->qmodel,
                                                                    *loaded_->forward, d->set, eo));
    }
    slot = std::move(d);
    return slot.get();
  }

  const int threads_;
  std::unique_ptr<Loaded> loaded_;
  std::unique_ptr<Dataset> calib_, eval_;  // REQUIRES: destroyed before loaded_ (see Load)
};

}  // namespace

std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads) {
  return std::make_unique<EngineExecutor>(threads);
}

}  // namespace impq::worker_service
