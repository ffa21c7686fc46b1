#include "solver/multi_choice_baselines.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "common/rng.h"
#include "common/status.h"

namespace impq::solver {
namespace {

// Checks the shared inputs; returns n.
absl::StatusOr<int> CheckInputs(std::span<const int> widths, std::span<const int64_t> bytes,
                                int64_t budget_bytes) {
  const size_t m = widths.size();
  if (m == 0) return absl::InvalidArgumentError("no widths given");
  for (size_t w = 1; w < m; ++w) {
    if (widths[w] <= widths[w - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("widths must be strictly ascending: ", widths[w - 1], " then ", widths[w]));
    }
  }
  if (bytes.empty() || bytes.size() % m != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bytes has ", bytes.size(), " entries, not a positive multiple of ", m, " widths"));
  }
  const int n = static_cast<int>(bytes.size() / m);
  int64_t smallest = 0;
  for (int i = 0; i < n; ++i) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    for (size_t w = 0; w < m; ++w) {
      const int64_t b = bytes[i * m + w];
      if (b < 0) {
        return absl::InvalidArgumentError(absl::StrCat("bytes of player ", i, " at ", widths[w],
                                                       " bits is ", b, " (expected >= 0)"));
      }
      lo = std::min(lo, b);
    }
    smallest += lo;
  }
  if (budget_bytes < smallest) {
    return absl::InvalidArgumentError(
        absl::StrCat("budget_bytes ", budget_bytes, " below the smallest footprint ", smallest,
                     " (every player at its fewest bytes): infeasible"));
  }
  return n;
}

int64_t Footprint(std::span<const int64_t> bytes, int m, const std::vector<int>& choice) {
  int64_t total = 0;
  for (size_t i = 0; i < choice.size(); ++i) total += bytes[i * m + choice[i]];
  return total;
}

}  // namespace

absl::StatusOr<std::vector<int>> GreedyDeltaPerByteAllocation(std::span<const double> delta,
                                                              std::span<const int> widths,
                                                              std::span<const int64_t> bytes,
                                                              int64_t budget_bytes) {
  ASSIGN_OR_RETURN(const int n, CheckInputs(widths, bytes, budget_bytes));
  const int m = static_cast<int>(widths.size());
  if (delta.size() != bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("delta has ", delta.size(), " entries, bytes ", bytes.size()));
  }
  for (size_t k = 0; k < delta.size(); ++k) {
    if (!std::isfinite(delta[k])) {
      return absl::InvalidArgumentError(
          absl::StrCat("delta of player ", k / m, " at ", widths[k % m], " bits is not finite"));
    }
  }
  std::vector<int> choice(n, m - 1);
  int64_t used = Footprint(bytes, m, choice);
  while (used > budget_bytes) {
    int pick = -1, pick_w = -1;
    double best = std::numeric_limits<double>::infinity();
    for (int i = 0; i < n; ++i) {
      const size_t cur = static_cast<size_t>(i) * m + choice[i];
      for (int w = m - 1; w >= 0; --w) {  // wider first: ties keep the wider width
        const size_t k = static_cast<size_t>(i) * m + w;
        if (bytes[k] >= bytes[cur]) continue;
        const double ratio = (delta[k] - delta[cur]) / static_cast<double>(bytes[cur] - bytes[k]);
        if (ratio < best) best = ratio, pick = i, pick_w = w;
      }
    }
    // CheckInputs guarantees the smallest footprint fits, so a move always exists here.
    if (pick < 0) return absl::InternalError("greedy allocation found no move");
    used -= bytes[static_cast<size_t>(pick) * m + choice[pick]] -
            bytes[static_cast<size_t>(pick) * m + pick_w];
    choice[pick] = pick_w;
  }
  return choice;
}

absl::StatusOr<std::vector<int>> UniformWidthAllocation(std::span<const int> widths,
                                                        std::span<const int64_t> bytes,
                                                        int64_t budget_bytes) {
  ASSIGN_OR_RETURN(const int n, CheckInputs(widths, bytes, budget_bytes));
  const int m = static_cast<int>(widths.size());
  for (int w = m - 1; w >= 0; --w) {
    std::vector<int> choice(n, w);
    if (Footprint(bytes, m, choice) <= budget_bytes) return choice;
  }
  return absl::InvalidArgumentError(absl::StrCat("no single width fits budget_bytes ", budget_bytes,
                                                 ": all at ", widths[0], " bits take ",
                                                 Footprint(bytes, m, std::vector<int>(n, 0))));
}

absl::StatusOr<std::vector<int>> RandomWidthAllocation(std::span<const int> widths,
                                                       std::span<const int64_t> bytes,
                                                       int64_t budget_bytes, uint64_t seed) {
  ASSIGN_OR_RETURN(const int n, CheckInputs(widths, bytes, budget_bytes));
  const int m = static_cast<int>(widths.size());
  std::vector<int> choice(n, m - 1), order(n);
  int64_t used = Footprint(bytes, m, choice);
  Rng rng(seed);
  while (used > budget_bytes) {
    std::iota(order.begin(), order.end(), 0);
    rng.Shuffle(std::span<int>(order));
    bool moved = false;
    for (int i : order) {
      if (used <= budget_bytes) break;
      // The next narrower width that saves bytes (a player saving none stays: it cannot help).
      const size_t cur = static_cast<size_t>(i) * m + choice[i];
      for (int w = choice[i] - 1; w >= 0; --w) {
        const size_t k = static_cast<size_t>(i) * m + w;
        if (bytes[k] < bytes[cur]) {
          used -= bytes[cur] - bytes[k];
          choice[i] = w;
          moved = true;
          break;
        }
      }
    }
    // Every player at a width no narrower width undercuts: the footprint is then the
    // smallest reachable by steps; CheckInputs guarantees it fits when bytes grow with width.
    if (!moved) {
      return absl::InvalidArgumentError(absl::StrCat("random allocation cannot step below ", used,
                                                     " bytes (budget ", budget_bytes,
                                                     "): bytes do not grow with the width"));
    }
  }
  return choice;
}

}  // namespace impq::solver
