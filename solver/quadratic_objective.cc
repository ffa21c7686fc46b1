#include "solver/quadratic_objective.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace impq::solver {

double QuadraticObjective::Evaluate(const Coalition& q) const {
  const int n = num_players;
  double value = constant;
  for (int i = 0; i < n; ++i) {
    if (q[i] == 0) continue;
    value += linear[i];
    for (int j = 0; j < n; ++j) {
      if (q[j] != 0) value += K(i, j);
    }
  }
  return value;
}

absl::Status ValidateObjective(const QuadraticObjective& o) {
  const int n = o.num_players;
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("objective has ", n, " players"));
  if (static_cast<int64_t>(o.linear.size()) != n ||
      static_cast<int64_t>(o.quadratic.size()) != int64_t{n} * n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "objective sizes: linear ", o.linear.size(), ", quadratic ", o.quadratic.size(),
        "; expected ", n, " and ", int64_t{n} * n));
  }
  if (!std::isfinite(o.constant)) return absl::InvalidArgumentError("objective constant not finite");
  for (int i = 0; i < n; ++i) {
    if (!std::isfinite(o.linear[i])) {
      return absl::InvalidArgumentError(absl::StrCat("objective linear[", i, "] not finite"));
    }
    for (int j = 0; j < n; ++j) {
      if (!std::isfinite(o.K(i, j)) || o.K(i, j) != o.K(j, i)) {
        return absl::InvalidArgumentError(absl::StrCat("objective K[", i, "][", j, "] = ",
                                                       o.K(i, j), " not finite or not symmetric (K[",
                                                       j, "][", i, "] = ", o.K(j, i), ")"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace impq::solver
