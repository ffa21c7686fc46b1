#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"
#include "solver/width_ladder.h"
#include "worker/engine/local_game.h"
#include "worker/engine/spec_options.h"
#include "worker/service/unit_executor.h"
#ifdef IMPQ_WORKER_WITH_GPU
#include "worker/gpu/gpu_evaluator.h"
#include "worker/gpu/gpu_runtime.h"
#endif

namespace impq::worker_service {
namespace {

// Parses a unit's coalition strings ('0'/'1', one per step of the game).
absl::StatusOr<std::vector<solver::Coalition>> Coalitions(const v1::WorkUnit& unit) {
  std::vector<solver::Coalition> out;
  for (int k = 0; k < unit.coalitions_size(); ++k) {
    const std::string& s = unit.coalitions(k);
    solver::Coalition q;
    for (char c : s) {
      if (c != '0' && c != '1') {
        return absl::InvalidArgumentError(
            absl::StrCat("unit.coalitions[", k, "]: character '", std::string(1, c),
                         "'; expected 0 or 1"));
      }
      q.push_back(c == '1' ? 1 : 0);
    }
    out.push_back(std::move(q));
  }
  return out;
}

// Parses a unit's assignment strings (one bit-width digit per player).
absl::StatusOr<std::vector<std::vector<int>>> Assignments(const v1::WorkUnit& unit) {
  std::vector<std::vector<int>> out;
  for (int k = 0; k < unit.assignments_size(); ++k) {
    std::vector<int> bits;
    for (char c : unit.assignments(k)) {
      if (c != '2' && c != '3' && c != '4' && c != '8') {
        return absl::InvalidArgumentError(
            absl::StrCat("unit.assignments[", k, "]: character '", std::string(1, c),
                         "'; expected a bit-width of 2, 3, 4 or 8"));
      }
      bits.push_back(c - '0');
    }
    out.push_back(std::move(bits));
  }
  return out;
}

class EngineExecutor : public UnitExecutor {
 public:
  EngineExecutor(int threads, EngineDevice device) : threads_(threads) { ChooseDevice(device); }

  absl::Status Health() const override { return health_; }

  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    if (!health_.ok()) return health_;
    const auto t0 = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(Load(unit.spec()));
    const engine::GameCounters before = game_->Counters();
    v1::WorkResult r;
    r.set_job_id(unit.job_id());
    r.set_unit_index(unit.unit_index());
    r.set_attempt(unit.attempt());
    switch (unit.kind()) {
      case v1::UNIT_KIND_PREPARE: {
        ASSIGN_OR_RETURN(engine::GameFacts f, game_->Prepare());
        v1::GameFacts& out = *r.mutable_facts();
        out.set_model_config(f.model_config);
        out.set_fingerprint(f.fingerprint);
        out.set_linear_weights(f.linear_weights);
        for (const std::string& name : f.player_names) out.add_player_names(name);
        for (int64_t b : f.bytes2) out.add_bytes2(b);
        for (int64_t b : f.bytes4) out.add_bytes4(b);
        for (int64_t b : f.width_bytes) out.add_width_bytes(b);
        out.set_calib_sequences(f.calib_sequences);
        out.set_calib_tokens(f.calib_tokens);
        out.set_calib_processed_tokens(f.calib_processed_tokens);
        out.set_select_sequences(f.select_sequences);
        out.set_select_tokens(f.select_tokens);
        out.set_select_on_calibration(f.select_on_calibration);
        for (int64_t t : f.select_sequence_tokens) out.add_select_sequence_tokens(t);
        out.set_heldout_sequences(f.heldout_sequences);
        out.set_heldout_tokens(f.heldout_tokens);
        out.set_heldout_processed_tokens(f.heldout_processed_tokens);
        for (double x : f.lim) out.add_lim(x);
        for (double x : f.zscore) out.add_zscore(x);
        for (double x : f.actnorm) out.add_actnorm(x);
        out.set_heldout_nll_fp32(f.heldout_nll_fp32);
        out.set_load_seconds(f.load_seconds);
        out.set_quantize_seconds(f.quantize_seconds);
        break;
      }
      case v1::UNIT_KIND_BATCH: {
        if (unit.dataset() != v1::DATASET_CALIBRATION) {
          return absl::InvalidArgumentError("unit: BATCH units evaluate the calibration set");
        }
        ASSIGN_OR_RETURN(std::vector<solver::Coalition> qs, Coalitions(unit));
        absl::StatusOr<std::vector<double>> losses = game_->CalibrationLosses(qs);
        if (!losses.ok()) {
#ifdef IMPQ_WORKER_WITH_GPU
          if (gpu_ != nullptr && gpu_->device_failed()) DeviceFailed(losses.status());
#endif
          return losses.status();
        }
        for (double l : *losses) r.add_losses(l);
        break;
      }
      case v1::UNIT_KIND_SEQUENCES: {
        ASSIGN_OR_RETURN(std::vector<solver::Coalition> qs, Coalitions(unit));
        ASSIGN_OR_RETURN(std::vector<std::vector<double>> sums, game_->SelectionSums(qs));
        for (const std::vector<double>& s : sums) {
          v1::SequenceSums* out = r.add_sequence_sums();
          for (double x : s) out->add_sums(x);
        }
        break;
      }
      case v1::UNIT_KIND_ASSIGNMENTS: {
        ASSIGN_OR_RETURN(std::vector<std::vector<int>> bits, Assignments(unit));
        ASSIGN_OR_RETURN(std::vector<double> nll, game_->HeldoutNll(bits));
        for (double l : nll) r.add_losses(l);
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("unit.kind ", v1::UnitKind_Name(unit.kind()), " is not served"));
    }
    const engine::GameCounters after = game_->Counters();
    r.set_block_evals_done(after.block_evals_done - before.block_evals_done);
    r.set_block_evals_full(after.block_evals_full - before.block_evals_full);
    r.set_evaluation_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return r;
  }

 private:
  // The job's game, prepared once per game (engine::GameKey) and kept for the next units.
  absl::Status Load(const v1::JobSpec& spec) {
    const std::string key = engine::GameKey(spec);
    if (game_ != nullptr && key_ == key) return absl::OkStatus();
    game_.reset();
#ifdef IMPQ_WORKER_WITH_GPU
    gpu_ = nullptr;
#endif
    ASSIGN_OR_RETURN(engine::JobOptions o, engine::JobOptionsFromSpec(spec));
    RETURN_IF_ERROR(engine::ValidateJobOptions(o));
    o.threads = threads_;
    engine::EvaluatorFactory factory;
#ifdef IMPQ_WORKER_WITH_GPU
    if (runtime_ != nullptr && o.widths != std::vector<int>{2, 4}) {
      // The CUDA kernels are 2/4-bit: a width-set job runs on this node's CPU, as a model
      // that does not fit the device does — slower, but every worker serves every job (a
      // GPU-only fleet would otherwise never finish it).
      IMPQ_LOG(WARNING) << "GPU evaluator: widths [" << absl::StrJoin(o.widths, ",")
                        << "] run on the CPU (the CUDA kernels are 2- and 4-bit)";
    } else if (runtime_ != nullptr) {
      factory = [this](const quant::QuantizedModel& qm, const eval::EvalSet& set,
                       int64_t cache_bytes)
          -> absl::StatusOr<std::unique_ptr<solver::CoalitionEvaluator>> {
        gpu::GpuEvaluatorOptions go;
        go.max_cache_bytes = cache_bytes;
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

std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads, EngineDevice device) {
  return std::make_unique<EngineExecutor>(threads, device);
}

}  // namespace impq::worker_service
