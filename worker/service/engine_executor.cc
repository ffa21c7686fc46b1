#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/status.h"
#include "solver/width_ladder.h"
#include "worker/engine/local_game.h"
#include "worker/model/loader.h"
#include "job/spec_options.h"
#include "worker/service/game_executor.h"
#include "worker/service/unit_executor.h"
#ifdef IMPQ_WORKER_WITH_GPU
#include "worker/gpu/gpu_evaluator.h"
#include "worker/gpu/gpu_runtime.h"
#endif

namespace impq::worker_service {
namespace {

class EngineExecutor : public UnitExecutor {
 public:
  EngineExecutor(int threads, EngineDevice device, std::vector<std::string> data_roots)
      : threads_(threads), data_roots_(std::move(data_roots)) {
    ChooseDevice(device);
  }

  absl::Status Health() const override { return health_; }

  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    if (!health_.ok()) return health_;
    const auto t0 = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(Load(unit.spec()));
    absl::StatusOr<v1::WorkResult> r = ExecuteOnGame(*game_, unit);
#ifdef IMPQ_WORKER_WITH_GPU
    if (!r.ok() && gpu_ != nullptr && gpu_->device_failed()) DeviceFailed(r.status());
#endif
    if (!r.ok()) return r.status();
    r->set_evaluation_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return r;
  }

 private:
  // The job's game, prepared once per game (job::GameKey) and kept for the next units.
  absl::Status Load(const v1::JobSpec& spec) {
    const std::string key = job::GameKey(spec);
    if (game_ != nullptr && key_ == key) return absl::OkStatus();
    game_.reset();
#ifdef IMPQ_WORKER_WITH_GPU
    gpu_ = nullptr;
#endif
    ASSIGN_OR_RETURN(job::JobOptions o, job::JobOptionsFromSpec(spec));
    RETURN_IF_ERROR(job::ValidateJobOptions(o));
    RETURN_IF_ERROR(ConfinePaths(o));
    o.threads = threads_;
    engine::EvaluatorFactory factory;
#ifdef IMPQ_WORKER_WITH_GPU
    // Every width of a job (2, 3, 4, 8) runs on the GPU with a plugin of API version 2. An
    // older plugin (2- and 4-bit only) cannot: GpuRuntime::CheckWidths says so by name, and
    // such a job then runs on this node's CPU, as a model that does not fit the device does
    // (every worker serves every job: a GPU-only fleet would otherwise never finish it).
    absl::Status widths_ok = absl::OkStatus();
    if (runtime_ != nullptr) {
      widths_ok = gpu::GpuRuntime::CheckWidths(runtime_->api_version(), runtime_->plugin_path(),
                                               o.widths);
      if (!widths_ok.ok()) IMPQ_LOG(WARNING) << "GPU evaluator: " << widths_ok << "; using the CPU";
    }
    if (runtime_ != nullptr && widths_ok.ok()) {
      factory = [this, widths = o.widths](const quant::QuantizedModel& qm,
                                          const eval::EvalSet& set, int64_t cache_bytes)
          -> absl::StatusOr<std::unique_ptr<solver::CoalitionEvaluator>> {
        gpu::GpuEvaluatorOptions go;
        go.max_cache_bytes = cache_bytes;
        go.widths = widths;
        absl::StatusOr<std::unique_ptr<gpu::GpuEvaluator>> g =
            gpu::GpuEvaluator::Create(runtime_.get(), 0, qm, set, go);
        if (g.ok()) {
          gpu_ = g->get();
          return std::unique_ptr<solver::CoalitionEvaluator>(*std::move(g));
        }
        if (g.status().code() == absl::StatusCode::kInternal) {
          DeviceFailed(g.status());  // a CUDA failure: the device is unusable
          return g.status();
        }
        if (g.status().code() == absl::StatusCode::kInvalidArgument) return g.status();
        // Out of device memory or no usable device: this model runs on the CPU.
        IMPQ_LOG(WARNING) << "GPU evaluator unavailable, using the CPU: " << g.status();
        return std::unique_ptr<solver::CoalitionEvaluator>();
      };
    }
#endif
    game_ = std::make_unique<engine::LocalGame>(std::move(o), nullptr, std::move(factory));
    key_ = key;
    return absl::OkStatus();
  }

  // The worker's own check of a unit's paths, whatever the coordinator checked (it may run
  // with other roots, or a symlink may have been swapped since the submit): each is resolved
  // and confined to this worker's --data_root (common/file_util.h) and the resolved path is
  // the one opened. The same rule and the same messages as the coordinator's. No roots
  // (--insecure, the embedded run): unchecked.
  absl::Status ConfinePaths(job::JobOptions& o) const {
    if (data_roots_.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(o.model_path,
                     model::ResolveModelInDataRoots("spec.model_path", o.model_path, data_roots_));
    for (auto [field, path] : {std::pair{"spec.tokenizer_path", &o.tokenizer_path},
                               std::pair{"spec.calibration_text_path", &o.calib_text_path},
                               std::pair{"spec.evaluation_text_path", &o.heldout_text_path}}) {
      if (path->empty()) continue;
      ASSIGN_OR_RETURN(*path, ResolveInDataRoots(field, *path, data_roots_));
    }
    return absl::OkStatus();
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
                     << info->cc_minor << ", " << (info->total_bytes >> 20)
                     << " MiB; plugin API version " << runtime_->api_version() << ")";
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
  const std::vector<std::string> data_roots_;  // empty: paths unchecked
  absl::Status health_;  // OK while serving
#ifdef IMPQ_WORKER_WITH_GPU
  // Null: the CPU engine. Declared before the datasets, whose evaluators use it.
  std::unique_ptr<gpu::GpuRuntime> runtime_;
  gpu::GpuEvaluator* gpu_ = nullptr;  // the calibration evaluator when it runs on the GPU
#endif
  std::string key_;
  std::unique_ptr<engine::LocalGame> game_;
};

}  // namespace

absl::StatusOr<EngineDevice> ParseEngineDevice(const std::string& name) {
  if (name == "cpu") return EngineDevice::kCpu;
  if (name == "auto") return EngineDevice::kAuto;
  if (name == "gpu") return EngineDevice::kGpu;
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", name, "\": expected cpu, auto or gpu"));
}

std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads, EngineDevice device,
                                                std::vector<std::string> data_roots) {
  return std::make_unique<EngineExecutor>(threads, device, std::move(data_roots));
}

}  // namespace impq::worker_service
