// Exact multiple-choice allocation by depth-first branch and bound: the binary solver's scheme
// (exact_solver.cc, bqp.cc) carried over from boxes to products of simplices.
//
// A node restricts every player to a set of allowed widths (a bit mask; one bit = fixed).
// Bounds at a node:
//   (1) the split bound: a free pair's term K_{(i,w),(j,v)} is at least
//       ½·min_{v'} K_{(i,w),(j,v')} + ½·min_{w'} K_{(i,w'),(j,v)} (minima over the allowed
//       widths), which leaves a linear multiple-choice knapsack; its LP relaxation is solved
//       exactly by walking each player's lower convex hull of (bytes, cost) in slope order
//       (the multiple-choice analogue of the covering LP of bqp.cc);
//   (2) the convexified continuous relaxation: on one-hot points x_{i,w}² = x_{i,w} and
//       x_{i,w}·x_{i,v} = 0 (w ≠ v), so F(x) = xᵀ(½K + D)x + (a − diag D)ᵀx equals the
//       objective there for every block-diagonal D, and F is convex on the affine hull of the
//       feasible set (each player's weights sum to 1) when Zᵀ(½K + D)Z ⪰ 0, Z an orthonormal
//       basis of the directions that keep every player's sum (bqp.cc needs convexity on the
//       whole box; here only these directions matter, which allows a smaller D and a tighter
//       bound). D is chosen by the root bound among a uniform shift, a shift proportional to
//       each variable's interaction size, and the problem's hint blocks (Convexify), as
//       bqp.cc chooses between its uniform and proportional diagonals. min F over the product of
//       simplices ∩ budget is bounded below by the Frank–Wolfe tangent-plane bound at the
//       iterates of accelerated projected gradient; the linear minimisation in it is again
//       the knapsack LP of (1).
//   (3) the pairwise dual: the objective is a pairwise model (one label per player), so for
//       any messages δ_ij(w) it equals Σ_i u_i(c_i) + Σ_{i<j} R_ij(c_i, c_j) on every choice,
//       u_i(w) = a_{i,w} + Σ_j δ_ij(w), R_ij(w, v) = P((i,w),(j,v)) − δ_ij(w) − δ_ji(v); the
//       knapsack LP of u plus Σ min R_ij is a bound (at the split's messages it is (1)).
//       MPLP's pair updates (block coordinate ascent on the dual of the local-polytope LP,
//       the unaries priced at the knapsack's budget price λ) raise it, warm-started from the
//       parent's messages. With the Lagrangian at λ it also fixes widths: fixing player i to
//       w costs at least u_i(w) + λ·bytes − min_w' (…), and widths whose fixed child's bound
//       reaches the incumbent leave the node (reduced-cost fixing).
// (1)+(2) and (3) suit different objectives: a covariance-like K has large correlated pair
// terms that (3) cannot move into the unaries but (2) handles with a small shift; a fitted
// surrogate's indefinite K (pairs ~10% of the linear terms, both signs) needs a large shift
// in (2) while (3) is tight. The root computes both; the nodes use (1)+(2) when (2) closes at
// least half of the root gap that (3) leaves, (3) otherwise (MultiChoiceBounding::kAuto).
// Feasibility: a node is infeasible when its smallest footprint exceeds the budget (exact
// integer test). Incumbent: the min-bytes and the per-player-cheapest starting points, then
// each node's relaxed point (or smallest reduced costs) rounded, repaired into the budget and
// locally improved (moves of one player's width, then of two players' together).
// Branching: with (2), the free player whose relaxed weights are most spread, fixed first to
// its heaviest width, then that width removed; with (3), the free player whose best width
// leads its second best by the least reduced cost (the most undecided), fixed first to the
// best (the other child starts with the bound of that lead). Measured on solver_bench's
// surrogate ladder: half the nodes of the largest lead first, and more instances certified
// with interactions twice as large.
//
// Certificate (as exact_solver.cc): every discarded node had bound ≥ incumbent − tol; the
// reported lower bound is the minimum over discarded nodes and leaves (and open nodes when
// the node limit stops the search), so proven_optimal ⇔ the tree was exhausted.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/linalg.h"
#include "solver/multi_choice.h"

namespace impq::solver {

double MultiChoiceProblem::Evaluate(std::span<const int> choice) const {
  const int m = num_widths();
  double v = constant;
  for (int i = 0; i < num_players; ++i) {
    v += linear[static_cast<size_t>(i) * m + choice[i]];
    for (int j = i + 1; j < num_players; ++j) v += K(i, choice[i], j, choice[j]);
  }
  return v;
}

int64_t MultiChoiceProblem::Footprint(std::span<const int> choice) const {
  int64_t total = 0;
  for (int i = 0; i < num_players; ++i) {
    total += bytes[static_cast<size_t>(i) * num_widths() + choice[i]];
  }
  return total;
}

int64_t MultiChoiceProblem::MinFootprint() const {
  const int m = num_widths();
  int64_t total = 0;
  for (int i = 0; i < num_players; ++i) {
    total += *std::min_element(bytes.begin() + static_cast<size_t>(i) * m,
                               bytes.begin() + static_cast<size_t>(i + 1) * m);
  }
  return total;
}

absl::Status ValidateMultiChoiceProblem(const MultiChoiceProblem& p) {
  const int n = p.num_players, m = p.num_widths();
  if (n < 1)
    return absl::InvalidArgumentError(absl::StrCat("num_players = ", n, " (expected >= 1)"));
  if (m < 1 || m > 16) {
    return absl::InvalidArgumentError(absl::StrCat("widths has ", m, " entries (expected 1..16)"));
  }
  for (int w = 0; w < m; ++w) {
    for (int v = 0; v < w; ++v) {
      if (p.widths[w] == p.widths[v]) {
        return absl::InvalidArgumentError(absl::StrCat("width ", p.widths[w], " is given twice"));
      }
    }
  }
  const size_t nv = static_cast<size_t>(n) * m;
  if (p.linear.size() != nv || p.bytes.size() != nv || p.quadratic.size() != nv * nv) {
    return absl::InvalidArgumentError(
        absl::StrCat("sizes: linear ", p.linear.size(), ", bytes ", p.bytes.size(), ", quadratic ",
                     p.quadratic.size(), " (expected ", nv, ", ", nv, ", ", nv * nv, " for ", n,
                     " players x ", m, " widths)"));
  }
  if (!std::isfinite(p.constant)) return absl::InvalidArgumentError("constant is not finite");
  for (size_t k = 0; k < nv; ++k) {
    const int i = static_cast<int>(k / m), w = static_cast<int>(k % m);
    if (!std::isfinite(p.linear[k])) {
      return absl::InvalidArgumentError(
          absl::StrCat("linear[player ", i, ", width ", p.widths[w], "] is not finite"));
    }
    if (p.bytes[k] < 0) {
      return absl::InvalidArgumentError(absl::StrCat("bytes[player ", i, ", width ", p.widths[w],
                                                     "] = ", p.bytes[k], " (expected >= 0)"));
    }
    for (size_t l = 0; l < nv; ++l) {
      const int j = static_cast<int>(l / m), v = static_cast<int>(l % m);
      const double x = p.quadratic[k * nv + l];
      auto where = [&] {
        return absl::StrCat("quadratic[(player ", i, ", width ", p.widths[w], "), (player ", j,
                            ", width ", p.widths[v], ")]");
      };
      if (!std::isfinite(x)) return absl::InvalidArgumentError(where() + " is not finite");
      if (x != p.quadratic[l * nv + k]) {
        return absl::InvalidArgumentError(where() + " breaks symmetry");
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MultiChoiceProblem> MultiChoiceFromBinary(const QuadraticObjective& objective,
                                                         const PlayerBytes& bytes,
                                                         int64_t budget_bytes, int low_bits,
                                                         int high_bits) {
  RETURN_IF_ERROR(ValidateObjective(objective));
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  const int n = objective.num_players;
  if (static_cast<int>(bytes.bytes2.size()) != n) {
    return absl::InvalidArgumentError(
        absl::StrCat("objective has ", n, " players, bytes ", bytes.bytes2.size()));
  }
  MultiChoiceProblem p;
  p.num_players = n;
  p.widths = {low_bits, high_bits};
  p.linear.assign(static_cast<size_t>(2) * n, 0.0);
  p.bytes.resize(static_cast<size_t>(2) * n);
  p.quadratic.assign(static_cast<size_t>(4) * n * n, 0.0);
  p.budget_bytes = budget_bytes;
  p.constant = objective.constant;
  const size_t nv = static_cast<size_t>(2) * n;
  for (int i = 0; i < n; ++i) {
    p.linear[2 * i] = objective.linear[i] + objective.K(i, i);
    p.bytes[2 * i] = bytes.bytes2[i];
    p.bytes[2 * i + 1] = bytes.bytes4[i];
    for (int j = 0; j < n; ++j)
      p.quadratic[(2 * static_cast<size_t>(i)) * nv + 2 * j] = 2.0 * objective.K(i, j);
  }
  return p;
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kRelaxIters = 50;  // per node; measured: 50 beat 70, 100, 200 on solver_bench
constexpr int kMinItersBeforeGiveUp = 15;
// The pairwise dual (MessageBound): sweeps at the root, at a node's first pass, and at the
// passes after a reduced-cost fixing (each stops early once it stalls); measured on
// solver_bench: 40/10 matched 20/5 and 60/20 on the surrogate ladder and needed half the nodes
// of 20/5 with interactions twice as large; 10/3 and 5/2 were slower.
constexpr int kRootSweeps = 100;
constexpr int kNodeSweeps = 40;
constexpr int kRefixSweeps = 10;
constexpr int kFixPasses = 3;
constexpr size_t kMaxStackMessages = size_t{1} << 22;  // 32 MiB of doubles

using Mask = uint32_t;

// The problem in the solver's working form. f(x) = aᵀx + ½xᵀPx on one-hot x.
struct Dense {
  int n = 0, m = 0, nv = 0;
  std::vector<double> a;  // nv
  std::vector<double> p;  // nv×nv, symmetric, zero diagonal blocks (the objective)
  // The relaxation F(x) = xᵀ(½P + D)x + (a − diag D)ᵀx with D block diagonal ([i][w][v]):
  // F equals f on one-hot points for every such D (x_{i,w}² = x_{i,w}, x_{i,w}·x_{i,v} = 0).
  std::vector<double> dblk;    // n·m·m
  std::vector<int64_t> bytes;  // nv
  int64_t budget = 0;
  std::vector<double> bn;  // bytes / max bytes (the relaxation's units)
  double budget_n = 0.0;
  double lipschitz = 1.0;  // ≥ 2·λ_max(½P + D)
  double scale = 0.0;      // Σ|a| + Σ_{i<j}|P|
  double tolerance = 0.0;
  double P(int k, int l) const { return p[static_cast<size_t>(k) * nv + l]; }
};

Dense MakeDense(const MultiChoiceProblem& prob, double relative_tolerance) {
  Dense d;
  d.n = prob.num_players;
  d.m = prob.num_widths();
  d.nv = d.n * d.m;
  d.a = prob.linear;
  d.p = prob.quadratic;
  for (int k = 0; k < d.nv; ++k) {
    for (int l = 0; l < d.nv; ++l) {
      if (k / d.m == l / d.m) d.p[static_cast<size_t>(k) * d.nv + l] = 0.0;  // the hint
    }
  }
  d.bytes = prob.bytes;
  d.budget = prob.budget_bytes;
  int64_t max_b = 1;
  for (int64_t b : d.bytes) max_b = std::max(max_b, b);
  d.bn.resize(d.nv);
  for (int k = 0; k < d.nv; ++k) d.bn[k] = static_cast<double>(d.bytes[k]) / max_b;
  d.budget_n = static_cast<double>(d.budget) / max_b;
  for (int k = 0; k < d.nv; ++k) {
    d.scale += std::fabs(d.a[k]);
    for (int l = k + 1; l < d.nv; ++l) d.scale += std::fabs(d.P(k, l));
  }
  d.tolerance = relative_tolerance * std::max(d.scale, 1e-300);
  d.dblk.assign(static_cast<size_t>(d.n) * d.m * d.m, 0.0);
  return d;
}

// The smallest t (within ~1e-9 relative, by bisection on Cholesky) such that A + t·B is
// positive definite, for B positive definite with λ_min(B) >= b_min; A, B nz×nz.
double GeneralizedShift(const std::vector<double>& a, const std::vector<double>& b, int nz,
                        double b_min) {
  double lo_eig = 0.0, scale = 0.0;
  for (int i = 0; i < nz; ++i) {
    double r = 0.0;
    for (int j = 0; j < nz; ++j) {
      if (j != i) r += std::fabs(a[static_cast<size_t>(i) * nz + j]);
    }
    const double dgl = a[static_cast<size_t>(i) * nz + i];
    lo_eig = i == 0 ? dgl - r : std::min(lo_eig, dgl - r);
    scale = std::max(scale, std::fabs(dgl) + r);
  }
  if (scale == 0.0) return 1e-300;
  std::vector<double> work;
  auto pd = [&](double t) {
    work = a;
    for (size_t k = 0; k < work.size(); ++k) work[k] += t * b[k];
    return CholeskyFactor(work, nz);
  };
  // A + t·B ⪰ (λ_min(A) + t·b_min)·I for t >= 0 and ⪯ (λ_max(A) + t·b_min)·I for t <= 0.
  double hi = std::max(0.0, -lo_eig) / b_min + 1e-9 * scale / b_min;
  double lo = -scale / b_min;
  for (int it = 0; it < 8 && !pd(hi); ++it) hi += scale / b_min;  // rounding safety
  if (pd(lo)) return lo;
  for (int it = 0; it < 200 && hi - lo > 1e-9 * scale / b_min; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (pd(mid)) {
      hi = mid;
    } else {
      lo = mid;
    }
  }
  return hi;
}

// Sets D = base + t·diag(s) with the smallest t making Zᵀ(½P + D)Z positive definite (plus a
// margin), Z block diagonal with each player's Helmert basis of {Σ_w d_w = 0}: F is then
// convex on the directions that keep every player's weights summing to 1 (the only ones the
// relaxation moves along). s = 1 is bqp.cc's uniform shift, s ∝ a scale per variable its
// proportional one. Also sets the step size.
void SetConvexification(Dense& d, const std::vector<double>& base, const std::vector<double>& s) {
  const int n = d.n, m = d.m, r = m - 1, nz = n * r;
  auto M = [&](int i, int w, int j, int v) {
    return i == j ? base[(static_cast<size_t>(i) * m + w) * m + v]
                  : 0.5 * d.P(i * m + w, j * m + v);
  };
  double t = 0.0, gersh = 0.0;
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < m; ++w) {
      double row = 0.0;
      for (int j = 0; j < n; ++j) {
        for (int v = 0; v < m; ++v) row += std::fabs(M(i, w, j, v));
      }
      gersh = std::max(gersh, row);
    }
  }
  double s_min = kInf, s_max = 0.0;
  for (double x : s) s_min = std::min(s_min, x), s_max = std::max(s_max, x);
  if (nz > 0) {
    std::vector<double> z(static_cast<size_t>(m) * r, 0.0);  // [w][k]
    for (int k = 0; k < r; ++k) {
      const double c = 1.0 / std::sqrt(static_cast<double>((k + 1) * (k + 2)));
      for (int w = 0; w <= k; ++w) z[static_cast<size_t>(w) * r + k] = c;
      z[static_cast<size_t>(k + 1) * r + k] = -(k + 1) * c;
    }
    std::vector<double> mz(static_cast<size_t>(nz) * nz, 0.0);
    std::vector<double> sz(static_cast<size_t>(nz) * nz, 0.0);  // Zᵀ·diag(s)·Z
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        for (int ka = 0; ka < r; ++ka) {
          for (int kb = 0; kb < r; ++kb) {
            double acc = 0.0, acc_s = 0.0;
            for (int w = 0; w < m; ++w) {
              const double zw = z[static_cast<size_t>(w) * r + ka];
              if (zw == 0.0) continue;
              for (int v = 0; v < m; ++v)
                acc += zw * M(i, w, j, v) * z[static_cast<size_t>(v) * r + kb];
              if (i == j) acc_s += zw * s[i * m + w] * z[static_cast<size_t>(w) * r + kb];
            }
            mz[static_cast<size_t>(i * r + ka) * nz + j * r + kb] = acc;
            sz[static_cast<size_t>(i * r + ka) * nz + j * r + kb] = acc_s;
          }
        }
      }
    }
    // The shift is within ~1e-9 relative of the smallest; the margin keeps F convex against
    // that slack.
    t = (s_min == s_max ? PositiveDefiniteShift(mz, nz) / s_min
                        : GeneralizedShift(mz, sz, nz, s_min)) +
        1e-9 * std::max(gersh, 1e-300) / s_min;
  }
  d.dblk = base;
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < m; ++w)
      d.dblk[(static_cast<size_t>(i) * m + w) * m + w] += t * s[i * m + w];
  }
  // Floored relative to the objective's size: with K = 0 (one player, or no interactions)
  // the curvature is ~0 and an unbounded step would overflow the projection.
  double max_a = 0.0;
  for (double a : d.a) max_a = std::max(max_a, std::fabs(a));
  d.lipschitz = std::max({2.0 * (gersh + std::fabs(t) * s_max), 1e-9 * (max_a + gersh), 1e-300});
}

// One-hot value without the constant.
double Value(const Dense& d, std::span<const int> c) {
  double v = 0.0;
  for (int i = 0; i < d.n; ++i) {
    const int k = i * d.m + c[i];
    v += d.a[k];
    for (int j = i + 1; j < d.n; ++j) v += d.P(k, j * d.m + c[j]);
  }
  return v;
}

struct Segment {
  double slope, db, dc;
  int player, order;
};

// min Σ cost·x over x_i in the simplex of allowed_i, Σ bn·x ≤ budget_n: the LP relaxation of
// a multiple-choice knapsack, exact. Each player starts at its smallest-bytes width (cheapest
// among ties) and moves along the lower convex hull of its (bytes, cost) points; the hull
// segments of all players are taken in order of slope (cost per byte) while the budget lasts,
// the last one fractionally. +inf when even the smallest footprint misses the budget.
double KnapsackLp(const Dense& d, std::span<const double> cost, std::span<const Mask> allowed,
                  std::vector<Segment>& segs, double* price = nullptr) {
  if (price != nullptr) *price = 0.0;
  double value = 0.0, used = 0.0;
  segs.clear();
  for (int i = 0; i < d.n; ++i) {
    const int base = i * d.m;
    int cur = -1;
    for (int w = 0; w < d.m; ++w) {
      if (!(allowed[i] >> w & 1u)) continue;
      const int k = base + w;
      if (cur < 0 || d.bn[k] < d.bn[cur] || (d.bn[k] == d.bn[cur] && cost[k] < cost[cur])) cur = k;
    }
    value += cost[cur];
    used += d.bn[cur];
    for (int order = 0;; ++order) {
      int next = -1;
      double best = 0.0;
      for (int w = 0; w < d.m; ++w) {
        const int k = base + w;
        if (!(allowed[i] >> w & 1u) || d.bn[k] <= d.bn[cur] || cost[k] >= cost[cur]) continue;
        const double slope = (cost[k] - cost[cur]) / (d.bn[k] - d.bn[cur]);
        if (next < 0 || slope < best || (slope == best && d.bn[k] > d.bn[next])) {
          best = slope;
          next = k;
        }
      }
      if (next < 0) break;
      segs.push_back({best, d.bn[next] - d.bn[cur], cost[next] - cost[cur], i, order});
      cur = next;
    }
  }
  // Exact integer feasibility is tested by the callers; allow the rounding of the sum here.
  if (used > d.budget_n * (1.0 + 1e-12) + 1e-300) return kInf;
  std::sort(segs.begin(), segs.end(), [](const Segment& x, const Segment& y) {
    if (x.slope != y.slope) return x.slope < y.slope;
    return x.player != y.player ? x.player < y.player : x.order < y.order;
  });
  for (const Segment& s : segs) {
    if (used + s.db <= d.budget_n) {
      value += s.dc;
      used += s.db;
    } else {
      value += s.dc * std::max(0.0, d.budget_n - used) / s.db;
      if (price != nullptr) *price = -s.slope;
      break;
    }
  }
  return value;
}

int FixedWidth(Mask mask) { return std::countr_zero(mask); }
bool IsFixed(Mask mask) { return std::has_single_bit(mask); }

// Bound (1) of the file comment.
double SplitBound(const Dense& d, std::span<const Mask> allowed, std::vector<double>& rho,
                  std::vector<Segment>& segs) {
  rho.assign(d.nv, 0.0);
  for (int i = 0; i < d.n; ++i) {
    for (int w = 0; w < d.m; ++w) {
      if (!(allowed[i] >> w & 1u)) continue;
      const int k = i * d.m + w;
      double r = d.a[k];
      for (int j = 0; j < d.n; ++j) {
        if (j == i) continue;
        if (IsFixed(allowed[j])) {
          // Fixed–fixed pairs are split in halves between the two players, fixed–free pairs
          // are carried whole by the free player.
          const double pkl = d.P(k, j * d.m + FixedWidth(allowed[j]));
          if (!IsFixed(allowed[i])) {
            r += pkl;
          } else {
            r += 0.5 * pkl;
          }
        } else if (!IsFixed(allowed[i])) {
          double lo = kInf;
          for (int v = 0; v < d.m; ++v) {
            if (allowed[j] >> v & 1u) lo = std::min(lo, d.P(k, j * d.m + v));
          }
          r += 0.5 * lo;
        }
      }
      rho[k] = r;
    }
  }
  return KnapsackLp(d, rho, allowed, segs);
}

// Bound (3) of the file comment: the pairwise dual. delta[(i·n + j)·m + w] is the message of
// the pair {i, j} to player i's width w (warm start in, updated out; empty: the split bound's
// messages ½·min_v P). With u_i(w) = a_{i,w} + Σ_{fixed j} P + Σ_{free j} delta_ij(w), every
// choice of the node has value c_fixed + Σ_i u_i(c_i) + Σ_{free pairs} R_ij(c_i, c_j), with
// R_ij(w, v) = P((i,w),(j,v)) − delta_ij(w) − delta_ji(v), for ANY messages; so
// c_fixed + KnapsackLp(u) + Σ min R_ij is a bound. MPLP's pair updates (block coordinate
// ascent on the dual, unaries priced by the knapsack's budget price λ) raise it. Out:
// `reduced`[k] = u_k + λ·bn_k for the allowed widths of free players, and `lagrangian` =
// c_fixed + Σ_i min_w reduced + λ·(fixed players' bytes) − λ·budget_n + Σ min R: the bound of
// the same messages at price λ, so removing width w of free player i leaves a node whose
// bound is at least lagrangian + reduced_w − min_w' reduced_w'.
struct MessageOut {
  double bound = -kInf;
  double lagrangian = -kInf;
  std::vector<double> reduced;
};

double MessageBound(const Dense& d, std::span<const Mask> allowed, std::vector<double>& delta,
                    int max_sweeps, double target, MessageOut& out, std::vector<Segment>& segs) {
  const int n = d.n, m = d.m;
  std::vector<int> free_players;
  double c_fixed = 0.0;
  for (int i = 0; i < n; ++i) {
    if (!IsFixed(allowed[i])) {
      free_players.push_back(i);
      continue;
    }
    const int k = i * m + FixedWidth(allowed[i]);
    c_fixed += d.a[k];
    for (int j = i + 1; j < n; ++j) {
      if (IsFixed(allowed[j])) c_fixed += d.P(k, j * m + FixedWidth(allowed[j]));
    }
  }
  const size_t nm = static_cast<size_t>(n) * m;
  if (delta.size() != nm * n) {
    delta.assign(nm * n, 0.0);
    for (int i : free_players) {
      for (int j : free_players) {
        if (j == i) continue;
        for (int w = 0; w < m; ++w) {
          if (!(allowed[i] >> w & 1u)) continue;
          double lo = kInf;
          for (int v = 0; v < m; ++v) {
            if (allowed[j] >> v & 1u) lo = std::min(lo, d.P(i * m + w, j * m + v));
          }
          delta[(static_cast<size_t>(i) * n + j) * m + w] = 0.5 * lo;
        }
      }
    }
  }
  auto msg = [&](int i, int j) { return &delta[(static_cast<size_t>(i) * n + j) * m]; };
  // u: the unaries with the messages; cost: u for the knapsack (0 at fixed players: their
  // values are in c_fixed).
  std::vector<double> u(d.nv, 0.0);
  for (int i : free_players) {
    for (int w = 0; w < m; ++w) {
      if (!(allowed[i] >> w & 1u)) continue;
      const int k = i * m + w;
      double x = d.a[k];
      for (int j = 0; j < n; ++j) {
        if (j == i) continue;
        x += IsFixed(allowed[j]) ? d.P(k, j * m + FixedWidth(allowed[j])) : msg(i, j)[w];
      }
      u[k] = x;
    }
  }
  // Allowed widths of each free player.
  std::vector<int> widths_of(nm);
  std::vector<int> count(n, 0);
  for (int i : free_players) {
    for (int w = 0; w < m; ++w) {
      if (allowed[i] >> w & 1u) widths_of[i * m + count[i]++] = w;
    }
  }
  const int nf = static_cast<int>(free_players.size());
  auto residual_min = [&](int i, int j) {
    const double* di = msg(i, j);
    const double* dj = msg(j, i);
    double lo = kInf;
    for (int a = 0; a < count[i]; ++a) {
      const int w = widths_of[i * m + a];
      const double* prow = &d.p[static_cast<size_t>(i * m + w) * d.nv + j * m];
      for (int b = 0; b < count[j]; ++b) {
        const int v = widths_of[j * m + b];
        lo = std::min(lo, prow[v] - di[w] - dj[v]);
      }
    }
    return lo;
  };
  double res_sum = 0.0;
  for (int a = 0; a < nf; ++a) {
    for (int b = a + 1; b < nf; ++b) res_sum += residual_min(free_players[a], free_players[b]);
  }
  double lambda = 0.0;
  double best = c_fixed + KnapsackLp(d, u, allowed, segs, &lambda) + res_sum;
  if (best == kInf) return kInf;
  double ui[16], uj[16], mi[16], mj[16];
  for (int sweep = 0; sweep < max_sweeps && best < target && nf > 1; ++sweep) {
    res_sum = 0.0;
    for (int a = 0; a < nf; ++a) {
      const int i = free_players[a];
      for (int b = a + 1; b < nf; ++b) {
        const int j = free_players[b];
        double* di = msg(i, j);
        double* dj = msg(j, i);
        for (int x = 0; x < count[i]; ++x) {
          const int w = widths_of[i * m + x];
          ui[x] = u[i * m + w] + lambda * d.bn[i * m + w] - di[w];
          mi[x] = kInf;
        }
        for (int y = 0; y < count[j]; ++y) {
          const int v = widths_of[j * m + y];
          uj[y] = u[j * m + v] + lambda * d.bn[j * m + v] - dj[v];
          mj[y] = kInf;
        }
        for (int x = 0; x < count[i]; ++x) {
          const double* prow =
              &d.p[static_cast<size_t>(i * m + widths_of[i * m + x]) * d.nv + j * m];
          for (int y = 0; y < count[j]; ++y) {
            const double pv = prow[widths_of[j * m + y]];
            mi[x] = std::min(mi[x], pv + uj[y]);
            mj[y] = std::min(mj[y], pv + ui[x]);
          }
        }
        for (int x = 0; x < count[i]; ++x) {
          const int w = widths_of[i * m + x];
          const double nd = 0.5 * (mi[x] - ui[x]);
          u[i * m + w] += nd - di[w];
          di[w] = nd;
        }
        for (int y = 0; y < count[j]; ++y) {
          const int v = widths_of[j * m + y];
          const double nd = 0.5 * (mj[y] - uj[y]);
          u[j * m + v] += nd - dj[v];
          dj[v] = nd;
        }
        res_sum += residual_min(i, j);
      }
    }
    const double bound = c_fixed + KnapsackLp(d, u, allowed, segs, &lambda) + res_sum;
    const double gain = bound - best;
    best = std::max(best, bound);
    // Stalled: no gain, or too little to reach the target within the sweeps left.
    if (gain <= d.tolerance ||
        (target < kInf && gain * (max_sweeps - sweep - 1) < 0.5 * (target - best))) {
      break;
    }
  }
  out.bound = best;
  out.reduced.assign(d.nv, kInf);
  double lag = c_fixed + res_sum - lambda * d.budget_n;
  for (int i = 0; i < n; ++i) {
    if (IsFixed(allowed[i])) {
      lag += lambda * d.bn[i * m + FixedWidth(allowed[i])];
      continue;
    }
    double lo = kInf;
    for (int x = 0; x < count[i]; ++x) {
      const int k = i * m + widths_of[i * m + x];
      out.reduced[k] = u[k] + lambda * d.bn[k];
      lo = std::min(lo, out.reduced[k]);
    }
    lag += lo;
  }
  out.lagrangian = lag;
  return best;
}

// Euclidean projection of v onto the simplex of the allowed entries of one player (others 0).
void ProjectSimplex(const double* v, Mask allowed, int m, double* x) {
  if (std::has_single_bit(allowed)) {  // a fixed player
    for (int w = 0; w < m; ++w) x[w] = (allowed >> w & 1u) ? 1.0 : 0.0;
    return;
  }
  double sorted[16];
  int k = 0;
  for (int w = 0; w < m; ++w) {
    if (!(allowed >> w & 1u)) continue;
    // Insertion into descending order: at most 16 entries.
    int pos = k++;
    while (pos > 0 && sorted[pos - 1] < v[w]) sorted[pos] = sorted[pos - 1], --pos;
    sorted[pos] = v[w];
  }
  double cum = 0.0, theta = 0.0;
  for (int r = 0; r < k; ++r) {
    cum += sorted[r];
    const double t = (cum - 1.0) / (r + 1);
    if (sorted[r] - t > 0.0) theta = t;
  }
  for (int w = 0; w < m; ++w) x[w] = (allowed >> w & 1u) ? std::max(v[w] - theta, 0.0) : 0.0;
}

// Projection onto {x_i in the simplex of allowed_i, Σ bn·x ≤ budget_n}: by the KKT conditions
// x(μ) = simplex projections of v − μ·bn with the smallest μ ≥ 0 meeting the budget. The
// footprint of x(μ) is piecewise linear and non-increasing in μ (slope −Σ_i |A_i|·Var_{A_i}(bn)
// over each player's support A_i), so safeguarded Newton steps inside a bisection bracket
// find μ in a few evaluations; the feasible end of the bracket is returned.
void Project(const Dense& d, std::span<const Mask> allowed, std::span<const double> v,
             std::span<double> x, std::vector<double>& tmp) {
  tmp.resize(d.nv);
  double slope = 0.0;
  auto at = [&](double mu, std::span<double> out) {
    double cover = 0.0;
    slope = 0.0;
    for (int i = 0; i < d.n; ++i) {
      const int b = i * d.m;
      for (int w = 0; w < d.m; ++w) tmp[b + w] = v[b + w] - mu * d.bn[b + w];
      ProjectSimplex(&tmp[b], allowed[i], d.m, &out[b]);
      double s1 = 0.0, s2 = 0.0;
      int support = 0;
      for (int w = 0; w < d.m; ++w) {
        cover += d.bn[b + w] * out[b + w];
        if (out[b + w] > 0.0) s1 += d.bn[b + w], s2 += d.bn[b + w] * d.bn[b + w], ++support;
      }
      if (support > 0) slope -= s2 - s1 * s1 / support;
    }
    return cover;
  };
  const double limit = d.budget_n * (1.0 + 1e-12);
  if (at(0.0, x) <= limit) return;
  double lo = 0.0, hi = 1.0;
  for (int it = 0; it < 200 && at(hi, x) > limit; ++it) lo = hi, hi *= 2.0;
  double mu = hi;
  for (int it = 0; it < 60 && hi - lo > 1e-13 * hi; ++it) {
    const double cover = at(mu, x);
    if (cover <= limit) {
      hi = mu;
      if (cover >= limit - 1e-12 * std::max(d.budget_n, 1e-300)) break;  // on the budget
    } else {
      lo = mu;
    }
    double next = slope < 0.0 ? mu + (limit - cover) / slope : -1.0;
    if (!(next > lo && next < hi)) next = 0.5 * (lo + hi);
    mu = next;
  }
  at(hi, x);
}

// Bound (2) of the file comment; x: warm start in, last iterate out. Stops early once the
// bound reaches `target`, or once a feasible iterate lies below it (no bound can then reach it).
double RelaxationBound(const Dense& d, std::span<const Mask> allowed, int max_iters, double target,
                       std::vector<double>& x, std::vector<Segment>& segs) {
  const int nv = d.nv;
  std::vector<double> y, g(nv), v(nv), xn(nv), tmp;
  if (x.size() != static_cast<size_t>(nv)) {
    x.assign(nv, 0.0);
    for (int i = 0; i < d.n; ++i) {
      const double share = 1.0 / std::popcount(allowed[i]);
      for (int w = 0; w < d.m; ++w) {
        if (allowed[i] >> w & 1u) x[i * d.m + w] = share;
      }
    }
  }
  Project(d, allowed, std::vector<double>(x), x, tmp);
  y = x;
  // Fixed players sit at their one-hot point in every iterate and in the linear minimiser,
  // so their coordinates cancel in F(y) + ∇F(y)ᵀ(z − y): only the free players' allowed
  // variables (`act`) need gradients, and the fixed ones enter through constants:
  //   F(y) = c_F + Σ_{k∈act} y_k·(a_k − D_kk + f_k) + ½·y_actᵀ·P·y_act + y_actᵀ·D·y_act,
  //   f_k = Σ_{fixed j} P(k, (j, w_j)), c_F = Σ_{fixed j} a_{j,w_j} + Σ_{fixed j<l} P.
  std::vector<int> act, fixed;
  for (int i = 0; i < d.n; ++i) {
    if (IsFixed(allowed[i])) {
      fixed.push_back(i * d.m + FixedWidth(allowed[i]));
      continue;
    }
    for (int w = 0; w < d.m; ++w) {
      if (allowed[i] >> w & 1u) act.push_back(i * d.m + w);
    }
  }
  const int na = static_cast<int>(act.size());
  std::vector<double> pc(static_cast<size_t>(na) * na), lin(na);
  double c_fixed = 0.0, cover_fixed = 0.0;
  for (size_t u = 0; u < fixed.size(); ++u) {
    c_fixed += d.a[fixed[u]];
    cover_fixed += d.bn[fixed[u]];
    for (size_t q = u + 1; q < fixed.size(); ++q) c_fixed += d.P(fixed[u], fixed[q]);
  }
  for (int u = 0; u < na; ++u) {
    const int k = act[u];
    for (int q = 0; q < na; ++q) pc[static_cast<size_t>(u) * na + q] = d.P(k, act[q]);
    double f = 0.0;
    for (int kj : fixed) f += d.P(k, kj);
    lin[u] = d.a[k] - d.dblk[(static_cast<size_t>(k / d.m) * d.m + k % d.m) * d.m + k % d.m] + f;
  }
  std::fill(g.begin(), g.end(), 0.0);
  double t = 1.0, best = -kInf;
  const double step = 1.0 / d.lipschitz;
  for (int it = 0; it < max_iters; ++it) {
    double fy = c_fixed, gy = 0.0, cover = cover_fixed;
    bool nonnegative = true;
    for (int u = 0; u < na; ++u) {
      const int k = act[u];
      const double* row = &pc[static_cast<size_t>(u) * na];
      double s = 0.0;
      for (int q = 0; q < na; ++q) s += row[q] * y[act[q]];
      const int i = k / d.m, w = k % d.m;
      const double* drow = &d.dblk[(static_cast<size_t>(i) * d.m + w) * d.m];
      double dy = 0.0;
      for (int v = 0; v < d.m; ++v) dy += drow[v] * y[i * d.m + v];
      g[k] = s + 2.0 * dy + lin[u];
      fy += y[k] * (0.5 * s + dy + lin[u]);
      gy += g[k] * y[k];
      cover += d.bn[k] * y[k];
      nonnegative = nonnegative && y[k] >= 0.0;
    }
    const double lin_min = KnapsackLp(d, g, allowed, segs);
    if (lin_min == kInf) return kInf;
    const double bound = fy - gy + lin_min;
    best = std::max(best, bound);
    if (best >= target) break;
    if (nonnegative && cover <= d.budget_n) {
      if (fy - bound <= 0.1 * d.tolerance) break;
      if (fy < target && it >= kMinItersBeforeGiveUp) break;
    }
    for (int k = 0; k < nv; ++k) v[k] = y[k] - step * g[k];  // g = 0 off `act`
    Project(d, allowed, v, xn, tmp);
    const double tn = 0.5 * (1.0 + std::sqrt(1.0 + 4.0 * t * t));
    const double beta = (t - 1.0) / tn;
    // The extrapolated point stays on the affine hull (every player's weights sum to 1), where
    // F is convex, so the tangent-plane bound at it is valid although it may leave the box.
    for (int k = 0; k < nv; ++k) {
      y[k] = xn[k] + beta * (xn[k] - x[k]);
      x[k] = xn[k];
    }
    t = tn;
  }
  return best;
}

// Chooses D like bqp.cc chooses its diagonal, by the best root bound among: the uniform
// shift (D = t·I); the proportional one (D = t·diag(s), s_k the row sum of |½P|, so that
// variables with small interactions — wide widths — get a small shift); and, when the
// problem carries a hint in its diagonal blocks, the hint plus a uniform shift.
void Convexify(Dense& d, const MultiChoiceProblem& prob) {
  const int n = d.n, m = d.m, nv = d.nv;
  const size_t nb = static_cast<size_t>(n) * m * m;
  std::vector<double> hint(nb, 0.0), zero(nb, 0.0), ones(nv, 1.0), rows(nv, 0.0);
  bool any_hint = false;
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < m; ++w) {
      for (int v = 0; v < m; ++v) {
        const double x = 0.5 * prob.K(i, w, i, v);
        hint[(static_cast<size_t>(i) * m + w) * m + v] = x;
        any_hint = any_hint || x != 0.0;
      }
    }
  }
  double row_max = 0.0;
  for (int k = 0; k < nv; ++k) {
    for (int l = 0; l < nv; ++l) rows[k] += 0.5 * std::fabs(d.P(k, l));
    row_max = std::max(row_max, rows[k]);
  }
  if (row_max == 0.0) {  // no interactions: F is linear, any shift does
    SetConvexification(d, zero, ones);
    return;
  }
  for (double& r : rows) r = std::max(r, 1e-6 * row_max);
  const std::vector<Mask> root(n, (Mask{1} << m) - 1);
  std::vector<Segment> segs;
  double best = -kInf;
  Dense trial = d;
  for (int candidate = 0; candidate < 3; ++candidate) {
    if (candidate == 2 && !any_hint) break;
    SetConvexification(trial, candidate == 2 ? hint : zero, candidate == 1 ? rows : ones);
    std::vector<double> x;
    const double bound = RelaxationBound(trial, root, 300, kInf, x, segs);
    if (candidate == 0 || bound > best) {
      best = bound;
      d.dblk = trial.dblk;
      d.lipschitz = trial.lipschitz;
    }
  }
}

// g[i·m + w] = a_{i,w} + Σ_{j≠i} P((i,w), (j, c_j)): the value change of moving i to w is
// g[i,w] − g[i,c_i].
void Gradient(const Dense& d, std::span<const int> c, std::vector<double>& g) {
  g = d.a;
  for (int j = 0; j < d.n; ++j) {
    const int l = j * d.m + c[j];
    for (int k = 0; k < d.nv; ++k) {
      if (k / d.m != j) g[k] += d.P(k, l);
    }
  }
}

void Move(const Dense& d, std::vector<int>& c, std::vector<double>& g, int64_t& used, int j,
          int w) {
  const int from = j * d.m + c[j], to = j * d.m + w;
  for (int k = 0; k < d.nv; ++k) {
    if (k / d.m != j) g[k] += d.P(k, to) - d.P(k, from);
  }
  used += d.bytes[to] - d.bytes[from];
  c[j] = w;
}

// Moves players, outside the fixed ones of `allowed` (none when empty), to allowed widths of
// fewer bytes, smallest value increase per byte saved first, until c fits the budget.
// Returns false when it cannot.
bool Repair(const Dense& d, std::vector<int>& c, std::span<const Mask> allowed) {
  std::vector<double> g;
  Gradient(d, c, g);
  int64_t used = 0;
  for (int i = 0; i < d.n; ++i) used += d.bytes[i * d.m + c[i]];
  while (used > d.budget) {
    int pick = -1, pick_w = -1;
    double best = kInf;
    for (int i = 0; i < d.n; ++i) {
      const Mask mask = allowed.empty() ? ~Mask{0} : allowed[i];
      const int cur = i * d.m + c[i];
      for (int w = 0; w < d.m; ++w) {
        const int k = i * d.m + w;
        if (!(mask >> w & 1u) || d.bytes[k] >= d.bytes[cur]) continue;
        const double ratio = (g[k] - g[cur]) / static_cast<double>(d.bytes[cur] - d.bytes[k]);
        if (ratio < best) best = ratio, pick = i, pick_w = w;
      }
    }
    if (pick < 0) return false;
    Move(d, c, g, used, pick, pick_w);
  }
  return true;
}

// Best-improvement local search keeping c within the budget: single moves first; when none
// improves, the best move of two players together. REQUIRES: c feasible.
void LocalSearch(const Dense& d, std::vector<int>& c) {
  std::vector<double> g;
  Gradient(d, c, g);
  int64_t used = 0;
  for (int i = 0; i < d.n; ++i) used += d.bytes[i * d.m + c[i]];
  const double eps = 1e-12 * std::max(d.scale, 1e-300);
  while (true) {
    double best = -eps;
    int bi = -1, bw = -1, bj = -1, bv = -1;
    for (int i = 0; i < d.n; ++i) {
      const int cur = i * d.m + c[i];
      for (int w = 0; w < d.m; ++w) {
        const int k = i * d.m + w;
        if (w == c[i] || used + d.bytes[k] - d.bytes[cur] > d.budget) continue;
        if (g[k] - g[cur] < best) best = g[k] - g[cur], bi = i, bw = w;
      }
    }
    if (bi < 0) {
      for (int i = 0; i < d.n; ++i) {
        const int ci = i * d.m + c[i];
        for (int w = 0; w < d.m; ++w) {
          if (w == c[i]) continue;
          const int k = i * d.m + w;
          const double di = g[k] - g[ci];
          const int64_t ui = used + d.bytes[k] - d.bytes[ci];
          for (int j = i + 1; j < d.n; ++j) {
            const int cj = j * d.m + c[j];
            for (int v = 0; v < d.m; ++v) {
              if (v == c[j]) continue;
              const int l = j * d.m + v;
              if (ui + d.bytes[l] - d.bytes[cj] > d.budget) continue;
              const double delta =
                  di + g[l] - g[cj] + d.P(k, l) - d.P(k, cj) - d.P(ci, l) + d.P(ci, cj);
              if (delta < best) best = delta, bi = i, bw = w, bj = j, bv = v;
            }
          }
        }
      }
    }
    if (bi < 0) break;
    Move(d, c, g, used, bi, bw);
    if (bj >= 0) Move(d, c, g, used, bj, bv);
  }
}

// Over the widths in `mask` of player i: the smallest reduced cost of `mo` (+inf for an empty
// mask), and its width.
double MinReduced(const MessageOut& mo, Mask mask, int i, int m) {
  double lo = kInf;
  for (int w = 0; w < m; ++w) {
    if (mask >> w & 1u) lo = std::min(lo, mo.reduced[i * m + w]);
  }
  return lo;
}
int ArgMinReduced(const MessageOut& mo, Mask mask, int i, int m) {
  int best = FixedWidth(mask);
  for (int w = 0; w < m; ++w) {
    if ((mask >> w & 1u) && mo.reduced[i * m + w] < mo.reduced[i * m + best]) best = w;
  }
  return best;
}
// The width in `mask` of player i with the largest weight in x.
int Heaviest(std::span<const double> x, Mask mask, int i, int m) {
  int best = FixedWidth(mask);
  for (int w = 0; w < m; ++w) {
    if ((mask >> w & 1u) && x[i * m + w] > x[i * m + best]) best = w;
  }
  return best;
}

struct Node {
  std::vector<Mask> allowed;
  double bound = -kInf;       // the parent's bound: valid for this node
  std::vector<double> x;      // warm start for the relaxation
  std::vector<double> delta;  // warm start for the pairwise dual
};

MultiChoiceResult MakeResult(const MultiChoiceProblem& problem, std::vector<int> choice) {
  MultiChoiceResult r;
  r.objective = problem.Evaluate(choice);
  r.memory_bytes = problem.Footprint(choice);
  for (int c : choice) r.bits.push_back(problem.widths[c]);
  r.choice = std::move(choice);
  return r;
}

absl::Status CheckSolvable(const MultiChoiceProblem& problem) {
  RETURN_IF_ERROR(ValidateMultiChoiceProblem(problem));
  const int64_t min_bytes = problem.MinFootprint();
  if (problem.budget_bytes < min_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget ", problem.budget_bytes, " bytes is below the smallest footprint ",
                     min_bytes, " bytes (every player at its smallest width): no choice fits"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<MultiChoiceResult> SolveMultiChoiceExact(const MultiChoiceProblem& problem,
                                                        const MultiChoiceSolverOptions& options) {
  RETURN_IF_ERROR(CheckSolvable(problem));
  Dense d = MakeDense(problem, options.relative_tolerance);
  Convexify(d, problem);
  const int n = d.n, m = d.m;
  const Mask all = (Mask{1} << m) - 1;

  // Starting incumbents: every player at its smallest footprint (feasible), and every player
  // at its cheapest width alone, repaired into the budget; both locally improved.
  std::vector<int> incumbent(n);
  double inc_value = kInf;
  auto offer = [&](std::vector<int> c, std::span<const Mask> allowed) {
    if (!Repair(d, c, allowed)) return;
    LocalSearch(d, c);
    const double v = Value(d, c);
    if (v < inc_value) inc_value = v, incumbent = std::move(c);
  };
  {
    std::vector<int> small(n), cheap(n);
    for (int i = 0; i < n; ++i) {
      for (int w = 0; w < m; ++w) {
        const int k = i * m + w, s = i * m + small[i], c = i * m + cheap[i];
        if (d.bytes[k] < d.bytes[s] || (d.bytes[k] == d.bytes[s] && d.a[k] < d.a[s])) small[i] = w;
        if (d.a[k] < d.a[c]) cheap[i] = w;
      }
    }
    offer(std::move(small), {});
    offer(std::move(cheap), {});
  }

  std::vector<double> rho;
  std::vector<Segment> segs;
  std::vector<int> last_offered;
  double pruned_min = kInf;
  int64_t nodes = 0;
  bool exhausted = true;
  std::vector<Node> stack;
  // The bounds at the root decide which ones the nodes use (MultiChoiceBounding::kAuto).
  Node root{std::vector<Mask>(n, all), -kInf, {}, {}};
  bool pairwise = options.bounding == MultiChoiceBounding::kPairwise;
  {
    MessageOut mo;
    double pb = -kInf, rb = -kInf;
    if (options.bounding != MultiChoiceBounding::kRelaxation) {
      pb = MessageBound(d, root.allowed, root.delta, kRootSweeps, kInf, mo, segs);
    }
    if (options.bounding != MultiChoiceBounding::kPairwise) {
      rb = RelaxationBound(d, root.allowed, 300, kInf, root.x, segs);
    }
    if (options.bounding == MultiChoiceBounding::kAuto) {
      pairwise = !(inc_value - rb < 0.5 * (inc_value - pb));
    }
    root.bound = std::max(pb, rb);
    if (pairwise) {
      root.x.clear();
    } else {
      root.delta.clear();
    }
  }
  size_t stack_messages = 0;  // doubles of messages held by the stack's nodes
  auto push = [&](Node&& node) {
    stack_messages += node.delta.size();
    stack.push_back(std::move(node));
  };
  push(std::move(root));
  MessageOut mo;
  while (!stack.empty()) {
    if (nodes >= options.max_nodes) {
      exhausted = false;
      break;
    }
    Node node = std::move(stack.back());
    stack.pop_back();
    stack_messages -= node.delta.size();
    ++nodes;
    const double cutoff = inc_value - d.tolerance;
    if (node.bound >= cutoff) {
      pruned_min = std::min(pruned_min, node.bound);
      continue;
    }
    int64_t min_bytes = 0;
    int free_count = 0;
    for (int i = 0; i < n; ++i) {
      int64_t lo = std::numeric_limits<int64_t>::max();
      for (int w = 0; w < m; ++w) {
        if (node.allowed[i] >> w & 1u) lo = std::min(lo, d.bytes[i * m + w]);
      }
      min_bytes += lo;
      free_count += !IsFixed(node.allowed[i]);
    }
    if (min_bytes > d.budget) continue;  // infeasible: bound +inf
    if (free_count == 0) {
      std::vector<int> c(n);
      for (int i = 0; i < n; ++i) c[i] = FixedWidth(node.allowed[i]);
      const double v = Value(d, c);
      if (v < inc_value) inc_value = v, incumbent = c;
      pruned_min = std::min(pruned_min, v);
      continue;
    }
    double bound = node.bound;
    if (pairwise) {
      // The pairwise dual, then reduced-cost fixing: a width whose fixed child's bound reaches
      // the cutoff leaves the node (that child counts as pruned at its bound); the bound of
      // the smaller node is computed again, up to kFixPasses times.
      for (int pass = 0; pass < kFixPasses && bound < cutoff; ++pass) {
        bound =
            std::max(bound, MessageBound(d, node.allowed, node.delta,
                                         pass == 0 ? kNodeSweeps : kRefixSweeps, cutoff, mo, segs));
        if (bound >= cutoff) break;
        bool changed = false;
        for (int i = 0; i < n; ++i) {
          if (IsFixed(node.allowed[i])) continue;
          const double lo = MinReduced(mo, node.allowed[i], i, m);
          for (int w = 0; w < m; ++w) {
            if (!(node.allowed[i] >> w & 1u)) continue;
            const double b = mo.lagrangian + mo.reduced[i * m + w] - lo;
            if (b >= cutoff) {
              node.allowed[i] &= ~(Mask{1} << w);
              pruned_min = std::min(pruned_min, b);
              changed = true;
            }
          }
        }
        if (!changed) break;
      }
    } else {
      bound = std::max(bound, SplitBound(d, node.allowed, rho, segs));
      if (bound < cutoff) {
        bound =
            std::max(bound, RelaxationBound(d, node.allowed, kRelaxIters, cutoff, node.x, segs));
      }
    }
    if (bound < cutoff && (pairwise || !node.x.empty())) {
      // Primal: per player the relaxed point's heaviest width (the smallest reduced cost with
      // the pairwise dual), repaired within the node, improved.
      std::vector<int> c(n);
      for (int i = 0; i < n; ++i)
        c[i] = pairwise ? ArgMinReduced(mo, node.allowed[i], i, m)
                        : Heaviest(node.x, node.allowed[i], i, m);
      if (c != last_offered) {
        last_offered = c;
        offer(std::move(c), node.allowed);
      }
    }
    if (bound >= inc_value - d.tolerance) {
      pruned_min = std::min(pruned_min, bound);
      continue;
    }
    // Branching (the file comment): the most spread relaxed weights, or the smallest lead in
    // reduced cost of the best width over the second best.
    int branch = -1, branch_w = -1;
    double score = -kInf, rest_bound = bound;
    for (int i = 0; i < n; ++i) {
      if (IsFixed(node.allowed[i])) continue;
      if (pairwise) {
        const int best = ArgMinReduced(mo, node.allowed[i], i, m);
        const double lead =
            MinReduced(mo, node.allowed[i] & ~(Mask{1} << best), i, m) - mo.reduced[i * m + best];
        if (branch < 0 || -lead > score) {
          score = -lead, branch = i, branch_w = best;
          rest_bound = std::max(bound, mo.lagrangian + lead);
        }
      } else {
        const int heavy = Heaviest(node.x, node.allowed[i], i, m);
        const double spread = 1.0 - node.x[i * m + heavy];
        if (branch < 0 || spread > score) score = spread, branch = i, branch_w = heavy;
      }
    }
    if (branch < 0) {  // the fixing left one width per player: a leaf
      node.bound = bound;
      push(std::move(node));
      continue;
    }
    // The waiting sibling keeps a copy of the messages while the stack's copies stay within
    // kMaxStackMessages doubles (n²·m each: large for many players); beyond, it starts again
    // from the split's messages (a valid, looser start).
    std::vector<double> rest_delta;
    if (stack_messages + 2 * node.delta.size() <= kMaxStackMessages) rest_delta = node.delta;
    Node rest{node.allowed, rest_bound, node.x, std::move(rest_delta)};
    rest.allowed[branch] &= ~(Mask{1} << branch_w);
    push(std::move(rest));
    node.allowed[branch] = Mask{1} << branch_w;
    node.bound = bound;
    push(std::move(node));
  }
  double lower = std::min(pruned_min, inc_value);
  for (const Node& open : stack) lower = std::min(lower, open.bound);

  MultiChoiceResult result = MakeResult(problem, incumbent);
  result.lower_bound = lower + problem.constant;
  result.proven_optimal = exhausted;
  result.nodes = nodes;
  return result;
}

namespace internal {

MultiChoiceBounds MultiChoiceNodeBounds(const MultiChoiceProblem& problem,
                                        std::span<const uint32_t> allowed, int max_iters) {
  Dense d = MakeDense(problem, 1e-9);
  Convexify(d, problem);
  std::vector<double> rho, x;
  std::vector<Segment> segs;
  MultiChoiceBounds b;
  b.split = SplitBound(d, allowed, rho, segs) + problem.constant;
  b.relaxation = RelaxationBound(d, allowed, max_iters, kInf, x, segs) + problem.constant;
  std::vector<double> delta;
  MessageOut mo;
  b.pairwise = MessageBound(d, allowed, delta, max_iters, kInf, mo, segs) + problem.constant;
  b.pairwise_fixing.assign(d.nv, kInf);
  if (b.pairwise < kInf) {
    for (int i = 0; i < d.n; ++i) {
      if (IsFixed(allowed[i])) continue;
      const double lo = MinReduced(mo, allowed[i], i, d.m);
      for (int w = 0; w < d.m; ++w) {
        if (allowed[i] >> w & 1u) {
          b.pairwise_fixing[i * d.m + w] =
              mo.lagrangian + mo.reduced[i * d.m + w] - lo + problem.constant;
        }
      }
    }
  }
  return b;
}

}  // namespace internal

absl::StatusOr<MultiChoiceResult> SolveMultiChoiceBruteForce(const MultiChoiceProblem& problem) {
  RETURN_IF_ERROR(CheckSolvable(problem));
  const int n = problem.num_players, m = problem.num_widths();
  double total = 1.0;
  for (int i = 0; i < n; ++i) total *= m;
  if (total > 16777216.0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("brute force over ", m, "^", n, " choices refused (limit 2^24)"));
  }
  const Dense d = MakeDense(problem, 1e-9);
  // Depth-first over players with the partial value and footprint of the prefix.
  std::vector<int> c(n, 0), best;
  double best_value = kInf;
  int64_t count = 0;
  auto visit = [&](auto&& self, int i, double value, int64_t used) -> void {
    if (i == n) {
      ++count;
      if (used <= d.budget && value < best_value) best_value = value, best = c;
      return;
    }
    for (int w = 0; w < m; ++w) {
      const int k = i * m + w;
      double v = value + d.a[k];
      for (int j = 0; j < i; ++j) v += d.P(k, j * m + c[j]);
      c[i] = w;
      self(self, i + 1, v, used + d.bytes[k]);
    }
  };
  visit(visit, 0, 0.0, 0);
  MultiChoiceResult result = MakeResult(problem, best);
  result.lower_bound = result.objective;
  result.proven_optimal = true;
  result.nodes = count;
  return result;
}

}  // namespace impq::solver
