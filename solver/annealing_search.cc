#include "solver/annealing_search.h"

#include <algorithm>
#include <cmath>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace impq::solver {

absl::StatusOr<double> MeasuredGame::Loss(const Coalition& q) {
  if (auto it = loss_.find(q); it != loss_.end()) return it->second;
  ASSIGN_OR_RETURN(std::vector<double> v, evaluator_.Evaluate(std::span<const Coalition>(&q, 1)));
  loss_.emplace(q, v[0]);
  return v[0];
}

std::vector<Observation> MeasuredGame::Lowest(size_t k) const {
  std::vector<Observation> all;
  all.reserve(loss_.size());
  for (const auto& [q, loss] : loss_) all.push_back({q, loss});
  // Stable: the map's coalition order breaks ties.
  std::stable_sort(all.begin(), all.end(),
                   [](const Observation& a, const Observation& b) { return a.loss < b.loss; });
  if (all.size() > k) all.resize(k);
  return all;
}

Coalition RandomBudgetNeighbour(const Coalition& q, const PlayerBytes& bytes,
                                int64_t budget_bytes, int max_raised, Rng& rng) {
  std::vector<int> low, high;  // players at 2 bits, at 4 bits
  for (int i = 0; i < static_cast<int>(q.size()); ++i) (q[i] != 0 ? low : high).push_back(i);
  if (low.empty()) return q;
  const int raise = std::min<int>(static_cast<int>(low.size()),
                                  1 + static_cast<int>(rng.Below(static_cast<uint64_t>(max_raised))));
  rng.Shuffle(std::span<int>(low));
  rng.Shuffle(std::span<int>(high));
  Coalition next = q;
  int64_t footprint = Footprint(bytes, q);
  for (int r = 0; r < raise; ++r) {
    next[low[r]] = 0;
    footprint += bytes.bytes4[low[r]] - bytes.bytes2[low[r]];
  }
  for (size_t h = 0; h < high.size() && footprint > budget_bytes; ++h) {
    next[high[h]] = 1;
    footprint -= bytes.bytes4[high[h]] - bytes.bytes2[high[h]];
  }
  return footprint <= budget_bytes ? next : q;
}

absl::StatusOr<AnnealingResult> Anneal(MeasuredGame& game, const PlayerBytes& bytes,
                                       int64_t budget_bytes, const Coalition& start,
                                       const AnnealingOptions& o, Rng& rng,
                                       const AnnealingProgress& progress) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  const int n = static_cast<int>(bytes.bytes2.size());
  RETURN_IF_ERROR(ValidateCoalition(start, n));
  if (o.evaluations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("AnnealingOptions.evaluations = ", o.evaluations, "; expected >= 1"));
  }
  if (!(o.t0 > 0 && o.t1 > 0 && o.t1 <= o.t0)) {
    return absl::InvalidArgumentError(absl::StrCat("AnnealingOptions: t0 = ", o.t0, ", t1 = ",
                                                   o.t1, "; expected 0 < t1 <= t0"));
  }
  if (o.max_raised < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("AnnealingOptions.max_raised = ", o.max_raised, "; expected >= 1"));
  }
  if (const int64_t f = Footprint(bytes, start); f > budget_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("Anneal: the start's footprint ", f,
                                                   " bytes exceeds the budget ", budget_bytes));
  }
  AnnealingResult r;
  ASSIGN_OR_RETURN(double loss, game.Loss(start));
  const int64_t first = game.evaluations();  // the moves' evaluations count from here
  r.last = {start, loss};
  r.best = r.last;
  r.stop_reason = "frozen";
  for (int64_t proposals = 0; proposals < 50 * o.evaluations; ++proposals) {
    r.evaluations = game.evaluations() - first;
    if (r.evaluations >= o.evaluations) {
      r.stop_reason = "evaluations";
      break;
    }
    const double t =
        o.t0 * std::pow(o.t1 / o.t0, static_cast<double>(r.evaluations) / o.evaluations);
    Coalition next = RandomBudgetNeighbour(r.last.coalition, bytes, budget_bytes, o.max_raised,
                                           rng);
    if (next == r.last.coalition) continue;
    ASSIGN_OR_RETURN(double next_loss, game.Loss(next));
    if (next_loss <= r.last.loss || rng.Uniform() < std::exp(-(next_loss - r.last.loss) / t)) {
      r.last = {std::move(next), next_loss};
      ++r.accepted;
      if (r.last.loss < r.best.loss) r.best = r.last;
    }
    const int64_t done = game.evaluations() - first;
    if (progress && done > r.evaluations && done % 1000 == 0) {
      progress(done, t, r.last.loss, r.best.loss);
    }
  }
  r.evaluations = game.evaluations() - first;
  return r;
}

}  // namespace impq::solver
