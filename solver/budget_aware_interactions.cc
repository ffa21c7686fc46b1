// Budget-aware estimators (budget_aware_interactions.h): window semivalue and size-weighted
// local surrogate.
#include "solver/budget_aware_interactions.h"

#include "solver/quadratic_fit.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/linalg.h"
#include "solver/quadratic_fit.h"

namespace impq::solver {
namespace {

absl::Status CheckObservation(const Observation& obs, int n) {
  RETURN_IF_ERROR(ValidateCoalition(obs.coalition, n));
  if (!std::isfinite(obs.loss)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss of coalition ", CoalitionToString(obs.coalition), " is not finite"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<double> TargetCoalitionSize(const PlayerBytes& bytes, int64_t budget_bytes) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  int64_t all2 = 0, all4 = 0;
  for (size_t i = 0; i < bytes.bytes2.size(); ++i) {
    all2 += bytes.bytes2[i];
    all4 += bytes.bytes4[i];
  }
  if (all4 == all2) {
    return absl::InvalidArgumentError(
        absl::StrCat("target size: all-2-bit and all-4-bit footprints are equal (", all4,
                     " bytes); no budget distinguishes assignments"));
  }
  const double n = static_cast<double>(bytes.bytes2.size());
  const double k = n * static_cast<double>(all4 - budget_bytes) / static_cast<double>(all4 - all2);
  return std::clamp(k, 0.0, n);
}

absl::StatusOr<std::vector<SizedMarginal>> SizedMarginalsFromObservations(
    int n, std::span<const Observation> observations) {
  if (n < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sized marginals: ", n, " players"));
  }
  absl::flat_hash_map<Coalition, double> loss;
  std::vector<const Coalition*> order;  // distinct coalitions in input order
  for (const Observation& obs : observations) {
    RETURN_IF_ERROR(CheckObservation(obs, n));
    if (loss.emplace(obs.coalition, obs.loss).second) order.push_back(&obs.coalition);
  }
  std::vector<SizedMarginal> out;
  Coalition with;
  for (const Coalition* q : order) {
    const double base = loss.at(*q);
    const int size = CoalitionSize(*q);
    with = *q;
    for (int i = 0; i < n; ++i) {
      if (with[i] != 0) continue;
      with[i] = 1;
      auto it = loss.find(with);
      with[i] = 0;
      if (it == loss.end()) continue;
      out.push_back({.player = i, .size = size, .value = it->second - base});
    }
  }
  return out;
}

std::vector<double> WindowSizeWeights(int n, double target_size) {
  std::vector<double> w(static_cast<size_t>(std::max(n, 0)), 0.0);
  if (n < 1) return w;
  if (!(target_size >= 1.0)) {  // k* < 1 (or NaN): the isolated end
    w[0] = 1.0;
    return w;
  }
  for (int t = 0; t < n; ++t) w[t] = std::clamp(target_size - t, 0.0, 1.0);
  return w;
}

std::vector<double> TopWindowSizeWeights(int n, double target_size) {
  std::vector<double> w(static_cast<size_t>(std::max(n, 0)), 0.0);
  if (n < 1) return w;
  if (!(target_size <= n - 1.0)) {  // k* > n − 1 (or NaN): the all-2-bit end
    w[n - 1] = 1.0;
    return w;
  }
  for (int t = 0; t < n; ++t) w[t] = std::clamp(t - target_size + 1.0, 0.0, 1.0);
  return w;
}

SemivalueEstimator::SemivalueEstimator(std::vector<double> size_weights, std::string name)
    : size_weights_(std::move(size_weights)), name_(std::move(name)) {}

absl::StatusOr<QuadraticObjective> SemivalueEstimator::Estimate(
    const InteractionInput& input) const {
  const int n = input.num_players;
  if (static_cast<int>(size_weights_.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", size_weights_.size(),
                                                   " size weights for ", n, " players"));
  }
  double total = 0.0;
  for (size_t t = 0; t < size_weights_.size(); ++t) {
    if (!(size_weights_[t] >= 0.0) || !std::isfinite(size_weights_[t])) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": size weight ", t, " is ",
                                                     size_weights_[t], "; expected finite >= 0"));
    }
    total += size_weights_[t];
  }
  if (!(total > 0.0)) return absl::InvalidArgumentError(absl::StrCat(name_, ": all size weights are 0"));
  ASSIGN_OR_RETURN(std::vector<SizedMarginal> marginals,
                   SizedMarginalsFromObservations(n, input.observations));
  // sum[i][t], count[i][t]: per player and size.
  const size_t nn = static_cast<size_t>(n);
  std::vector<double> sum(nn * nn, 0.0);
  std::vector<int64_t> count(nn * nn, 0);
  for (const SizedMarginal& m : marginals) {
    sum[static_cast<size_t>(m.player) * nn + m.size] += m.value;
    ++count[static_cast<size_t>(m.player) * nn + m.size];
  }
  double centre = 0.0;  // weighted mean size: where the fallback looks
  for (int t = 0; t < n; ++t) centre += t * size_weights_[t] / total;

  QuadraticObjective obj;
  obj.estimator = name_;
  obj.num_players = n;
  obj.linear.assign(nn, 0.0);
  obj.quadratic.assign(nn * nn, 0.0);
  for (int i = 0; i < n; ++i) {
    const size_t row = static_cast<size_t>(i) * nn;
    double num = 0.0, den = 0.0;
    for (int t = 0; t < n; ++t) {
      if (count[row + t] == 0 || size_weights_[t] == 0.0) continue;
      num += size_weights_[t] * sum[row + t] / static_cast<double>(count[row + t]);
      den += size_weights_[t];
    }
    if (den > 0.0) {
      obj.linear[i] = num / den;
      continue;
    }
    // No marginal inside the weights' support: the nearest observed size stands in.
    int best = -1;
    for (int t = 0; t < n; ++t) {
      if (count[row + t] == 0) continue;
      if (best < 0 || std::abs(t - centre) < std::abs(best - centre)) best = t;
    }
    if (best < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          name_, ": player ", i, " has no observed marginal (no coalition S with both S and ",
          "S ∪ {", i, "} evaluated)"));
    }
    obj.linear[i] = sum[row + best] / static_cast<double>(count[row + best]);
  }
  RETURN_IF_ERROR(ValidateObjective(obj));
  return obj;
}

std::unique_ptr<InteractionEstimator> NewWindowSemivalueEstimator(int num_players,
                                                                  double target_size) {
  return std::make_unique<SemivalueEstimator>(WindowSizeWeights(num_players, target_size),
                                              "window");
}

std::unique_ptr<InteractionEstimator> NewTopWindowSemivalueEstimator(int num_players,
                                                                     double target_size) {
  return std::make_unique<SemivalueEstimator>(TopWindowSizeWeights(num_players, target_size),
                                              "window_top");
}

LocalSurrogateEstimator::LocalSurrogateEstimator(double target_size, double bandwidth,
                                                 double ridge)
    : target_size_(target_size), bandwidth_(bandwidth), ridge_(ridge) {}

absl::StatusOr<QuadraticObjective> LocalSurrogateEstimator::Estimate(
    const InteractionInput& input) const {
  const int n = input.num_players;
  if (!(bandwidth_ > 0.0)) {
    return absl::InvalidArgumentError(absl::StrCat("local_surrogate: bandwidth ", bandwidth_,
                                                   "; expected > 0"));
  }
  if (!(ridge_ >= 0.0) || !std::isfinite(ridge_)) {
    return absl::InvalidArgumentError(absl::StrCat("local_surrogate: ridge ", ridge_,
                                                   "; expected finite and >= 0"));
  }
  if (!std::isfinite(target_size_)) {
    return absl::InvalidArgumentError("local_surrogate: target size is not finite");
  }
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("local_surrogate: ", n, " players"));
  // A Gaussian in coalition size around the target: coalitions of the sizes the budget
  // implies dominate the fit (an infinite bandwidth is the global surrogate).
  const double inv_two_var = 1.0 / (2.0 * bandwidth_ * bandwidth_);
  const double target = target_size_;
  const bool flat = std::isinf(bandwidth_);
  return FitQuadraticSurrogate(
      input, ridge_,
      [=](int size) {
        const double d = static_cast<double>(size) - target;
        return flat ? 1.0 : std::exp(-d * d * inv_two_var);
      },
      name(), absl::StrCat(", bandwidth ", bandwidth_, "; use ridge > 0"));
}

}  // namespace impq::solver
