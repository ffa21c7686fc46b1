// GpuRuntime: the host side of the CUDA plugin. Loads libimpq_cuda.so with dlopen() (impq never
// links CUDA, see gpu_api.h), checks the ABI version and turns the plugin's return codes into
// absl::Status.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<GpuRuntime> rt, GpuRuntime::Load());
//   if (rt->device_count() == 0) { ... run on the CPU ... }
//   ImpqGpuError err;
//   int rc = rt->api().kernel_gemm(0, x, rows, in, w, out, 0.0f, y, &err);
//   RETURN_IF_ERROR(GpuRuntime::ToStatus(rc, err, "gemm"));
//
// Thread-safety: a GpuRuntime is immutable after Load() and thread-safe; whether concurrent
// calls of one entry point are safe is the plugin's business (gpu_api.h). A loaded plugin is
// never unloaded (the CUDA runtime and cuBLAS do not support dlclose() after initialisation);
// api() stays valid for the life of the process.
#ifndef IMPQ_WORKER_GPU_GPU_RUNTIME_H_
#define IMPQ_WORKER_GPU_GPU_RUNTIME_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/gpu/gpu_api.h"

namespace impq::gpu {

class GpuRuntime {
 public:
  // Loads the plugin from the first of these that loads:
  //   1. $IMPQ_CUDA_PLUGIN when set and non-empty (then ONLY that path is tried: an explicit
  //      choice that fails must not silently fall back to another build);
  //   2. the compiled-in IMPQ_CUDA_PLUGIN_PATH (the build tree's plugin), when defined;
  //   3. libimpq_cuda.so in the directory of the running executable (/proc/self/exe), then
  //      in ../lib/impq/ from it (the installed layout of the worker image).
  // dlopen(RTLD_NOW | RTLD_LOCAL). Errors:
  //   Unavailable         no candidate loads (the message lists every path tried and its
  //                       dlerror()), or the library lacks impq_gpu_get_api / returns null;
  //   FailedPrecondition  the plugin's API version is outside [IMPQ_GPU_API_MIN_VERSION,
  //                       IMPQ_GPU_API_VERSION] (gpu_api.h "Versions").
  // An older plugin (version >= IMPQ_GPU_API_MIN_VERSION) loads: api() then holds its entry
  // points and null for the ones its version lacks; api_version() and SupportsBits() say what
  // it can do.
  // A machine without a GPU or driver still loads the plugin: device_count() is then 0.
  static absl::StatusOr<std::unique_ptr<GpuRuntime>> Load();

  ~GpuRuntime();
  GpuRuntime(const GpuRuntime&) = delete;
  GpuRuntime& operator=(const GpuRuntime&) = delete;

  // Usable CUDA devices; 0 when the driver or device is missing (never an error). Probed once
  // at Load() time.
  int device_count() const { return device_count_; }
  // Why device_count() is 0 ("" when it is not): the plugin's message (e.g. the CUDA error of
  // cudaGetDeviceCount).
  const std::string& no_device_reason() const { return no_device_reason_; }
  // InvalidArgument unless 0 <= device < device_count(); otherwise the plugin's answer.
  absl::StatusOr<ImpqGpuDeviceInfo> DeviceInfo(int device) const;
  // The plugin's entry points (a copy of its table; the entries newer than api_version() are
  // null). Valid while this object lives.
  const ImpqGpuApi& api() const { return api_; }
  // The plugin's API version, in [IMPQ_GPU_API_MIN_VERSION, IMPQ_GPU_API_VERSION].
  int api_version() const { return api_.version; }
  // True when the plugin evaluates weights of `bits`: 2 and 4 from version 1, 3 and 8 from
  // version 2; false for any other value.
  bool SupportsBits(int bits) const { return SupportsBits(api_version(), bits); }
  static bool SupportsBits(int api_version, int bits);
  // OK when a plugin of `api_version` (loaded from `path`) evaluates every width of `widths`;
  // else FailedPrecondition naming the plugin, its version, the widths it lacks and the
  // version they need (e.g. a version-1 plugin asked for widths [2, 3, 4]).
  static absl::Status CheckWidths(int api_version, absl::string_view path,
                                  std::span<const int> widths);
  // The file the plugin was loaded from.
  const std::string& plugin_path() const { return path_; }

  // rc + err of an entry point -> Status, "what: <plugin message>":
  //   IMPQ_GPU_OK -> OK, EINVAL -> InvalidArgument, ENOMEM -> ResourceExhausted,
  //   EDEVICE -> Internal, ENODEVICE -> Unavailable, any other code -> Internal (naming it).
  static absl::Status ToStatus(int rc, const ImpqGpuError& err, absl::string_view what);

  // The candidate paths Load() tries, in order (exposed for tests and error messages).
  static std::vector<std::string> CandidatePaths();

  // The checks Load() applies to the table a plugin returns, as a pure function (also used by
  // tests): Unavailable when `api` is null; FailedPrecondition when api->version is outside
  // [IMPQ_GPU_API_MIN_VERSION, IMPQ_GPU_API_VERSION] or an entry point of that version is null
  // (the message names it and `path`). Reads only the entries api->version has.
  static absl::Status ValidateApi(const ImpqGpuApi* api, absl::string_view path);

 private:
  // Copies the first impq_gpu_api_bytes(api->version) bytes of *api. REQUIRES: ValidateApi OK.
  GpuRuntime(void* handle, const ImpqGpuApi* api, std::string path);

  void* handle_;              // dlopen handle, never closed (see ~GpuRuntime)
  ImpqGpuApi api_{};          // the plugin's table, entries beyond its version null
  std::string path_;
  int device_count_ = 0;
  std::string no_device_reason_;
};

// For tests and benchmarks: a process-wide runtime whose device 0 the plugin can use
// (compute capability 8.0+), or nullptr with *why set to the reason to skip (e.g. "CUDA
// plugin not loaded: ..." or "no CUDA device: ..."). Loaded once on the first call
// (function-local statics: thread-safe); the same process-wide runtime as ProbeGpu's. `why`
// may be null.
GpuRuntime* TestRuntime(std::string* why);

// For the worker's choice between the GPU and the CPU path: info of device 0 when the plugin
// loads and can use it; otherwise the reason (Unavailable / FailedPrecondition from Load,
// Unavailable "no CUDA device: ..." when the count is 0 or device 0 is older than compute
// capability 8.0). Uses the process-wide runtime.
absl::StatusOr<ImpqGpuDeviceInfo> ProbeGpu();

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_GPU_RUNTIME_H_
