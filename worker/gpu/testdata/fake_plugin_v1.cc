// A plugin of gpu_api.h's version 1 (2- and 4-bit weights only) for gpu_test: what a worker
// meets when its libimpq_cuda.so predates the 3/8-bit paths. Loaded through the real dlopen()
// seam ($IMPQ_CUDA_PLUGIN), it reports one device ("fake version-1 plugin", compute
// capability 9.0) and answers IMPQ_GPU_ENODEVICE to every other call, so a test can check
// what the host does with an older plugin without a GPU: GpuRuntime reads only the version-1
// part of its table and GpuEvaluator refuses widths with 3 or 8 bits by name.
//
// The table is a whole ImpqGpuApi whose version-2 entry holds a non-null sentinel that must
// never be called: GpuRuntime copies only impq_gpu_api_bytes(1) bytes of a version-1 table,
// so its api().model_set_linear_rtn_widths stays null.
#include <cstdio>
#include <cstring>
#include <tuple>

#include "worker/gpu/gpu_api.h"

namespace {

int DeviceCount(int* count, ImpqGpuError* /*err*/) {
  *count = 1;
  return IMPQ_GPU_OK;
}

int DeviceInfo(int device, ImpqGpuDeviceInfo* info, ImpqGpuError* err) {
  if (device != 0) {
    std::snprintf(err->message, sizeof(err->message), "device %d out of range: 1 device", device);
    return IMPQ_GPU_EINVAL;
  }
  *info = ImpqGpuDeviceInfo{};
  std::snprintf(info->name, sizeof(info->name), "fake version-1 plugin");
  info->cc_major = 9;
  info->total_bytes = int64_t{1} << 30;
  info->free_bytes = info->total_bytes;
  return IMPQ_GPU_OK;
}

ImpqGpuApi MakeApi() {
  ImpqGpuApi api{};
  api.version = 1;
  api.device_count = DeviceCount;
  api.device_info = DeviceInfo;
  // Every other entry point: no device behind it. A captureless generic lambda converts to
  // each entry point's function-pointer type; its last argument is the ImpqGpuError*.
  const auto no_device = [](auto... args) {
    ImpqGpuError* err = std::get<sizeof...(args) - 1>(std::tie(args...));
    if (err != nullptr) {
      std::snprintf(err->message, sizeof(err->message), "fake version-1 plugin: no device");
    }
    return IMPQ_GPU_ENODEVICE;
  };
  api.kernel_rtn_quantize = no_device;
  api.kernel_pack = no_device;
  api.kernel_unpack = no_device;
  api.kernel_dequantize = no_device;
  api.kernel_embed = no_device;
  api.kernel_rmsnorm = no_device;
  api.kernel_rope = no_device;
  api.kernel_attention = no_device;
  api.kernel_glu = no_device;
  api.kernel_gemm = no_device;
  api.kernel_nll = no_device;
  api.bench_gemm_tflops = no_device;
  api.model_create = no_device;
  api.model_destroy = [](ImpqGpuModel*) {};
  api.model_set_linear_packed = no_device;
  api.model_set_linear_f32 = no_device;
  api.model_set_linear_rtn = no_device;
  api.model_set_eval = no_device;
  api.model_evaluate = no_device;
  api.model_stats = no_device;
  // Beyond a version-1 table: a sentinel the host must not pick up.
  void* sentinel = reinterpret_cast<void*>(0x1);
  std::memcpy(&api.model_set_linear_rtn_widths, &sentinel, sizeof(sentinel));
  return api;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const ImpqGpuApi* impq_gpu_get_api(void) {
  static const ImpqGpuApi api = MakeApi();
  return &api;
}
