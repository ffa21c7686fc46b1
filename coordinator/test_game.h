// A synthetic worker for coordinator tests: evaluates work units of a small quadratic game
// v(q) = c + Σ a_i q_i + Σ_{i<j} b_ij q_i q_j without any model (calibration), and the same
// game + 0.25 on the evaluation dataset.
#ifndef IMPQ_COORDINATOR_TEST_GAME_H_
#define IMPQ_COORDINATOR_TEST_GAME_H_

#include <string>
#include <vector>

#include "impq/v1/messages.pb.h"
#include "solver/coalition.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"

namespace impq::coordinator {

// The correct result of unit u of a synthetic game: a walk's losses along its permutation
// (from `walks`, as a worker derives it, when the unit does not carry one), or a batch's
// losses + 0.25 (the evaluation text).
template <typename ValueFn>
v1::WorkResult EvaluateGameUnit(const v1::WorkUnit& u, const std::string& worker,
                                const v1::ModelInfo& model,
                                const solver::PermutationSampler& walks, const ValueFn& value) {
  v1::WorkResult r;
  r.set_job_id(u.job_id());
  r.set_unit_index(u.unit_index());
  r.set_worker_id(worker);
  r.set_attempt(u.attempt());
  *r.mutable_model() = model;
  if (u.kind() == v1::UNIT_KIND_WALK) {
    solver::Permutation perm(u.permutation().begin(), u.permutation().end());
    if (perm.empty()) perm = walks.Get(static_cast<uint64_t>(u.permutation_index()));
    for (int p : perm) r.add_permutation(p);
    for (const auto& q : solver::WalkCoalitions(perm)) r.add_losses(value(q));
  } else {
    for (const std::string& s : u.coalitions()) {
      solver::Coalition q;
      for (char c : s) q.push_back(c == '1' ? 1 : 0);
      r.add_losses(value(q) + 0.25);
    }
  }
  return r;
}

class TestGame {
 public:
  explicit TestGame(int n) : n_(n) {}
  int n() const { return n_; }
  double Value(const solver::Coalition& q) const {
    double v = 2.0;
    for (int i = 0; i < n_; ++i) {
      if (q[i] == 0) continue;
      v += 0.1 * (i + 1);
      for (int j = i + 1; j < n_; ++j) v += q[j] != 0 ? 0.01 * ((i * 7 + j * 3) % 5 - 2) : 0.0;
    }
    return v;
  }
  v1::ModelInfo Model() const {
    v1::ModelInfo m;
    m.set_num_players(n_);
    for (int i = 0; i < n_; ++i) {
      m.add_player_names("p" + std::to_string(i));
      m.add_bytes2(100 + 10 * i);
      m.add_bytes4(200 + 20 * i);
    }
    return m;
  }
  // The correct result of unit u (the permutation derived as a worker would).
  v1::WorkResult Evaluate(const v1::WorkUnit& u, const std::string& worker) const {
    return EvaluateGameUnit(
        u, worker, Model(),
        solver::SeededPermutationSampler(n_, u.spec().seed(), u.spec().antithetic()),
        [this](const solver::Coalition& q) { return Value(q); });
  }

 private:
  int n_;
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_TEST_GAME_H_
