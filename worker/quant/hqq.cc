#include "worker/quant/hqq.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "worker/quant/row_parallel.h"

namespace impq::quant {

double LpError(const float* w, const float* w_hat, int64_t n, double p) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double a = std::fabs(static_cast<double>(w[i]) - static_cast<double>(w_hat[i]));
    if (a > 0.0) sum += std::pow(a, p);
  }
  return sum;
}

double GroupLpError(const float* w, int64_t n, GroupParams params, int max_code, double p) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float w_hat = impq_dequantize_value(
        impq_quantize_value(w[i], params.scale, params.zero, max_code), params.scale, params.zero);
    const double a = std::fabs(static_cast<double>(w[i]) - static_cast<double>(w_hat));
    if (a > 0.0) sum += std::pow(a, p);
  }
  return sum;
}

GroupParams HqqOptimizeGroup(const float* w, int64_t n, GroupParams init, int max_code,
                             const HqqOptions& options) {
  const double p = options.lp_norm;
  const double s = init.scale;
  double beta = options.beta;
  float z = init.zero;
  GroupParams best = init;
  double best_err = std::numeric_limits<double>::infinity();
  for (int it = 0; it < options.iterations; ++it) {
    // One pass evaluates err(z) and, in the same sweep, the half-quadratic zero update.
    // |x|^(p-1) is computed as |x|^p / |x| (one pow per weight); x == 0 shrinks to 0.
    double err = 0.0, zsum = 0.0;
    for (int64_t k = 0; k < n; ++k) {
      const int q = impq_quantize_value(w[k], init.scale, z, max_code);
      const double wk = w[k];
      const double d = wk - static_cast<double>(impq_dequantize_value(q, init.scale, z));
      const double a = std::fabs(d);
      double e = 0.0;
      if (a > 0.0) {
        const double ap = std::pow(a, p);
        err += ap;
        e = std::copysign(std::max(a - ap / a / beta, 0.0), d);
      }
      zsum += static_cast<double>(q) - (wk - e) / s;
    }
    if (!(err < best_err)) break;
    best_err = err;
    best.zero = z;
    z = static_cast<float>(zsum / static_cast<double>(n));
    beta *= options.kappa;
  }
  return best;
}

absl::Status ValidateHqqOptions(const HqqOptions& o) {
  if (!(o.lp_norm > 0.0 && o.lp_norm <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("HQQ lp_norm = ", o.lp_norm, " must be in (0, 1]"));
  }
  if (!(o.beta > 0.0) || !std::isfinite(o.beta)) {
    return absl::InvalidArgumentError(
        absl::StrCat("HQQ beta = ", o.beta, " must be finite and > 0"));
  }
  if (!(o.kappa >= 1.0) || !std::isfinite(o.kappa)) {
    return absl::InvalidArgumentError(
        absl::StrCat("HQQ kappa = ", o.kappa, " must be finite and >= 1"));
  }
  if (o.iterations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("HQQ iterations = ", o.iterations, " must be >= 1"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedTensor> HqqQuantizer::QuantizeValidated(
    const float* w, int64_t rows, int64_t cols, const QuantConfig& cfg,
    const CalibrationStats* /*calib*/) const {
  absl::Status s = ValidateHqqOptions(cfg.hqq);
  if (!s.ok()) return s;
  const int max_code = impq_block_format(cfg.bits).max_code;
  const int64_t g_size = cfg.group_size;
  PackedTensor out = AllocatePacked(rows, cols, cfg.bits, g_size);
  const int64_t groups = out.groups_per_row(), rb = out.row_code_bytes();
  ForEachRowRange(cfg.pool, rows, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> codes(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = w + r * cols;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c0 = g * g_size, n = std::min(cols, c0 + g_size) - c0;
        const auto [lo, hi] = std::minmax_element(row + c0, row + c0 + n);
        const GroupParams init = MinMaxGroupParams(*lo, *hi, max_code);
        const GroupParams p = HqqOptimizeGroup(row + c0, n, init, max_code, cfg.hqq);
        out.scales[r * groups + g] = p.scale;
        out.zeros[r * groups + g] = p.zero;
        QuantizeGroup(row + c0, n, p, max_code, codes.data() + c0);
      }
      PackRow(codes, cfg.bits, out.codes.data() + r * rb);
    }
  });
  return out;
}

}  // namespace impq::quant
