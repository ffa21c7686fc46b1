// UnitExecutor: computes the losses of one work unit. The worker loop owns one and calls it
// from its compute thread only (thread-compatible implementations are fine).
#ifndef IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_
#define IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"

namespace impq::worker_service {

class UnitExecutor {
 public:
  virtual ~UnitExecutor() = default;
  // OK: the WorkResult (job id, unit index, losses, permutation, model info, attempt and
  // evaluation_seconds filled; worker_id is the caller's). Errors: the spec cannot be loaded
  // (files, backend), or the unit does not fit the model (e.g. a permutation of the wrong
  // size). Deterministic: the losses depend on the unit only.
  virtual absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) = 0;
  // OK while the executor can serve units; otherwise why not (e.g. its GPU failed). The worker
  // loop checks it before every lease and stops when it is not OK. Thread-safe.
  virtual absl::Status Health() const { return absl::OkStatus(); }
};

// Where the engine computes losses.
enum class EngineDevice {
  kCpu,   // engine::LocalEvaluator (bit for bit the losses of `impq run`)
  kAuto,  // CUDA device 0 when the build has the GPU path, the plugin loads and a device
          // exists; else the CPU (the choice is logged)
  kGpu,   // CUDA device 0, required: without one the executor is not serving
};
// "cpu", "auto", "gpu"; InvalidArgument naming the value otherwise.
absl::StatusOr<EngineDevice> ParseEngineDevice(const std::string& name);

// The engine: loads the model and builds the 2- and 4-bit variants (and those of the job's
// widths, spec.widths) once per (model, tokenizer, backend, group size, players, widths), and
// the evaluation sets once per (text, docs, context, widths); keeps the most recent one of
// each. With a width set the units' coalitions and walks are over the steps of the job's
// ladder (messages.proto), mapped to bits per player by the evaluator, on the GPU too (plugin
// API version 2; with an older plugin, 2- and 4-bit only, a GPU worker evaluates such a job on
// its CPU with a warning naming the plugin's version: gpu::GpuRuntime::CheckWidths).
// Losses come from engine::LocalEvaluator (CPU)
// or gpu::GpuEvaluator (GPU, bf16 numerics: close to but not bit-identical with the CPU's),
// both with prefix reuse. On the GPU, a model that does not fit the device runs on the CPU,
// and a CUDA failure makes Health() fail: the device is unusable afterwards (gpu_api.h), so
// the worker stops instead of failing every unit.
// With `data_roots`, every path of a unit's spec is resolved and confined to them before a
// file is opened (ResolveInDataRoots, common/file_util.h: the unit fails with PermissionDenied
// naming the field for a path outside, through a symlink included); empty: unchecked.
std::unique_ptr<UnitExecutor> NewEngineExecutor(int threads,
                                                EngineDevice device = EngineDevice::kCpu,
                                                std::vector<std::string> data_roots = {});

}  // namespace impq::worker_service

#endif  // IMPQ_WORKER_SERVICE_UNIT_EXECUTOR_H_
