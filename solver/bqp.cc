#include "solver/bqp.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "solver/linalg.h"

namespace impq::solver::internal {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kMinItersBeforeGiveUp = 15;

// min Σ w_i x_i over lo ≤ x ≤ hi, Σ s_i x_i ≥ r (fractional covering knapsack, exact by ratio
// order). Returns +inf when infeasible.
double CoveringLp(std::span<const double> w, std::span<const double> lo,
                  std::span<const double> hi, std::span<const double> s, double r,
                  std::vector<int>& order) {
  const int n = static_cast<int>(w.size());
  double value = 0.0, cover = 0.0;
  order.clear();
  for (int i = 0; i < n; ++i) {
    const double xi = w[i] < 0.0 ? hi[i] : lo[i];
    value += w[i] * xi;
    cover += s[i] * xi;
    if (xi < hi[i] && s[i] > 0.0) order.push_back(i);
  }
  if (cover >= r) return value;
  std::sort(order.begin(), order.end(), [&](int i, int j) {
    const double ri = w[i] / s[i], rj = w[j] / s[j];
    return ri != rj ? ri < rj : i < j;
  });
  for (int i : order) {
    const double room = (hi[i] - lo[i]) * s[i];
    if (cover + room >= r) {
      value += w[i] * (r - cover) / s[i];
      return value;
    }
    value += w[i] * (hi[i] - lo[i]);
    cover += room;
  }
  // Rounding may leave cover a hair below r although the node is feasible; callers check
  // integer feasibility first, so treat a relative shortfall of 1e-12 as reached.
  return cover >= r * (1.0 - 1e-12) ? value : kInf;
}

void BoxOf(std::span<const int8_t> fix, std::vector<double>& lo, std::vector<double>& hi) {
  const size_t n = fix.size();
  lo.assign(n, 0.0);
  hi.assign(n, 1.0);
  for (size_t i = 0; i < n; ++i) {
    if (fix[i] >= 0) lo[i] = hi[i] = fix[i];
  }
}

// Euclidean projection onto {lo ≤ x ≤ hi, sᵀx ≥ r}: x(μ) = clamp(v + μ·s) with the smallest
// μ ≥ 0 meeting the constraint (KKT), found by bisection; the feasible end is returned.
void Project(std::span<const double> v, std::span<const double> lo, std::span<const double> hi,
             std::span<const double> s, double r, std::span<double> x) {
  const size_t n = v.size();
  auto cover_at = [&](double mu) {
    double c = 0.0;
    for (size_t i = 0; i < n; ++i) c += s[i] * std::clamp(v[i] + mu * s[i], lo[i], hi[i]);
    return c;
  };
  double mu_hi = 0.0;
  if (cover_at(0.0) < r) {
    for (size_t i = 0; i < n; ++i) {
      if (s[i] > 0.0) mu_hi = std::max(mu_hi, (hi[i] - v[i]) / s[i]);
    }
    double mu_lo = 0.0;
    for (int it = 0; it < 40; ++it) {
      const double mid = 0.5 * (mu_lo + mu_hi);
      if (cover_at(mid) >= r) {
        mu_hi = mid;
      } else {
        mu_lo = mid;
      }
    }
  }
  for (size_t i = 0; i < n; ++i) x[i] = std::clamp(v[i] + mu_hi * s[i], lo[i], hi[i]);
}

}  // namespace

Bqp MakeBqp(const AllocationProblem& problem, double relative_tolerance) {
  const QuadraticObjective& o = problem.objective;
  Bqp b;
  const int n = o.num_players;
  b.n = n;
  b.lin.resize(n);
  b.pair.assign(static_cast<size_t>(n) * n, 0.0);
  b.savings = problem.savings;
  b.required = problem.required_savings;
  for (int i = 0; i < n; ++i) {
    b.lin[i] = o.linear[i] + o.K(i, i);
    b.scale += std::fabs(b.lin[i]);
    for (int j = 0; j < n; ++j) {
      if (j == i) continue;
      b.pair[static_cast<size_t>(i) * n + j] = 2.0 * o.K(i, j);
      if (j > i) b.scale += 2.0 * std::fabs(o.K(i, j));
    }
  }
  b.tolerance = relative_tolerance * std::max(b.scale, 1e-300);
  int64_t max_s = 1;
  for (int64_t s : b.savings) max_s = std::max(max_s, s);
  b.s_norm.resize(n);
  for (int i = 0; i < n; ++i) b.s_norm[i] = static_cast<double>(b.savings[i]) / max_s;
  b.r_norm = static_cast<double>(b.required) / max_s;
  // Convexify: H = K − diag(u) ⪰ 0, hlin = a + u. Then F(x) = xᵀKx + aᵀx + Σ u_i x_i(1 − x_i):
  // F = f on binary points, and a larger u raises F at fractional points (a tighter bound),
  // so u should be as large as convexity allows. Two candidates, the better root bound wins:
  //   uniform:      u_i = −t with t the smallest shift making K + t·I positive definite;
  //   proportional: u_i = β·K_ii with β = λ_min(D^{-1/2} K D^{-1/2}), D = diag(K) > 0 —
  //                 much tighter when the diagonal (per-player variance) is heterogeneous.
  std::vector<std::vector<double>> candidates;
  {
    const double t = PositiveDefiniteShift(o.quadratic, n);
    candidates.push_back(std::vector<double>(n, -t));
  }
  bool positive_diagonal = true;
  for (int i = 0; i < n; ++i) positive_diagonal = positive_diagonal && o.K(i, i) > 0.0;
  if (positive_diagonal) {
    std::vector<double> normalized(static_cast<size_t>(n) * n);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        normalized[static_cast<size_t>(i) * n + j] =
            o.K(i, j) / std::sqrt(o.K(i, i) * o.K(j, j));
      }
    }
    const double t = PositiveDefiniteShift(normalized, n);
    std::vector<double> u(n);
    for (int i = 0; i < n; ++i) u[i] = -t * o.K(i, i);
    candidates.push_back(std::move(u));
  }
  double best_bound = -kInf;
  const std::vector<int8_t> root(n, -1);
  for (const std::vector<double>& u : candidates) {
    Bqp trial = b;
    trial.h = o.quadratic;
    trial.hlin.resize(n);
    double gersh = 0.0;
    for (int i = 0; i < n; ++i) {
      trial.h[static_cast<size_t>(i) * n + i] -= u[i];
      trial.hlin[i] = o.linear[i] + u[i];
      double row = 0.0;
      for (int j = 0; j < n; ++j) row += std::fabs(trial.h[static_cast<size_t>(i) * n + j]);
      gersh = std::max(gersh, row);
    }
    trial.lipschitz = std::max(2.0 * gersh, 1e-300);
    std::vector<double> x;
    const double bound = candidates.size() == 1 ? 0.0 : RelaxationBound(trial, root, 300, kInf, x);
    if (bound > best_bound || best_bound == -kInf) {
      best_bound = bound;
      b.h = std::move(trial.h);
      b.hlin = std::move(trial.hlin);
      b.lipschitz = trial.lipschitz;
    }
  }
  return b;
}

double Value(const Bqp& b, const Coalition& q) {
  const int n = b.n;
  double v = 0.0;
  for (int i = 0; i < n; ++i) {
    if (q[i] == 0) continue;
    v += b.lin[i];
    for (int j = i + 1; j < n; ++j) {
      if (q[j] != 0) v += b.pair[static_cast<size_t>(i) * n + j];
    }
  }
  return v;
}

double LinearSplitBound(const Bqp& b, std::span<const int8_t> fix) {
  const int n = b.n;
  double base = 0.0;
  std::vector<double> w(n, 0.0), lo, hi;
  BoxOf(fix, lo, hi);
  for (int i = 0; i < n; ++i) {
    const double* row = &b.pair[static_cast<size_t>(i) * n];
    if (fix[i] == 1) {
      base += b.lin[i];
      for (int j = i + 1; j < n; ++j) {
        if (fix[j] == 1) base += row[j];
      }
    } else if (fix[i] == -1) {
      double rho = b.lin[i];
      for (int j = 0; j < n; ++j) {
        if (fix[j] == 1) {
          rho += row[j];
        } else if (fix[j] == -1) {
          rho += 0.5 * std::min(0.0, row[j]);
        }
      }
      w[i] = rho;
    }
  }
  std::vector<int> order;
  return base + CoveringLp(w, lo, hi, b.s_norm, b.r_norm, order);
}

double RelaxationBound(const Bqp& b, std::span<const int8_t> fix, int max_iters, double target,
                       std::vector<double>& x) {
  const int n = b.n;
  std::vector<double> lo, hi;
  BoxOf(fix, lo, hi);
  if (x.size() != static_cast<size_t>(n)) x.assign(n, 0.5);
  std::vector<double> y(n), hy(n), g(n), v(n), xn(n);
  std::vector<int> order;
  Project(x, lo, hi, b.s_norm, b.r_norm, x);
  y = x;
  double t = 1.0, best = -kInf;
  const double step = 1.0 / b.lipschitz;
  for (int it = 0; it < max_iters; ++it) {
    double fy = 0.0, gy = 0.0, cover = 0.0;
    for (int i = 0; i < n; ++i) {
      cover += b.s_norm[i] * y[i];
      const double* row = &b.h[static_cast<size_t>(i) * n];
      double s = 0.0;
      for (int j = 0; j < n; ++j) s += row[j] * y[j];
      hy[i] = s;
      g[i] = 2.0 * s + b.hlin[i];
      fy += y[i] * (s + b.hlin[i]);
      gy += g[i] * y[i];
    }
    const double lin_min = CoveringLp(g, lo, hi, b.s_norm, b.r_norm, order);
    if (lin_min == kInf) return kInf;  // the box cannot meet the budget
    const double bound = fy - gy + lin_min;
    if (bound > best) best = bound;
    if (best >= target) break;
    // Converged: the Frank–Wolfe gap at a feasible iterate is within tolerance.
    if (cover >= b.r_norm) {
      if (fy - bound <= 0.1 * b.tolerance) break;
      // min F ≤ F(y) < target: the bound can never reach the target, so only the iterate
      // (used for branching and rounding) would improve; a few iterations suffice for that.
      if (fy < target && it >= kMinItersBeforeGiveUp) break;
    }
    for (int i = 0; i < n; ++i) v[i] = y[i] - step * g[i];
    Project(v, lo, hi, b.s_norm, b.r_norm, xn);
    const double tn = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
    const double beta = (t - 1.0) / tn;
    for (int i = 0; i < n; ++i) {
      y[i] = std::clamp(xn[i] + beta * (xn[i] - x[i]), lo[i], hi[i]);
      x[i] = xn[i];
    }
    t = tn;
  }
  return best;
}

int64_t LocalSearch(const Bqp& b, Coalition& q) {
  const int n = b.n;
  std::vector<double> g(b.lin);  // g_i = lin_i + Σ_{j∈q} pair_ij: Δf of toggling i in/out
  int64_t saved = 0;
  for (int j = 0; j < n; ++j) {
    if (q[j] == 0) continue;
    saved += b.savings[j];
    for (int i = 0; i < n; ++i) g[i] += b.pair[static_cast<size_t>(i) * n + j];
  }
  const double eps = 1e-12 * std::max(b.scale, 1e-300);
  int64_t moves = 0;
  while (true) {
    double best = -eps;
    int add = -1, remove = -1;
    for (int i = 0; i < n; ++i) {
      if (q[i] == 0) {
        if (g[i] < best) best = g[i], add = i, remove = -1;
      } else if (saved - b.savings[i] >= b.required && -g[i] < best) {
        best = -g[i], add = -1, remove = i;
      }
    }
    for (int i = 0; i < n; ++i) {
      if (q[i] != 0) continue;
      const double* row = &b.pair[static_cast<size_t>(i) * n];
      for (int j = 0; j < n; ++j) {
        if (q[j] == 0 || saved + b.savings[i] - b.savings[j] < b.required) continue;
        const double d = g[i] - g[j] - row[j];
        if (d < best) best = d, add = i, remove = j;
      }
    }
    if (add < 0 && remove < 0) break;
    for (int flip : {add, remove}) {
      if (flip < 0) continue;
      const double sign = q[flip] == 0 ? 1.0 : -1.0;
      q[flip] = q[flip] == 0 ? 1 : 0;
      saved += sign > 0 ? b.savings[flip] : -b.savings[flip];
      const double* row = &b.pair[static_cast<size_t>(flip) * n];
      for (int i = 0; i < n; ++i) g[i] += sign * row[i];
    }
    ++moves;
  }
  return moves;
}

bool GreedyRepair(const Bqp& b, Coalition& q, std::span<const int8_t> fix) {
  const int n = b.n;
  std::vector<double> g(b.lin);
  int64_t saved = 0;
  for (int j = 0; j < n; ++j) {
    if (q[j] == 0) continue;
    saved += b.savings[j];
    for (int i = 0; i < n; ++i) g[i] += b.pair[static_cast<size_t>(i) * n + j];
  }
  while (saved < b.required) {
    int pick = -1;
    double best = kInf;
    for (int i = 0; i < n; ++i) {
      if (q[i] != 0 || b.savings[i] <= 0 || (!fix.empty() && fix[i] != -1)) continue;
      const double ratio = g[i] / static_cast<double>(b.savings[i]);
      if (ratio < best) best = ratio, pick = i;
    }
    if (pick < 0) return false;
    q[pick] = 1;
    saved += b.savings[pick];
    const double* row = &b.pair[static_cast<size_t>(pick) * n];
    for (int i = 0; i < n; ++i) g[i] += row[i];
  }
  return true;
}

}  // namespace impq::solver::internal
