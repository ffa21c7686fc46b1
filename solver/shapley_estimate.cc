#include "solver/shapley_estimate.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace impq::solver {

double ShapleyEstimate::MaxStandardError() const {
  if (num_samples < 2) return std::numeric_limits<double>::infinity();
  double max_se = 0.0;
  for (double se : standard_error) max_se = std::max(max_se, se);
  return max_se;
}

absl::StatusOr<ShapleyEstimate> AggregateMarginals(std::span<const std::vector<double>> marginals,
                                                   bool antithetic) {
  const size_t m = marginals.size();
  if (m == 0) return absl::InvalidArgumentError("no marginal vectors to aggregate");
  if (antithetic && m % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("antithetic aggregation needs whole pairs, got ", m, " permutations"));
  }
  const size_t n = marginals[0].size();
  for (size_t k = 0; k < m; ++k) {
    if (marginals[k].size() != n) {
      return absl::InvalidArgumentError(absl::StrCat("marginal vector ", k, " has ",
                                                     marginals[k].size(), " entries, expected ",
                                                     n));
    }
  }
  ShapleyEstimate est;
  est.antithetic = antithetic;
  est.num_permutations = static_cast<int64_t>(m);
  const size_t group = antithetic ? 2 : 1;
  const size_t samples = m / group;
  est.num_samples = static_cast<int64_t>(samples);
  est.phi.assign(n, 0.0);
  est.standard_error.assign(n, 0.0);
  // Two passes (mean, then centred sum of squares) in a fixed order: stable and deterministic.
  for (size_t i = 0; i < n; ++i) {
    double sum = 0.0;
    for (size_t s = 0; s < samples; ++s) {
      double d = 0.0;
      for (size_t g = 0; g < group; ++g) d += marginals[s * group + g][i];
      sum += d / static_cast<double>(group);
    }
    const double mean = sum / static_cast<double>(samples);
    est.phi[i] = mean;
    if (samples >= 2) {
      double ss = 0.0;
      for (size_t s = 0; s < samples; ++s) {
        double d = 0.0;
        for (size_t g = 0; g < group; ++g) d += marginals[s * group + g][i];
        const double dev = d / static_cast<double>(group) - mean;
        ss += dev * dev;
      }
      const double var = ss / static_cast<double>(samples - 1);
      est.standard_error[i] = std::sqrt(var / static_cast<double>(samples));
    }
  }
  return est;
}

}  // namespace impq::solver
