// GPTQ (E. Frantar, S. Ashkboos, T. Hoefler, D. Alistarh, "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers", ICLR 2023, Algorithm 1; reference
// code IST-DASLab/gptq, gptq.py `fasterquant`).
//
// Quantizes the columns of W one at a time and spreads each column's rounding error over
// the columns not yet quantized, weighted by the inverse Hessian H^-1 of the layer's
// reconstruction loss ||X W^T - X W_hat^T||^2 (H = 2/N X^T X, calibration.h). Steps:
//   1. Dead inputs: where H_ii == 0, set H_ii = 1 and W[:, i] = 0 (as the reference).
//   2. Static group parameters when act_order (below), from this W.
//   3. act_order: permute columns (and H) by descending diag(H) (ties: lower index first).
//   4. Dampening: H += lambda I, lambda = damp_percent (default 1%) * mean(diag(H)).
//   5. U = upper Cholesky factor of H^-1 (H^-1 = U^T U), in double (LAPACK dpotrf/dpotri).
//   6. Sweep columns i = 0..in-1 in blocks of B = block_size (default 128) ("lazy batch"):
//        q_i = quantize(W[:, i]);  err = (W[:, i] - w_hat_i) / U_ii
//        W[:, j] -= err * U_ij for the remaining columns j of the block,
//      and after each block one BLAS update W[:, i2:] -= Err_block * U[block, i2:] (dgemm).
//   7. Un-permute the codes.
// Arithmetic: W, H, U and all updates in double; each column is rounded to f32 before it
// is coded with the format's formula (block_format.h).
//
// Group parameters (scale/zero, RTN min/max rule of rtn.h, integer zero):
//   * act_order == false: computed when the sweep enters a group (at column g*G), from the
//     group's CURRENT, error-updated weights: all columns before g*G have been quantized and
//     their updates applied. (The reference reads the global W there, which misses updates
//     from earlier columns of the same lazy block when G < B; we do not: block boundaries
//     are chosen so that a group starting inside a block also ends inside it, and B only
//     changes the order of floating-point operations, never the algorithm.)
//   * act_order == true: "static groups" semantics of the reference (static_groups=True):
//     parameters of every group of G ORIGINAL consecutive columns are computed before the
//     sweep from W after step 1; each column, wherever act-order visits it, is coded with its
//     original group's parameters. The packed output therefore keeps the plain contiguous
//     group layout (no g_idx). The reference's other act-order mode (groups formed in
//     permuted order, g_idx) is not supported by the format.
// Difference from the reference quantizer: the min/max range is not widened to include 0
// (the reference uses min(x.min, 0), max(x.max, 0)); we use the same RTN rule everywhere.
#ifndef IMPQ_WORKER_QUANT_GPTQ_H_
#define IMPQ_WORKER_QUANT_GPTQ_H_

#include <cstdint>
#include <vector>

#include "worker/quant/quantizer.h"

namespace impq::quant {

// InvalidArgument unless damp_percent is finite and >= 0 and block_size > 0.
absl::Status ValidateGptqOptions(const GptqOptions& options);

// GPTQ from an explicit Hessian (row-major [cols][cols], symmetric; copied). The Quantizer
// below forms it from CalibrationStats. FailedPrecondition when the damped Hessian is not
// positive definite; InvalidArgument for bad options or a Hessian of the wrong size or with
// a non-finite entry; Internal if the sweep overflowed (result failed ValidatePacked).
// REQUIRES: ValidateQuantizeInput(w, rows, cols, cfg).ok().
absl::StatusOr<PackedTensor> GptqQuantizeWithHessian(const float* w, int64_t rows, int64_t cols,
                                                     std::vector<double> hessian,
                                                     const QuantConfig& cfg);

// Stateless, thread-safe. Needs `calib` with in_features == cols and at least one sample;
// otherwise InvalidArgument ("GPTQ needs calibration activations (--calib)").
class GptqQuantizer final : public Quantizer {
 public:
  absl::string_view name() const override { return "gptq"; }

 protected:
  absl::StatusOr<PackedTensor> QuantizeValidated(const float* w, int64_t rows, int64_t cols,
                                                 const QuantConfig& cfg,
                                                 const CalibrationStats* calib) const override;
};

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_GPTQ_H_
