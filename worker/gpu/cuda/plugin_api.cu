// The plugin's C ABI (gpu_api.h): the ImpqGpuApi table behind impq_gpu_get_api(), the device
// queries, every kernel_* entry point on host buffers, and the cuBLAS GEMM benchmark. The
// model_* entries are helper functions of model.cu (model.cuh).
//
// Every kernel_* call: validates its arguments on the host (EINVAL, naming the argument and
// the value), selects the device (ENODEVICE when there is none / it is too old), copies the
// inputs to fresh device buffers (RAII: freed on every path), launches on the legacy default
// stream, synchronises (so an execution error is attributed to the kernel that caused it)
// and copies the outputs back. Synchronous; safe to call from several threads (cuBLAS use
// is serialised per process).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <string>
#include <vector>

#include "worker/gpu/cuda/check.cuh"
#include "worker/gpu/cuda/kernels.cuh"
#include "worker/gpu/cuda/model.cuh"
#include "worker/gpu/gpu_api.h"
#include "worker/quant/block_format.h"

namespace impq::gpu {
namespace {

// Largest buffer a kernel_* call accepts (elements * size); beyond it the byte count of a
// malformed size could overflow long before cudaMalloc says no.
constexpr int64_t kMaxBufferBytes = int64_t{1} << 40;

// ---- device selection ----

// ENODEVICE without a usable driver or any device, EINVAL for an index out of range; the
// message starts with `prefix` (the entry point, or "").
int CheckDeviceIndex(int device, const char* prefix, ImpqGpuError* err) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return SetGpuError(err, IMPQ_GPU_ENODEVICE, "no CUDA device: cudaGetDeviceCount: %s (%s)",
                       cudaGetErrorString(e), cudaGetErrorName(e));
  }
  if (device < 0 || device >= count) {
    return SetGpuError(err, count == 0 ? IMPQ_GPU_ENODEVICE : IMPQ_GPU_EINVAL,
                       "%sdevice %d out of range: %d CUDA device(s)", prefix, device, count);
  }
  return IMPQ_GPU_OK;
}

int SelectDevice(int device, ImpqGpuError* err) {
  if (const int rc = CheckDeviceIndex(device, "", err); rc != IMPQ_GPU_OK) return rc;
  IMPQ_CUDA_RETURN(err, cudaSetDevice(device));
  int major = 0, minor = 0;
  IMPQ_CUDA_RETURN(err, cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  IMPQ_CUDA_RETURN(err, cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  if (major < 8) {
    return SetGpuError(err, IMPQ_GPU_ENODEVICE,
                       "device %d has compute capability %d.%d; the plugin is built for 8.0 and "
                       "newer (sm_80, sm_90)",
                       device, major, minor);
  }
  return IMPQ_GPU_OK;
}

// ---- device memory ----

// One cudaMalloc'd buffer, freed by the destructor.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Allocates count * elem bytes (count >= 1).
  int Allocate(int64_t count, size_t elem, const char* what, ImpqGpuError* err) {
    if (count < 1 || count > kMaxBufferBytes / static_cast<int64_t>(elem)) {
      return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: %lld elements of %zu bytes is out of range",
                         what, static_cast<long long>(count), elem);
    }
    bytes_ = static_cast<size_t>(count) * elem;
    const cudaError_t e = cudaMalloc(&ptr_, bytes_);
    if (e != cudaSuccess) {
      ptr_ = nullptr;
      cudaGetLastError();
      return SetGpuError(err, CudaErrorCode(e), "cudaMalloc(%zu bytes) for %s failed: %s (%s)",
                         bytes_, what, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    return IMPQ_GPU_OK;
  }
  // Allocates and copies count elements from host memory.
  int Upload(const void* host, int64_t count, size_t elem, const char* what, ImpqGpuError* err) {
    const int rc = Allocate(count, elem, what, err);
    if (rc != IMPQ_GPU_OK) return rc;
    const cudaError_t e = cudaMemcpy(ptr_, host, bytes_, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) return CopyFail(e, "host -> device", what, err);
    return IMPQ_GPU_OK;
  }
  // Copies the whole buffer to host memory.
  int Download(void* host, const char* what, ImpqGpuError* err) const {
    const cudaError_t e = cudaMemcpy(host, ptr_, bytes_, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return CopyFail(e, "device -> host", what, err);
    return IMPQ_GPU_OK;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  static int CopyFail(cudaError_t e, const char* dir, const char* what, ImpqGpuError* err) {
    cudaGetLastError();
    return SetGpuError(err, CudaErrorCode(e), "cudaMemcpy %s of %s failed: %s (%s)", dir, what,
                       cudaGetErrorString(e), cudaGetErrorName(e));
  }

  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

#define IMPQ_RC_RETURN(expr)              \
  do {                                    \
    const int impq_rc_ = (expr);          \
    if (impq_rc_ != IMPQ_GPU_OK) return impq_rc_; \
  } while (0)

// A launcher's error, or the kernel's execution error (device synchronisation), named.
int FinishKernel(cudaError_t launch, const char* kernel, ImpqGpuError* err) {
  if (launch != cudaSuccess) {
    cudaGetLastError();
    return SetGpuError(err, CudaErrorCode(launch), "%s: launch failed: %s (%s)", kernel,
                       cudaGetErrorString(launch), cudaGetErrorName(launch));
  }
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    cudaGetLastError();
    return SetGpuError(err, CudaErrorCode(e), "%s: execution failed: %s (%s)", kernel,
                       cudaGetErrorString(e), cudaGetErrorName(e));
  }
  return IMPQ_GPU_OK;
}

// ---- cuBLAS handles: one per device, created on first use, never destroyed (the plugin is
// never unloaded); every use holds g_cublas_mu, so one handle is never used concurrently.
constexpr int kMaxDevices = 64;
std::mutex g_cublas_mu;
cublasHandle_t g_cublas[kMaxDevices] = {};

// REQUIRES: g_cublas_mu held, SelectDevice(device) OK.
int CublasFor(int device, cublasHandle_t* out, ImpqGpuError* err) {
  if (device >= kMaxDevices) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "device %d: at most %d devices supported", device,
                       kMaxDevices);
  }
  if (g_cublas[device] == nullptr) {
    cublasHandle_t h = nullptr;
    IMPQ_CUBLAS_RETURN(err, cublasCreate(&h));
    g_cublas[device] = h;
  }
  IMPQ_CUBLAS_RETURN(err, cublasSetStream(g_cublas[device], nullptr));
  *out = g_cublas[device];
  return IMPQ_GPU_OK;
}

// ---- argument checks ----

int NullArg(ImpqGpuError* err, const char* fn, const char* arg) {
  return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: %s is null", fn, arg);
}

int BadSize(ImpqGpuError* err, const char* fn, const char* arg, long long v, const char* need) {
  return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: %s = %lld (expected %s)", fn, arg, v, need);
}

// Every width of block_format.h's table (2, 3, 4, 8): the packing arithmetic (rtn_math.h,
// block_format.h's bit stream) is one formula for all of them, and gpu_kernels_test.cc checks
// each width against the CPU references.
int CheckBits(ImpqGpuError* err, const char* fn, int bits) {
  if (!impq_bits_supported(bits)) return BadSize(err, fn, "bits", bits, "2, 3, 4 or 8");
  return IMPQ_GPU_OK;
}

// The arguments every packed-weight entry point shares, checked in one order: bits, rows,
// cols, group (when the entry point has one), the named pointers, then the size limit.
struct NamedPtr {
  const char* name;
  const void* p;
};
int CheckPackedArgs(ImpqGpuError* err, const char* fn, int bits, int64_t rows, int64_t cols,
                    const int64_t* group, std::initializer_list<NamedPtr> ptrs) {
  IMPQ_RC_RETURN(CheckBits(err, fn, bits));
  if (rows <= 0) return BadSize(err, fn, "rows", rows, "> 0");
  if (cols <= 0) return BadSize(err, fn, "cols", cols, "> 0");
  if (group != nullptr && *group <= 0) return BadSize(err, fn, "group", *group, "> 0");
  for (const NamedPtr& a : ptrs) {
    if (a.p == nullptr) return NullArg(err, fn, a.name);
  }
  if (rows > kMaxBufferBytes / cols) return BadSize(err, fn, "rows * cols", rows, "< 2^40 / cols");
  return IMPQ_GPU_OK;
}

int CheckTokens(ImpqGpuError* err, const char* fn, const char* arg, const int32_t* t,
                int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i) {
    if (t[i] < 0 || t[i] >= limit) {
      return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: %s[%lld] = %d is outside [0, %lld)", fn, arg,
                         static_cast<long long>(i), t[i], static_cast<long long>(limit));
    }
  }
  return IMPQ_GPU_OK;
}

// ---- entry points ----

int DeviceCount(int* count, ImpqGpuError* err) {
  if (count == nullptr) return NullArg(err, "device_count", "count");
  *count = 0;
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    // "No GPU" is not an error (gpu_api.h); the message says why there is none.
    cudaGetLastError();
    SetGpuError(err, IMPQ_GPU_OK, "cudaGetDeviceCount: %s (%s)", cudaGetErrorString(e),
                cudaGetErrorName(e));
    return IMPQ_GPU_OK;
  }
  if (n == 0) SetGpuError(err, IMPQ_GPU_OK, "cudaGetDeviceCount found 0 devices");
  *count = n;
  return IMPQ_GPU_OK;
}

int DeviceInfo(int device, ImpqGpuDeviceInfo* info, ImpqGpuError* err) {
  if (info == nullptr) return NullArg(err, "device_info", "info");
  if (const int rc = CheckDeviceIndex(device, "device_info: ", err); rc != IMPQ_GPU_OK) return rc;
  cudaDeviceProp prop;
  IMPQ_CUDA_RETURN(err, cudaGetDeviceProperties(&prop, device));
  IMPQ_CUDA_RETURN(err, cudaSetDevice(device));
  size_t free_b = 0, total_b = 0;
  IMPQ_CUDA_RETURN(err, cudaMemGetInfo(&free_b, &total_b));
  int driver = 0, runtime = 0;
  IMPQ_CUDA_RETURN(err, cudaDriverGetVersion(&driver));
  IMPQ_CUDA_RETURN(err, cudaRuntimeGetVersion(&runtime));
  *info = ImpqGpuDeviceInfo{};
  std::snprintf(info->name, sizeof(info->name), "%s", prop.name);
  info->device = device;
  info->cc_major = prop.major;
  info->cc_minor = prop.minor;
  info->sm_count = prop.multiProcessorCount;
  info->total_bytes = static_cast<int64_t>(total_b);
  info->free_bytes = static_cast<int64_t>(free_b);
  info->driver_version = driver;
  info->runtime_version = runtime;
  return IMPQ_GPU_OK;
}

int KernelRtnQuantize(int device, int bits, int64_t rows, int64_t cols, int64_t group,
                      const float* w, uint8_t* packed, float* scales, float* zeros,
                      ImpqGpuError* err) {
  const char* fn = "kernel_rtn_quantize";
  IMPQ_RC_RETURN(CheckPackedArgs(
      err, fn, bits, rows, cols, &group,
      {{"w", w}, {"packed", packed}, {"scales", scales}, {"zeros", zeros}}));
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (!std::isfinite(w[i])) {
      return SetGpuError(err, IMPQ_GPU_EINVAL,
                         "%s: weight at row %lld column %lld is %g (expected a finite value)", fn,
                         static_cast<long long>(i / cols), static_cast<long long>(i % cols),
                         static_cast<double>(w[i]));
    }
  }
  IMPQ_RC_RETURN(SelectDevice(device, err));
  const int64_t code_bytes = rows * impq_code_bytes(bits, cols);
  const int64_t params = rows * impq_groups_per_row(cols, group);
  DeviceBuffer d_w, d_packed, d_scales, d_zeros;
  IMPQ_RC_RETURN(d_w.Upload(w, rows * cols, sizeof(float), "w", err));
  IMPQ_RC_RETURN(d_packed.Allocate(code_bytes, 1, "packed", err));
  IMPQ_RC_RETURN(d_scales.Allocate(params, sizeof(float), "scales", err));
  IMPQ_RC_RETURN(d_zeros.Allocate(params, sizeof(float), "zeros", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchRtnQuantize(bits, rows, cols, group, d_w.as<float>(), d_packed.as<uint8_t>(),
                        d_scales.as<float>(), d_zeros.as<float>(), nullptr),
      "LaunchRtnQuantize", err));
  IMPQ_RC_RETURN(d_packed.Download(packed, "packed", err));
  IMPQ_RC_RETURN(d_scales.Download(scales, "scales", err));
  return d_zeros.Download(zeros, "zeros", err);
}

int KernelPack(int device, int bits, int64_t rows, int64_t cols, const uint8_t* codes,
               uint8_t* packed, ImpqGpuError* err) {
  const char* fn = "kernel_pack";
  IMPQ_RC_RETURN(
      CheckPackedArgs(err, fn, bits, rows, cols, nullptr, {{"codes", codes}, {"packed", packed}}));
  const int max_code = impq_block_format(bits).max_code;
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (codes[i] > max_code) {
      return SetGpuError(err, IMPQ_GPU_EINVAL,
                         "%s: code at row %lld column %lld is %d (expected <= %d for %d bits)", fn,
                         static_cast<long long>(i / cols), static_cast<long long>(i % cols),
                         codes[i], max_code, bits);
    }
  }
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_codes, d_packed;
  IMPQ_RC_RETURN(d_codes.Upload(codes, rows * cols, 1, "codes", err));
  IMPQ_RC_RETURN(d_packed.Allocate(rows * impq_code_bytes(bits, cols), 1, "packed", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchPack(bits, rows, cols, d_codes.as<uint8_t>(), d_packed.as<uint8_t>(), nullptr),
      "LaunchPack", err));
  return d_packed.Download(packed, "packed", err);
}

int KernelUnpack(int device, int bits, int64_t rows, int64_t cols, const uint8_t* packed,
                 uint8_t* codes, ImpqGpuError* err) {
  const char* fn = "kernel_unpack";
  IMPQ_RC_RETURN(
      CheckPackedArgs(err, fn, bits, rows, cols, nullptr, {{"packed", packed}, {"codes", codes}}));
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_packed, d_codes;
  IMPQ_RC_RETURN(d_packed.Upload(packed, rows * impq_code_bytes(bits, cols), 1, "packed", err));
  IMPQ_RC_RETURN(d_codes.Allocate(rows * cols, 1, "codes", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchUnpack(bits, rows, cols, d_packed.as<uint8_t>(), d_codes.as<uint8_t>(), nullptr),
      "LaunchUnpack", err));
  return d_codes.Download(codes, "codes", err);
}

int KernelDequantize(int device, int bits, int64_t rows, int64_t cols, int64_t group,
                     const uint8_t* packed, const float* scales, const float* zeros,
                     float* out_f32, uint16_t* out_bf16, ImpqGpuError* err) {
  const char* fn = "kernel_dequantize";
  const void* out = out_f32 != nullptr ? static_cast<const void*>(out_f32) : out_bf16;
  IMPQ_RC_RETURN(CheckPackedArgs(err, fn, bits, rows, cols, &group,
                                 {{"packed", packed},
                                  {"scales", scales},
                                  {"zeros", zeros},
                                  {"out_f32 and out_bf16", out}}));
  IMPQ_RC_RETURN(SelectDevice(device, err));
  const int64_t params = rows * impq_groups_per_row(cols, group);
  DeviceBuffer d_packed, d_scales, d_zeros, d_f32, d_bf16;
  IMPQ_RC_RETURN(d_packed.Upload(packed, rows * impq_code_bytes(bits, cols), 1, "packed", err));
  IMPQ_RC_RETURN(d_scales.Upload(scales, params, sizeof(float), "scales", err));
  IMPQ_RC_RETURN(d_zeros.Upload(zeros, params, sizeof(float), "zeros", err));
  if (out_f32 != nullptr) IMPQ_RC_RETURN(d_f32.Allocate(rows * cols, sizeof(float), "out_f32", err));
  if (out_bf16 != nullptr) IMPQ_RC_RETURN(d_bf16.Allocate(rows * cols, sizeof(bf16), "out_bf16", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchDequantize(bits, rows, cols, group, d_packed.as<uint8_t>(), d_scales.as<float>(),
                       d_zeros.as<float>(), d_f32.as<float>(), d_bf16.as<bf16>(), nullptr),
      "LaunchDequantize", err));
  if (out_f32 != nullptr) IMPQ_RC_RETURN(d_f32.Download(out_f32, "out_f32", err));
  if (out_bf16 != nullptr) IMPQ_RC_RETURN(d_bf16.Download(out_bf16, "out_bf16", err));
  return IMPQ_GPU_OK;
}

int KernelEmbed(int device, const float* table, int64_t vocab, int dim, const int32_t* tokens,
                int64_t rows, float scale, float* out, ImpqGpuError* err) {
  const char* fn = "kernel_embed";
  if (vocab <= 0) return BadSize(err, fn, "vocab", vocab, "> 0");
  if (dim <= 0) return BadSize(err, fn, "dim", dim, "> 0");
  if (rows <= 0 || rows > INT32_MAX) return BadSize(err, fn, "rows", rows, "in [1, 2^31)");
  if (table == nullptr) return NullArg(err, fn, "table");
  if (tokens == nullptr) return NullArg(err, fn, "tokens");
  if (out == nullptr) return NullArg(err, fn, "out");
  if (vocab > kMaxBufferBytes / dim || rows > kMaxBufferBytes / dim) {
    return BadSize(err, fn, "vocab or rows", std::max(vocab, rows), "< 2^40 / dim");
  }
  IMPQ_RC_RETURN(CheckTokens(err, fn, "tokens", tokens, rows, vocab));
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_table, d_tokens, d_out;
  IMPQ_RC_RETURN(d_table.Upload(table, vocab * dim, sizeof(float), "table", err));
  IMPQ_RC_RETURN(d_tokens.Upload(tokens, rows, sizeof(int32_t), "tokens", err));
  IMPQ_RC_RETURN(d_out.Allocate(rows * dim, sizeof(float), "out", err));
  IMPQ_RC_RETURN(FinishKernel(LaunchEmbed(d_table.as<float>(), dim, d_tokens.as<int32_t>(), rows,
                                          scale, d_out.as<float>(), nullptr),
                              "LaunchEmbed", err));
  return d_out.Download(out, "out", err);
}

int KernelRmsNorm(int device, const float* x, int64_t rows, int dim, const float* mult,
                  float eps, float* out_f32, uint16_t* out_bf16, ImpqGpuError* err) {
  const char* fn = "kernel_rmsnorm";
  if (rows <= 0 || rows > INT32_MAX) return BadSize(err, fn, "rows", rows, "in [1, 2^31)");
  if (dim <= 0) return BadSize(err, fn, "dim", dim, "> 0");
  if (x == nullptr) return NullArg(err, fn, "x");
  if (mult == nullptr) return NullArg(err, fn, "mult");
  if (out_f32 == nullptr && out_bf16 == nullptr) return NullArg(err, fn, "out_f32 and out_bf16");
  if (!(eps >= 0.0f) || !std::isfinite(eps)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: eps = %g (expected finite and >= 0)", fn,
                       static_cast<double>(eps));
  }
  if (rows > kMaxBufferBytes / dim) return BadSize(err, fn, "rows", rows, "< 2^40 / dim");
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_x, d_mult, d_f32, d_bf16;
  IMPQ_RC_RETURN(d_x.Upload(x, rows * dim, sizeof(float), "x", err));
  IMPQ_RC_RETURN(d_mult.Upload(mult, dim, sizeof(float), "mult", err));
  if (out_f32 != nullptr) IMPQ_RC_RETURN(d_f32.Allocate(rows * dim, sizeof(float), "out_f32", err));
  if (out_bf16 != nullptr) IMPQ_RC_RETURN(d_bf16.Allocate(rows * dim, sizeof(bf16), "out_bf16", err));
  IMPQ_RC_RETURN(FinishKernel(LaunchRmsNorm(d_x.as<float>(), rows, dim, d_mult.as<float>(), eps,
                                            d_f32.as<float>(), d_bf16.as<bf16>(), nullptr),
                              "LaunchRmsNorm", err));
  if (out_f32 != nullptr) IMPQ_RC_RETURN(d_f32.Download(out_f32, "out_f32", err));
  if (out_bf16 != nullptr) IMPQ_RC_RETURN(d_bf16.Download(out_bf16, "out_bf16", err));
  return IMPQ_GPU_OK;
}

int KernelRope(int device, const float* x, int64_t T, int heads, int head_dim,
               const float* head_mult, float eps, const float* cos, const float* sin,
               int rope_style, uint16_t* out_bf16, ImpqGpuError* err) {
  const char* fn = "kernel_rope";
  if (T <= 0 || T > INT32_MAX) return BadSize(err, fn, "T", T, "in [1, 2^31)");
  if (heads <= 0) return BadSize(err, fn, "heads", heads, "> 0");
  if (head_dim <= 0 || head_dim % 2 != 0) return BadSize(err, fn, "head_dim", head_dim, "even, > 0");
  if (rope_style != IMPQ_GPU_ROPE_INTERLEAVED && rope_style != IMPQ_GPU_ROPE_HALF) {
    return BadSize(err, fn, "rope_style", rope_style, "IMPQ_GPU_ROPE_INTERLEAVED or _HALF");
  }
  if (x == nullptr) return NullArg(err, fn, "x");
  if (cos == nullptr) return NullArg(err, fn, "cos");
  if (sin == nullptr) return NullArg(err, fn, "sin");
  if (out_bf16 == nullptr) return NullArg(err, fn, "out_bf16");
  if (head_mult != nullptr && (!(eps >= 0.0f) || !std::isfinite(eps))) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: eps = %g (expected finite and >= 0)", fn,
                       static_cast<double>(eps));
  }
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  if (T > kMaxBufferBytes / width) return BadSize(err, fn, "T", T, "< 2^40 / (heads * head_dim)");
  IMPQ_RC_RETURN(SelectDevice(device, err));
  const int64_t half = head_dim / 2;
  DeviceBuffer d_x, d_mult, d_cos, d_sin, d_out;
  IMPQ_RC_RETURN(d_x.Upload(x, T * width, sizeof(float), "x", err));
  if (head_mult != nullptr) {
    IMPQ_RC_RETURN(d_mult.Upload(head_mult, head_dim, sizeof(float), "head_mult", err));
  }
  IMPQ_RC_RETURN(d_cos.Upload(cos, T * half, sizeof(float), "cos", err));
  IMPQ_RC_RETURN(d_sin.Upload(sin, T * half, sizeof(float), "sin", err));
  IMPQ_RC_RETURN(d_out.Allocate(T * width, sizeof(bf16), "out_bf16", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchRope(d_x.as<float>(), T, heads, head_dim, d_mult.as<float>(), eps, d_cos.as<float>(),
                 d_sin.as<float>(), rope_style, d_out.as<bf16>(), nullptr),
      "LaunchRope", err));
  return d_out.Download(out_bf16, "out_bf16", err);
}

int KernelAttention(int device, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                    int64_t T, int H, int Hkv, int head_dim, float scale, float softcap,
                    int window, uint16_t* out_bf16, ImpqGpuError* err) {
  const char* fn = "kernel_attention";
  if (T <= 0 || T > (1 << 20)) return BadSize(err, fn, "T", T, "in [1, 2^20]");
  if (H <= 0) return BadSize(err, fn, "H", H, "> 0");
  if (Hkv <= 0 || H % Hkv != 0) return BadSize(err, fn, "Hkv", Hkv, "> 0 and dividing H");
  if (head_dim <= 0) return BadSize(err, fn, "head_dim", head_dim, "> 0");
  if (window < 0) return BadSize(err, fn, "window", window, ">= 0 (0 = off)");
  if (!(softcap >= 0.0f) || !std::isfinite(softcap)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: softcap = %g (expected finite, >= 0)", fn,
                       static_cast<double>(softcap));
  }
  if (!std::isfinite(scale)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: scale = %g (expected finite)", fn,
                       static_cast<double>(scale));
  }
  if (q == nullptr) return NullArg(err, fn, "q");
  if (k == nullptr) return NullArg(err, fn, "k");
  if (v == nullptr) return NullArg(err, fn, "v");
  if (out_bf16 == nullptr) return NullArg(err, fn, "out_bf16");
  const int64_t ws_bytes = AttentionWorkspaceBytes(T, H, Hkv, head_dim);
  if (ws_bytes > kMaxBufferBytes || static_cast<int64_t>(H) * T * head_dim > kMaxBufferBytes) {
    return BadSize(err, fn, "T", T, "a workspace H * T^2 * 4 below 2^40 bytes");
  }
  IMPQ_RC_RETURN(SelectDevice(device, err));
  const int64_t qn = static_cast<int64_t>(H) * T * head_dim;
  const int64_t kvn = static_cast<int64_t>(Hkv) * T * head_dim;
  DeviceBuffer d_q, d_k, d_v, d_ws, d_out;
  IMPQ_RC_RETURN(d_q.Upload(q, qn, sizeof(bf16), "q", err));
  IMPQ_RC_RETURN(d_k.Upload(k, kvn, sizeof(bf16), "k", err));
  IMPQ_RC_RETURN(d_v.Upload(v, kvn, sizeof(bf16), "v", err));
  IMPQ_RC_RETURN(d_ws.Allocate(ws_bytes, 1, "attention workspace", err));
  IMPQ_RC_RETURN(d_out.Allocate(qn, sizeof(bf16), "out_bf16", err));
  {
    std::lock_guard<std::mutex> lock(g_cublas_mu);
    cublasHandle_t handle = nullptr;
    IMPQ_RC_RETURN(CublasFor(device, &handle, err));
    const std::string e =
        RunAttention(handle, d_q.as<bf16>(), d_k.as<bf16>(), d_v.as<bf16>(), T, H, Hkv, head_dim,
                     scale, softcap, window, d_ws.as<void>(), ws_bytes, d_out.as<bf16>(), nullptr);
    if (!e.empty()) {
      cudaGetLastError();
      return SetGpuError(err, IMPQ_GPU_EDEVICE, "%s: %s", fn, e.c_str());
    }
    IMPQ_RC_RETURN(FinishKernel(cudaSuccess, "RunAttention", err));
  }
  return d_out.Download(out_bf16, "out_bf16", err);
}

int KernelGlu(int device, const float* gate, const float* up, int64_t n, int activation,
              uint16_t* out_bf16, ImpqGpuError* err) {
  const char* fn = "kernel_glu";
  if (n <= 0 || n > kMaxBufferBytes / 4) return BadSize(err, fn, "n", n, "in [1, 2^38]");
  if (activation != IMPQ_GPU_ACT_SILU && activation != IMPQ_GPU_ACT_GELU_TANH) {
    return BadSize(err, fn, "activation", activation, "IMPQ_GPU_ACT_SILU or _GELU_TANH");
  }
  if (gate == nullptr) return NullArg(err, fn, "gate");
  if (up == nullptr) return NullArg(err, fn, "up");
  if (out_bf16 == nullptr) return NullArg(err, fn, "out_bf16");
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_gate, d_up, d_out;
  IMPQ_RC_RETURN(d_gate.Upload(gate, n, sizeof(float), "gate", err));
  IMPQ_RC_RETURN(d_up.Upload(up, n, sizeof(float), "up", err));
  IMPQ_RC_RETURN(d_out.Allocate(n, sizeof(bf16), "out_bf16", err));
  IMPQ_RC_RETURN(FinishKernel(
      LaunchGlu(d_gate.as<float>(), d_up.as<float>(), n, activation, d_out.as<bf16>(), nullptr),
      "LaunchGlu", err));
  return d_out.Download(out_bf16, "out_bf16", err);
}

int KernelGemm(int device, const uint16_t* x, int64_t rows, int64_t in, const uint16_t* w,
               int64_t out, float beta, float* y, ImpqGpuError* err) {
  const char* fn = "kernel_gemm";
  if (rows <= 0 || rows > INT32_MAX) return BadSize(err, fn, "rows", rows, "in [1, 2^31)");
  if (in <= 0 || in > INT32_MAX) return BadSize(err, fn, "in", in, "in [1, 2^31)");
  if (out <= 0 || out > INT32_MAX) return BadSize(err, fn, "out", out, "in [1, 2^31)");
  if (x == nullptr) return NullArg(err, fn, "x");
  if (w == nullptr) return NullArg(err, fn, "w");
  if (y == nullptr) return NullArg(err, fn, "y");
  if (!std::isfinite(beta)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: beta = %g (expected finite)", fn,
                       static_cast<double>(beta));
  }
  if (rows > kMaxBufferBytes / in || out > kMaxBufferBytes / in || rows > kMaxBufferBytes / out) {
    return BadSize(err, fn, "rows", rows, "matrices below 2^40 elements");
  }
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_x, d_w, d_y;
  IMPQ_RC_RETURN(d_x.Upload(x, rows * in, sizeof(bf16), "x", err));
  IMPQ_RC_RETURN(d_w.Upload(w, out * in, sizeof(bf16), "w", err));
  if (beta != 0.0f) {
    IMPQ_RC_RETURN(d_y.Upload(y, rows * out, sizeof(float), "y", err));
  } else {
    IMPQ_RC_RETURN(d_y.Allocate(rows * out, sizeof(float), "y", err));
  }
  {
    std::lock_guard<std::mutex> lock(g_cublas_mu);
    cublasHandle_t handle = nullptr;
    IMPQ_RC_RETURN(CublasFor(device, &handle, err));
    IMPQ_CUBLAS_RETURN(err, GemmBf16(handle, d_x.as<bf16>(), rows, in, d_w.as<bf16>(), out, beta,
                                     d_y.as<float>()));
    IMPQ_RC_RETURN(FinishKernel(cudaSuccess, "GemmBf16", err));
  }
  return d_y.Download(y, "y", err);
}

int KernelNll(int device, const float* logits, int64_t rows, int vocab, const int32_t* targets,
              float softcap, float* nll, ImpqGpuError* err) {
  const char* fn = "kernel_nll";
  if (rows <= 0 || rows > INT32_MAX) return BadSize(err, fn, "rows", rows, "in [1, 2^31)");
  if (vocab <= 0) return BadSize(err, fn, "vocab", vocab, "> 0");
  if (!(softcap >= 0.0f) || !std::isfinite(softcap)) {
    return SetGpuError(err, IMPQ_GPU_EINVAL, "%s: softcap = %g (expected finite, >= 0)", fn,
                       static_cast<double>(softcap));
  }
  if (logits == nullptr) return NullArg(err, fn, "logits");
  if (targets == nullptr) return NullArg(err, fn, "targets");
  if (nll == nullptr) return NullArg(err, fn, "nll");
  if (rows > kMaxBufferBytes / vocab) return BadSize(err, fn, "rows", rows, "< 2^40 / vocab");
  IMPQ_RC_RETURN(CheckTokens(err, fn, "targets", targets, rows, vocab));
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_logits, d_targets, d_nll;
  IMPQ_RC_RETURN(d_logits.Upload(logits, rows * vocab, sizeof(float), "logits", err));
  IMPQ_RC_RETURN(d_targets.Upload(targets, rows, sizeof(int32_t), "targets", err));
  IMPQ_RC_RETURN(d_nll.Allocate(rows, sizeof(float), "nll", err));
  IMPQ_RC_RETURN(FinishKernel(LaunchNll(d_logits.as<float>(), rows, vocab,
                                        d_targets.as<int32_t>(), softcap, d_nll.as<float>(),
                                        nullptr),
                              "LaunchNll", err));
  return d_nll.Download(nll, "nll", err);
}

// Deterministic bf16 operands for the benchmark: a hash of the index mapped to [-1, 1).
__global__ void FillBenchKernel(bf16* p, int64_t n, uint32_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed ^ static_cast<uint32_t>(i >> 32);
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    p[i] = __float2bfloat16_rn(static_cast<float>(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
  }
}

// cudaEvent_t pair, destroyed on every path.
struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  ~EventPair() {
    if (start != nullptr) cudaEventDestroy(start);
    if (stop != nullptr) cudaEventDestroy(stop);
  }
};

int BenchGemmTflops(int device, int64_t m, int64_t n, int64_t k, int iters, double* tflops,
                    ImpqGpuError* err) {
  const char* fn = "bench_gemm_tflops";
  if (m <= 0 || m > INT32_MAX) return BadSize(err, fn, "m", m, "in [1, 2^31)");
  if (n <= 0 || n > INT32_MAX) return BadSize(err, fn, "n", n, "in [1, 2^31)");
  if (k <= 0 || k > INT32_MAX) return BadSize(err, fn, "k", k, "in [1, 2^31)");
  if (iters < 1 || iters > 100000) return BadSize(err, fn, "iters", iters, "in [1, 100000]");
  if (tflops == nullptr) return NullArg(err, fn, "tflops");
  if (m > kMaxBufferBytes / k || n > kMaxBufferBytes / k || m > kMaxBufferBytes / n) {
    return BadSize(err, fn, "m", m, "matrices below 2^40 elements");
  }
  IMPQ_RC_RETURN(SelectDevice(device, err));
  DeviceBuffer d_x, d_w, d_y;
  IMPQ_RC_RETURN(d_x.Allocate(m * k, sizeof(bf16), "x", err));
  IMPQ_RC_RETURN(d_w.Allocate(n * k, sizeof(bf16), "w", err));
  IMPQ_RC_RETURN(d_y.Allocate(m * n, sizeof(float), "y", err));
  FillBenchKernel<<<1024, 256>>>(d_x.as<bf16>(), m * k, 0x1234567u);
  IMPQ_RC_RETURN(FinishKernel(cudaGetLastError(), "FillBenchKernel(x)", err));
  FillBenchKernel<<<1024, 256>>>(d_w.as<bf16>(), n * k, 0x89abcdefu);
  IMPQ_RC_RETURN(FinishKernel(cudaGetLastError(), "FillBenchKernel(w)", err));
  EventPair ev;
  IMPQ_CUDA_RETURN(err, cudaEventCreate(&ev.start));
  IMPQ_CUDA_RETURN(err, cudaEventCreate(&ev.stop));
  std::vector<float> ms(static_cast<size_t>(iters));
  {
    std::lock_guard<std::mutex> lock(g_cublas_mu);
    cublasHandle_t handle = nullptr;
    IMPQ_RC_RETURN(CublasFor(device, &handle, err));
    // Warm-up: heuristics, lazy module loading, clocks.
    for (int i = 0; i < 3; ++i) {
      IMPQ_CUBLAS_RETURN(err, GemmBf16(handle, d_x.as<bf16>(), m, k, d_w.as<bf16>(), n, 0.0f,
                                       d_y.as<float>()));
    }
    IMPQ_RC_RETURN(FinishKernel(cudaSuccess, "GemmBf16 warm-up", err));
    for (int i = 0; i < iters; ++i) {
      IMPQ_CUDA_RETURN(err, cudaEventRecord(ev.start, nullptr));
      IMPQ_CUBLAS_RETURN(err, GemmBf16(handle, d_x.as<bf16>(), m, k, d_w.as<bf16>(), n, 0.0f,
                                       d_y.as<float>()));
      IMPQ_CUDA_RETURN(err, cudaEventRecord(ev.stop, nullptr));
      IMPQ_CUDA_RETURN(err, cudaEventSynchronize(ev.stop));
      IMPQ_CUDA_RETURN(err, cudaEventElapsedTime(&ms[static_cast<size_t>(i)], ev.start, ev.stop));
    }
  }
  std::sort(ms.begin(), ms.end());
  const size_t mid = ms.size() / 2;
  const double median_ms =
      ms.size() % 2 == 1 ? ms[mid] : 0.5 * (static_cast<double>(ms[mid - 1]) + ms[mid]);
  if (!(median_ms > 0.0)) {
    return SetGpuError(err, IMPQ_GPU_EDEVICE, "%s: median GEMM time %g ms is not positive", fn,
                       median_ms);
  }
  *tflops = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) /
            (median_ms * 1e-3) / 1e12;
  return IMPQ_GPU_OK;
}

ImpqGpuApi MakeApi() {
  ImpqGpuApi api{};
  api.version = IMPQ_GPU_API_VERSION;
  api.device_count = DeviceCount;
  api.device_info = DeviceInfo;
  api.kernel_rtn_quantize = KernelRtnQuantize;
  api.kernel_pack = KernelPack;
  api.kernel_unpack = KernelUnpack;
  api.kernel_dequantize = KernelDequantize;
  api.kernel_embed = KernelEmbed;
  api.kernel_rmsnorm = KernelRmsNorm;
  api.kernel_rope = KernelRope;
  api.kernel_attention = KernelAttention;
  api.kernel_glu = KernelGlu;
  api.kernel_gemm = KernelGemm;
  api.kernel_nll = KernelNll;
  api.bench_gemm_tflops = BenchGemmTflops;
  api.model_create = ModelCreate;
  api.model_destroy = ModelDestroy;
  api.model_set_linear_packed = ModelSetLinearPacked;
  api.model_set_linear_f32 = ModelSetLinearF32;
  api.model_set_linear_rtn = ModelSetLinearRtn;
  api.model_set_eval = ModelSetEval;
  api.model_evaluate = ModelEvaluate;
  api.model_stats = ModelStats;
  api.model_set_linear_rtn_widths = ModelSetLinearRtnWidths;
  return api;
}

}  // namespace
}  // namespace impq::gpu

extern "C" __attribute__((visibility("default"))) const ImpqGpuApi* impq_gpu_get_api(void) {
  static const ImpqGpuApi api = impq::gpu::MakeApi();
  return &api;
}
