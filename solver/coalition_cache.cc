#include "solver/coalition_cache.h"

namespace impq::solver {

std::optional<double> CoalitionCache::Lookup(const Coalition& q) const {
  auto it = index_.find(q);
  if (it == index_.end()) return std::nullopt;
  return observations_[it->second].loss;
}

void CoalitionCache::Insert(const Coalition& q, double loss) {
  auto [it, inserted] = index_.emplace(q, observations_.size());
  if (inserted) observations_.push_back(Observation{q, loss});
}

}  // namespace impq::solver
