// Aggregation of per-permutation marginal vectors into Shapley estimates (IMPQ §3, SPQE).
#ifndef IMPQ_SOLVER_SHAPLEY_ESTIMATE_H_
#define IMPQ_SOLVER_SHAPLEY_ESTIMATE_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace impq::solver {

// φ_i and its standard error for every player.
struct ShapleyEstimate {
  std::vector<double> phi;             // φ_i = mean marginal contribution of player i
  std::vector<double> standard_error;  // SE of φ_i (0 when fewer than 2 samples)
  int64_t num_permutations = 0;        // marginal vectors aggregated
  int64_t num_samples = 0;             // independent samples behind the SE (pairs if antithetic)
  bool antithetic = false;

  // max_i standard_error[i]; +inf when num_samples < 2 (the SE is unknown, not zero).
  double MaxStandardError() const;
};

// Aggregates marginal vectors (marginals[k][i] = marginal of player i in permutation k).
//
// φ_i is the mean over all permutations. Standard error: without antithetic pairs the
// permutations are i.i.d., SE_i = sd_k(marginals[k][i]) / sqrt(M). With antithetic pairs
// (permutations 2p and 2p+1 = reverse), the two members of a pair are strongly (negatively)
// correlated, so they are not two independent samples; the pairs are i.i.d. and the pair
// average d_p = (m_2p + m_2p+1)/2 is one sample: SE_i = sd_p(d_p,i) / sqrt(M/2). Treating
// the 2 members as independent would misstate the SE (for a quadratic game it would report
// a positive SE although every pair average equals φ exactly; see spqe_test.cc).
//
// OK: estimate with num_permutations = M. InvalidArgument when M == 0, when vectors differ in
// length, or when antithetic and M is odd (a pair would be split).
absl::StatusOr<ShapleyEstimate> AggregateMarginals(std::span<const std::vector<double>> marginals,
                                                   bool antithetic);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_SHAPLEY_ESTIMATE_H_
