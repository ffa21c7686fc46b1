// Device helpers shared by the plugin's kernels: the CPU's FastExp bit for bit, the soft-cap,
// RMSNorm's scale, and warp/block reductions. Plugin-internal (nvcc only).
#ifndef IMPQ_WORKER_GPU_CUDA_DEVICE_MATH_CUH_
#define IMPQ_WORKER_GPU_CUDA_DEVICE_MATH_CUH_

#include <cuda_runtime.h>

namespace impq::gpu {

inline constexpr int kWarpSize = 32;

// forward::FastExp (worker/forward/kernels.h) operation for operation, each float operation
// rounded separately as the CPU build does (baseline x86-64 has no FMA): bit-identical.
__device__ __forceinline__ float FastExpDev(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const float shifted = __fadd_rn(__fmul_rn(x, 1.44269504088896341f), 12582912.0f);
  const float n = __fsub_rn(shifted, 12582912.0f);
  float r = __fsub_rn(x, __fmul_rn(n, 0.693359375f));
  r = __fsub_rn(r, __fmul_rn(n, -2.12194440e-4f));
  const float z = __fmul_rn(r, r);
  float y = 1.9875691500e-4f;
  y = __fadd_rn(__fmul_rn(y, r), 1.3981999507e-3f);
  y = __fadd_rn(__fmul_rn(y, r), 8.3334519073e-3f);
  y = __fadd_rn(__fmul_rn(y, r), 4.1665795894e-2f);
  y = __fadd_rn(__fmul_rn(y, r), 1.6666665459e-1f);
  y = __fadd_rn(__fmul_rn(y, r), 5.0000001201e-1f);
  y = __fadd_rn(__fadd_rn(__fmul_rn(y, z), r), 1.0f);
  // 2^n as two factors (n = 128 only at the clamp), exponent bits built directly.
  const int ni = static_cast<int>(n);
  const int half = ni >> 1;
  const float fa = __int_as_float((half + 127) << 23);
  const float fb = __int_as_float((ni - half + 127) << 23);
  return __fmul_rn(__fmul_rn(y, fa), fb);
}

// forward::SoftcapRow's cap * tanh(x / cap) for cap > 0, identity for cap == 0. tanhf is
// CUDA's (max 2 ulp), not glibc's: the one place where a soft-capped value may differ from the
// CPU's, by a few ulp of `cap`.
__device__ __forceinline__ float SoftcapDev(float x, float cap) {
  return cap > 0.0f ? __fmul_rn(cap, tanhf(__fdiv_rn(x, cap))) : x;
}

// forward::RmsNormRow's scale: f32(1 / sqrt(ss / n + eps)), computed in double.
__device__ __forceinline__ float RmsInvDev(double ss, int n, float eps) {
  return static_cast<float>(1.0 / sqrt(ss / static_cast<double>(n) + static_cast<double>(eps)));
}

__device__ __forceinline__ double WarpSumD(double v) {
  for (int o = kWarpSize / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float WarpMaxF(float v) {
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;
  }
  return v;
}

// Block-wide sum (double) / max (float); every thread gets the result. REQUIRES: blockDim.x
// a multiple of 32 and at most 1024, and every thread of the block calls it (it contains
// __syncthreads). The leading barrier makes repeated calls in one kernel safe.
__device__ __forceinline__ double BlockSumD(double v) {
  __shared__ double part[kWarpSize + 1];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  __syncthreads();
  v = WarpSumD(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = lane < warps ? part[lane] : 0.0;
    w = WarpSumD(w);
    if (lane == 0) part[kWarpSize] = w;
  }
  __syncthreads();
  return part[kWarpSize];
}

__device__ __forceinline__ float BlockMaxF(float v) {
  __shared__ float part[kWarpSize + 1];
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  __syncthreads();
  v = WarpMaxF(v);
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? part[lane] : -INFINITY;
    w = WarpMaxF(w);
    if (lane == 0) part[kWarpSize] = w;
  }
  __syncthreads();
  return part[kWarpSize];
}

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_DEVICE_MATH_CUH_
