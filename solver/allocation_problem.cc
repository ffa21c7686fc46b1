#include "solver/allocation_problem.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace impq::solver {

absl::Status ValidatePlayerBytes(const PlayerBytes& bytes) {
  if (bytes.bytes2.empty() || bytes.bytes2.size() != bytes.bytes4.size()) {
    return absl::InvalidArgumentError(absl::StrCat("player bytes: ", bytes.bytes2.size(),
                                                   " at 2 bits, ", bytes.bytes4.size(),
                                                   " at 4 bits; expected equal and >= 1"));
  }
  for (size_t i = 0; i < bytes.bytes2.size(); ++i) {
    if (bytes.bytes2[i] < 0 || bytes.bytes2[i] > bytes.bytes4[i]) {
      return absl::InvalidArgumentError(absl::StrCat("player ", i, " bytes: ", bytes.bytes2[i],
                                                     " at 2 bits, ", bytes.bytes4[i],
                                                     " at 4 bits; expected 0 <= b2 <= b4"));
    }
  }
  return absl::OkStatus();
}

int64_t Footprint(const PlayerBytes& bytes, const Coalition& q) {
  int64_t total = 0;
  for (size_t i = 0; i < q.size(); ++i) total += q[i] != 0 ? bytes.bytes2[i] : bytes.bytes4[i];
  return total;
}

absl::StatusOr<int64_t> BudgetForAverageBits(const PlayerBytes& bytes, double average_bits) {
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  if (!(average_bits >= 2.0 && average_bits <= 4.0)) {
    return absl::InvalidArgumentError(absl::StrCat("average_bits ", average_bits,
                                                   " outside the feasible range [2, 4]"));
  }
  int64_t all2 = 0, all4 = 0;
  for (size_t i = 0; i < bytes.bytes2.size(); ++i) {
    all2 += bytes.bytes2[i];
    all4 += bytes.bytes4[i];
  }
  const long double frac = (static_cast<long double>(average_bits) - 2.0L) / 2.0L;
  int64_t extra = static_cast<int64_t>(std::floor(frac * static_cast<long double>(all4 - all2)));
  if (extra > all4 - all2) extra = all4 - all2;
  return all2 + extra;
}

bool AllocationProblem::Feasible(const Coalition& q) const {
  int64_t saved = 0;
  for (size_t i = 0; i < q.size(); ++i) saved += q[i] != 0 ? savings[i] : 0;
  return saved >= required_savings;
}

absl::StatusOr<AllocationProblem> MakeAllocationProblem(const QuadraticObjective& objective,
                                                        const PlayerBytes& bytes,
                                                        int64_t budget_bytes) {
  RETURN_IF_ERROR(ValidateObjective(objective));
  RETURN_IF_ERROR(ValidatePlayerBytes(bytes));
  if (static_cast<int64_t>(bytes.bytes2.size()) != objective.num_players) {
    return absl::InvalidArgumentError(absl::StrCat("player bytes for ", bytes.bytes2.size(),
                                                   " players, objective has ",
                                                   objective.num_players));
  }
  AllocationProblem problem;
  problem.objective = objective;
  for (size_t i = 0; i < bytes.bytes2.size(); ++i) {
    problem.all2_bytes += bytes.bytes2[i];
    problem.all4_bytes += bytes.bytes4[i];
    problem.savings.push_back(bytes.bytes4[i] - bytes.bytes2[i]);
  }
  if (budget_bytes < problem.all2_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("budget_bytes ", budget_bytes,
                                                   " below the all-2-bit footprint ",
                                                   problem.all2_bytes, ": infeasible"));
  }
  problem.budget_bytes = budget_bytes;
  problem.required_savings = problem.all4_bytes - budget_bytes;
  return problem;
}

}  // namespace impq::solver
