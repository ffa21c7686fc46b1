// HQQ: Half-Quadratic Quantization (H. Badri and A. Shaji, "Half-Quadratic Quantization of
// Large Machine Learning Models", Mobius Labs blog, 2023; reference code mobiusml/hqq,
// hqq/core/optimize.py `optimize_weights_proximal`). Calibration-free.
//
// HQQ keeps the min/max scale fixed and optimises the zero point of every group to minimise
// the lp "norm" (p < 1, robust to outliers) of the weight error, by half-quadratic splitting
// with an auxiliary residual e. Per group of n weights (the last group of a row may be
// shorter), starting from RTN's scale s and integer zero z_0 (rtn.h):
//   for i = 0 .. iterations-1:
//     W_q = clamp(round(W / s + z_i), 0, 2^b - 1)          (block_format.h formula)
//     W_r = (W_q - z_i) * s
//     err_i = sum |W - W_r|^p                               (the tracked lp error)
//     if not (err_i < best): stop                           (early stop, keep the best)
//     best = err_i, z_best = z_i
//     e = shrink_lp(W - W_r, beta, p),  shrink_lp(x) = sign(x) relu(|x| - |x|^(p-1) / beta)
//     z_{i+1} = mean(W_q - (W - e) / s)
//     beta *= kappa
// Final codes use z_best. Because z_0 is RTN's zero and err_0 is RTN's error, HQQ's lp error
// is never above RTN's, group by group.
//
// Differences from mobiusml/hqq, all deliberate: (1) the error is tracked and the early stop
// taken per group (hqq uses the mean |W - W_r| over the whole tensor), which keeps rows
// independent (row-parallel, thread-count independent) and makes the "never worse than RTN"
// property hold per group; (2) the best zero is kept (hqq returns the zero of the iteration
// that got worse); (3) the tracked error is the lp error the algorithm minimises (hqq
// tracks L1); (4) z_0 is RTN's rounded zero (hqq starts from the unrounded -min/s).
// HQQ's zero is a float, not an integer; the packed format stores it as f32 (block_format.h).
// Defaults (HqqOptions): p = 0.7, beta = 10, kappa = 1.01, 20 iterations.
// Arithmetic: codes and W_r in f32 (the format's formula); the residual, shrink, error and
// the zero update in double, summed in column order; the new zero rounded to f32.
// |x|^(p-1) is evaluated as |x|^p / |x| (one pow per weight); shrink_lp(0) = 0.
#ifndef IMPQ_WORKER_QUANT_HQQ_H_
#define IMPQ_WORKER_QUANT_HQQ_H_

#include <cstdint>

#include "worker/quant/quantizer.h"
#include "worker/quant/rtn.h"

namespace impq::quant {

// sum_i |w_i - w_hat_i|^p over n values, in double. (p = 2 gives the squared error.)
double LpError(const float* w, const float* w_hat, int64_t n, double p);

// Lp error of the group w[0..n) quantized with `params` (codes by the format's formula).
double GroupLpError(const float* w, int64_t n, GroupParams params, int max_code, double p);

// The HQQ zero optimisation above for one group; returns {s, z_best}.
// REQUIRES: n > 0, options valid (ValidateHqqOptions).
GroupParams HqqOptimizeGroup(const float* w, int64_t n, GroupParams init, int max_code,
                             const HqqOptions& options);

// InvalidArgument unless 0 < lp_norm <= 1, beta > 0, kappa >= 1 (all finite) and
// iterations >= 1; the message names the field and value.
absl::Status ValidateHqqOptions(const HqqOptions& options);

// Stateless, thread-safe. Ignores calibration statistics.
class HqqQuantizer final : public Quantizer {
 public:
  absl::string_view name() const override { return "hqq"; }

 protected:
  absl::StatusOr<PackedTensor> QuantizeValidated(const float* w, int64_t rows, int64_t cols,
                                                 const QuantConfig& cfg,
                                                 const CalibrationStats* calib) const override;
};

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_HQQ_H_
