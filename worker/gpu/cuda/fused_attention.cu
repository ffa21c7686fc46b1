// Fused causal GQA attention on the tensor cores (WMMA, bf16 in, f32 accumulate) with the
// SAME numerics contract as the cuBLAS composite of attention.cu (kernels.cuh): scores
// c = softcap(scale * q.k) in f32, row max m over the visible keys, S = sum FastExp(c - m) in
// double, p = bf16(FastExp(c - m) * f32(1 / S)), out = bf16(sum_j p_j v_j) with f32
// accumulation. The probabilities are normalised BEFORE their bf16 rounding (unlike the usual
// online-softmax flash attention), so the kernel makes three passes over the keys of a query
// tile: max, sum, P.V. The scores are recomputed in each pass (q.k is cheap next to moving a
// T x T matrix through memory), and nothing of size T^2 is ever stored.
//
// One block = one query head h and a tile of kRows = 64 queries; 4 warps, warp w owns the 16
// query rows 16w..16w+15 (their scores, probabilities and output accumulators), so the
// row-wise softmax work needs only warp-level synchronisation. Key tiles of 64 keys (and, in
// the last pass, their values) are staged in shared memory by the whole block. The key range
// of a query tile is [first key visible to its first query, its last query]: tiles above the
// diagonal and left of a sliding window are skipped.
#include <mma.h>

#include <cstdint>

#include "worker/gpu/cuda/device_math.cuh"
#include "worker/gpu/cuda/kernels.cuh"

namespace impq::gpu {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kRows = 64;  // queries per block
constexpr int kKeys = 64;  // keys per tile
constexpr int kWarps = 4;  // 16 query rows each
constexpr int kThreads = kWarps * kWarpSize;
constexpr int kFrag = 16;           // WMMA tile edge
constexpr int kSPitch = kKeys + 4;  // f32 scores staging row pitch (multiple of 4)
constexpr int kPPitch = kKeys + 8;  // bf16 probabilities row pitch (multiple of 8)

template <int HD>
struct Smem {
  static constexpr int kPitch = HD + 8;  // bf16 row pitch of Q/K/V tiles (multiple of 8)
  static constexpr size_t kQ = 0;
  static constexpr size_t kK = kQ + sizeof(bf16) * kRows * kPitch;
  static constexpr size_t kV = kK + sizeof(bf16) * kKeys * kPitch;
  static constexpr size_t kS = kV + sizeof(bf16) * kKeys * kPitch;
  static constexpr size_t kP = kS + sizeof(float) * kWarps * kFrag * kSPitch;
  static constexpr size_t kBytes = kP + sizeof(bf16) * kWarps * kFrag * kPPitch;
  // WMMA pointers must be 32-byte aligned: every region and every 16-row block is.
  static_assert(kK % 32 == 0 && kV % 32 == 0 && kS % 32 == 0 && kP % 32 == 0);
  static_assert((sizeof(bf16) * kFrag * kPitch) % 32 == 0);
};

// rows x HD bf16 from src (row stride HD, rows [r0, r0 + rows) of a [T, HD] head) into a
// pitched shared tile; rows at or beyond T are zero. 16-byte copies (HD % 8 == 0).
template <int HD>
__device__ __forceinline__ void LoadTile(const bf16* __restrict__ src, int64_t r0, int64_t T,
                                         int rows, bf16* dst) {
  constexpr int kVecPerRow = HD / 8;
  for (int idx = threadIdx.x; idx < rows * kVecPerRow; idx += kThreads) {
    const int r = idx / kVecPerRow, c = (idx % kVecPerRow) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < T) v = *reinterpret_cast<const uint4*>(src + (r0 + r) * HD + c);
    *reinterpret_cast<uint4*>(dst + r * Smem<HD>::kPitch + c) = v;
  }
}

// The warp's 16 x 64 block of raw scores q.k (f32) into its staging area `s` (pitch kSPitch).
template <int HD>
__device__ __forceinline__ void WarpScores(const bf16* qs, const bf16* ks, float* s) {
  constexpr int P = Smem<HD>::kPitch;
#pragma unroll
  for (int n = 0; n < kKeys / kFrag; ++n) {
    wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int k = 0; k < HD / kFrag; ++k) {
      wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major> a;
      wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::col_major> b;
      wmma::load_matrix_sync(a, qs + k * kFrag, P);
      wmma::load_matrix_sync(b, ks + n * kFrag * P + k * kFrag, P);  // K^T: column-major
      wmma::mma_sync(acc, a, b, acc);
    }
    wmma::store_matrix_sync(s + n * kFrag, acc, kSPitch, wmma::mem_row_major);
  }
}

template <int HD>
__global__ void __launch_bounds__(kThreads)
    FusedAttentionKernel(const bf16* __restrict__ q, const bf16* __restrict__ k,
                         const bf16* __restrict__ v, int64_t T, int H, int G, float scale,
                         float softcap, int window, bf16* __restrict__ out) {
  extern __shared__ __align__(128) unsigned char smem[];
  using L = Smem<HD>;
  bf16* qs = reinterpret_cast<bf16*>(smem + L::kQ);
  bf16* ks = reinterpret_cast<bf16*>(smem + L::kK);
  bf16* vs = reinterpret_cast<bf16*>(smem + L::kV);
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  float* ss = reinterpret_cast<float*>(smem + L::kS) + warp * kFrag * kSPitch;
  bf16* ps = reinterpret_cast<bf16*>(smem + L::kP) + warp * kFrag * kPPitch;

  const int h = blockIdx.y;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const bf16* qh = q + static_cast<int64_t>(h) * T * HD;
  const bf16* kh = k + static_cast<int64_t>(h / G) * T * HD;
  const bf16* vh = v + static_cast<int64_t>(h / G) * T * HD;
  LoadTile<HD>(qh, q0, T, kRows, qs);

  const int64_t last = (q0 + kRows < T ? q0 + kRows : T) - 1;  // last query of the tile
  int64_t first_key = 0;
  if (window > 0 && q0 - window + 1 > 0) first_key = q0 - window + 1;
  const int64_t kt_begin = first_key / kKeys, kt_end = last / kKeys;
  const int64_t row0 = q0 + warp * kFrag;  // the warp's first query
  const bf16* qw = qs + warp * kFrag * L::kPitch;

  // One pass over the key tiles: stage the keys (and, for the P.V pass, the values), compute
  // the warp's raw scores, then call on_score(rr, c, visible, capped scaled score) for each
  // (row rr of the warp, column c of the tile) this lane owns, then after_tile().
  auto pass = [&](bool with_values, auto on_score, auto after_tile) {
    for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
      __syncthreads();  // the previous tile (and the Q tile load) is done with
      LoadTile<HD>(kh, kt * kKeys, T, kKeys, ks);
      if (with_values) LoadTile<HD>(vh, kt * kKeys, T, kKeys, vs);
      __syncthreads();
      WarpScores<HD>(qw, ks, ss);
      __syncwarp();
#pragma unroll
      for (int rr = 0; rr < kFrag; ++rr) {
        const int64_t i = row0 + rr;
        const int64_t lo = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int c = lane + half * kWarpSize;
          const int64_t j = kt * kKeys + c;
          const float sc = SoftcapDev(__fmul_rn(ss[rr * kSPitch + c], scale), softcap);
          on_score(rr, c, i < T && j <= i && j >= lo, sc);
        }
      }
      __syncwarp();
      after_tile();
    }
  };
  auto nothing = [] {};

  float mx[kFrag];
  double sum[kFrag];
#pragma unroll
  for (int rr = 0; rr < kFrag; ++rr) {
    mx[rr] = -INFINITY;
    sum[rr] = 0.0;
  }
  // Pass 1: row maxima.
  pass(
      false,
      [&](int rr, int, bool vis, float c) {
        if (vis) mx[rr] = c > mx[rr] ? c : mx[rr];
      },
      nothing);
#pragma unroll
  for (int rr = 0; rr < kFrag; ++rr) mx[rr] = WarpMaxF(mx[rr]);
  // Pass 2: denominators, in double.
  pass(
      false,
      [&](int rr, int, bool vis, float c) {
        if (vis) sum[rr] += static_cast<double>(FastExpDev(__fsub_rn(c, mx[rr])));
      },
      nothing);
  float inv[kFrag];
#pragma unroll
  for (int rr = 0; rr < kFrag; ++rr) {
    inv[rr] = __fdiv_rn(1.0f, static_cast<float>(WarpSumD(sum[rr])));
  }
  // Pass 3: bf16 probabilities times the values, f32 accumulation.
  wmma::fragment<wmma::accumulator, kFrag, kFrag, kFrag, float> acc[HD / kFrag];
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n) wmma::fill_fragment(acc[n], 0.0f);
  pass(
      true,
      [&](int rr, int c, bool vis, float s) {
        const float p = vis ? __fmul_rn(FastExpDev(__fsub_rn(s, mx[rr])), inv[rr]) : 0.0f;
        ps[rr * kPPitch + c] = __float2bfloat16_rn(p);
      },
      [&] {
#pragma unroll
        for (int kk = 0; kk < kKeys / kFrag; ++kk) {
          wmma::fragment<wmma::matrix_a, kFrag, kFrag, kFrag, bf16, wmma::row_major> a;
          wmma::load_matrix_sync(a, ps + kk * kFrag, kPPitch);
#pragma unroll
          for (int n = 0; n < HD / kFrag; ++n) {
            wmma::fragment<wmma::matrix_b, kFrag, kFrag, kFrag, bf16, wmma::row_major> b;
            wmma::load_matrix_sync(b, vs + kk * kFrag * L::kPitch + n * kFrag, L::kPitch);
            wmma::mma_sync(acc[n], a, b, acc[n]);
          }
        }
      });
  // out[i, h*HD + d] = bf16(acc), staged 16 x 16 at a time through the warp's f32 area.
#pragma unroll
  for (int n = 0; n < HD / kFrag; ++n) {
    __syncwarp();
    wmma::store_matrix_sync(ss, acc[n], kSPitch, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < kFrag * kFrag; e += kWarpSize) {
      const int rr = e / kFrag, c = e % kFrag;
      const int64_t i = row0 + rr;
      if (i < T) {
        out[i * static_cast<int64_t>(H) * HD + static_cast<int64_t>(h) * HD + n * kFrag + c] =
            __float2bfloat16_rn(ss[rr * kSPitch + c]);
      }
    }
  }
}

template <int HD>
cudaError_t Launch(const bf16* q, const bf16* k, const bf16* v, int64_t T, int H, int Hkv,
                   float scale, float softcap, int window, bf16* out, cudaStream_t stream) {
  const size_t bytes = Smem<HD>::kBytes;
  if (const cudaError_t e = cudaFuncSetAttribute(FusedAttentionKernel<HD>,
                                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                 static_cast<int>(bytes));
      e != cudaSuccess) {
    return e;
  }
  const dim3 grid(static_cast<unsigned>((T + kRows - 1) / kRows), static_cast<unsigned>(H));
  FusedAttentionKernel<HD>
      <<<grid, kThreads, bytes, stream>>>(q, k, v, T, H, H / Hkv, scale, softcap, window, out);
  return cudaGetLastError();
}

}  // namespace

bool FusedAttentionSupports(int head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

cudaError_t LaunchFusedAttention(const bf16* q, const bf16* k, const bf16* v, int64_t T, int H,
                                 int Hkv, int head_dim, float scale, float softcap, int window,
                                 bf16* out, cudaStream_t stream) {
  if (T <= 0 || H <= 0 || Hkv <= 0 || H % Hkv != 0 || window < 0 ||
      (T + kRows - 1) / kRows > INT32_MAX) {
    return cudaErrorInvalidValue;
  }
  for (const void* p :
       {static_cast<const void*>(q), static_cast<const void*>(k), static_cast<const void*>(v)}) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return cudaErrorMisalignedAddress;
  }
  switch (head_dim) {
    case 16:
      return Launch<16>(q, k, v, T, H, Hkv, scale, softcap, window, out, stream);
    case 32:
      return Launch<32>(q, k, v, T, H, Hkv, scale, softcap, window, out, stream);
    case 64:
      return Launch<64>(q, k, v, T, H, Hkv, scale, softcap, window, out, stream);
    case 128:
      return Launch<128>(q, k, v, T, H, Hkv, scale, softcap, window, out, stream);
    case 256:
      return Launch<256>(q, k, v, T, H, Hkv, scale, softcap, window, out, stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace impq::gpu
