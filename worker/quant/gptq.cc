#include "worker/quant/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/quant/row_parallel.h"
#include "worker/quant/rtn.h"

// LAPACK (exported by Debian's OpenBLAS). The trailing size_t is the Fortran hidden length of
// the character argument; passing it is harmless for C implementations and required for
// gfortran-compiled ones.
extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info, size_t);
}

namespace impq::quant {
namespace {

// Overwrites the row-major symmetric positive-definite `h` ([n][n]) with U, the upper
// Cholesky factor of h^-1 (h^-1 = U^T U), in the upper triangle; the strict lower triangle
// is zeroed. A row-major upper triangle is a column-major lower one, so every LAPACK call
// uses 'L': potrf gives h = L L^T (row-major: L^T above the diagonal), potri turns that
// into h^-1 (same triangle), and potrf again gives h^-1 = L2 L2^T, i.e. U = L2^T.
absl::Status UpperCholeskyOfInverse(std::vector<double>& h, int n) {
  int info = 0;
  const char lower = 'L';
  dpotrf_(&lower, &n, h.data(), &n, &info, 1);
  if (info == 0) dpotri_(&lower, &n, h.data(), &n, &info, 1);
  if (info == 0) dpotrf_(&lower, &n, h.data(), &n, &info, 1);
  if (info != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GPTQ: damped Hessian is not positive definite (LAPACK info = ", info,
        "); increase damp_percent"));
  }
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < i; ++j) h[static_cast<size_t>(i) * n + j] = 0.0;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateGptqOptions(const GptqOptions& o) {
  if (!(o.damp_percent >= 0.0) || !std::isfinite(o.damp_percent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ damp_percent = ", o.damp_percent, " must be finite and >= 0"));
  }
  if (o.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ block_size = ", o.block_size, " must be > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedTensor> GptqQuantizeWithHessian(const float* w, int64_t rows, int64_t cols,
                                                     std::vector<double> h,
                                                     const QuantConfig& cfg) {
  absl::Status st = ValidateGptqOptions(cfg.gptq);
  if (!st.ok()) return st;
  if (static_cast<int64_t>(h.size()) != cols * cols) {
    return absl::InvalidArgumentError(absl::StrCat("GPTQ: Hessian has ", h.size(),
                                                   " entries, expected cols^2 = ", cols * cols));
  }
  for (int64_t i = 0; i < cols * cols; ++i) {
    if (!std::isfinite(h[i])) {
      return absl::InvalidArgumentError(absl::StrCat("GPTQ: Hessian entry (", i / cols, ", ",
                                                     i % cols, ") is ", h[i]));
    }
  }
  const int max_code = impq_block_format(cfg.bits).max_code;
  const int64_t g_size = cfg.group_size;
  const bool act_order = cfg.gptq.act_order;
  PackedTensor out = AllocatePacked(rows, cols, cfg.bits, g_size);
  const int64_t groups = out.groups_per_row();

  // Step 1: dead inputs.
  std::vector<double> wd(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) wd[i] = w[i];
  for (int64_t i = 0; i < cols; ++i) {
    if (h[i * cols + i] == 0.0) {
      h[i * cols + i] = 1.0;
      for (int64_t r = 0; r < rows; ++r) wd[r * cols + i] = 0.0;
    }
  }

  // Step 2: static groups (act-order only), from W after step 1, in original column order.
  if (act_order) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const double* b = wd.data() + r * cols + g * g_size;
        const auto [lo, hi] = std::minmax_element(b, b + (std::min(cols, (g + 1) * g_size) -
                                                          g * g_size));
        const GroupParams p = MinMaxGroupParams(*lo, *hi, max_code);
        out.scales[r * groups + g] = p.scale;
        out.zeros[r * groups + g] = p.zero;
      }
    }
  }

  // Step 3: permutation (identity without act-order); perm[t] = original column at t.
  std::vector<int64_t> perm(static_cast<size_t>(cols));
  std::iota(perm.begin(), perm.end(), 0);
  if (act_order) {
    std::stable_sort(perm.begin(), perm.end(), [&](int64_t a, int64_t b) {
      return h[a * cols + a] > h[b * cols + b];
    });
    std::vector<double> hp(h.size()), wp(wd.size());
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) hp[i * cols + j] = h[perm[i] * cols + perm[j]];
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t t = 0; t < cols; ++t) wp[r * cols + t] = wd[r * cols + perm[t]];
    }
    h.swap(hp);
    wd.swap(wp);
  }

  // Step 4: dampening.
  double mean_diag = 0.0;
  for (int64_t i = 0; i < cols; ++i) mean_diag += h[i * cols + i];
  mean_diag /= static_cast<double>(cols);
  const double damp = cfg.gptq.damp_percent * mean_diag;
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] += damp;

  // Step 5: U (stored in h).
  st = UpperCholeskyOfInverse(h, static_cast<int>(cols));
  if (!st.ok()) return st;
  const double* u = h.data();

  // Step 6: the sweep. qp holds codes in permuted column order.
  std::vector<uint8_t> qp(static_cast<size_t>(rows * cols));
  const int64_t bmax = cfg.gptq.block_size;
  std::vector<double> err(static_cast<size_t>(rows * bmax));
  for (int64_t i1 = 0; i1 < cols;) {
    int64_t i2 = std::min(i1 + bmax, cols);
    if (!act_order) {
      // End the block before a group that starts inside it but would end beyond it, so that
      // every group's parameters are computed from fully updated weights (see header).
      for (int64_t j = (i1 / g_size + 1) * g_size; j < i2; j += g_size) {
        if (std::min(j + g_size, cols) > i2) {
          i2 = j;
          break;
        }
      }
    }
    ForEachRowRange(cfg.pool, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        double* wr = wd.data() + r * cols;
        double* er = err.data() + r * bmax;
        uint8_t* qr = qp.data() + r * cols;
        for (int64_t i = i1; i < i2; ++i) {
          int64_t g;
          if (act_order) {
            g = perm[i] / g_size;
          } else {
            g = i / g_size;
            if (i % g_size == 0) {
              const auto [lo, hi] = std::minmax_element(wr + i, wr + std::min(cols, i + g_size));
              const GroupParams p = MinMaxGroupParams(*lo, *hi, max_code);
              out.scales[r * groups + g] = p.scale;
              out.zeros[r * groups + g] = p.zero;
            }
          }
          const float scale = out.scales[r * groups + g], zero = out.zeros[r * groups + g];
          const int q = impq_quantize_value(static_cast<float>(wr[i]), scale, zero, max_code);
          qr[i] = static_cast<uint8_t>(q);
          const double e = (wr[i] - impq_dequantize_value(q, scale, zero)) / u[i * cols + i];
          er[i - i1] = e;
          const double* ui = u + i * cols;
          for (int64_t j = i + 1; j < i2; ++j) wr[j] -= e * ui[j];
        }
      }
    });
    if (i2 < cols) {
      // Lazy batch update: W[:, i2:] -= Err[:, 0:i2-i1] * U[i1:i2, i2:].
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
                  static_cast<int>(cols - i2), static_cast<int>(i2 - i1), -1.0, err.data(),
                  static_cast<int>(bmax), u + i1 * cols + i2, static_cast<int>(cols), 1.0,
                  wd.data() + i2, static_cast<int>(cols));
    }
    i1 = i2;
  }

  // Step 7: un-permute and pack.
  const int64_t rb = out.row_code_bytes();
  std::vector<uint8_t> row_codes(static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < cols; ++t) row_codes[perm[t]] = qp[r * cols + t];
    PackRow(row_codes, cfg.bits, out.codes.data() + r * rb);
  }
  // Finite input and a positive-definite Hessian keep every update finite; an overflow
  // (weights near FLT_MAX) would surface here instead of as a corrupt tensor.
  st = ValidatePacked(out);
  if (!st.ok()) {
    return absl::InternalError(absl::StrCat("GPTQ produced an invalid tensor: ", st.message()));
  }
  return out;
}

absl::StatusOr<PackedTensor> GptqQuantizer::QuantizeValidated(
    const float* w, int64_t rows, int64_t cols, const QuantConfig& cfg,
    const CalibrationStats* calib) const {
  if (calib == nullptr) {
    return absl::InvalidArgumentError("GPTQ needs calibration activations (--calib)");
  }
  if (calib->in_features() != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("GPTQ: calibration activations have ", calib->in_features(),
                     " features, but the weight has ", cols, " input columns"));
  }
  if (calib->num_samples() == 0) {
    return absl::InvalidArgumentError(
        "GPTQ needs calibration activations (--calib): the statistics hold 0 samples");
  }
  return GptqQuantizeWithHessian(w, rows, cols, calib->Hessian(), cfg);
}

}  // namespace impq::quant
