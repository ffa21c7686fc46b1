// Exact Shapley values and pairwise Shapley interaction indices of small games, by enumerating
// all 2^n coalitions. The reference the estimators are tested against.
#ifndef IMPQ_SOLVER_EXACT_SHAPLEY_H_
#define IMPQ_SOLVER_EXACT_SHAPLEY_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "solver/coalition_evaluator.h"

namespace impq::solver {

inline constexpr int kMaxExactPlayers = 20;

// table[mask] = v(CoalitionFromMask(mask, n)) for every mask < 2^n, evaluated in batches.
// InvalidArgument when n is outside [1, kMaxExactPlayers]; evaluator errors are returned.
absl::StatusOr<std::vector<double>> TabulateGame(CoalitionEvaluator& evaluator, int num_players);

// φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S)).
// REQUIRES: table.size() == 2^n, 1 <= n <= kMaxExactPlayers.
std::vector<double> ShapleyFromTable(std::span<const double> table, int num_players);

// Shapley interaction index (Grabisch & Roubens 1999), n×n row-major, zero diagonal:
//   I_ij = Σ_{S ⊆ N∖{i,j}} |S|!(n−|S|−2)!/(n−1)! · (v(S∪{i,j}) − v(S∪{i}) − v(S∪{j}) + v(S)).
// For v(S) = c + Σ_{i∈S} a_i + Σ_{i<j⊆S} b_ij it equals b_ij. REQUIRES: as above, n >= 2.
std::vector<double> InteractionIndexFromTable(std::span<const double> table, int num_players);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_EXACT_SHAPLEY_H_
