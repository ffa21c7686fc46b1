// Scalar references of the quantization backends (llm.c style: plain loops, no BLAS, no
// threads, no packing), written independently of rtn.cc / hqq.cc / gptq.cc so tests can
// compare the fast paths against them. They implement the same definitions (the code formula
// of block_format.h, the group rule, the algorithms documented in rtn.h, hqq.h, gptq.h) and
// are slow on purpose: GptqQuantizeRef is O(cols^3) per call.
//
// REQUIRES for every function: inputs already valid (ValidateQuantizeInput OK, options valid);
// references do not return errors.
#ifndef IMPQ_WORKER_QUANT_REFERENCE_H_
#define IMPQ_WORKER_QUANT_REFERENCE_H_

#include <cstdint>
#include <vector>

#include "worker/quant/quantizer.h"
#include "worker/quant/rtn.h"

namespace impq::quant {

// Unpacked quantized tensor: codes one per element, [rows][cols]; scales/zeros
// [rows][ceil(cols / group_size)].
struct RefQuantized {
  int64_t rows = 0, cols = 0;
  int bits = 0;
  int64_t group_size = 0;
  std::vector<uint8_t> codes;
  std::vector<float> scales, zeros;
};

// The code formula of block_format.h, written with libm rounding (nearbyintf, round half
// to even) and clamping after rounding: clamp(nearbyint(w / scale + zero), 0, max_code).
int QuantizeValueRef(float w, float scale, float zero, int max_code);

// The min/max rule of rtn.h (scale, integer zero, constant-group rule).
GroupParams MinMaxParamsRef(double lo, double hi, int max_code);

// Round-to-nearest with the min/max rule of rtn.h.
RefQuantized RtnQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                            int64_t group_size);

// HQQ as documented in hqq.h, three separate passes per iteration.
RefQuantized HqqQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                            int64_t group_size, const HqqOptions& options);

// GPTQ as documented in gptq.h, without lazy blocks and without the Cholesky trick: one
// column at a time with the explicit inverse-Hessian recurrence of OBQ (Frantar & Alistarh
// 2022, Eq. 3/4; GPTQ paper Eq. 2-3): after quantizing column j,
//   W[:, k] -= (w_j - w_hat_j) * Hinv[j][k] / Hinv[j][j]            for unquantized k,
//   Hinv    -= Hinv[:, j] Hinv[j, :] / Hinv[j][j]                   (remove j).
// `hessian` is [cols][cols] row-major (H = 2/N X^T X), not yet dead-fixed or damped.
RefQuantized GptqQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                             int64_t group_size, const std::vector<double>& hessian,
                             const GptqOptions& options);

// w_hat = (q - zero) * scale, [rows][cols].
std::vector<float> DequantizeRef(const RefQuantized& q);

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_REFERENCE_H_
