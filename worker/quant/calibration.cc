#include "worker/quant/calibration.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace impq::quant {

CalibrationStats::CalibrationStats(int64_t in_features)
    : in_(in_features), xtx_(static_cast<size_t>(in_features * in_features), 0.0) {
  IMPQ_CHECK(in_features > 0) << "in_features = " << in_features;
}

absl::Status CalibrationStats::Accumulate(const float* x, int64_t n, int64_t in) {
  if (in != in_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "calibration activations have ", in, " features, expected ", in_));
  }
  if (n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("calibration row count ", n, " < 0"));
  }
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t c = 0; c < in; ++c) {
      if (!std::isfinite(x[r * in + c])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "calibration activation at row ", r, " column ", c, " is ", x[r * in + c]));
      }
    }
  }
  // Convert in chunks so the double copy stays small; dsyrk accumulates the upper triangle
  // of X^T X (row-major upper == column-major lower, so ask for CblasUpper in RowMajor).
  constexpr int64_t kChunk = 256;
  std::vector<double> xd(static_cast<size_t>(std::min(n, kChunk) * in));
  for (int64_t r0 = 0; r0 < n; r0 += kChunk) {
    const int64_t m = std::min(kChunk, n - r0);
    for (int64_t i = 0; i < m * in; ++i) xd[i] = x[r0 * in + i];
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(in), static_cast<int>(m),
                1.0, xd.data(), static_cast<int>(in), 1.0, xtx_.data(), static_cast<int>(in));
  }
  n_ += n;
  return absl::OkStatus();
}

absl::Status CalibrationStats::Merge(const CalibrationStats& other) {
  if (other.in_ != in_) {
    return absl::InvalidArgumentError(absl::StrCat("cannot merge calibration stats with ",
                                                   other.in_, " features into ", in_));
  }
  for (size_t i = 0; i < xtx_.size(); ++i) xtx_[i] += other.xtx_[i];
  n_ += other.n_;
  return absl::OkStatus();
}

std::vector<double> CalibrationStats::Hessian() const {
  IMPQ_CHECK(n_ > 0) << "Hessian() with no samples";
  std::vector<double> h(xtx_.size());
  const double f = 2.0 / static_cast<double>(n_);
  for (int64_t i = 0; i < in_; ++i) {
    for (int64_t j = i; j < in_; ++j) {
      const double v = f * xtx_[i * in_ + j];
      h[i * in_ + j] = v;
      h[j * in_ + i] = v;
    }
  }
  return h;
}

}  // namespace impq::quant
