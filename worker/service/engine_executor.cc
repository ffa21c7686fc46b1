#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/file_util.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "coordinator/job_spec.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"
#include "worker/engine/job_inputs.h"
#include "worker/engine/local_evaluator.h"
#include "worker/eval/eval_set.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"
#include "worker/quant/quantizer.h"
#include "worker/service/unit_executor.h"
#ifdef IMPQ_WORKER_WITH_GPU
#include "worker/gpu/gpu_evaluator.h"
#include "worker/gpu/gpu_runtime.h"
#endif

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
  std::unique_ptr<solver::CoalitionEvaluator> evaluator;
#ifdef IMPQ_WORKER_WITH_GPU
  gpu::GpuEvaluator* gpu = nullptr;  // = evaluator when it runs on the GPU
#endif
};

class EngineExecutor : public UnitExecutor {
 public:
  EngineExecutor(int threads, EngineDevice device) : threads_(threads) { ChooseDevice(device); }

  absl::Status Health() const override { return health_; }

  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    if (!health_.ok()) return health_;
    const auto t0 = std::chrono::steady_clock::now();
    const v1::JobSpec& spec = unit.spec();
    RETURN_IF_ERROR(Load(spec));
    const bool calib = unit.dataset() != v1::DATASET_EVALUATION;
    ASSIGN_OR_RETURN(Dataset * ds,
                     Data(calib ? spec.calibration_text_path() : spec.evaluation_text_path(),
                          calib ? spec.calibration_docs() : spec.evaluation_docs(), spec, calib));
    const int n = loaded_->qmodel->num_players();
    // The game's players: n with widths {2, 4}, else the n·(m−1) steps of the job's ladder.
    ASSIGN_OR_RETURN(const solver::WidthLadder ladder, coordinator::JobLadder(spec, n));
    const int players = ladder.num_steps();
    v1::WorkResult r;
    r.set_job_id(unit.job_id());
    r.set_unit_index(unit.unit_index());
    r.set_attempt(unit.attempt());
    *r.mutable_model() = loaded_->info;
    std::vector<solver::Coalition> coalitions;
    if (unit.kind() == v1::UNIT_KIND_WALK) {
      solver::Permutation perm(unit.permutation().begin(), unit.permutation().end());
      if (perm.empty()) {
        ASSIGN_OR_RETURN(perm,
                         coordinator::JobWalkPermutation(spec, n, unit.permutation_index()));
      }
      RETURN_IF_ERROR(solver::ValidatePermutation(perm, players));
      for (int p : perm) r.add_permutation(p);
      coalitions = solver::WalkCoalitions(perm);
    } else {
      for (const std::string& s : unit.coalitions()) {
        solver::Coalition q;
        for (char c : s) q.push_back(c == '1' ? 1 : 0);
        RETURN_IF_ERROR(ladder.ValidateClosed(q));  // any 0/1 string of n with {2, 4}
        coalitions.push_back(std::move(q));
      }
    }
    absl::StatusOr<std::vector<double>> losses = ds->evaluator->Evaluate(coalitions);
    if (!losses.ok()) {
#ifdef IMPQ_WORKER_WITH_GPU
      if (ds->gpu != nullptr && ds->gpu->device_failed()) DeviceFailed(losses.status());
#endif
      return losses.status();
    }
    for (double l : *losses) r.add_losses(l);
    r.set_evaluation_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return r;
  }

 private:
  absl::Status Load(const v1::JobSpec& spec) {
    const std::string key = absl::StrCat(spec.model_path(), "\n", spec.tokenizer_path(), "\n",
                                         spec.backend(), "\n", spec.group_size(), "\n",
                                         spec.players(), "\n", spec.calibration_text_path(), "\n",
                                         spec.calibration_docs(), "\n", spec.context(), "\n",
                                         absl::StrJoin(coordinator::JobWidths(spec), ","));
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
    // The job's widths, and 2 and 4 bits always (ModelInfo.bytes2/bytes4, the budgets), as
    // impq run prepares them.
    ThreadPool pool(threads_);
    absl::StatusOr<std::unique_ptr<quant::QuantizedModel>> qm = quant::QuantizedModel::Build(
        loaded_->model.model, *q, cfg, g, qcalib.get(), &pool,
        engine::PreparedWidths(coordinator::JobWidths(spec)));
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
    if (!coordinator::BinaryWidths(spec)) {
      for (int i = 0; i < loaded_->qmodel->num_players(); ++i) {
        for (int b : coordinator::JobWidths(spec)) {
          info.add_width_bytes(loaded_->qmodel->PlayerBytes(i, b));
        }
      }
    }
    info.set_model_config(loaded_->model.model.config.ToString());
    return absl::OkStatus();
  }

  absl::StatusOr<Dataset*> Data(const std::string& path, int64_t docs, const v1::JobSpec& spec,
                                bool calib, bool with_evaluator = true) {
    std::unique_ptr<Dataset>& slot = calib ? calib_ : eval_;
    // The evaluator's game depends on the widths (its coalitions are steps of their ladder).
    const std::vector<int> widths = coordinator::JobWidths(spec);
    const std::string key = absl::StrCat(path, "\n", docs, "\n", spec.context(), "\n",
                                         absl::StrJoin(widths, ","));
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
      const int64_t cache_bytes = calib ? int64_t{1} << 30 : 0;
#ifdef IMPQ_WORKER_WITH_GPU
      if (runtime_ != nullptr && !coordinator::BinaryWidths(spec)) {
        // The CUDA kernels are 2/4-bit: a width-set job runs on this node's CPU, as a model
        // that does not fit the device does — slower, but every worker serves every job (a
        // GPU-only fleet would otherwise never finish it).
        IMPQ_LOG(WARNING) << "GPU evaluator: widths [" << absl::StrJoin(widths, ",")
                          << "] of " << path
                          << " run on the CPU (the CUDA kernels are 2- and 4-bit)";
      } else if (runtime_ != nullptr) {
        gpu::GpuEvaluatorOptions go;
        go.max_cache_bytes = cache_bytes;
        absl::StatusOr<std::unique_ptr<gpu::GpuEvaluator>> g =
            gpu::GpuEvaluator::Create(runtime_.get(), 0, *loaded_->qmodel, d->set, go);
        if (g.ok()) {
          d->gpu = g->get();
          d->evaluator = *std::move(g);
        } else if (g.status().code() == absl::StatusCode::kInternal) {
          DeviceFailed(g.status());  // a CUDA failure: the device is unusable
          return g.status();
        } else if (g.status().code() == absl::StatusCode::kInvalidArgument) {
          return g.status();  // the set does not fit the model: the CPU would refuse it too
        } else {
          // Out of device memory or no usable device: this model runs on the CPU.
          IMPQ_LOG(WARNING) << "GPU evaluator unavailable for " << path << ", using the CPU: "
                            << g.status();
        }
      }
#endif
      if (d->evaluator == nullptr) {
        engine::LocalEvaluatorOptions eo;
        eo.threads = threads_;
        eo.max_cache_bytes = cache_bytes;
        eo.widths = widths;
        ASSIGN_OR_RETURN(d->evaluator, engine::LocalEvaluator::Create(
                                           *loaded_->qmodel, *loaded_->forward, d->set, eo));
      }
    }
    slot = std::move(d);
    return slot.get();
  }

  // The GPU when asked for (kAuto, kGpu) and the plugin loads and sees a device, else the
  // CPU; kGpu without a usable GPU leaves the executor not serving instead of silently
  // running on the CPU.
  void ChooseDevice(EngineDevice device) {
    const bool want_gpu = device == EngineDevice::kGpu;
    if (device == EngineDevice::kCpu) return;
#ifdef IMPQ_WORKER_WITH_GPU
    absl::Status no_gpu;
    absl::StatusOr<std::unique_ptr<gpu::GpuRuntime>> rt = gpu::GpuRuntime::Load();
    if (!rt.ok()) {
      no_gpu = rt.status();
    } else if ((*rt)->device_count() == 0) {
      no_gpu = absl::UnavailableError(absl::StrCat("no CUDA device: ", (*rt)->no_device_reason()));
    } else if (absl::StatusOr<ImpqGpuDeviceInfo> info = (*rt)->DeviceInfo(0); !info.ok()) {
      no_gpu = info.status();
    } else {
      runtime_ = *std::move(rt);
      IMPQ_LOG(INFO) << "engine: GPU 0 (" << info->name << ", sm_" << info->cc_major
                     << info->cc_minor << ", " << (info->total_bytes >> 20) << " MiB)";
      return;
    }
    if (want_gpu) {
      health_ = absl::UnavailableError(
          absl::StrCat("device gpu requested but no usable GPU: ", no_gpu.message()));
      IMPQ_LOG(ERROR) << health_;
      return;
    }
    IMPQ_LOG(INFO) << "engine: CPU, " << threads_ << " thread(s) (no GPU: " << no_gpu.message()
                   << ")";
#else
    if (want_gpu) {
      health_ = absl::UnavailableError("device gpu requested but this build has no GPU support");
      IMPQ_LOG(ERROR) << health_;
      return;
    }
    IMPQ_LOG(INFO) << "engine: CPU, " << threads_ << " thread(s) (built without GPU support)";
#endif
  }

  // A CUDA failure: gpu_api.h's devices are unusable after one, so the executor stops serving
  // (the worker loop then stops taking leases; see unit_executor.h).
  void DeviceFailed(const absl::Status& cause) {
    health_ = absl::UnavailableError(
        absl::StrCat("GPU device failed, not serving: ", cause.message()));
    IMPQ_LOG(ERROR) << health_;
  }

  const int threads_;
  absl::Status health_;  // OK while serving
#ifdef IMPQ_WORKER_WITH_GPU
  // Null: the CPU engine. Declared before the datasets, whose evaluators use it.
  std::unique_ptr<gpu::GpuRuntime> runtime_;
#endif
  std::unique_ptr<Loaded> loaded_;
  std::unique_ptr<Dataset> calib_, eval_;  // REQUIRES: destroyed before loaded_ (see Load)
};

}  // namespace

absl::StatusOr<EngineDevice> ParseEngineDevice(const std::string& name) {
  if (name == "cpu") return EngineDevice::kCpu;
  if (name == "auto") return EngineDevice::kAuto;
  if (name == "gpu") return EngineDevice::kGpu;
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", name, "\": expected cpu, auto or gpu"));
}

std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads, EngineDevice device) {
  return std::make_unique<EngineExecutor>(threads, device);
}

}  // namespace impq::worker_service
