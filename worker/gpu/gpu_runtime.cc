#include "worker/gpu/gpu_runtime.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace impq::gpu {
namespace {

constexpr char kPluginFile[] = "libimpq_cuda.so";

// The directory of the running executable, "" when /proc/self/exe cannot be read.
std::string ExecutableDir() {
  std::string buf(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return "";
  buf.resize(static_cast<size_t>(n));
  const size_t slash = buf.rfind('/');
  if (slash == std::string::npos) return "";
  return buf.substr(0, slash);
}

// err.message as a string, bounded even if the plugin forgot the terminator.
std::string ErrMessage(const ImpqGpuError& err) {
  return std::string(err.message, strnlen(err.message, sizeof(err.message)));
}

}  // namespace

std::vector<std::string> GpuRuntime::CandidatePaths() {
  std::vector<std::string> paths;
  const char* env = std::getenv("IMPQ_CUDA_PLUGIN");
  if (env != nullptr && env[0] != '\0') {
    paths.emplace_back(env);
    return paths;
  }
#ifdef IMPQ_CUDA_PLUGIN_PATH
  paths.emplace_back(IMPQ_CUDA_PLUGIN_PATH);
#endif
  const std::string dir = ExecutableDir();
  if (!dir.empty()) {
    paths.push_back(absl::StrCat(dir, "/", kPluginFile));
    // An installed layout: bin/impq-worker with lib/impq/libimpq_cuda.so (the worker image).
    paths.push_back(absl::StrCat(dir, "/../lib/impq/", kPluginFile));
  }
  return paths;
}

absl::StatusOr<std::unique_ptr<GpuRuntime>> GpuRuntime::Load() {
  const std::vector<std::string> paths = CandidatePaths();
  std::vector<std::string> tried;
  for (const std::string& path : paths) {
    dlerror();  // clear any stale error
    void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* e = dlerror();
      tried.push_back(absl::StrCat(path, " (", e != nullptr ? e : "dlopen failed", ")"));
      continue;
    }
    dlerror();
    void* sym = dlsym(handle, IMPQ_GPU_GET_API_SYMBOL);
    if (sym == nullptr) {
      const char* e = dlerror();
      const std::string msg =
          absl::StrCat("CUDA plugin ", path, " has no symbol ", IMPQ_GPU_GET_API_SYMBOL, " (",
                       e != nullptr ? e : "dlsym returned null", ")");
      dlclose(handle);
      return absl::UnavailableError(msg);
    }
    ImpqGpuGetApiFn get_api;
    static_assert(sizeof(get_api) == sizeof(sym));
    std::memcpy(&get_api, &sym, sizeof(sym));  // object -> function pointer without UB casts
    const ImpqGpuApi* api = get_api();
    absl::Status valid = ValidateApi(api, path);
    if (!valid.ok()) {
      dlclose(handle);
      return valid;
    }
    std::unique_ptr<GpuRuntime> rt(new GpuRuntime(handle, api, path));
    ImpqGpuError err{};
    int count = 0;
    const int rc = rt->api().device_count(&count, &err);
    if (rc == IMPQ_GPU_OK && count > 0) {
      rt->device_count_ = count;
    } else {
      // "No GPU" is not an error (gpu_api.h): the plugin answers OK with count 0 and says why
      // in err.message; a failing device_count also means no usable device.
      rt->device_count_ = 0;
      rt->no_device_reason_ = ErrMessage(err);
      if (rt->no_device_reason_.empty()) {
        rt->no_device_reason_ = rc == IMPQ_GPU_OK
                                    ? std::string("the driver reports 0 CUDA devices")
                                    : absl::StrCat("device_count failed with code ", rc);
      }
    }
    return rt;
  }
  if (tried.empty()) {
    return absl::UnavailableError(
        "CUDA plugin not found: no candidate path (IMPQ_CUDA_PLUGIN unset, no compiled-in "
        "path, /proc/self/exe unreadable)");
  }
  return absl::UnavailableError(
      absl::StrCat("CUDA plugin not loaded; tried: ", absl::StrJoin(tried, "; ")));
}

absl::Status GpuRuntime::ValidateApi(const ImpqGpuApi* api, absl::string_view path) {
  if (api == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("CUDA plugin ", path, ": ", IMPQ_GPU_GET_API_SYMBOL, "() returned null"));
  }
  // Only `version` is read before the version is known: a table is at least that long.
  if (api->version < IMPQ_GPU_API_MIN_VERSION || api->version > IMPQ_GPU_API_VERSION) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA plugin ", path, " implements API version ", api->version,
        ", this build of impq loads versions ", IMPQ_GPU_API_MIN_VERSION, " to ",
        IMPQ_GPU_API_VERSION, " (rebuild the plugin together with impq)"));
  }
  struct Entry {
    const char* name;
    int since;  // the first version with this entry point
    bool present;
  };
  const Entry entries[] = {
      {"device_count", 1, api->device_count != nullptr},
      {"device_info", 1, api->device_info != nullptr},
      {"kernel_rtn_quantize", 1, api->kernel_rtn_quantize != nullptr},
      {"kernel_pack", 1, api->kernel_pack != nullptr},
      {"kernel_unpack", 1, api->kernel_unpack != nullptr},
      {"kernel_dequantize", 1, api->kernel_dequantize != nullptr},
      {"kernel_embed", 1, api->kernel_embed != nullptr},
      {"kernel_rmsnorm", 1, api->kernel_rmsnorm != nullptr},
      {"kernel_rope", 1, api->kernel_rope != nullptr},
      {"kernel_attention", 1, api->kernel_attention != nullptr},
      {"kernel_glu", 1, api->kernel_glu != nullptr},
      {"kernel_gemm", 1, api->kernel_gemm != nullptr},
      {"kernel_nll", 1, api->kernel_nll != nullptr},
      {"bench_gemm_tflops", 1, api->bench_gemm_tflops != nullptr},
      {"model_create", 1, api->model_create != nullptr},
      {"model_destroy", 1, api->model_destroy != nullptr},
      {"model_set_linear_packed", 1, api->model_set_linear_packed != nullptr},
      {"model_set_linear_f32", 1, api->model_set_linear_f32 != nullptr},
      {"model_set_linear_rtn", 1, api->model_set_linear_rtn != nullptr},
      {"model_set_eval", 1, api->model_set_eval != nullptr},
      {"model_evaluate", 1, api->model_evaluate != nullptr},
      {"model_stats", 1, api->model_stats != nullptr},
      // Version 2: evaluated (and read) only when the table has it.
      {"model_set_linear_rtn_widths", 2,
       api->version >= 2 && api->model_set_linear_rtn_widths != nullptr},
  };
  for (const Entry& e : entries) {
    if (e.since <= api->version && !e.present) {
      return absl::FailedPreconditionError(absl::StrCat("CUDA plugin ", path, " (API version ",
                                                        api->version,
                                                        ") lacks the entry point ", e.name));
    }
  }
  return absl::OkStatus();
}

bool GpuRuntime::SupportsBits(int api_version, int bits) {
  if (bits == 2 || bits == 4) return api_version >= 1;
  if (bits == 3 || bits == 8) return api_version >= 2;
  return false;
}

absl::Status GpuRuntime::CheckWidths(int api_version, absl::string_view path,
                                     std::span<const int> widths) {
  std::vector<int> missing;
  for (int b : widths) {
    if (!SupportsBits(api_version, b)) missing.push_back(b);
  }
  if (missing.empty()) return absl::OkStatus();
  const bool known = std::all_of(missing.begin(), missing.end(),
                                 [](int b) { return SupportsBits(IMPQ_GPU_API_VERSION, b); });
  if (!known) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA plugin ", path, ": widths [", absl::StrJoin(missing, ", "),
        "] are not among the widths the GPU path evaluates (2, 3, 4, 8)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "CUDA plugin ", path, " implements API version ", api_version,
      ", which evaluates 2- and 4-bit weights only; widths [", absl::StrJoin(widths, ", "),
      "] need API version 2 for [", absl::StrJoin(missing, ", "),
      "] bits (rebuild libimpq_cuda.so together with impq)"));
}

GpuRuntime::GpuRuntime(void* handle, const ImpqGpuApi* api, std::string path)
    : handle_(handle), path_(std::move(path)) {
  // An older plugin's table is shorter: copy only what its version defines (gpu_api.h).
  std::memcpy(&api_, api, impq_gpu_api_bytes(api->version));
}

// The handle is deliberately not dlclose()d: once the plugin has initialised the CUDA runtime
// and cuBLAS, unloading them (and their atexit handlers) is not supported by those libraries.
// dlopen() of the same file again returns the same mapping, so repeated Load()s cost nothing.
GpuRuntime::~GpuRuntime() = default;

absl::StatusOr<ImpqGpuDeviceInfo> GpuRuntime::DeviceInfo(int device) const {
  if (device < 0 || device >= device_count_) {
    return absl::InvalidArgumentError(absl::StrCat("DeviceInfo: device ", device,
                                                   " out of range [0, ", device_count_, ")"));
  }
  ImpqGpuDeviceInfo info{};
  ImpqGpuError err{};
  const int rc = api_.device_info(device, &info, &err);
  if (rc != IMPQ_GPU_OK) return ToStatus(rc, err, absl::StrCat("device_info(", device, ")"));
  return info;
}

absl::Status GpuRuntime::ToStatus(int rc, const ImpqGpuError& err, absl::string_view what) {
  if (rc == IMPQ_GPU_OK) return absl::OkStatus();
  std::string msg = ErrMessage(err);
  if (msg.empty()) msg = "(no message)";
  const std::string text = absl::StrCat(what, ": ", msg);
  switch (rc) {
    case IMPQ_GPU_EINVAL:
      return absl::InvalidArgumentError(text);
    case IMPQ_GPU_ENOMEM:
      return absl::ResourceExhaustedError(text);
    case IMPQ_GPU_EDEVICE:
      return absl::InternalError(text);
    case IMPQ_GPU_ENODEVICE:
      return absl::UnavailableError(text);
    default:
      return absl::InternalError(absl::StrCat(text, " (unknown plugin error code ", rc, ")"));
  }
}

namespace {

// The process-wide runtime behind TestRuntime and ProbeGpu: Load()ed once, never destroyed
// (tests and the worker may use it until exit).
const absl::StatusOr<std::unique_ptr<GpuRuntime>>& SharedRuntime() {
  static const auto* shared =
      new absl::StatusOr<std::unique_ptr<GpuRuntime>>(GpuRuntime::Load());
  return *shared;
}

// Device 0's info when the runtime has a device the plugin can use (compute capability 8.0+:
// the plugin is built for sm_80 and sm_90), else Unavailable with the reason.
absl::StatusOr<ImpqGpuDeviceInfo> UsableDevice0(const GpuRuntime& rt) {
  if (rt.device_count() == 0) {
    return absl::UnavailableError(absl::StrCat("no CUDA device: ", rt.no_device_reason()));
  }
  absl::StatusOr<ImpqGpuDeviceInfo> info = rt.DeviceInfo(0);
  if (!info.ok()) return info.status();
  if (info->cc_major < 8) {
    return absl::UnavailableError(absl::StrCat(
        "CUDA device 0 (", info->name, ") has compute capability ", info->cc_major, ".",
        info->cc_minor, "; the plugin needs 8.0 or newer"));
  }
  return info;
}

}  // namespace

GpuRuntime* TestRuntime(std::string* why) {
  const absl::StatusOr<std::unique_ptr<GpuRuntime>>& rt = SharedRuntime();
  if (!rt.ok()) {
    if (why != nullptr) *why = absl::StrCat("CUDA plugin not loaded: ", rt.status().ToString());
    return nullptr;
  }
  static const absl::Status usable = UsableDevice0(**rt).status();
  if (!usable.ok()) {
    if (why != nullptr) *why = std::string(usable.message());
    return nullptr;
  }
  return rt->get();
}

absl::StatusOr<ImpqGpuDeviceInfo> ProbeGpu() {
  const absl::StatusOr<std::unique_ptr<GpuRuntime>>& rt = SharedRuntime();
  if (!rt.ok()) return rt.status();
  return UsableDevice0(**rt);
}

}  // namespace impq::gpu
