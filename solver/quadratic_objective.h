// The binary quadratic objective of IMPQ's allocation (IMPQ §3.3): minimise aᵀq + qᵀKq over
// q ∈ {0,1}^n, q_i = 1 meaning player i at 2 bits. K is symmetric; since q_i² = q_i the
// diagonal K_ii acts as a linear term, and each unordered pair {i,j} contributes 2·K_ij·q_i·q_j.
#ifndef IMPQ_SOLVER_QUADRATIC_OBJECTIVE_H_
#define IMPQ_SOLVER_QUADRATIC_OBJECTIVE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "solver/coalition.h"

namespace impq::solver {

struct QuadraticObjective {
  std::string estimator;           // which estimator produced it, e.g. "covariance", "surrogate"
  int num_players = 0;             // n
  std::vector<double> linear;      // a, n entries
  std::vector<double> quadratic;   // K, n×n row-major, symmetric
  double constant = 0.0;           // c: added by Evaluate (the surrogate's intercept, else 0)

  double K(int i, int j) const { return quadratic[static_cast<size_t>(i) * num_players + j]; }
  // c + aᵀq + qᵀKq. REQUIRES: ValidateCoalition(q, num_players) is OK.
  double Evaluate(const Coalition& q) const;
};

// OK iff sizes match n, all entries are finite and K is symmetric (exactly);
// InvalidArgument naming the first offending entry otherwise.
absl::Status ValidateObjective(const QuadraticObjective& objective);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_QUADRATIC_OBJECTIVE_H_
