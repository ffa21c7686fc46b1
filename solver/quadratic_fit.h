// The least-squares core shared by the surrogate interaction estimators.
//
// Fits v(q) ≈ c + Σ_i a_i q_i + Σ_{i<j} b_ij q_i q_j by weighted ridge least squares over the
// *distinct* observed coalitions (a repeated coalition counts once), each row weighted by
// row_weight(q) (>= 0; the size-only overload weighs by |q|). The ridge is λ = ridge · trace(XᵀWX) / p on every coefficient except the
// intercept, so it is scale-free. The normal equations are solved by Cholesky in double.
// The returned objective has linear = a, K_ij = K_ji = b_ij / 2, constant = c, estimator =
// `label`.
#ifndef IMPQ_SOLVER_QUADRATIC_FIT_H_
#define IMPQ_SOLVER_QUADRATIC_FIT_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "solver/interactions.h"

namespace impq::solver {

// InvalidArgument: bad coalitions, non-finite losses, no observation, n < 1.
// FailedPrecondition: singular normal equations (too few distinct coalitions and ridge 0);
// the message names `label`, the counts and `singular_hint`.
absl::StatusOr<QuadraticObjective> FitQuadraticSurrogate(
    const InteractionInput& input, double ridge,
    const std::function<double(const Coalition&)>& row_weight, const std::string& label,
    const std::string& singular_hint);
absl::StatusOr<QuadraticObjective> FitQuadraticSurrogate(
    const InteractionInput& input, double ridge, const std::function<double(int)>& row_weight,
    const std::string& label, const std::string& singular_hint);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_QUADRATIC_FIT_H_
