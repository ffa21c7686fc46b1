// Interaction estimators: turn SPQE's output into the quadratic objective (a, K) minimised by
// the allocation (IMPQ §3.3). Two estimators share one interface:
//   CovarianceInteractionEstimator — the paper's, from the covariance of marginal vectors;
//   SurrogateInteractionEstimator  — a second-order fit of v(q) to every evaluated coalition.
#ifndef IMPQ_SOLVER_INTERACTIONS_H_
#define IMPQ_SOLVER_INTERACTIONS_H_

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition.h"
#include "solver/quadratic_objective.h"
#include "solver/spqe.h"

namespace impq::solver {

// What the estimators read. Spans must outlive the Estimate() call.
struct InteractionInput {
  int num_players = 0;
  std::span<const std::vector<double>> marginals;  // one SPQE marginal vector per walk
  std::span<const Observation> observations;       // every (coalition, loss) evaluated
};

// Views an SpqeResult (which must outlive the returned input).
InteractionInput InputFromSpqe(const SpqeResult& spqe, int num_players);

class InteractionEstimator {
 public:
  virtual ~InteractionEstimator();
  // Short stable name stored in QuadraticObjective::estimator.
  virtual std::string name() const = 0;
  // OK: an objective that passes ValidateObjective with estimator == name().
  // InvalidArgument when the input lacks what the estimator needs (named in the message);
  // FailedPrecondition when the data cannot determine the objective.
  // Stateless and const: thread-safe.
  virtual absl::StatusOr<QuadraticObjective> Estimate(const InteractionInput& input) const = 0;
};

// IMPQ's estimator (IMPQ §3.3; formulation as specified for impq, the paper's text was not
// available to check against): with φ the mean of the M marginal vectors and C their sample
// covariance (divisor M-1; all M vectors, antithetic partners included, since C describes how
// a player's marginal co-varies with another's across orders),
//   K = (1 - α)·C + α·diag(C)        (shrinkage of the off-diagonal towards 0)
//   a_i = φ_i - Σ_{j≠i} K_ij
// and the objective is aᵀq + qᵀKq, constant 0 (it ranks assignments; it is not a loss).
// Name "covariance". REQUIRES for OK: M >= 2 marginal vectors of n entries, α ∈ [0, 1].
class CovarianceInteractionEstimator : public InteractionEstimator {
 public:
  explicit CovarianceInteractionEstimator(double alpha = 0.5);
  std::string name() const override { return "covariance"; }
  absl::StatusOr<QuadraticObjective> Estimate(const InteractionInput& input) const override;

 private:
  const double alpha_;
};

// Second-order surrogate v(q) ≈ c + Σ_i a_i q_i + Σ_{i<j} b_ij q_i q_j, fitted by ridge least
// squares to every observation (features 1, q_i, q_i·q_j; p = 1 + n + n(n-1)/2 of them):
//   minimise ‖Xβ - y‖² + λ·Σ_{k≥1} β_k²,   λ = ridge · trace(XᵀX)/p,
// i.e. the ridge is relative to the mean feature energy (scale-free), and the intercept is not
// penalised. The normal equations (XᵀX + λ·D)β = Xᵀy are solved by Cholesky in double; they
// are positive definite for any ridge > 0. With ridge = 0 the fit is plain least squares and
// needs X of full column rank (else FailedPrecondition). The objective is the fit itself:
// linear = a, K_ii = 0, K_ij = K_ji = b_ij / 2, constant = c. Name "surrogate".
// Observations are deduplicated by coalition (first loss wins) before fitting.
class SurrogateInteractionEstimator : public InteractionEstimator {
 public:
  explicit SurrogateInteractionEstimator(double ridge = 1e-6);
  std::string name() const override { return "surrogate"; }
  absl::StatusOr<QuadraticObjective> Estimate(const InteractionInput& input) const override;

 private:
  const double ridge_;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_INTERACTIONS_H_
