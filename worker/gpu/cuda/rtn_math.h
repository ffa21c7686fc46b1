// The per-thread arithmetic of the plugin's RTN and packing kernels (kernels.cu), written as
// __host__ __device__ functions so that the CPU tests run the very same code against
// quant::RtnQuantizer (gpu_kernels_test.cc emulates the warp around them). Plain C++ for
// g++; compiled for the device by nvcc (IMPQ_HD from block_format.h).
#ifndef IMPQ_WORKER_GPU_CUDA_RTN_MATH_H_
#define IMPQ_WORKER_GPU_CUDA_RTN_MATH_H_

#include <math.h>

#include <cfloat>
#include <cstdint>

#include "worker/quant/block_format.h"

namespace impq::gpu {

// Running minimum and maximum of a group with the index of their FIRST occurrence, which is
// what the CPU's left-to-right std::min / std::max scan returns (only the sign of a zero
// minimum depends on it, and it reaches the stored zero point through -lo / scale).
struct RtnMinMax {
  float lo, hi;
  int64_t lo_i, hi_i;
};

IMPQ_HD inline RtnMinMax RtnMinMaxEmpty() {
  RtnMinMax m;
  m.lo = INFINITY;
  m.hi = -INFINITY;
  m.lo_i = INT64_MAX;
  m.hi_i = INT64_MAX;
  return m;
}

// One element of a scan in increasing index order: strict improvements only.
IMPQ_HD inline void RtnMinMaxAdd(RtnMinMax* m, float v, int64_t i) {
  if (v < m->lo) {
    m->lo = v;
    m->lo_i = i;
  }
  if (v > m->hi) {
    m->hi = v;
    m->hi_i = i;
  }
}

// Merges another partial result (any order): smaller value wins, equal values (+0 == -0)
// go to the smaller index. Commutative and associative, so any reduction tree gives the
// sequential scan's answer.
IMPQ_HD inline void RtnMinMaxMerge(RtnMinMax* m, const RtnMinMax& o) {
  if (o.lo < m->lo || (o.lo == m->lo && o.lo_i < m->lo_i)) {
    m->lo = o.lo;
    m->lo_i = o.lo_i;
  }
  if (o.hi > m->hi || (o.hi == m->hi && o.hi_i < m->hi_i)) {
    m->hi = o.hi;
    m->hi_i = o.hi_i;
  }
}

// quant::MinMaxGroupParams(lo, hi, max_code), operation for operation: the scale in double
// rounded to f32 once, constant groups (scale below FLT_MIN) stored exactly, the zero point
// rint(-lo / scale) in double (the CPU's nearbyint in the default rounding mode).
IMPQ_HD inline void RtnGroupParams(float lo, float hi, int max_code, float* scale, float* zero) {
  const double dlo = lo, dhi = hi;
  const float s = static_cast<float>((dhi - dlo) / static_cast<double>(max_code));
  if (!(s >= FLT_MIN)) {
    const float c = lo;
    if (c == 0.0f) {
      *scale = 1.0f;
      *zero = 0.0f;
    } else if (c > 0.0f) {
      *scale = c;
      *zero = 0.0f;
    } else {
      *scale = -c;
      *zero = 1.0f;
    }
    return;
  }
  *scale = s;
  *zero = static_cast<float>(rint(-dlo / static_cast<double>(s)));
}

// Byte b of a packed row of RTN codes: the bits of the codes that touch byte b in the row's
// bit stream (block_format.h; for 2/4/8 bits the columns b*8/bits .. (b+1)*8/bits - 1, for
// 3 bits up to four codes, two of them straddling), those below cols, padding bits zero.
// Each code is impq_quantize_value(w, scale, zero, max_code) with the parameters of its
// group. w_row, scales_row, zeros_row point at the row.
IMPQ_HD inline uint8_t RtnPackedByte(const float* w_row, int64_t cols, int64_t group,
                                     const float* scales_row, const float* zeros_row, int bits,
                                     int max_code, int64_t b) {
  const int64_t c1 = impq_last_code_of_byte(bits, b);
  unsigned byte = 0;
  for (int64_t c = impq_first_code_of_byte(bits, b); c <= c1 && c < cols; ++c) {
    const int64_t g = c / group;
    const int q = impq_quantize_value(w_row[c], scales_row[g], zeros_row[g], max_code);
    byte |= impq_code_byte_bits(q, bits, c, b);
  }
  return static_cast<uint8_t>(byte);
}

// Byte b of a packed row from one code per byte (masked to `bits`; padding bits zero).
IMPQ_HD inline uint8_t PackedByte(const uint8_t* codes_row, int64_t cols, int bits, int64_t b) {
  const unsigned mask = (1u << bits) - 1u;
  const int64_t c1 = impq_last_code_of_byte(bits, b);
  unsigned byte = 0;
  for (int64_t c = impq_first_code_of_byte(bits, b); c <= c1 && c < cols; ++c) {
    byte |= impq_code_byte_bits(static_cast<int>(codes_row[c] & mask), bits, c, b);
  }
  return static_cast<uint8_t>(byte);
}

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_RTN_MATH_H_
