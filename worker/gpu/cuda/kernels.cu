// The plugin's element-wise and row kernels (kernels.cuh). Each reproduces a CPU reference of
// worker/gpu/gpu_reference.h; the comments say where the GPU result is bit-identical and
// where (and why) it may differ.
//
// Bit-exactness rules used throughout:
//   - IEEE single-precision operations that must match the CPU's float expressions are written
//     with the explicitly rounded intrinsics (__fadd_rn, __fmul_rn, ...). nvcc would otherwise
//     contract a * b + c into one FMA (one rounding instead of two), while the CPU build
//     cannot: it targets baseline x86-64 (plus AVX2 clones), which has no FMA instruction.
//     (A CPU build with -mfma / -march=native would fuse and break this equality.)
//     Intrinsics are never contracted.
//   - Division and sqrt are IEEE-rounded by default (-prec-div=true, -prec-sqrt=true); the file
//     refuses to compile with --use_fast_math.
//   - Reductions (sums of squares, softmax denominators, log-sum-exp) accumulate in DOUBLE on
//     both sides; only their summation order differs, which moves the double result by
//     ~n * 2^-53 relative: far below the f32 rounding that follows, so the f32 results agree
//     except, rarely, by one f32 ulp where the double value sits on a rounding boundary.
#include "worker/gpu/cuda/kernels.cuh"

#include <climits>
#include <cstdint>

#include "worker/gpu/cuda/device_math.cuh"
#include "worker/gpu/cuda/rtn_math.h"
#include "worker/gpu/gpu_api.h"
#include "worker/quant/block_format.h"

#if defined(__USE_FAST_MATH__)
#error "kernels.cu must not be compiled with --use_fast_math: RTN must match the CPU bit for bit"
#endif

namespace impq::gpu {
namespace {

constexpr int kThreads = 256;        // block size of element-wise and row kernels
constexpr int kWarp = kWarpSize;
constexpr int64_t kMaxBlocks = 1 << 20;  // grid-stride kernels never launch more blocks

// Blocks for a grid-stride loop over n items with `per_block` items per block per sweep.
inline unsigned GridFor(int64_t n, int64_t per_block) {
  int64_t blocks = (n + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned>(blocks);
}

// Threads (a multiple of 32, at most kThreads) for a block that loops over n items.
inline unsigned RowThreads(int64_t n) {
  int64_t t = (n + kWarp - 1) / kWarp * kWarp;
  if (t < kWarp) t = kWarp;
  if (t > kThreads) t = kThreads;
  return static_cast<unsigned>(t);
}

inline bool Aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

// ---- quantization ----

// RTN group parameters: one warp per (row, group). The minimum and maximum are those of the
// CPU's left-to-right std::min / std::max scan, i.e. their FIRST occurrence (rtn_math.h):
// each lane scans its elements in increasing order, then a butterfly of RtnMinMaxMerge
// (commutative, ties to the smaller index) gives every lane the scan's answer. Then
// quant::MinMaxGroupParams operation for operation (RtnGroupParams).
__global__ void RtnParamsKernel(const float* __restrict__ w, int64_t rows, int64_t cols,
                                int64_t group, int64_t groups, int max_code,
                                float* __restrict__ scales, float* __restrict__ zeros) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int64_t tasks = rows * groups;
  // `task` is the same for all lanes of a warp, so the loop and the shuffles are warp-uniform.
  for (int64_t task = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) +
                      threadIdx.x / kWarp;
       task < tasks; task += warps_total) {
    const int64_t r = task / groups, g = task % groups;
    const int64_t c0 = g * group;
    const int64_t n = cols - c0 < group ? cols - c0 : group;
    const float* src = w + r * cols + c0;
    RtnMinMax mm = RtnMinMaxEmpty();
    for (int64_t i = lane; i < n; i += kWarp) RtnMinMaxAdd(&mm, src[i], i);
    for (int o = kWarp / 2; o > 0; o >>= 1) {
      RtnMinMax other;
      other.lo = __shfl_xor_sync(0xffffffffu, mm.lo, o);
      other.hi = __shfl_xor_sync(0xffffffffu, mm.hi, o);
      other.lo_i = __shfl_xor_sync(0xffffffffu, static_cast<long long>(mm.lo_i), o);
      other.hi_i = __shfl_xor_sync(0xffffffffu, static_cast<long long>(mm.hi_i), o);
      RtnMinMaxMerge(&mm, other);
    }
    if (lane == 0) RtnGroupParams(mm.lo, mm.hi, max_code, &scales[task], &zeros[task]);
  }
}

// RTN codes, packed: one thread per output byte (RtnPackedByte: block_format.h's
// impq_quantize_value, i.e. w / scale + zero with IEEE division and a separate add, clamp,
// the 1.5 * 2^23 rounding trick; identical to the CPU).
__global__ void RtnCodesKernel(const float* __restrict__ w, int64_t rows, int64_t cols,
                               int64_t group, int64_t groups, int bits, int max_code,
                               const float* __restrict__ scales,
                               const float* __restrict__ zeros, uint8_t* __restrict__ packed) {
  const int64_t rb = impq_code_bytes(bits, cols);
  const int64_t total = rows * rb;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / rb, b = idx % rb;
    packed[idx] = RtnPackedByte(w + r * cols, cols, group, scales + r * groups,
                                zeros + r * groups, bits, max_code, b);
  }
}

// One thread per packed byte (PackedByte; padding bits stay zero).
__global__ void PackKernel(int bits, int64_t rows, int64_t cols, const uint8_t* __restrict__ codes,
                           uint8_t* __restrict__ packed) {
  const int64_t rb = impq_code_bytes(bits, cols);
  const int64_t total = rows * rb;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / rb, b = idx % rb;
    packed[idx] = PackedByte(codes + r * cols, cols, bits, b);
  }
}

// One thread per code.
__global__ void UnpackKernel(int bits, int64_t rows, int64_t cols,
                             const uint8_t* __restrict__ packed, uint8_t* __restrict__ codes) {
  const int64_t rb = impq_code_bytes(bits, cols);
  const int64_t total = rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, c = idx % cols;
    codes[idx] = static_cast<uint8_t>(impq_get_code(packed + r * rb, bits, c));
  }
}

// One thread per weight: impq_dequantize_value ((q - zero) * scale: a subtraction and a
// multiplication, nothing to contract), then optionally __float2bfloat16_rn.
__global__ void DequantizeKernel(int bits, int64_t rows, int64_t cols, int64_t group,
                                 int64_t groups, const uint8_t* __restrict__ packed,
                                 const float* __restrict__ scales,
                                 const float* __restrict__ zeros, float* __restrict__ out_f32,
                                 bf16* __restrict__ out_bf16) {
  const int64_t rb = impq_code_bytes(bits, cols);
  const int64_t total = rows * cols;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = idx / cols, c = idx % cols;
    const int64_t gi = r * groups + c / group;
    const float v =
        impq_dequantize_value(impq_get_code(packed + r * rb, bits, c), scales[gi], zeros[gi]);
    if (out_f32 != nullptr) out_f32[idx] = v;
    if (out_bf16 != nullptr) out_bf16[idx] = __float2bfloat16_rn(v);
  }
}

__global__ void F32ToBf16Kernel(const float* __restrict__ in, bf16* __restrict__ out, int64_t n) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

// ---- forward pieces ----

// One block per row. x[r] = table[tokens[r]] * scale (one float multiply: exact copy for 1).
template <bool kVec4>
__global__ void EmbedKernel(const float* __restrict__ table, int dim,
                            const int32_t* __restrict__ tokens, float scale,
                            float* __restrict__ x) {
  const int64_t r = blockIdx.x;
  const float* src = table + static_cast<int64_t>(tokens[r]) * dim;
  float* dst = x + r * dim;
  if constexpr (kVec4) {
    const float4* s4 = reinterpret_cast<const float4*>(src);
    float4* d4 = reinterpret_cast<float4*>(dst);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      float4 v = s4[i];
      v.x = __fmul_rn(v.x, scale);
      v.y = __fmul_rn(v.y, scale);
      v.z = __fmul_rn(v.z, scale);
      v.w = __fmul_rn(v.w, scale);
      d4[i] = v;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = __fmul_rn(src[i], scale);
  }
}

// One block per row: ss = sum x^2 in double (block reduction), inv = f32(1/sqrt(ss/n + eps)),
// out = (x * inv) * mult (forward::RmsNormRow). kAdd: x_io[r] += out instead (Gemma-2 post
// norm; `x` is then the normed input). Outputs may be null.
// x and out_f32 are not __restrict__: out_f32 may alias x (in place), which is safe because
// each thread reads an element before it writes the same element and the sum of squares is
// complete (block barrier) before any write.
template <bool kVec4, bool kAdd>
__global__ void RmsNormKernel(const float* x, int dim, const float* __restrict__ mult, float eps,
                              float* out_f32, bf16* __restrict__ out_bf16) {
  const int64_t r = blockIdx.x;
  const float* row = x + r * dim;
  double ss = 0.0;
  if constexpr (kVec4) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = r4[i];
      ss += static_cast<double>(v.x) * v.x + static_cast<double>(v.y) * v.y +
            static_cast<double>(v.z) * v.z + static_cast<double>(v.w) * v.w;
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += static_cast<double>(row[i]) * row[i];
  }
  ss = BlockSumD(ss);
  const float inv = RmsInvDev(ss, dim, eps);
  if constexpr (kVec4) {
    const float4* r4 = reinterpret_cast<const float4*>(row);
    const float4* m4 = reinterpret_cast<const float4*>(mult);
    for (int i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = r4[i], m = m4[i];
      float4 o;
      o.x = __fmul_rn(__fmul_rn(v.x, inv), m.x);
      o.y = __fmul_rn(__fmul_rn(v.y, inv), m.y);
      o.z = __fmul_rn(__fmul_rn(v.z, inv), m.z);
      o.w = __fmul_rn(__fmul_rn(v.w, inv), m.w);
      if constexpr (kAdd) {
        float4* d4 = reinterpret_cast<float4*>(out_f32 + r * dim);
        float4 d = d4[i];
        d.x = __fadd_rn(d.x, o.x);
        d.y = __fadd_rn(d.y, o.y);
        d.z = __fadd_rn(d.z, o.z);
        d.w = __fadd_rn(d.w, o.w);
        d4[i] = d;
      } else {
        if (out_f32 != nullptr) reinterpret_cast<float4*>(out_f32 + r * dim)[i] = o;
        if (out_bf16 != nullptr) {
          __nv_bfloat162* b2 = reinterpret_cast<__nv_bfloat162*>(out_bf16 + r * dim) + 2 * i;
          b2[0] = __nv_bfloat162(__float2bfloat16_rn(o.x), __float2bfloat16_rn(o.y));
          b2[1] = __nv_bfloat162(__float2bfloat16_rn(o.z), __float2bfloat16_rn(o.w));
        }
      }
    }
  } else {
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
      const float o = __fmul_rn(__fmul_rn(row[i], inv), mult[i]);
      if constexpr (kAdd) {
        out_f32[r * dim + i] = __fadd_rn(out_f32[r * dim + i], o);
      } else {
        if (out_f32 != nullptr) out_f32[r * dim + i] = o;
        if (out_bf16 != nullptr) out_bf16[r * dim + i] = __float2bfloat16_rn(o);
      }
    }
  }
}

// One warp per (position t, head h): optional head RMSNorm (double sum over the head, as
// forward::RmsNormRow), then forward::RopeHead's rotation with separately rounded products
// (a*c - b*s, a*s + b*c), written to out[h][t][.] as bf16. Without the head norm the f32
// values before the bf16 rounding are bit-identical to the CPU's.
__global__ void RopeKernel(const float* __restrict__ x, int64_t T, int heads, int head_dim,
                           const float* __restrict__ head_mult, float eps,
                           const float* __restrict__ cos_t, const float* __restrict__ sin_t,
                           int interleaved, bf16* __restrict__ out) {
  const int lane = threadIdx.x % kWarp;
  const int64_t tasks = T * heads;
  const int64_t warps_total = static_cast<int64_t>(gridDim.x) * (blockDim.x / kWarp);
  const int half = head_dim / 2;
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  for (int64_t task = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) +
                      threadIdx.x / kWarp;
       task < tasks; task += warps_total) {
    const int64_t t = task / heads;
    const int h = static_cast<int>(task % heads);
    const float* src = x + t * width + static_cast<int64_t>(h) * head_dim;
    float inv = 1.0f;
    if (head_mult != nullptr) {
      double ss = 0.0;
      for (int i = lane; i < head_dim; i += kWarp) ss += static_cast<double>(src[i]) * src[i];
      ss = WarpSumD(ss);
      inv = RmsInvDev(ss, head_dim, eps);
    }
    bf16* dst = out + (static_cast<int64_t>(h) * T + t) * head_dim;
    const float* cs = cos_t + t * half;
    const float* sn = sin_t + t * half;
    for (int i = lane; i < half; i += kWarp) {
      const int ia = interleaved ? 2 * i : i;
      const int ib = interleaved ? 2 * i + 1 : i + half;
      float a = src[ia], b = src[ib];
      if (head_mult != nullptr) {
        a = __fmul_rn(__fmul_rn(a, inv), head_mult[ia]);
        b = __fmul_rn(__fmul_rn(b, inv), head_mult[ib]);
      }
      const float c = cs[i], s = sn[i];
      dst[ia] = __float2bfloat16_rn(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)));
      dst[ib] = __float2bfloat16_rn(__fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c)));
    }
  }
}

// One thread per output element of [heads, T, head_dim].
__global__ void ToHeadMajorKernel(const float* __restrict__ x, int64_t T, int heads,
                                  int head_dim, bf16* __restrict__ out) {
  const int64_t per_head = T * head_dim;
  const int64_t total = per_head * heads;
  const int64_t width = static_cast<int64_t>(heads) * head_dim;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < total;
       o += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t h = o / per_head, rem = o % per_head;
    const int64_t t = rem / head_dim, d = rem % head_dim;
    out[o] = __float2bfloat16_rn(x[t * width + h * head_dim + d]);
  }
}

// SwiGLU: forward::SiluMul's g / (1 + FastExp(-g)) * up, bit-identical before the bf16
// rounding. GeGLU: forward::GeluTanhMul's ((0.5 g)(1 + tanh(k (g + ((0.044715 g) g) g)))) up,
// identical except for tanhf (CUDA's vs glibc's, a few ulp).
__global__ void GluKernel(const float* __restrict__ gate, const float* __restrict__ up, int64_t n,
                          int activation, bf16* __restrict__ out) {
  const float k = 0.7978845608028654f;  // sqrt(2/pi), the CPU's literal
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    float v;
    if (activation == IMPQ_GPU_ACT_GELU_TANH) {
      const float cube = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, g), g), g);
      const float t = tanhf(__fmul_rn(k, __fadd_rn(g, cube)));
      v = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, t)), up[i]);
    } else {
      v = __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, FastExpDev(-g))), up[i]);
    }
    out[i] = __float2bfloat16_rn(v);
  }
}

// One block per row: m = max c(z) (f32), S = sum FastExp(c(z) - m) in double,
// nll = f32(m + log(S) - c(z_target)) in double: the evaluator's LogSumExp(row) - row[target]
// with bit-identical exponentials; only the order of the double sum differs. A target outside
// [0, vocab) gives NaN (the plugin entry points validate targets first).
__global__ void NllKernel(const float* __restrict__ logits, int vocab,
                          const int32_t* __restrict__ targets, float softcap,
                          float* __restrict__ nll) {
  const int64_t r = blockIdx.x;
  const float* row = logits + r * vocab;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = SoftcapDev(row[j], softcap);
    mx = v > mx ? v : mx;
  }
  mx = BlockMaxF(mx);
  double sum = 0.0;
  for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
    const float v = SoftcapDev(row[j], softcap);
    sum += static_cast<double>(FastExpDev(__fsub_rn(v, mx)));
  }
  sum = BlockSumD(sum);
  if (threadIdx.x == 0) {
    const int32_t t = targets[r];
    if (t < 0 || t >= vocab) {
      nll[r] = NAN;
    } else {
      const float zt = SoftcapDev(row[t], softcap);
      nll[r] = static_cast<float>(static_cast<double>(mx) + log(sum) - static_cast<double>(zt));
    }
  }
}

cudaError_t LastLaunchError() { return cudaGetLastError(); }

}  // namespace

// ---- launchers ----

cudaError_t LaunchRtnQuantize(int bits, int64_t rows, int64_t cols, int64_t group,
                              const float* w, uint8_t* packed, float* scales, float* zeros,
                              cudaStream_t stream) {
  if (!impq_bits_supported(bits) || rows <= 0 || cols <= 0 || group <= 0) {
    return cudaErrorInvalidValue;
  }
  const int max_code = impq_block_format(bits).max_code;
  const int64_t groups = impq_groups_per_row(cols, group);
  const int64_t warps_per_block = kThreads / kWarp;
  RtnParamsKernel<<<GridFor(rows * groups, warps_per_block), kThreads, 0, stream>>>(
      w, rows, cols, group, groups, max_code, scales, zeros);
  cudaError_t e = LastLaunchError();
  if (e != cudaSuccess) return e;
  const int64_t bytes = rows * impq_code_bytes(bits, cols);
  RtnCodesKernel<<<GridFor(bytes, kThreads), kThreads, 0, stream>>>(
      w, rows, cols, group, groups, bits, max_code, scales, zeros, packed);
  return LastLaunchError();
}

cudaError_t LaunchPack(int bits, int64_t rows, int64_t cols, const uint8_t* codes,
                       uint8_t* packed, cudaStream_t stream) {
  if (!impq_bits_supported(bits) || rows <= 0 || cols <= 0) return cudaErrorInvalidValue;
  const int64_t bytes = rows * impq_code_bytes(bits, cols);
  PackKernel<<<GridFor(bytes, kThreads), kThreads, 0, stream>>>(bits, rows, cols, codes, packed);
  return LastLaunchError();
}

cudaError_t LaunchUnpack(int bits, int64_t rows, int64_t cols, const uint8_t* packed,
                         uint8_t* codes, cudaStream_t stream) {
  if (!impq_bits_supported(bits) || rows <= 0 || cols <= 0) return cudaErrorInvalidValue;
  UnpackKernel<<<GridFor(rows * cols, kThreads), kThreads, 0, stream>>>(bits, rows, cols, packed,
                                                                        codes);
  return LastLaunchError();
}

cudaError_t LaunchDequantize(int bits, int64_t rows, int64_t cols, int64_t group,
                             const uint8_t* packed, const float* scales, const float* zeros,
                             float* out_f32, bf16* out_bf16, cudaStream_t stream) {
  if (!impq_bits_supported(bits) || rows <= 0 || cols <= 0 || group <= 0) {
    return cudaErrorInvalidValue;
  }
  if (out_f32 == nullptr && out_bf16 == nullptr) return cudaSuccess;
  const int64_t groups = impq_groups_per_row(cols, group);
  DequantizeKernel<<<GridFor(rows * cols, kThreads), kThreads, 0, stream>>>(
      bits, rows, cols, group, groups, packed, scales, zeros, out_f32, out_bf16);
  return LastLaunchError();
}

cudaError_t LaunchF32ToBf16(const float* in, bf16* out, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  F32ToBf16Kernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(in, out, n);
  return LastLaunchError();
}

cudaError_t LaunchEmbed(const float* table, int dim, const int32_t* tokens, int64_t rows,
                        float scale, float* x, cudaStream_t stream) {
  if (dim <= 0 || rows < 0 || rows > INT_MAX) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(rows);
  if (dim % 4 == 0 && Aligned(table, 16) && Aligned(x, 16)) {
    EmbedKernel<true><<<blocks, RowThreads(dim / 4), 0, stream>>>(table, dim, tokens, scale, x);
  } else {
    EmbedKernel<false><<<blocks, RowThreads(dim), 0, stream>>>(table, dim, tokens, scale, x);
  }
  return LastLaunchError();
}

cudaError_t LaunchRmsNorm(const float* x, int64_t rows, int dim, const float* mult, float eps,
                          float* out_f32, bf16* out_bf16, cudaStream_t stream) {
  if (dim <= 0 || rows < 0 || rows > INT_MAX) return cudaErrorInvalidValue;
  if (rows == 0 || (out_f32 == nullptr && out_bf16 == nullptr)) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(rows);
  const bool vec = dim % 4 == 0 && Aligned(x, 16) && Aligned(mult, 16) &&
                   (out_f32 == nullptr || Aligned(out_f32, 16)) &&
                   (out_bf16 == nullptr || Aligned(out_bf16, 8));
  if (vec) {
    RmsNormKernel<true, false><<<blocks, RowThreads(dim / 4), 0, stream>>>(x, dim, mult, eps,
                                                                          out_f32, out_bf16);
  } else {
    RmsNormKernel<false, false><<<blocks, RowThreads(dim), 0, stream>>>(x, dim, mult, eps,
                                                                       out_f32, out_bf16);
  }
  return LastLaunchError();
}

cudaError_t LaunchRmsNormAdd(const float* in, int64_t rows, int dim, const float* mult,
                             float eps, float* x, cudaStream_t stream) {
  if (dim <= 0 || rows < 0 || rows > INT_MAX || x == nullptr) return cudaErrorInvalidValue;
  if (rows == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(rows);
  if (dim % 4 == 0 && Aligned(in, 16) && Aligned(mult, 16) && Aligned(x, 16)) {
    RmsNormKernel<true, true><<<blocks, RowThreads(dim / 4), 0, stream>>>(in, dim, mult, eps, x,
                                                                         nullptr);
  } else {
    RmsNormKernel<false, true><<<blocks, RowThreads(dim), 0, stream>>>(in, dim, mult, eps, x,
                                                                      nullptr);
  }
  return LastLaunchError();
}

cudaError_t LaunchRope(const float* x, int64_t T, int heads, int head_dim,
                       const float* head_mult, float eps, const float* cos, const float* sin,
                       int rope_style, bf16* out, cudaStream_t stream) {
  if (T < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 ||
      (rope_style != IMPQ_GPU_ROPE_INTERLEAVED && rope_style != IMPQ_GPU_ROPE_HALF)) {
    return cudaErrorInvalidValue;
  }
  if (T == 0) return cudaSuccess;
  const int64_t warps_per_block = kThreads / kWarp;
  RopeKernel<<<GridFor(T * heads, warps_per_block), kThreads, 0, stream>>>(
      x, T, heads, head_dim, head_mult, eps, cos, sin,
      rope_style == IMPQ_GPU_ROPE_INTERLEAVED ? 1 : 0, out);
  return LastLaunchError();
}

cudaError_t LaunchToHeadMajor(const float* x, int64_t T, int heads, int head_dim, bf16* out,
                              cudaStream_t stream) {
  if (T < 0 || heads <= 0 || head_dim <= 0) return cudaErrorInvalidValue;
  if (T == 0) return cudaSuccess;
  ToHeadMajorKernel<<<GridFor(T * heads * head_dim, kThreads), kThreads, 0, stream>>>(
      x, T, heads, head_dim, out);
  return LastLaunchError();
}

cudaError_t LaunchGlu(const float* gate, const float* up, int64_t n, int activation, bf16* out,
                      cudaStream_t stream) {
  if (n < 0 || (activation != IMPQ_GPU_ACT_SILU && activation != IMPQ_GPU_ACT_GELU_TANH)) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  GluKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(gate, up, n, activation, out);
  return LastLaunchError();
}

cudaError_t LaunchNll(const float* logits, int64_t rows, int vocab, const int32_t* targets,
                      float softcap, float* nll, cudaStream_t stream) {
  if (vocab <= 0 || rows < 0 || rows > INT_MAX || !(softcap >= 0.0f)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  NllKernel<<<static_cast<unsigned>(rows), RowThreads(vocab), 0, stream>>>(logits, vocab, targets,
                                                                          softcap, nll);
  return LastLaunchError();
}

}  // namespace impq::gpu
