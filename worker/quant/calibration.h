// CalibrationStats: the second-order statistics GPTQ needs for one linear layer.
//
// GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers", §2/§3) minimises ||X W^T - X W_hat^T||^2 over the calibration
// inputs X[N][in] of the layer; its Hessian is H = 2/N * sum_n x_n x_n^T (in x in). This class
// accumulates sum_n x_n x_n^T in double precision (dsyrk) and the sample count N, so H can be
// formed at any time and batches of any size give the same H up to double rounding.
//
// Thread-compatible: concurrent const calls are fine; Accumulate/Merge need external locking.
// To accumulate from several threads, give each its own CalibrationStats and Merge them.
#ifndef IMPQ_WORKER_QUANT_CALIBRATION_H_
#define IMPQ_WORKER_QUANT_CALIBRATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace impq::quant {

class CalibrationStats {
 public:
  // REQUIRES: in_features > 0.
  explicit CalibrationStats(int64_t in_features);

  // Adds the activation rows X[n][in] (row-major floats). InvalidArgument when in differs
  // from in_features(), n < 0, or any value is NaN/Inf (names row and column). n == 0 is a
  // no-op.
  absl::Status Accumulate(const float* x, int64_t n, int64_t in);

  // Adds another accumulator's samples. InvalidArgument when in_features differ.
  absl::Status Merge(const CalibrationStats& other);

  int64_t in_features() const { return in_; }
  int64_t num_samples() const { return n_; }

  // H = 2/N * sum x x^T as a full symmetric row-major [in][in] matrix of doubles.
  // REQUIRES: num_samples() > 0.
  std::vector<double> Hessian() const;

 private:
  int64_t in_;
  int64_t n_ = 0;
  std::vector<double> xtx_;  // sum x x^T, upper triangle (row-major i <= j) is authoritative
};

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_CALIBRATION_H_
