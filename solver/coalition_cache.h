// Memo of evaluated coalitions, so a coalition shared by several SPQE walks (the empty and the
// full coalition are in every walk) is evaluated once.
#ifndef IMPQ_SOLVER_COALITION_CACHE_H_
#define IMPQ_SOLVER_COALITION_CACHE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "solver/coalition.h"

namespace impq::solver {

// Thread-compatible. Remembers insertion order so observations() is deterministic.
class CoalitionCache {
 public:
  // The cached loss of q, or nullopt.
  std::optional<double> Lookup(const Coalition& q) const;
  // Records v(q) = loss. A second insert of the same coalition is ignored (first value wins).
  void Insert(const Coalition& q, double loss);
  int64_t size() const { return static_cast<int64_t>(observations_.size()); }
  // Every (coalition, loss) inserted, in first-insertion order.
  const std::vector<Observation>& observations() const { return observations_; }

 private:
  absl::flat_hash_map<Coalition, size_t> index_;  // coalition -> position in observations_
  std::vector<Observation> observations_;
};

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_COALITION_CACHE_H_
