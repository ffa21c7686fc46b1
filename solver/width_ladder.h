// The SPQE game with more than two widths (issue 14): a ladder of steps.
//
// With widths w_0 < w_1 < ... < w_{m-1} (e.g. {2, 3, 4, 8}) every player starts at the widest
// width and can step down the ladder one rung at a time. The players of the *game* are the
// steps: step s = i·(m−1) + r of player i takes it from w_{m−1−r} to w_{m−2−r} (r = 0 is the
// first step down, from the widest width; r = m−2 the last, to the narrowest). A coalition of
// steps is *closed* when every player's steps form a prefix (step r of player i only with steps
// 0..r−1 of it): closed coalitions and per-player widths correspond one to one (player i with
// k steps taken runs at w_{m−1−k}). SPQE walks closed coalitions only: its permutations of
// the steps take every player's steps in ladder order (LadderPermutationSampler), so each walk
// goes from all-widest to all-narrowest through n·(m−1) + 1 closed coalitions, the marginal of
// step (i, r) is the loss increase of moving player i down one rung given the coalition, and
// Shapley values, standard errors and the interaction estimators are those of the step game
// (Shapley values of a game with a precedence structure: every linear extension of the chains
// equally likely).
//
// With widths {2, 4} (m = 2) the steps are the players, step 0 of player i drops it from 4 to
// 2 bits, and everything here is the binary game of coalition.h unchanged: the sampler gives
// SeededPermutationSampler's permutations and ToMultiChoice equals MultiChoiceFromBinary.
//
// Bytes. A quadratic objective over the steps, fitted as usual, becomes the multiple-choice
// program of multi_choice.h by y = L·x (y: step indicators, x: one-hot width choices; step r of
// player i is taken iff its width index is below m−1−r). Memory in step space: step s saves
// saving_s = bytes_{i,m−1−r} − bytes_{i,m−2−r} ≥ 0 bytes, so StepBytes() (bytes2 = 0,
// bytes4 = saving) and StepBudget() (= budget − narrowest footprint) make the binary helpers
// of allocation_problem.h and budget_aware_interactions.h (Footprint, TargetCoalitionSize)
// agree with the true footprint on closed coalitions.
#ifndef IMPQ_SOLVER_WIDTH_LADDER_H_
#define IMPQ_SOLVER_WIDTH_LADDER_H_

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"
#include "solver/multi_choice.h"
#include "solver/permutation_sampler.h"
#include "solver/quadratic_objective.h"

namespace impq::solver {

class WidthLadder {
 public:
  // InvalidArgument: num_players < 1, fewer than 2 or more than 16 widths, widths not strictly
  // ascending or < 1 (the message names the value).
  static absl::StatusOr<WidthLadder> Create(int num_players, std::vector<int> widths);

  int num_players() const { return num_players_; }
  const std::vector<int>& widths() const { return widths_; }  // ascending
  int num_widths() const { return static_cast<int>(widths_.size()); }
  int steps_per_player() const { return num_widths() - 1; }
  int num_steps() const { return num_players_ * steps_per_player(); }
  int Step(int player, int rung) const { return player * steps_per_player() + rung; }
  int PlayerOfStep(int step) const { return step / steps_per_player(); }
  int RungOfStep(int step) const { return step % steps_per_player(); }
  bool binary() const { return num_widths() == 2; }

  // OK iff q has num_steps() entries of 0/1 and is closed; InvalidArgument naming the first
  // player whose steps are not a prefix (and its widths), or the bad entry.
  absl::Status ValidateClosed(const Coalition& q) const;
  // Width index per player (0 = narrowest). REQUIRES: ValidateClosed(q) is OK.
  std::vector<int> ChoiceOf(const Coalition& q) const;
  // Bits per player (widths()[ChoiceOf(q)[i]]). Errors as ValidateClosed.
  absl::StatusOr<std::vector<int>> BitsOf(const Coalition& q) const;
  // The closed coalition of a choice vector (width index per player).
  // REQUIRES: choice.size() == num_players(), 0 <= choice[i] < num_widths().
  Coalition CoalitionOfChoice(std::span<const int> choice) const;
  // The closed coalition of bits per player. InvalidArgument: wrong size, a width not on the
  // ladder (names the player and the widths).
  absl::StatusOr<Coalition> CoalitionOfBits(std::span<const int> bits) const;

  // Per (player, width) bytes, [i·m + w] (as MultiChoiceProblem::bytes), checked: n·m entries,
  // non-negative, non-decreasing in w for every player (InvalidArgument naming the player).
  absl::Status ValidateWidthBytes(std::span<const int64_t> width_bytes) const;
  // The step game's bytes: bytes2_s = 0, bytes4_s = saving_s (see the file comment).
  // REQUIRES: ValidateWidthBytes(width_bytes) is OK.
  PlayerBytes StepBytes(std::span<const int64_t> width_bytes) const;
  // Σ_i bytes_{i,0}: the all-narrowest footprint; budget − it is the step game's budget.
  int64_t NarrowestBytes(std::span<const int64_t> width_bytes) const;
  int64_t StepBudget(std::span<const int64_t> width_bytes, int64_t budget_bytes) const {
    return budget_bytes - NarrowestBytes(width_bytes);
  }

  // The multiple-choice program equal to `objective` (over the steps) on closed coalitions:
  // for every choice x, problem.Evaluate(x) == objective.Evaluate(CoalitionOfChoice(x)) up to
  // rounding. With Q = Lᵀ K L: a_{i,w} = (Lᵀa)_{i,w} + Q_{(i,w),(i,w)}, K' = 2·Q between
  // players, and the hint blocks 2·Q_ii (a PSD K gives a PSD Q: the relaxation stays convex).
  // InvalidArgument: objective over another number of steps, invalid bytes.
  absl::StatusOr<MultiChoiceProblem> ToMultiChoice(const QuadraticObjective& objective,
                                                   std::span<const int64_t> width_bytes,
                                                   int64_t budget_bytes) const;

 private:
  WidthLadder(int num_players, std::vector<int> widths)
      : num_players_(num_players), widths_(std::move(widths)) {}
  int num_players_ = 0;
  std::vector<int> widths_;
};

// Permutations of the steps of a ladder that take every player's steps in order: permutation k
// shuffles the sequence of player labels, each repeated m−1 times (Fisher–Yates with
// impq::Rng(DeriveSeed(seed, k)), as SeededPermutationSampler), and turns the t-th occurrence
// of player i into step (i, t). Every linear extension of the players' chains is equally
// likely. Antithetic pairs (2p, 2p+1) reverse the label sequence (then number the
// occurrences again), so both walks are closed. With m = 2 equal to SeededPermutationSampler.
class LadderPermutationSampler : public PermutationSampler {
 public:
  LadderPermutationSampler(const WidthLadder& ladder, uint64_t seed, bool antithetic);
  int num_players() const override { return num_players_ * steps_per_player_; }
  bool antithetic() const override { return antithetic_; }
  Permutation Get(uint64_t index) const override;

 private:
  const int num_players_;
  const int steps_per_player_;
  const uint64_t seed_;
  const bool antithetic_;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_WIDTH_LADDER_H_
