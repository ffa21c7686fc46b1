// Budget-aware estimators (beyond the paper; issue 8): objectives that are faithful around the
// coalition sizes a memory budget implies, behind the same InteractionEstimator interface.
//
// Why. A Shapley value averages a player's marginal over coalitions of *every* size with equal
// weight per size (IMPQ §3.2). A budget of b_avg bits per weight, however, only ever selects
// coalitions of about k* = n·(4 − b_avg)/2 players at 2 bits: near 4 bits (k* small) what
// matters is a player's marginal next to a few others — the isolated Δ is its k = 0 end — and
// the Shapley value's weight on sizes near n misleads the allocation (measured on stories260K:
// IMPQ loses 6–11% to isolated Δ at 3.0–3.5 bits). The fix is to weight by size:
//
//   SemivalueEstimator   a_i = Σ_t w(t)·m̄_i(t) / Σ_t w(t), K = 0, where m̄_i(t) is the mean
//                        marginal v(S ∪ {i}) − v(S) over the observed pairs with |S| = t.
//                        The weights w over sizes define the semivalue (uniform: Shapley;
//                        point mass at 0: isolated Δ). The budget-aware choice is the *window*
//                        w(t) = clamp(k* − t, 0, 1): if the allocation picks a coalition S of
//                        size k*, then v(S) − v(∅) = Σ_{i∈S} (marginal of i added in a random
//                        order of S), and in a random order player i joins a coalition whose
//                        size is uniform on 0..k*−1 — so the window semivalue is the additive
//                        model of v(S) − v(∅) that is unbiased at the budget's size (up to the
//                        difference between "a random subset of S" and "a random coalition").
//   LocalSurrogateEstimator
//                        the second-order surrogate of interactions.h, fitted by *weighted*
//                        ridge least squares with a Gaussian kernel on coalition size,
//                        w(S) = exp(−(|S| − k*)² / (2σ²)): the walks visit every size, and the
//                        fit spends its capacity where the budget's coalitions are.
//
// Both read every observed coalition (the walks' coalitions and, when the caller adds them,
// the isolated-Δ singletons) and need no new evaluations. Which one an allocation should use
// is decided by measurement: the embedded job (job/job.h) solves the allocation from
// every estimator and keeps the one with the lowest measured calibration loss.
#ifndef IMPQ_SOLVER_BUDGET_AWARE_INTERACTIONS_H_
#define IMPQ_SOLVER_BUDGET_AWARE_INTERACTIONS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/allocation_problem.h"
#include "solver/coalition.h"
#include "solver/interactions.h"

namespace impq::solver {

// The number of players at 2 bits a budget implies when every player saves the mean number of
// bytes: k* = n·(all4 − budget)/(all4 − all2), clamped to [0, n] (a real number). For
// BudgetForAverageBits(b) this is n·(4 − b)/2 up to the floor. InvalidArgument when bytes are
// invalid or all4 == all2 (no budget can differ from another).
absl::StatusOr<double> TargetCoalitionSize(const PlayerBytes& bytes, int64_t budget_bytes);

// One observed marginal: v(S ∪ {player}) − v(S) with |S| = size, both coalitions observed.
struct SizedMarginal {
  int player = 0;
  int size = 0;
  double value = 0.0;
};

// Every marginal the observations determine: for each distinct observed coalition S (first
// loss wins for duplicates), in input order, and each player i ∉ S in ascending order, one
// SizedMarginal when S ∪ {i} is observed too. A permutation walk contributes its n marginals;
// the empty coalition with the singletons contributes the isolated Δ. InvalidArgument when
// n < 1, a coalition is malformed or a loss is not finite.
absl::StatusOr<std::vector<SizedMarginal>> SizedMarginalsFromObservations(
    int num_players, std::span<const Observation> observations);

// Window weights for a target size k* (see the file comment): w(t) = clamp(k* − t, 0, 1) for
// t = 0..n−1; k* < 1 gives the point mass at t = 0 (the isolated Δ). REQUIRES: n >= 1.
std::vector<double> WindowSizeWeights(int num_players, double target_size);

// Semivalue from observed marginals (see the file comment). Per player, sizes without an
// observed marginal are left out and the weights renormalised over the rest; a player with no
// observed marginal at any size of positive weight takes the mean marginal at the observed
// size nearest the weighted sizes (ties: the smaller size). Objective: linear = a, K = 0,
// constant 0. InvalidArgument: size_weights not n entries, a weight negative or not finite,
// all weights zero, or bad observations; FailedPrecondition: a player with no observed
// marginal at all (the message names it). Stateless and const: thread-safe.
class SemivalueEstimator : public InteractionEstimator {
 public:
  SemivalueEstimator(std::vector<double> size_weights, std::string name);
  std::string name() const override { return name_; }
  absl::StatusOr<QuadraticObjective> Estimate(const InteractionInput& input) const override;

 private:
  const std::vector<double> size_weights_;
  const std::string name_;
};

// The window from the other end: w(t) = clamp(t − k* + 1, 0, 1), so that WindowSizeWeights +
// TopWindowSizeWeights = 1 at every size. Why: v(N) − v(S) for |S| = k is the sum, over the
// players outside S restored one by one in a random order, of marginals at sizes k..n−1; the
// allocation minimising v(S) maximises that sum, so the marginals *above* k* are the
// additive model of what the budget's 4-bit players buy back. At low budgets (k* near n) this
// window is narrow and sits where the allocation lives, whereas the lower one averages sizes
// far from it. k* > n − 1 gives the point mass at t = n − 1 (leave one out of all-2-bit).
// REQUIRES: n >= 1.
std::vector<double> TopWindowSizeWeights(int num_players, double target_size);

// The budget-aware semivalue: SemivalueEstimator(WindowSizeWeights(n, k*), "window").
std::unique_ptr<InteractionEstimator> NewWindowSemivalueEstimator(int num_players,
                                                                  double target_size);
// SemivalueEstimator(TopWindowSizeWeights(n, k*), "window_top").
std::unique_ptr<InteractionEstimator> NewTopWindowSemivalueEstimator(int num_players,
                                                                     double target_size);

// Weighted second-order surrogate (see the file comment): minimise
//   Σ_S w(S)·(x_Sᵀβ − v(S))² + λ·Σ_{k≥1} β_k²,   λ = ridge · trace(XᵀWX)/p,
// with w(S) = exp(−(|S| − target_size)² / (2·bandwidth²)); observations deduplicated by
// coalition (first loss wins). With bandwidth = ∞ it is SurrogateInteractionEstimator.
// The objective is the fit: linear = a, K_ij = b_ij/2, constant = c. Name "local_surrogate".
// InvalidArgument: bandwidth <= 0 or NaN, ridge < 0, bad observations, none at all;
// FailedPrecondition: singular normal equations (ridge = 0 only). Thread-safe.
class LocalSurrogateEstimator : public InteractionEstimator {
 public:
  LocalSurrogateEstimator(double target_size, double bandwidth, double ridge = 1e-3);
  std::string name() const override { return "local_surrogate"; }
  absl::StatusOr<QuadraticObjective> Estimate(const InteractionInput& input) const override;

 private:
  const double target_size_;
  const double bandwidth_;
  const double ridge_;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_BUDGET_AWARE_INTERACTIONS_H_
