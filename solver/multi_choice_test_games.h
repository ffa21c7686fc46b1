// Random multiple-choice allocation instances (multi_choice.h) for the solver tests and
// solver_bench (header-only, tests and benchmarks only).
#ifndef IMPQ_SOLVER_MULTI_CHOICE_TEST_GAMES_H_
#define IMPQ_SOLVER_MULTI_CHOICE_TEST_GAMES_H_

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/rng.h"
#include "solver/multi_choice.h"
#include "solver/quadratic_objective.h"
#include "solver/test_games.h"
#include "solver/width_ladder.h"

namespace impq::solver::testing {

// Storage like RandomPlayerBytes (solver/test_games.h) at every width: attention-sized and
// MLP-sized players, params·bits/8 bytes of codes plus 16 of scales/zeros.
inline std::vector<int64_t> RandomWidthBytes(int n, const std::vector<int>& widths, uint64_t seed) {
  Rng rng(seed);
  std::vector<int64_t> bytes;
  for (int i = 0; i < n; ++i) {
    const int64_t params = (i % 3 == 2 ? 3 : 1) * (1000 + static_cast<int64_t>(rng.Below(200)));
    for (int w : widths) bytes.push_back(params * w / 8 + 16);
  }
  return bytes;
}

// The loss a player's quantization noise costs shrinks about 4x per extra bit.
inline double WidthFactor(int bits) { return std::pow(0.25, bits - 2); }

// Of the covariance kind IMPQ's estimator produces, per (player, width) variable: 64 simulated
// marginal vectors from 4 latent factors, each variable the player's marginal scaled by its
// width's factor plus width-specific noise; K = 2·(1 − α)·Cov (α = 0.5; its blocks within a
// player are the relaxation hint), a = mean + α·Var.
inline MultiChoiceProblem RandomCovarianceMultiChoice(int n, const std::vector<int>& widths,
                                                      uint64_t seed) {
  Rng rng(seed);
  const int m = static_cast<int>(widths.size()), nv = n * m, samples = 64, f = 4;
  std::vector<double> mean(n), sd(n), load(static_cast<size_t>(n) * f);
  for (int i = 0; i < n; ++i) {
    mean[i] = 0.02 + 0.3 * rng.Uniform() * rng.Uniform();
    sd[i] = 0.05 + 0.2 * rng.Uniform();
    for (int k = 0; k < f; ++k) load[static_cast<size_t>(i) * f + k] = 0.15 * rng.Normal();
  }
  std::vector<std::vector<double>> rows(samples, std::vector<double>(nv));
  for (auto& row : rows) {
    double z[f];
    for (double& zk : z) zk = rng.Normal();
    for (int i = 0; i < n; ++i) {
      double base = mean[i] + sd[i] * rng.Normal();
      for (int k = 0; k < f; ++k) base += load[static_cast<size_t>(i) * f + k] * z[k];
      for (int w = 0; w < m; ++w) {
        const double c = WidthFactor(widths[w]);
        row[i * m + w] = c * (base + 0.3 * sd[i] * rng.Normal());
      }
    }
  }
  std::vector<double> mu(nv, 0.0);
  for (const auto& row : rows) {
    for (int k = 0; k < nv; ++k) mu[k] += row[k] / samples;
  }
  auto cov = [&](int k, int l) {
    double s = 0.0;
    for (const auto& row : rows) s += (row[k] - mu[k]) * (row[l] - mu[l]);
    return s / (samples - 1);
  };
  const double alpha = 0.5;
  MultiChoiceProblem p;
  p.num_players = n;
  p.widths = widths;
  p.linear.resize(nv);
  p.quadratic.assign(static_cast<size_t>(nv) * nv, 0.0);
  for (int k = 0; k < nv; ++k) {
    p.linear[k] = mu[k] + alpha * cov(k, k);
    for (int l = k; l < nv; ++l) {
      // Within a player: the relaxation hint (multi_choice.h), not part of the objective.
      const double v = 2.0 * (1.0 - alpha) * cov(k, l);
      p.quadratic[static_cast<size_t>(k) * nv + l] = v;
      p.quadratic[static_cast<size_t>(l) * nv + k] = v;
    }
  }
  p.bytes = RandomWidthBytes(n, widths, seed + 4000);
  p.budget_bytes = p.MinFootprint();
  return p;
}

// Independent N(0, 1) pair terms scaled by sqrt(c_w·c_v) and a ~ c_w·N(0.5, 1): indefinite,
// still cheaper in loss at wider widths. With `scaled` false, a and K are unscaled N(0.5, 1)
// and N(0, 1): no structure at all (for brute-force comparisons).
inline MultiChoiceProblem RandomIndefiniteMultiChoice(int n, const std::vector<int>& widths,
                                                      uint64_t seed, bool scaled = true) {
  Rng rng(seed);
  const int m = static_cast<int>(widths.size()), nv = n * m;
  MultiChoiceProblem p;
  p.num_players = n;
  p.widths = widths;
  p.linear.resize(nv);
  p.quadratic.assign(static_cast<size_t>(nv) * nv, 0.0);
  auto factor = [&](int k) { return scaled ? WidthFactor(widths[k % m]) : 1.0; };
  for (int k = 0; k < nv; ++k) {
    p.linear[k] = factor(k) * (0.5 + rng.Normal());
    for (int l = k + 1; l < nv; ++l) {
      if (k / m == l / m) continue;
      const double v = std::sqrt(factor(k) * factor(l)) * rng.Normal();
      p.quadratic[static_cast<size_t>(k) * nv + l] = v;
      p.quadratic[static_cast<size_t>(l) * nv + k] = v;
    }
  }
  p.bytes = RandomWidthBytes(n, widths, seed + 4000);
  p.budget_bytes = p.MinFootprint();
  return p;
}

// Like a second-order surrogate fitted to a model's losses (stories260K's magnitudes) over the
// steps of a width ladder (solver/width_ladder.h), mapped to the multiple-choice program by
// WidthLadder::ToMultiChoice, as the job does: a step costs the player's sensitivity
// (log-uniform in [0.01, 1.3] nats) times the drop of WidthFactor between its two widths,
// ×exp(0.3·N(0, 1)), so steps cost ~1e-3..1 nats (steps down from 8 bits the least); a pair of
// steps s ≠ t interacts by 2·K_st = 2·`interaction`·sqrt(a_s·a_t)·z_st with
// z_st = 0.6·(shared factor: loadings N(0, 1/4) over 4 latent directions) + 0.8·N(0, 1): of
// both signs, indefinite; `interaction` = 0.05 makes them ~10% of the linear terms. K_ss = 0.
// Budget: the smallest footprint. REQUIRES: widths ascending, 2..16 of them.
inline MultiChoiceProblem RandomSurrogateLadderMultiChoice(int n, const std::vector<int>& widths,
                                                           uint64_t seed,
                                                           double interaction = 0.05) {
  Rng rng(seed);
  const int m = static_cast<int>(widths.size()), r = m - 1, ns = n * r, f = 4;
  QuadraticObjective o;
  o.estimator = "surrogate";
  o.num_players = ns;
  o.linear.resize(ns);
  o.quadratic.assign(static_cast<size_t>(ns) * ns, 0.0);
  std::vector<double> load(static_cast<size_t>(ns) * f);
  for (int i = 0; i < n; ++i) {
    const double sens = 0.01 * std::pow(130.0, rng.Uniform());
    for (int t = 0; t < r; ++t) {  // step t: width index m−1−t to m−2−t
      const double drop = WidthFactor(widths[m - 2 - t]) - WidthFactor(widths[m - 1 - t]);
      o.linear[i * r + t] = sens * drop * std::exp(0.3 * rng.Normal());
      for (int k = 0; k < f; ++k) load[static_cast<size_t>(i * r + t) * f + k] = 0.5 * rng.Normal();
    }
  }
  for (int s = 0; s < ns; ++s) {
    for (int t = s + 1; t < ns; ++t) {
      double shared = 0.0;
      for (int k = 0; k < f; ++k) {
        shared += load[static_cast<size_t>(s) * f + k] * load[static_cast<size_t>(t) * f + k];
      }
      const double z = 0.6 * shared + 0.8 * rng.Normal();
      const double v = interaction * std::sqrt(o.linear[s] * o.linear[t]) * z;
      o.quadratic[static_cast<size_t>(s) * ns + t] = v;
      o.quadratic[static_cast<size_t>(t) * ns + s] = v;
    }
  }
  const std::vector<int64_t> bytes = RandomWidthBytes(n, widths, seed + 4000);
  int64_t narrowest = 0;
  for (int i = 0; i < n; ++i) narrowest += bytes[static_cast<size_t>(i) * m];
  return *(*WidthLadder::Create(n, widths)).ToMultiChoice(o, bytes, narrowest);
}

// The job's other kind: the paper's covariance objective over the steps of a width ladder
// (as RandomCovarianceObjective in solver/test_games.h: 64 simulated marginal vectors from 4
// latent factors, K = (1−α)·C + α·diag(C), α = 0.5, a_s = φ_s − Σ_{t≠s} K_st; K is PSD), the
// marginals of step s scaled by its player's sensitivity times the drop of WidthFactor as in
// RandomSurrogateLadderMultiChoice, mapped by WidthLadder::ToMultiChoice. Budget: the
// smallest footprint. REQUIRES: widths ascending, 2..16 of them.
inline MultiChoiceProblem RandomCovarianceLadderMultiChoice(int n, const std::vector<int>& widths,
                                                            uint64_t seed) {
  Rng rng(seed);
  const int m = static_cast<int>(widths.size()), r = m - 1, ns = n * r, samples = 64, f = 4;
  std::vector<double> scale(ns), mean(ns), sd(ns), load(static_cast<size_t>(ns) * f);
  for (int i = 0; i < n; ++i) {
    const double sens = 0.01 * std::pow(130.0, rng.Uniform());
    for (int t = 0; t < r; ++t) {
      const int s = i * r + t;
      scale[s] = sens * (WidthFactor(widths[m - 2 - t]) - WidthFactor(widths[m - 1 - t]));
      mean[s] = 0.5 + rng.Uniform();
      sd[s] = 0.2 + 0.8 * rng.Uniform();
      for (int k = 0; k < f; ++k) load[static_cast<size_t>(s) * f + k] = 0.5 * rng.Normal();
    }
  }
  std::vector<std::vector<double>> rows(samples, std::vector<double>(ns));
  for (auto& row : rows) {
    double z[f];
    for (double& zk : z) zk = rng.Normal();
    for (int s = 0; s < ns; ++s) {
      double v = mean[s] + sd[s] * rng.Normal();
      for (int k = 0; k < f; ++k) v += load[static_cast<size_t>(s) * f + k] * z[k];
      row[s] = scale[s] * v;
    }
  }
  const QuadraticObjective o = CovarianceObjectiveOfSamples(rows);
  const std::vector<int64_t> bytes = RandomWidthBytes(n, widths, seed + 4000);
  int64_t narrowest = 0;
  for (int i = 0; i < n; ++i) narrowest += bytes[static_cast<size_t>(i) * m];
  return *(*WidthLadder::Create(n, widths)).ToMultiChoice(o, bytes, narrowest);
}

// Σ_i max_w bytes_{i,w}: every player at its largest footprint.
inline int64_t MaxFootprint(const MultiChoiceProblem& p) {
  const int m = p.num_widths();
  int64_t total = 0;
  for (int i = 0; i < p.num_players; ++i) {
    int64_t hi = 0;
    for (int w = 0; w < m; ++w) hi = std::max(hi, p.bytes[static_cast<size_t>(i) * m + w]);
    total += hi;
  }
  return total;
}

// The budget at an average width b between the smallest and largest width, interpolated
// linearly between MinFootprint and MaxFootprint (floor).
inline int64_t BudgetAtAverageBits(const MultiChoiceProblem& p, double b) {
  const double lo = p.widths.front(), hi = p.widths.back();
  const int64_t min_bytes = p.MinFootprint(), max_bytes = MaxFootprint(p);
  return min_bytes + static_cast<int64_t>(std::floor((b - lo) / (hi - lo) *
                                                     static_cast<double>(max_bytes - min_bytes)));
}

}  // namespace impq::solver::testing

#endif  // IMPQ_SOLVER_MULTI_CHOICE_TEST_GAMES_H_
