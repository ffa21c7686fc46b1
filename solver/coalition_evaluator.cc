#include "solver/coalition_evaluator.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace impq::solver {

CoalitionEvaluator::~CoalitionEvaluator() = default;

FunctionEvaluator::FunctionEvaluator(std::function<double(const Coalition&)> fn)
    : fn_(std::move(fn)) {}

absl::StatusOr<std::vector<double>> FunctionEvaluator::Evaluate(
    std::span<const Coalition> coalitions) {
  ++num_calls_;
  std::vector<double> losses;
  losses.reserve(coalitions.size());
  for (const Coalition& q : coalitions) {
    const double loss = fn_(q);
    if (!std::isfinite(loss)) {
      return absl::InvalidArgumentError(
          absl::StrCat("loss of coalition ", CoalitionToString(q), " is not finite: ", loss));
    }
    losses.push_back(loss);
  }
  num_coalitions_ += static_cast<int64_t>(coalitions.size());
  return losses;
}

}  // namespace impq::solver
