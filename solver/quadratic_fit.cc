// Weighted ridge least squares of a second-order model of v(q) (see quadratic_fit.h).
#include "solver/quadratic_fit.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/linalg.h"

namespace impq::solver {

absl::StatusOr<QuadraticObjective> FitQuadraticSurrogate(
    const InteractionInput& input, double ridge, const std::function<double(int)>& row_weight,
    const std::string& label, const std::string& singular_hint) {
  return FitQuadraticSurrogate(
      input, ridge, [&](const Coalition& q) { return row_weight(CoalitionSize(q)); }, label,
      singular_hint);
}

absl::StatusOr<QuadraticObjective> FitQuadraticSurrogate(
    const InteractionInput& input, double ridge,
    const std::function<double(const Coalition&)>& row_weight, const std::string& label,
    const std::string& singular_hint) {
  const int n = input.num_players;
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat(label, ": ", n, " players"));
  // Feature index: 0 = intercept, 1 + i = q_i, pair(i<j) = 1 + n + offset(i) + (j - i - 1).
  const int p = 1 + n + n * (n - 1) / 2;
  std::vector<int> pair_base(n, 0);
  for (int i = 0, base = 1 + n; i < n; ++i) {
    pair_base[i] = base;
    base += n - 1 - i;
  }
  std::vector<double> xtx(static_cast<size_t>(p) * p, 0.0);
  std::vector<double> xty(p, 0.0);
  absl::flat_hash_set<Coalition> seen;
  int64_t rows = 0;
  std::vector<int> ones, features;
  for (const Observation& obs : input.observations) {
    RETURN_IF_ERROR(ValidateCoalition(obs.coalition, n));
    if (!std::isfinite(obs.loss)) {
      return absl::InvalidArgumentError(absl::StrCat("loss of coalition ",
                                                     CoalitionToString(obs.coalition),
                                                     " is not finite"));
    }
    if (!seen.insert(obs.coalition).second) continue;
    ++rows;
    // The row is binary: accumulate only its nonzero features (1 + k + k(k-1)/2 of them).
    ones.clear();
    for (int i = 0; i < n; ++i) {
      if (obs.coalition[i] != 0) ones.push_back(i);
    }
    features.clear();
    features.push_back(0);
    for (int i : ones) features.push_back(1 + i);
    for (size_t u = 0; u < ones.size(); ++u) {
      for (size_t w = u + 1; w < ones.size(); ++w) {
        features.push_back(pair_base[ones[u]] + (ones[w] - ones[u] - 1));
      }
    }
    const double weight = row_weight(obs.coalition);
    for (size_t u = 0; u < features.size(); ++u) {
      xty[features[u]] += weight * obs.loss;
      for (size_t w = 0; w <= u; ++w) {  // features ascending: (u, w) is in the lower triangle
        xtx[static_cast<size_t>(features[u]) * p + features[w]] += weight;
      }
    }
  }
  if (rows == 0) return absl::InvalidArgumentError(absl::StrCat(label, ": no observations to fit"));
  double trace = 0.0;
  for (int k = 0; k < p; ++k) trace += xtx[static_cast<size_t>(k) * p + k];
  const double lambda = ridge * trace / p;
  for (int k = 1; k < p; ++k) xtx[static_cast<size_t>(k) * p + k] += lambda;
  if (!CholeskyFactor(xtx, p)) {
    return absl::FailedPreconditionError(absl::StrCat(
        label, ": normal equations singular (", rows, " distinct coalitions for ", p,
        " coefficients, ridge ", ridge, ")", singular_hint));
  }
  CholeskySolve(xtx, p, xty);

  QuadraticObjective obj;
  obj.estimator = label;
  obj.num_players = n;
  obj.constant = xty[0];
  obj.linear.assign(xty.begin() + 1, xty.begin() + 1 + n);
  obj.quadratic.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const double half = 0.5 * xty[pair_base[i] + (j - i - 1)];
      obj.quadratic[static_cast<size_t>(i) * n + j] = half;
      obj.quadratic[static_cast<size_t>(j) * n + i] = half;
    }
  }
  RETURN_IF_ERROR(ValidateObjective(obj));
  return obj;
}

}  // namespace impq::solver
