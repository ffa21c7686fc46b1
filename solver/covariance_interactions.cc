// CovarianceInteractionEstimator (IMPQ §3.3).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/interactions.h"

namespace impq::solver {

InteractionInput InputFromSpqe(const SpqeResult& spqe, int num_players) {
  InteractionInput input;
  input.num_players = num_players;
  input.marginals = spqe.marginals;
  input.observations = spqe.observations;
  return input;
}

InteractionEstimator::~InteractionEstimator() = default;

CovarianceInteractionEstimator::CovarianceInteractionEstimator(double alpha) : alpha_(alpha) {}

absl::StatusOr<QuadraticObjective> CovarianceInteractionEstimator::Estimate(
    const InteractionInput& input) const {
  const int n = input.num_players;
  const size_t m = input.marginals.size();
  if (!(alpha_ >= 0.0 && alpha_ <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("covariance alpha is ", alpha_,
                                                   ", expected in [0, 1]"));
  }
  if (n < 1 || m < 2) {
    return absl::InvalidArgumentError(absl::StrCat("covariance estimator needs >= 2 marginal ",
                                                   "vectors of >= 1 player, got ", m, " of ", n));
  }
  for (size_t k = 0; k < m; ++k) {
    if (static_cast<int64_t>(input.marginals[k].size()) != n) {
      return absl::InvalidArgumentError(absl::StrCat("marginal vector ", k, " has ",
                                                     input.marginals[k].size(),
                                                     " entries, expected ", n));
    }
  }
  std::vector<double> phi(n, 0.0);
  for (size_t k = 0; k < m; ++k) {
    for (int i = 0; i < n; ++i) phi[i] += input.marginals[k][i];
  }
  for (int i = 0; i < n; ++i) phi[i] /= static_cast<double>(m);

  QuadraticObjective obj;
  obj.estimator = name();
  obj.num_players = n;
  obj.quadratic.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i; j < n; ++j) {
      double s = 0.0;
      for (size_t k = 0; k < m; ++k) {
        s += (input.marginals[k][i] - phi[i]) * (input.marginals[k][j] - phi[j]);
      }
      const double c = s / static_cast<double>(m - 1);
      const double kij = i == j ? c : (1.0 - alpha_) * c;  // K = (1-α)C + α·diag(C)
      obj.quadratic[static_cast<size_t>(i) * n + j] = kij;
      obj.quadratic[static_cast<size_t>(j) * n + i] = kij;
    }
  }
  obj.linear.assign(n, 0.0);
  for (int i = 0; i < n; ++i) {
    double off = 0.0;
    for (int j = 0; j < n; ++j) {
      if (j != i) off += obj.K(i, j);
    }
    obj.linear[i] = phi[i] - off;  // a_i = φ_i − Σ_{j≠i} K_ij
  }
  RETURN_IF_ERROR(ValidateObjective(obj));
  return obj;
}

}  // namespace impq::solver
