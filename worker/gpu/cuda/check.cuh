// Error plumbing of the CUDA plugin: CUDA / cuBLAS failures -> IMPQ_GPU_E* codes with a message
// in ImpqGpuError that names the failing call, where it is, and the library's error string.
//
//   int Foo(..., ImpqGpuError* err) {
//     IMPQ_CUDA_RETURN(err, cudaMalloc(&p, bytes));          // returns ENOMEM / EDEVICE
//     IMPQ_CUBLAS_RETURN(err, cublasGemmEx(...));
//     if (n < 0) return SetGpuError(err, IMPQ_GPU_EINVAL, "foo: n = %lld < 0", (long long)n);
//     return IMPQ_GPU_OK;
//   }
//
// Codes (gpu_api.h): allocation failures -> ENOMEM; "no driver / no device" -> ENODEVICE; every
// other CUDA or cuBLAS failure -> EDEVICE. A failure also clears CUDA's per-thread "last error"
// (cudaGetLastError) so that a non-sticky error does not poison the next call; sticky errors
// (illegal address, launch failure, ...) cannot be cleared and every later call then fails
// with EDEVICE, as gpu_api.h documents. Plugin-internal; header-only.
#ifndef IMPQ_WORKER_GPU_CUDA_CHECK_CUH_
#define IMPQ_WORKER_GPU_CUDA_CHECK_CUH_

#include <cstdarg>
#include <cstdio>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "worker/gpu/gpu_api.h"

namespace impq::gpu {

// Writes the printf-formatted message into err (truncated to fit; err may be null) and
// returns `code`, so that `return SetGpuError(err, IMPQ_GPU_EINVAL, "...", ...);` works.
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
inline int SetGpuError(ImpqGpuError* err, int code, const char* fmt, ...) {
  if (err != nullptr) {
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
  }
  return code;
}

// The IMPQ_GPU_E* code of a CUDA runtime error.
inline int CudaErrorCode(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return IMPQ_GPU_OK;
    case cudaErrorMemoryAllocation:
      return IMPQ_GPU_ENOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return IMPQ_GPU_ENODEVICE;
    default:
      return IMPQ_GPU_EDEVICE;
  }
}

// The IMPQ_GPU_E* code of a cuBLAS status.
inline int CublasErrorCode(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return IMPQ_GPU_OK;
    case CUBLAS_STATUS_ALLOC_FAILED:
      return IMPQ_GPU_ENOMEM;
    case CUBLAS_STATUS_NOT_INITIALIZED:  // no driver / device at cublasCreate
      return IMPQ_GPU_ENODEVICE;
    default:
      return IMPQ_GPU_EDEVICE;
  }
}

// The name of a cuBLAS status ("CUBLAS_STATUS_EXECUTION_FAILED").
inline const char* CublasStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "CUBLAS_STATUS_<unknown>";
  }
}

// Reports a failed CUDA call: "<what> failed at file:line: <error string> (<error name>)".
inline int CudaFail(ImpqGpuError* err, cudaError_t e, const char* what, const char* file,
                    int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  return SetGpuError(err, CudaErrorCode(e), "%s failed at %s:%d: %s (%s)", what, file, line,
                     cudaGetErrorString(e), cudaGetErrorName(e));
}

inline int CublasFail(ImpqGpuError* err, cublasStatus_t s, const char* what, const char* file,
                      int line) {
  cudaGetLastError();
  return SetGpuError(err, CublasErrorCode(s), "%s failed at %s:%d: %s", what, file, line,
                     CublasStatusName(s));
}

}  // namespace impq::gpu

// Evaluates a cudaError_t expression; on failure returns the IMPQ_GPU_E* code from the
// enclosing function (which must return int) after filling `err`.
#define IMPQ_CUDA_RETURN(err, expr)                                                  \
  do {                                                                               \
    const cudaError_t impq_cuda_e_ = (expr);                                         \
    if (impq_cuda_e_ != cudaSuccess) {                                               \
      return ::impq::gpu::CudaFail((err), impq_cuda_e_, #expr, __FILE__, __LINE__);  \
    }                                                                                \
  } while (0)

// Same for a cublasStatus_t expression.
#define IMPQ_CUBLAS_RETURN(err, expr)                                                 \
  do {                                                                                \
    const cublasStatus_t impq_cublas_s_ = (expr);                                     \
    if (impq_cublas_s_ != CUBLAS_STATUS_SUCCESS) {                                    \
      return ::impq::gpu::CublasFail((err), impq_cublas_s_, #expr, __FILE__, __LINE__); \
    }                                                                                 \
  } while (0)

// Launch check: a kernel launch's configuration error (cudaGetLastError) and, in one place,
// the launcher's own cudaError_t. Use after Launch*(...) calls.
#define IMPQ_LAUNCH_RETURN(err, expr) IMPQ_CUDA_RETURN(err, expr)

#endif  // IMPQ_WORKER_GPU_CUDA_CHECK_CUH_
