#include "solver/spqe.h"

#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "solver/coalition_cache.h"

namespace impq::solver {

std::vector<Coalition> WalkCoalitions(const Permutation& perm) {
  std::vector<Coalition> walk;
  walk.reserve(perm.size() + 1);
  Coalition q = EmptyCoalition(static_cast<int>(perm.size()));
  walk.push_back(q);
  for (int player : perm) {
    q[player] = 1;
    walk.push_back(q);
  }
  return walk;
}

absl::StatusOr<std::vector<double>> MarginalsFromWalk(const Permutation& perm,
                                                      std::span<const double> losses) {
  RETURN_IF_ERROR(ValidatePermutation(perm, static_cast<int>(perm.size())));
  if (losses.size() != perm.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("walk losses has ", losses.size(),
                                                   " entries, expected ", perm.size() + 1));
  }
  std::vector<double> marginals(perm.size(), 0.0);
  for (size_t t = 0; t < perm.size(); ++t) marginals[perm[t]] = losses[t + 1] - losses[t];
  return marginals;
}

namespace {

absl::Status ValidateOptions(const SpqeOptions& o) {
  if (o.num_players < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SpqeOptions.num_players is ", o.num_players, ", expected >= 1"));
  }
  if (o.max_permutations < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("SpqeOptions.max_permutations is ", o.max_permutations, ", expected >= 1"));
  }
  if (o.antithetic && o.max_permutations % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SpqeOptions.max_permutations is ",
                                                   o.max_permutations,
                                                   ", expected even with antithetic pairs"));
  }
  if (o.permutations_per_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("SpqeOptions.permutations_per_batch is ",
                                                   o.permutations_per_batch,
                                                   ", expected >= 1"));
  }
  if (o.sampler != nullptr && (o.sampler->num_players() != o.num_players ||
                               o.sampler->antithetic() != o.antithetic)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SpqeOptions.sampler has ", o.sampler->num_players(), " players, antithetic=",
        o.sampler->antithetic(), "; options say ", o.num_players, ", ", o.antithetic));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpqeResult> RunSpqe(CoalitionEvaluator& evaluator, const SpqeOptions& options) {
  RETURN_IF_ERROR(ValidateOptions(options));
  std::unique_ptr<PermutationSampler> owned_sampler;
  const PermutationSampler* sampler = options.sampler;
  if (sampler == nullptr) {
    owned_sampler = std::make_unique<SeededPermutationSampler>(options.num_players, options.seed,
                                                               options.antithetic);
    sampler = owned_sampler.get();
  }
  int64_t batch = options.permutations_per_batch;
  if (options.antithetic && batch % 2 != 0) ++batch;

  const size_t n = static_cast<size_t>(options.num_players);
  CoalitionCache cache;
  SpqeResult result;
  ShapleyEstimate estimate;
  int64_t done = 0;
  while (done < options.max_permutations) {
    const int64_t count = std::min(batch, options.max_permutations - done);
    // Collect this batch's walks and the coalitions not yet known (first occurrence order).
    std::vector<Permutation> perms;
    std::vector<std::vector<Coalition>> walks;
    std::vector<Coalition> pending;
    absl::flat_hash_set<Coalition> pending_set;  // dedups within the batch
    for (int64_t k = 0; k < count; ++k) {
      Permutation perm = sampler->Get(static_cast<uint64_t>(done + k));
      RETURN_IF_ERROR(ValidatePermutation(perm, options.num_players));
      std::vector<Coalition> walk = WalkCoalitions(perm);
      for (const Coalition& q : walk) {
        ++result.coalitions_requested;
        if (cache.Lookup(q).has_value() || pending_set.contains(q)) {
          ++result.cache_hits;
          continue;
        }
        pending_set.insert(q);
        pending.push_back(q);
      }
      perms.push_back(std::move(perm));
      walks.push_back(std::move(walk));
    }
    if (!pending.empty()) {
      ASSIGN_OR_RETURN(std::vector<double> losses,
                       evaluator.Evaluate(std::span<const Coalition>(pending)));
      if (losses.size() != pending.size()) {
        return absl::InternalError(absl::StrCat("evaluator returned ", losses.size(),
                                                " losses for ", pending.size(), " coalitions"));
      }
      for (size_t j = 0; j < pending.size(); ++j) cache.Insert(pending[j], losses[j]);
      result.coalitions_evaluated += static_cast<int64_t>(pending.size());
    }
    for (size_t k = 0; k < perms.size(); ++k) {
      std::vector<double> losses(n + 1);
      for (size_t t = 0; t <= n; ++t) losses[t] = *cache.Lookup(walks[k][t]);
      ASSIGN_OR_RETURN(std::vector<double> marginals, MarginalsFromWalk(perms[k], losses));
      result.marginals.push_back(std::move(marginals));
      result.permutations.push_back(std::move(perms[k]));
    }
    done += count;
    ASSIGN_OR_RETURN(estimate, AggregateMarginals(result.marginals, options.antithetic));

    SpqeProgress progress;
    progress.permutations_done = done;
    progress.coalitions_evaluated = result.coalitions_evaluated;
    progress.cache_hits = result.cache_hits;
    progress.estimate = &estimate;
    progress.marginals = &result.marginals;
    if (options.progress_callback) options.progress_callback(progress);
    if (done >= options.max_permutations) break;
    if (done >= options.min_permutations) {
      if (options.se_threshold > 0.0 && estimate.MaxStandardError() < options.se_threshold) {
        result.stop_reason = SpqeStopReason::kStandardError;
        break;
      }
      if (options.stop_callback && options.stop_callback(progress)) {
        result.stop_reason = SpqeStopReason::kCallback;
        break;
      }
    }
  }
  result.estimate = std::move(estimate);
  result.observations = cache.observations();
  return result;
}

}  // namespace impq::solver
