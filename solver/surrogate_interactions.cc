// SurrogateInteractionEstimator: ridge least-squares fit of a second-order model of v(q).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "solver/interactions.h"
#include "solver/quadratic_fit.h"

namespace impq::solver {

SurrogateInteractionEstimator::SurrogateInteractionEstimator(double ridge) : ridge_(ridge) {}

absl::StatusOr<QuadraticObjective> SurrogateInteractionEstimator::Estimate(
    const InteractionInput& input) const {
  if (!(ridge_ >= 0.0) || !std::isfinite(ridge_)) {
    return absl::InvalidArgumentError(absl::StrCat("surrogate ridge is ", ridge_,
                                                   ", expected finite and >= 0"));
  }
  return FitQuadraticSurrogate(input, ridge_, [](int) { return 1.0; }, name(),
                               "; evaluate more coalitions or use ridge > 0");
}

}  // namespace impq::solver
