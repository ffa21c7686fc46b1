#include "solver/paired_losses.h"

#include <cmath>

namespace impq::solver {

double MeanOfSums(std::span<const double> sums, int64_t total_tokens) {
  double total = 0;
  for (double x : sums) total += x;
  return total / static_cast<double>(total_tokens);
}

PairedDifference PairedCompare(std::span<const double> a, std::span<const double> b,
                               std::span<const int64_t> tokens, int64_t total_tokens) {
  const size_t S = tokens.size();
  const double T = static_cast<double>(total_tokens);
  double diff = 0;
  for (size_t s = 0; s < S; ++s) diff += a[s] - b[s];
  PairedDifference d;
  d.mean = diff / T;
  if (S < 2) return d;
  // Linearised (delta-method) variance of the ratio Σ D_s / Σ t_s over sequences.
  double ss = 0;
  for (size_t s = 0; s < S; ++s) {
    const double r = (a[s] - b[s]) - static_cast<double>(tokens[s]) * d.mean;
    ss += r * r;
  }
  d.standard_error = std::sqrt(static_cast<double>(S) / static_cast<double>(S - 1) * ss) / T;
  return d;
}

}  // namespace impq::solver
