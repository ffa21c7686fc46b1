#include "solver/baselines.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rng.h"
#include "common/status.h"

namespace impq::solver {
namespace {

absl::StatusOr<int64_t> ExcessBytes(const PlayerBytes& bytes, int64_t budget_bytes) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  int64_t all2 = 0, all4 = 0;
  for (size_t i = 0; i < bytes.bytes2.size(); ++i) all2 += bytes.bytes2[i], all4 += bytes.bytes4[i];
  if (budget_bytes < all2) {
    return absl::InvalidArgumentError(absl::StrCat("budget_bytes ", budget_bytes,
                                                   " below the all-2-bit footprint ", all2,
                                                   ": infeasible"));
  }
  return all4 - budget_bytes;
}

// Drops players in `order` until `excess` bytes are saved.
Coalition DropInOrder(const PlayerBytes& bytes, std::span<const int> order, int64_t excess) {
  Coalition q = EmptyCoalition(static_cast<int>(bytes.bytes2.size()));
  for (int i : order) {
    if (excess <= 0) break;
    const int64_t saving = bytes.bytes4[i] - bytes.bytes2[i];
    if (saving <= 0) continue;
    q[i] = 1;
    excess -= saving;
  }
  return q;
}

}  // namespace

absl::StatusOr<Coalition> GreedyImportanceAllocation(std::span<const double> scores,
                                                     const PlayerBytes& bytes,
                                                     int64_t budget_bytes) {
  ASSIGN_OR_RETURN(int64_t excess, ExcessBytes(bytes, budget_bytes));
  const size_t n = bytes.bytes2.size();
  if (scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("importance scores for ", scores.size(),
                                                   " players, bytes for ", n));
  }
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(absl::StrCat("importance score ", i, " not finite"));
    }
  }
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  auto ratio = [&](int i) {
    return scores[i] / static_cast<double>(bytes.bytes4[i] - bytes.bytes2[i]);
  };
  std::stable_sort(order.begin(), order.end(), [&](int i, int j) {
    const bool zi = bytes.bytes4[i] == bytes.bytes2[i], zj = bytes.bytes4[j] == bytes.bytes2[j];
    if (zi != zj) return zj;  // zero-saving players last
    if (zi) return false;
    return ratio(i) < ratio(j);
  });
  return DropInOrder(bytes, order, excess);
}

absl::StatusOr<Coalition> UniformAllocation(const PlayerBytes& bytes, int64_t budget_bytes) {
  ASSIGN_OR_RETURN(int64_t excess, ExcessBytes(bytes, budget_bytes));
  Coalition q = EmptyCoalition(static_cast<int>(bytes.bytes2.size()));
  if (excess > 0) std::fill(q.begin(), q.end(), 1);
  return q;
}

absl::StatusOr<Coalition> RandomAllocation(const PlayerBytes& bytes, int64_t budget_bytes,
                                           uint64_t seed) {
  ASSIGN_OR_RETURN(int64_t excess, ExcessBytes(bytes, budget_bytes));
  std::vector<int> order(bytes.bytes2.size());
  std::iota(order.begin(), order.end(), 0);
  Rng rng(seed);
  rng.Shuffle(std::span<int>(order));
  return DropInOrder(bytes, order, excess);
}

}  // namespace impq::solver
