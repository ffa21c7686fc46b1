// The baselines' allocation rules (baselines.h, IMPQ §4) for a set of widths (issue 14): every
// player picks one of m widths, bytes per (player, width) as in multi_choice.h
// (bytes[i·m + w], widths ascending). Each returns a choice vector: choice[i] = the index of
// player i's width. For widths {2, 4} each equals its binary rule in baselines.h (tested).
#ifndef IMPQ_SOLVER_MULTI_CHOICE_BASELINES_H_
#define IMPQ_SOLVER_MULTI_CHOICE_BASELINES_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace impq::solver {

// Greedy by isolated ΔNLL per byte: every player starts at the widest width; while the
// footprint exceeds the budget, the move of one player to a width of fewer bytes with the
// smallest (delta[i, new] − delta[i, current]) / (bytes saved) is made (ties: lower player,
// then wider new width). delta[i·m + w]: the loss increase of player i alone at width w (the
// isolated Δ of IMPQ §4; 0 at the widest width if measured against it).
// InvalidArgument: widths not strictly ascending or empty, sizes not n·m, a delta not finite, a
// byte count negative, or budget_bytes below the smallest footprint (every player at its
// fewest bytes; the message names both).
absl::StatusOr<std::vector<int>> GreedyDeltaPerByteAllocation(std::span<const double> delta,
                                                              std::span<const int> widths,
                                                              std::span<const int64_t> bytes,
                                                              int64_t budget_bytes);

// Uniform: the widest single width at which every player fits the budget. InvalidArgument as
// above, and when no single width fits (the message names the narrowest one's footprint).
absl::StatusOr<std::vector<int>> UniformWidthAllocation(std::span<const int> widths,
                                                        std::span<const int64_t> bytes,
                                                        int64_t budget_bytes);

// Random: every player starts at the widest width; players in a uniformly random order
// (impq::Rng(seed).Shuffle) each step down to their next narrower width until the budget is
// met, and passes in a fresh random order repeat while it is not. Deterministic for a seed.
// Errors as GreedyDeltaPerByteAllocation.
absl::StatusOr<std::vector<int>> RandomWidthAllocation(std::span<const int> widths,
                                                       std::span<const int64_t> bytes,
                                                       int64_t budget_bytes, uint64_t seed);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_MULTI_CHOICE_BASELINES_H_
