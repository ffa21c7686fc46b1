// Synthetic games and allocation instances for the solver tests (header-only, tests only).
#ifndef IMPQ_SOLVER_TEST_GAMES_H_
#define IMPQ_SOLVER_TEST_GAMES_H_

#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"
#include "solver/quadratic_objective.h"

namespace impq::solver::testing {

// v(q) = c + Σ a_i q_i + Σ_{i<j} b_ij q_i q_j.
struct QuadraticGame {
  int n = 0;
  double c = 0.0;
  std::vector<double> a;
  std::vector<double> b;  // n×n symmetric, zero diagonal

  double operator()(const Coalition& q) const {
    double v = c;
    for (int i = 0; i < n; ++i) {
      if (q[i] == 0) continue;
      v += a[i];
      for (int j = i + 1; j < n; ++j) {
        if (q[j] != 0) v += b[static_cast<size_t>(i) * n + j];
      }
    }
    return v;
  }
  // Exact Shapley value: φ_i = a_i + ½ Σ_j b_ij.
  std::vector<double> Shapley() const {
    std::vector<double> phi(a);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) phi[i] += 0.5 * b[static_cast<size_t>(i) * n + j];
    }
    return phi;
  }
};

// Losses rise when players drop to 2 bits (a_i > 0) with mixed-sign interactions.
inline QuadraticGame RandomQuadraticGame(int n, uint64_t seed, double interaction = 0.3) {
  Rng rng(seed);
  QuadraticGame g;
  g.n = n;
  g.c = 2.0 + rng.Uniform();
  g.a.resize(n);
  g.b.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) g.a[i] = 0.05 + rng.Uniform();
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      const double v = interaction * rng.Normal();
      g.b[static_cast<size_t>(i) * n + j] = v;
      g.b[static_cast<size_t>(j) * n + i] = v;
    }
  }
  return g;
}

// The paper's covariance objective of sampled marginal vectors (one row per walk): φ = their
// mean, K_ii = Var_i, K_ij = Cov_ij / 2, a_i = φ_i − Σ_{j≠i} K_ij.
inline QuadraticObjective CovarianceObjectiveOfSamples(
    const std::vector<std::vector<double>>& samples) {
  const int m = static_cast<int>(samples.size());
  const int n = static_cast<int>(samples.front().size());
  QuadraticObjective o;
  o.estimator = "covariance";
  o.num_players = n;
  o.quadratic.assign(static_cast<size_t>(n) * n, 0.0);
  std::vector<double> phi(n, 0.0);
  for (const auto& row : samples) {
    for (int i = 0; i < n; ++i) phi[i] += row[i] / m;
  }
  for (int i = 0; i < n; ++i) {
    for (int j = i; j < n; ++j) {
      double s = 0.0;
      for (const auto& row : samples) s += (row[i] - phi[i]) * (row[j] - phi[j]);
      const double c = s / (m - 1);
      const double k = i == j ? c : 0.5 * c;
      o.quadratic[static_cast<size_t>(i) * n + j] = k;
      o.quadratic[static_cast<size_t>(j) * n + i] = k;
    }
  }
  o.linear.resize(n);
  for (int i = 0; i < n; ++i) {
    double off = 0.0;
    for (int j = 0; j < n; ++j) off += j == i ? 0.0 : o.K(i, j);
    o.linear[i] = phi[i] - off;
  }
  return o;
}

// A quadratic game plus a third-order term and coalition-specific noise (a deterministic hash
// of the coalition): no low-order structure for the estimators to exploit.
struct RandomGame {
  QuadraticGame base;
  uint64_t seed = 0;
  double operator()(const Coalition& q) const {
    const uint64_t mask = CoalitionToMask(q);
    Rng rng(DeriveSeed(seed, mask));
    const int size = CoalitionSize(q);
    return base(q) + 0.02 * size * size * size / base.n + 0.5 * rng.Normal();
  }
};

// Objective of the paper's kind: φ and K from the covariance of simulated marginal vectors
// (K = (1−α)C + α·diag(C), α = 0.5, a_i = φ_i − Σ_{j≠i}K_ij), with correlated marginals so K
// has positive and negative off-diagonal entries.
inline QuadraticObjective RandomCovarianceObjective(int n, uint64_t seed) {
  Rng rng(seed);
  const int m = 64, f = 4;  // samples, latent factors
  std::vector<double> mean(n), load(static_cast<size_t>(n) * f), sd(n);
  for (int i = 0; i < n; ++i) {
    mean[i] = 0.02 + 0.3 * rng.Uniform() * rng.Uniform();
    sd[i] = 0.05 + 0.2 * rng.Uniform();
    for (int k = 0; k < f; ++k) load[static_cast<size_t>(i) * f + k] = 0.15 * rng.Normal();
  }
  std::vector<std::vector<double>> samples(m, std::vector<double>(n));
  for (auto& row : samples) {
    double z[f];
    for (double& zk : z) zk = rng.Normal();
    for (int i = 0; i < n; ++i) {
      double v = mean[i] + sd[i] * rng.Normal();
      for (int k = 0; k < f; ++k) v += load[static_cast<size_t>(i) * f + k] * z[k];
      row[i] = v;
    }
  }
  return CovarianceObjectiveOfSamples(samples);
}

// Symmetric K with independent N(0, 1) entries (indefinite) and a ~ N(0.5, 1): a harder,
// non-convex instance family.
inline QuadraticObjective RandomIndefiniteObjective(int n, uint64_t seed) {
  Rng rng(seed);
  QuadraticObjective o;
  o.estimator = "random";
  o.num_players = n;
  o.linear.resize(n);
  o.quadratic.assign(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) {
    o.linear[i] = 0.5 + rng.Normal();
    for (int j = i; j < n; ++j) {
      const double v = rng.Normal();
      o.quadratic[static_cast<size_t>(i) * n + j] = v;
      o.quadratic[static_cast<size_t>(j) * n + i] = v;
    }
  }
  return o;
}

// Layer sizes like a transformer's: blocks of attention (smaller) and MLP (larger) matrices,
// 2-bit storage a bit over half of 4-bit (scales/zeros).
inline PlayerBytes RandomPlayerBytes(int n, uint64_t seed) {
  Rng rng(seed);
  PlayerBytes bytes;
  for (int i = 0; i < n; ++i) {
    const int64_t params = (i % 3 == 2 ? 3 : 1) * (1000 + static_cast<int64_t>(rng.Below(200)));
    bytes.bytes4.push_back(params * 4 / 8 + 16);
    bytes.bytes2.push_back(params * 2 / 8 + 16);
  }
  return bytes;
}

}  // namespace impq::solver::testing

#endif  // IMPQ_SOLVER_TEST_GAMES_H_
