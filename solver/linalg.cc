#include "solver/linalg.h"

#include <algorithm>
#include <cmath>

namespace impq::solver {

bool CholeskyFactor(std::span<double> a, int n) {
  for (int j = 0; j < n; ++j) {
    double d = a[static_cast<size_t>(j) * n + j];
    for (int k = 0; k < j; ++k) d -= a[static_cast<size_t>(j) * n + k] * a[static_cast<size_t>(j) * n + k];
    if (!(d > 0.0)) return false;
    const double ljj = std::sqrt(d);
    a[static_cast<size_t>(j) * n + j] = ljj;
    for (int i = j + 1; i < n; ++i) {
      double s = a[static_cast<size_t>(i) * n + j];
      for (int k = 0; k < j; ++k) s -= a[static_cast<size_t>(i) * n + k] * a[static_cast<size_t>(j) * n + k];
      a[static_cast<size_t>(i) * n + j] = s / ljj;
    }
  }
  return true;
}

void CholeskySolve(std::span<const double> l, int n, std::span<double> b) {
  for (int i = 0; i < n; ++i) {
    double s = b[i];
    for (int k = 0; k < i; ++k) s -= l[static_cast<size_t>(i) * n + k] * b[k];
    b[i] = s / l[static_cast<size_t>(i) * n + i];
  }
  for (int i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int k = i + 1; k < n; ++k) s -= l[static_cast<size_t>(k) * n + i] * b[k];
    b[i] = s / l[static_cast<size_t>(i) * n + i];
  }
}

namespace {

bool IsPositiveDefiniteShifted(std::span<const double> a, int n, double t,
                               std::vector<double>& work) {
  work.assign(a.begin(), a.end());
  for (int i = 0; i < n; ++i) work[static_cast<size_t>(i) * n + i] += t;
  return CholeskyFactor(work, n);
}

}  // namespace

double PositiveDefiniteShift(std::span<const double> a, int n) {
  // Gershgorin: every eigenvalue lies in [min_i(a_ii - r_i), max_i(a_ii + r_i)].
  double lo_eig = 0.0, scale = 0.0;
  for (int i = 0; i < n; ++i) {
    double r = 0.0;
    for (int j = 0; j < n; ++j) {
      if (j != i) r += std::fabs(a[static_cast<size_t>(i) * n + j]);
    }
    const double d = a[static_cast<size_t>(i) * n + i];
    lo_eig = i == 0 ? d - r : std::min(lo_eig, d - r);
    scale = std::max(scale, std::fabs(d) + r);
  }
  if (scale == 0.0) return 1e-300;  // zero matrix: any positive shift
  const double eps = 1e-9 * scale;
  std::vector<double> work;
  double hi = -lo_eig + eps;  // certainly PD
  double lo = -scale - eps;   // A + lo·I has all eigenvalues <= 0: not PD
  if (!IsPositiveDefiniteShifted(a, n, hi, work)) hi += scale;  // rounding safety
  for (int iter = 0; iter < 200 && hi - lo > eps; ++iter) {
    const double mid = 0.5 * (lo + hi);
    if (IsPositiveDefiniteShifted(a, n, mid, work)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi + eps;  // margin so that A + t·I stays PD under rounding in later products
}

}  // namespace impq::solver
