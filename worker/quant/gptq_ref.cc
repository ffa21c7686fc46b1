// Scalar reference of GPTQ (gptq.h): column by column, explicit inverse Hessian updated by
// the OBQ recurrence, no lazy blocks, no Cholesky, no BLAS, no permutation of storage
// (act-order only changes the visiting order).
#include <cmath>
#include <vector>

#include "worker/quant/reference.h"

namespace impq::quant {
namespace {

// Inverse of a symmetric positive-definite matrix by Gauss-Jordan elimination (no pivoting
// needed for SPD input). a is [n][n] row-major and is destroyed.
std::vector<double> InvertSpd(std::vector<double> a, int64_t n) {
  std::vector<double> inv(n * n, 0.0);
  for (int64_t i = 0; i < n; ++i) inv[i * n + i] = 1.0;
  for (int64_t k = 0; k < n; ++k) {
    const double pivot = a[k * n + k];
    for (int64_t j = 0; j < n; ++j) {
      a[k * n + j] /= pivot;
      inv[k * n + j] /= pivot;
    }
    for (int64_t i = 0; i < n; ++i) {
      if (i == k) continue;
      const double f = a[i * n + k];
      if (f == 0.0) continue;
      for (int64_t j = 0; j < n; ++j) {
        a[i * n + j] -= f * a[k * n + j];
        inv[i * n + j] -= f * inv[k * n + j];
      }
    }
  }
  return inv;
}

}  // namespace

RefQuantized GptqQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                             int64_t group_size, const std::vector<double>& hessian,
                             const GptqOptions& options) {
  const int max_code = (1 << bits) - 1;
  const int64_t groups = (cols + group_size - 1) / group_size;
  RefQuantized out;
  out.rows = rows;
  out.cols = cols;
  out.bits = bits;
  out.group_size = group_size;
  out.codes.assign(rows * cols, 0);
  out.scales.assign(rows * groups, 1.0f);
  out.zeros.assign(rows * groups, 0.0f);

  std::vector<double> h = hessian;
  std::vector<double> wd(w, w + rows * cols);
  for (int64_t i = 0; i < cols; ++i) {  // dead inputs
    if (h[i * cols + i] == 0.0) {
      h[i * cols + i] = 1.0;
      for (int64_t r = 0; r < rows; ++r) wd[r * cols + i] = 0.0;
    }
  }
  // Visiting order: by descending diag(H) (ties: lower index) with act-order, else 0..n-1.
  std::vector<int64_t> order;
  std::vector<bool> taken(cols, false);
  for (int64_t t = 0; t < cols; ++t) {
    int64_t pick = -1;
    for (int64_t j = 0; j < cols; ++j) {
      if (taken[j]) continue;
      if (!options.act_order) {
        pick = j;
        break;
      }
      if (pick < 0 || h[j * cols + j] > h[pick * cols + pick]) pick = j;
    }
    taken[pick] = true;
    order.push_back(pick);
  }
  // Static groups with act-order: parameters from W after the dead-input fix.
  auto group_params = [&](int64_t r, int64_t g) {
    double lo = wd[r * cols + g * group_size], hi = lo;
    for (int64_t k = g * group_size; k < cols && k < (g + 1) * group_size; ++k) {
      lo = wd[r * cols + k] < lo ? wd[r * cols + k] : lo;
      hi = wd[r * cols + k] > hi ? wd[r * cols + k] : hi;
    }
    const GroupParams p = MinMaxParamsRef(lo, hi, max_code);
    out.scales[r * groups + g] = p.scale;
    out.zeros[r * groups + g] = p.zero;
  };
  if (options.act_order) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t g = 0; g < groups; ++g) group_params(r, g);
    }
  }
  double mean_diag = 0.0;
  for (int64_t i = 0; i < cols; ++i) mean_diag += h[i * cols + i];
  mean_diag /= static_cast<double>(cols);
  for (int64_t i = 0; i < cols; ++i) h[i * cols + i] += options.damp_percent * mean_diag;
  std::vector<double> hinv = InvertSpd(h, cols);

  std::vector<double> err(rows);
  for (int64_t t = 0; t < cols; ++t) {
    const int64_t j = order[t];
    const int64_t g = j / group_size;
    if (!options.act_order && j % group_size == 0) {
      for (int64_t r = 0; r < rows; ++r) group_params(r, g);  // error-updated weights
    }
    for (int64_t r = 0; r < rows; ++r) {
      const float s = out.scales[r * groups + g], z = out.zeros[r * groups + g];
      const int q = QuantizeValueRef(static_cast<float>(wd[r * cols + j]), s, z, max_code);
      out.codes[r * cols + j] = static_cast<uint8_t>(q);
      err[r] = wd[r * cols + j] - static_cast<double>((static_cast<float>(q) - z) * s);
    }
    const double d = hinv[j * cols + j];
    for (int64_t u = t + 1; u < cols; ++u) {
      const int64_t k = order[u];
      const double f = hinv[j * cols + k] / d;
      for (int64_t r = 0; r < rows; ++r) wd[r * cols + k] -= err[r] * f;
    }
    for (int64_t u = t + 1; u < cols; ++u) {
      const int64_t a = order[u];
      for (int64_t v = t + 1; v < cols; ++v) {
        const int64_t b = order[v];
        hinv[a * cols + b] -= hinv[a * cols + j] * hinv[j * cols + b] / d;
      }
    }
  }
  return out;
}

}  // namespace impq::quant
