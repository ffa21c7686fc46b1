#include "solver/exact_shapley.h"

#include <bit>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/status.h"

namespace impq::solver {
namespace {

// w[s] = s!(m−s−1)!/m! computed as 1 / (m · C(m−1, s)) to stay in range.
std::vector<double> Weights(int m) {
  std::vector<double> w(m, 0.0);
  double binom = 1.0;  // C(m-1, s)
  for (int s = 0; s < m; ++s) {
    w[s] = 1.0 / (m * binom);
    binom = binom * (m - 1 - s) / (s + 1);
  }
  return w;
}

}  // namespace

absl::StatusOr<std::vector<double>> TabulateGame(CoalitionEvaluator& evaluator, int num_players) {
  if (num_players < 1 || num_players > kMaxExactPlayers) {
    return absl::InvalidArgumentError(absl::StrCat("exact Shapley over ", num_players,
                                                   " players; expected 1..", kMaxExactPlayers));
  }
  const uint64_t total = uint64_t{1} << num_players;
  std::vector<double> table(total);
  constexpr uint64_t kBatch = 4096;
  for (uint64_t start = 0; start < total; start += kBatch) {
    const uint64_t end = std::min(total, start + kBatch);
    std::vector<Coalition> batch;
    for (uint64_t mask = start; mask < end; ++mask) {
      batch.push_back(CoalitionFromMask(mask, num_players));
    }
    ASSIGN_OR_RETURN(std::vector<double> losses, evaluator.Evaluate(batch));
    if (losses.size() != batch.size()) {
      return absl::InternalError(absl::StrCat("evaluator returned ", losses.size(),
                                              " losses for ", batch.size(), " coalitions"));
    }
    for (uint64_t mask = start; mask < end; ++mask) table[mask] = losses[mask - start];
  }
  return table;
}

std::vector<double> ShapleyFromTable(std::span<const double> table, int n) {
  IMPQ_CHECK(n >= 1 && n <= kMaxExactPlayers && table.size() == (size_t{1} << n));
  const std::vector<double> w = Weights(n);
  std::vector<double> phi(n, 0.0);
  for (int i = 0; i < n; ++i) {
    const uint64_t bit = uint64_t{1} << i;
    double sum = 0.0;
    for (uint64_t s = 0; s < table.size(); ++s) {
      if (s & bit) continue;
      sum += w[std::popcount(s)] * (table[s | bit] - table[s]);
    }
    phi[i] = sum;
  }
  return phi;
}

std::vector<double> InteractionIndexFromTable(std::span<const double> table, int n) {
  IMPQ_CHECK(n >= 2 && n <= kMaxExactPlayers && table.size() == (size_t{1} << n));
  const std::vector<double> w = Weights(n - 1);  // s!(n−s−2)!/(n−1)!
  std::vector<double> out(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const uint64_t bi = uint64_t{1} << i, bj = uint64_t{1} << j;
      double sum = 0.0;
      for (uint64_t s = 0; s < table.size(); ++s) {
        if (s & (bi | bj)) continue;
        sum += w[std::popcount(s)] *
               (table[s | bi | bj] - table[s | bi] - table[s | bj] + table[s]);
      }
      out[static_cast<size_t>(i) * n + j] = sum;
      out[static_cast<size_t>(j) * n + i] = sum;
    }
  }
  return out;
}

}  // namespace impq::solver
