// Measured local search around an allocation (local_search.h).
#include "solver/local_search.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/linalg.h"

namespace impq::solver {
namespace {

// Calls fn(combination) for every k-subset of `items`, lexicographically by position.
void ForEachCombination(const std::vector<int>& items, int k,
                        const std::function<void(const std::vector<int>&)>& fn) {
  const int m = static_cast<int>(items.size());
  if (k < 0 || k > m) return;
  std::vector<int> idx(k);
  std::iota(idx.begin(), idx.end(), 0);
  std::vector<int> combo(k);
  while (true) {
    for (int t = 0; t < k; ++t) combo[t] = items[idx[t]];
    fn(combo);
    int t = k - 1;
    while (t >= 0 && idx[t] == m - k + t) --t;
    if (t < 0) return;
    ++idx[t];
    for (int u = t + 1; u < k; ++u) idx[u] = idx[u - 1] + 1;
  }
}

}  // namespace

absl::StatusOr<std::vector<Coalition>> BudgetNeighbours(const Coalition& q,
                                                        const PlayerBytes& bytes,
                                                        int64_t budget_bytes,
                                                        const NeighbourhoodOptions& o) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  const int n = static_cast<int>(bytes.bytes2.size());
  RETURN_IF_ERROR(ValidateCoalition(q, n));
  if (o.max_raised < 1 || o.max_dropped < 0 || o.max_changed < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "neighbourhood: max_raised ", o.max_raised, ", max_dropped ", o.max_dropped,
        ", max_changed ", o.max_changed, "; expected >= 1, >= 0, >= 1"));
  }
  const int k = o.steps_per_player;
  if (k < 1 || n % k != 0) {
    return absl::InvalidArgumentError(absl::StrCat("neighbourhood: steps_per_player ", k,
                                                   " does not divide the ", n, " entries"));
  }
  std::vector<int> in, out;  // entries that can be raised (to 0) and dropped (to 1)
  if (k == 1) {
    for (int i = 0; i < n; ++i) (q[i] != 0 ? in : out).push_back(i);
  } else {
    for (int p = 0; p < n / k; ++p) {
      int taken = 0;
      while (taken < k && q[p * k + taken] != 0) ++taken;
      for (int r = taken; r < k; ++r) {
        if (q[p * k + r] != 0) {
          return absl::InvalidArgumentError(
              absl::StrCat("neighbourhood: coalition ", CoalitionToString(q),
                           " is not closed (player ", p, ", step ", r, ")"));
        }
      }
      if (taken > 0) in.push_back(p * k + taken - 1);
      if (taken < k) out.push_back(p * k + taken);
    }
  }
  const int64_t footprint = Footprint(bytes, q);
  auto saving = [&](int i) { return bytes.bytes4[i] - bytes.bytes2[i]; };
  std::vector<Coalition> result;
  for (int changed = 1; changed <= o.max_changed; ++changed) {
    for (int r = 1; r <= std::min(changed, o.max_raised); ++r) {
      const int d = changed - r;
      if (d > o.max_dropped) continue;
      ForEachCombination(in, r, [&](const std::vector<int>& raised) {
        int64_t after_raise = footprint;
        for (int i : raised) after_raise += saving(i);
        ForEachCombination(out, d, [&](const std::vector<int>& dropped) {
          int64_t after = after_raise;
          int64_t smallest_drop = INT64_MAX;
          for (int j : dropped) {
            after -= saving(j);
            smallest_drop = std::min(smallest_drop, saving(j));
          }
          if (after > budget_bytes) return;
          // Minimal: without its least-saving drop the move would not fit (else a smaller move,
          // also generated, dominates it in a monotone game).
          if (d > 0 && after + smallest_drop <= budget_bytes) return;
          if (k > 1) {  // one rung per player and move
            for (int i : raised) {
              for (int j : dropped) {
                if (i / k == j / k) return;
              }
            }
          }
          Coalition next = q;
          for (int i : raised) next[i] = 0;
          for (int j : dropped) next[j] = 1;
          result.push_back(std::move(next));
        });
      });
    }
  }
  return result;
}

absl::StatusOr<LocalSearchResult> MeasuredLocalSearch(CoalitionEvaluator& evaluator,
                                                      const PlayerBytes& bytes,
                                                      int64_t budget_bytes,
                                                      const Observation& start,
                                                      std::span<const Observation> measured,
                                                      const NeighbourRanker& ranker,
                                                      const LocalSearchOptions& options) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  const int n = static_cast<int>(bytes.bytes2.size());
  RETURN_IF_ERROR(ValidateCoalition(start.coalition, n));
  if (options.max_evaluations < 0 || options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local search: max_evaluations ", options.max_evaluations, ", batch_size ",
        options.batch_size, "; expected >= 0 and >= 1"));
  }
  if (Footprint(bytes, start.coalition) > budget_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "local search: start ", CoalitionToString(start.coalition), " needs ",
        Footprint(bytes, start.coalition), " bytes, over the budget of ", budget_bytes));
  }
  if (!std::isfinite(start.loss)) {
    return absl::InvalidArgumentError("local search: the start's loss is not finite");
  }
  LocalSearchResult result;
  result.best = start;
  result.stop_reason = "evaluations";
  absl::flat_hash_set<Coalition> seen;
  seen.insert(start.coalition);
  for (const Observation& m : measured) seen.insert(m.coalition);
  // Everything measured: the caller's, the start, then the search's (appended as it goes).
  std::vector<Observation> data(measured.begin(), measured.end());
  data.push_back(start);
  while (static_cast<int64_t>(result.evaluated.size()) < options.max_evaluations) {
    ASSIGN_OR_RETURN(std::vector<Coalition> neighbours,
                     BudgetNeighbours(result.best.coalition, bytes, budget_bytes,
                                      options.neighbourhood));
    std::vector<Coalition> open;
    for (Coalition& c : neighbours) {
      if (!seen.contains(c)) open.push_back(std::move(c));
    }
    if (open.empty()) {
      result.stop_reason = "exhausted";
      break;
    }
    ASSIGN_OR_RETURN(std::vector<double> scores, ranker(data, result.best, open));
    if (scores.size() != open.size()) {
      return absl::InternalError(absl::StrCat("local search: the ranker scored ", scores.size(),
                                              " of ", open.size(), " neighbours"));
    }
    ++result.rounds;
    std::vector<std::pair<double, size_t>> ranked;
    for (size_t k = 0; k < open.size(); ++k) {
      if (!std::isfinite(scores[k])) {
        return absl::InternalError(absl::StrCat("local search: the ranker's score of ",
                                                CoalitionToString(open[k]), " is not finite"));
      }
      ranked.push_back({scores[k], k});
    }
    std::stable_sort(ranked.begin(), ranked.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    const int64_t left = options.max_evaluations - static_cast<int64_t>(result.evaluated.size());
    const size_t take = static_cast<size_t>(
        std::min<int64_t>({options.batch_size, left, static_cast<int64_t>(ranked.size())}));
    std::vector<Coalition> batch;
    for (size_t t = 0; t < take; ++t) batch.push_back(open[ranked[t].second]);
    ASSIGN_OR_RETURN(std::vector<double> losses, evaluator.Evaluate(batch));
    bool moved = false;
    for (size_t t = 0; t < batch.size(); ++t) {
      Observation ob{batch[t], losses[t]};
      seen.insert(ob.coalition);
      data.push_back(ob);
      result.evaluated.push_back(ob);
      if (ob.loss < result.best.loss) {
        result.best = ob;
        moved = true;
      }
    }
    if (moved) ++result.moves;
  }
  return result;
}

NeighbourRanker QuadraticModelRanker(QuadraticFit fit) {
  return [fit = std::move(fit)](std::span<const Observation> measured, const Observation& incumbent,
                                std::span<const Coalition> neighbours)
             -> absl::StatusOr<std::vector<double>> {
    ASSIGN_OR_RETURN(QuadraticObjective obj, fit(measured, incumbent.coalition));
    RETURN_IF_ERROR(ValidateObjective(obj));
    if (obj.num_players != static_cast<int>(incumbent.coalition.size())) {
      return absl::InvalidArgumentError(absl::StrCat("quadratic ranker: the model has ",
                                                     obj.num_players, " players, expected ",
                                                     incumbent.coalition.size()));
    }
    std::vector<double> scores;
    scores.reserve(neighbours.size());
    for (const Coalition& q : neighbours) scores.push_back(obj.Evaluate(q));
    return scores;
  };
}

absl::StatusOr<MarginalPrior> MarginalsNearSize(int n, std::span<const SizedMarginal> marginals,
                                                double target_size, double bandwidth) {
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("marginals near size: ", n, " players"));
  if (!(bandwidth > 0) || !std::isfinite(target_size)) {
    return absl::InvalidArgumentError(absl::StrCat("marginals near size: bandwidth ", bandwidth,
                                                   ", target ", target_size,
                                                   "; expected > 0 and finite"));
  }
  const size_t nn = static_cast<size_t>(n);
  std::vector<double> sw(nn, 0), sw2(nn, 0), swx(nn, 0), swxx(nn, 0);
  const double inv_two_var = 1.0 / (2.0 * bandwidth * bandwidth);
  for (const SizedMarginal& m : marginals) {
    if (m.player < 0 || m.player >= n || !std::isfinite(m.value)) {
      return absl::InvalidArgumentError(absl::StrCat("marginals near size: bad marginal of player ",
                                                     m.player, " (value ", m.value, ")"));
    }
    const double d = static_cast<double>(m.size) - target_size;
    const double w = std::exp(-d * d * inv_two_var);
    const size_t i = static_cast<size_t>(m.player);
    sw[i] += w;
    sw2[i] += w * w;
    swx[i] += w * m.value;
  }
  MarginalPrior prior;
  prior.mean.assign(nn, 0);
  for (size_t i = 0; i < nn; ++i) {
    if (!(sw[i] > 0)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "marginals near size: player ", i, " has no observed marginal near size ", target_size));
    }
    prior.mean[i] = swx[i] / sw[i];
  }
  // Spread around the weighted mean, in a second pass (no cancellation).
  for (const SizedMarginal& m : marginals) {
    const double d = static_cast<double>(m.size) - target_size;
    const double w = std::exp(-d * d * inv_two_var);
    const size_t i = static_cast<size_t>(m.player);
    swxx[i] += w * (m.value - prior.mean[i]) * (m.value - prior.mean[i]);
  }
  std::vector<double> spread(nn), n_eff(nn);
  double spread_sum = 0;
  int spread_count = 0;
  for (size_t i = 0; i < nn; ++i) {
    spread[i] = swxx[i] / sw[i];
    n_eff[i] = sw[i] * sw[i] / sw2[i];
    if (n_eff[i] >= 2) spread_sum += spread[i], ++spread_count;
  }
  // With no player seen twice near the size, nothing measures the spread: the squared mean
  // marginal stands in (a coefficient of variation of one).
  double pooled = 0;
  if (spread_count > 0) {
    pooled = spread_sum / spread_count;
  } else {
    for (double m : prior.mean) pooled += m * m / static_cast<double>(n);
  }
  if (!(pooled > 0)) pooled = std::numeric_limits<double>::min();
  prior.variance.resize(nn);
  for (size_t i = 0; i < nn; ++i) {
    const double v = n_eff[i] >= 2 && spread[i] > 0 ? spread[i] : pooled;
    prior.variance[i] = v / n_eff[i];
  }
  prior.residual_variance = pooled;
  return prior;
}

NeighbourRanker FirstOrderRanker(MarginalPrior prior, int radius) {
  return [prior = std::move(prior), radius](std::span<const Observation> measured,
                                            const Observation& incumbent,
                                            std::span<const Coalition> neighbours)
             -> absl::StatusOr<std::vector<double>> {
    const int n = static_cast<int>(incumbent.coalition.size());
    if (static_cast<int>(prior.mean.size()) != n || static_cast<int>(prior.variance.size()) != n ||
        !(prior.residual_variance > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "first-order ranker: prior of ", prior.mean.size(), " players for ", n,
          " (or residual variance ", prior.residual_variance, " not > 0)"));
    }
    const size_t nn = static_cast<size_t>(n);
    // Posterior precision P = diag(1/s²) + XᵀX/σ², right-hand side m/s² + Xᵀy/σ².
    std::vector<double> p(nn * nn, 0.0), rhs(nn);
    for (size_t i = 0; i < nn; ++i) {
      p[i * nn + i] = 1.0 / prior.variance[i];
      rhs[i] = prior.mean[i] / prior.variance[i];
    }
    const double inv_res = 1.0 / prior.residual_variance;
    std::vector<int> diff;
    for (const Observation& ob : measured) {
      RETURN_IF_ERROR(ValidateCoalition(ob.coalition, n));
      diff.clear();
      for (int i = 0; i < n; ++i) {
        if (ob.coalition[i] != incumbent.coalition[i]) diff.push_back(i);
      }
      if (diff.empty() || static_cast<int>(diff.size()) > radius) continue;
      const double y = ob.loss - incumbent.loss;
      for (int i : diff) {
        const double xi = ob.coalition[i] != 0 ? 1.0 : -1.0;  // dropped: +1, raised: −1
        rhs[i] += xi * y * inv_res;
        for (int j : diff) {
          const double xj = ob.coalition[j] != 0 ? 1.0 : -1.0;
          p[static_cast<size_t>(i) * nn + j] += xi * xj * inv_res;
        }
      }
    }
    if (!CholeskyFactor(p, n)) {
      return absl::InternalError("first-order ranker: posterior precision not positive definite");
    }
    std::vector<double> mu = rhs;
    CholeskySolve(p, n, mu);
    std::vector<double> scores;
    scores.reserve(neighbours.size());
    std::vector<double> z(nn);
    for (const Coalition& q : neighbours) {
      RETURN_IF_ERROR(ValidateCoalition(q, n));
      double mean = 0;
      for (size_t i = 0; i < nn; ++i) {
        z[i] = static_cast<double>(q[i]) - static_cast<double>(incumbent.coalition[i]);
        mean += z[i] * mu[i];
      }
      // xᵀP⁻¹x = ‖L⁻¹x‖²: forward substitution with the lower factor.
      double var = prior.residual_variance;
      for (size_t i = 0; i < nn; ++i) {
        double v = z[i];
        for (size_t j = 0; j < i; ++j) v -= p[i * nn + j] * z[j];
        z[i] = v / p[i * nn + i];
        var += z[i] * z[i];
      }
      scores.push_back(mean / std::sqrt(var));
    }
    return scores;
  };
}

}  // namespace impq::solver
