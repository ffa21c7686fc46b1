// RTN: min/max round-to-nearest group quantization, optimum-quanto style (qint2 / qint4
// weights with group_size, MaxOptimizer + AffineQuantizer).
//
// Per group of G input columns (the last group of a row may be shorter, block_format.h):
//   scale = (max - min) / (2^b - 1)               computed in double, stored as f32
//   zero  = round_half_even(-min / scale)          an integer, stored as f32
//   q     = clamp(round(w / scale + zero), 0, 2^b - 1)
// Zero-point convention: optimum-quanto's MaxOptimizer (quanto <= 0.1) computes exactly this
// integer zeropoint, `zeropoint = round(-rmin / scale)`, and quantizes with
// `clamp(round(base / scale) + zeropoint, 0, 2^b - 1)`. (Later quanto versions keep a float
// shift = -rmin instead.) We keep the integer zero: it is what HQQ starts from and what the
// GPTQ reference quantizer uses. Adding an integer zero before or after rounding gives the
// same code except when the float sum w/scale + zero itself rounds onto a .5 tie.
//
// Degenerate (constant) groups: when max == min, or the range is so small that the f32
// scale would be zero or subnormal, the group is treated as the constant c = min and stored
// so that it is reproduced exactly, with a positive scale and no division by zero:
//   c == 0: scale = 1,   zero = 0, code 0 -> (0 - 0) * 1   = 0
//   c >  0: scale = c,   zero = 0, code 1 -> (1 - 0) * c   = c
//   c <  0: scale = -c,  zero = 1, code 0 -> (0 - 1) * -c  = c
// Default group size: 64 (QuantConfig::group_size).
#ifndef IMPQ_WORKER_QUANT_RTN_H_
#define IMPQ_WORKER_QUANT_RTN_H_

#include <cstdint>

#include "worker/quant/quantizer.h"

namespace impq::quant {

struct GroupParams {
  float scale = 1.0f;  // > 0, finite
  float zero = 0.0f;   // in code units
};

// The RTN rule above for a group whose values lie in [lo, hi] (lo <= hi, both finite).
// Shared by RTN, HQQ (its starting point) and GPTQ (on the error-updated weights).
GroupParams MinMaxGroupParams(double lo, double hi, int max_code);

// Codes of w[0..n) with the given group parameters into codes[0..n) (one per byte).
void QuantizeGroup(const float* w, int64_t n, GroupParams p, int max_code, uint8_t* codes);

// Stateless, thread-safe. Ignores calibration statistics.
class RtnQuantizer final : public Quantizer {
 public:
  absl::string_view name() const override { return "rtn"; }

 protected:
  absl::StatusOr<PackedTensor> QuantizeValidated(const float* w, int64_t rows, int64_t cols,
                                                 const QuantConfig& cfg,
                                                 const CalibrationStats* calib) const override;
};

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_RTN_H_
