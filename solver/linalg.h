// Small dense symmetric linear algebra in double, written out so results do not depend on a
// BLAS build: Cholesky factorisation/solve and the smallest-eigenvalue shift used to convexify.
#ifndef IMPQ_SOLVER_LINALG_H_
#define IMPQ_SOLVER_LINALG_H_

#include <span>
#include <vector>

namespace impq::solver {

// In-place Cholesky A = L·Lᵀ of the n×n row-major symmetric matrix `a` (lower triangle read,
// L written there). Returns false when A is not (numerically) positive definite.
bool CholeskyFactor(std::span<double> a, int n);

// Solves L·Lᵀ·x = b in place (b becomes x) with a factor from CholeskyFactor.
void CholeskySolve(std::span<const double> l, int n, std::span<double> b);

// A shift t, within ~1e-9 relative of the smallest, such that A + t·I is positive definite
// (t may be negative when A is already positive definite). Found by bisection on Cholesky.
double PositiveDefiniteShift(std::span<const double> a, int n);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_LINALG_H_
