// Paired comparisons of two coalitions measured on the same sequences: v(q) from per-sequence
// NLL sums, and the difference of two coalitions' v with its standard error. The per-budget
// choice of the job (job/phase_select.cc) and the worker's SequenceEvaluator share these
// formulas.
#ifndef IMPQ_SOLVER_PAIRED_LOSSES_H_
#define IMPQ_SOLVER_PAIRED_LOSSES_H_

#include <cstdint>
#include <span>

namespace impq::solver {

// A paired comparison of two coalitions measured on the same sequences.
struct PairedDifference {
  double mean = 0;            // v(a) − v(b)
  double standard_error = 0;  // of `mean`, from the per-sequence differences (0 if < 2 seqs)
};

// v(q) from a coalition's per-sequence NLL sums: Σ_s sums[s] / total_tokens, added in
// sequence order (the one formula the job's choice and SequenceEvaluator use).
double MeanOfSums(std::span<const double> sums, int64_t total_tokens);
// v(a) − v(b) from per-sequence sums with its standard error (the linearised ratio estimator
// over sequences: SE = sqrt(S/(S−1) · Σ_s (D_s − t_s·mean)²) / Σ_s t_s, D_s the difference of
// the sums). REQUIRES: a, b and tokens of equal length; total_tokens = Σ tokens > 0.
PairedDifference PairedCompare(std::span<const double> a, std::span<const double> b,
                               std::span<const int64_t> tokens, int64_t total_tokens);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_PAIRED_LOSSES_H_
