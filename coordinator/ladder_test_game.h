// A synthetic worker for coordinator tests of width sets (JobSpec.widths, issue 14): the game
// of a WidthLadder over n players, evaluated on closed step coalitions without any model.
// With g(b) = (8 − b)/6 (0 at 8 bits, 1 at 2 bits) and b_i the bits of player i,
//   v(q) = 2 + Σ_i 0.1·(i + 1)·g(b_i)^1.5 + Σ_{i<j} 0.02·((3i + 5j) % 5 − 2)·g(b_i)·g(b_j)
// on the calibration text and v(q) + 0.25 on the evaluation text; player i at b bits takes
// (10 + i)·8·b + 16 bytes (ModelInfo.bytes2/bytes4 and width_bytes agree).
#ifndef IMPQ_COORDINATOR_LADDER_TEST_GAME_H_
#define IMPQ_COORDINATOR_LADDER_TEST_GAME_H_

#include <cmath>
#include <string>
#include <vector>

#include "coordinator/test_game.h"
#include "impq/v1/messages.pb.h"
#include "solver/coalition.h"
#include "solver/permutation_sampler.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"

namespace impq::coordinator {

class LadderTestGame {
 public:
  // REQUIRES: a valid ladder (n >= 1, widths ascending within 1..32).
  LadderTestGame(int n, std::vector<int> widths)
      : ladder_(*solver::WidthLadder::Create(n, std::move(widths))) {}

  const solver::WidthLadder& ladder() const { return ladder_; }
  int n() const { return ladder_.num_players(); }
  int steps() const { return ladder_.num_steps(); }

  static int64_t Bytes(int player, int bits) { return (10 + player) * 8 * bits + 16; }

  double ValueOfBits(const std::vector<int>& bits) const {
    auto g = [](int b) { return (8.0 - b) / 6.0; };
    double v = 2.0;
    for (int i = 0; i < n(); ++i) {
      v += 0.1 * (i + 1) * std::pow(g(bits[i]), 1.5);
      for (int j = i + 1; j < n(); ++j) {
        v += 0.02 * ((3 * i + 5 * j) % 5 - 2) * g(bits[i]) * g(bits[j]);
      }
    }
    return v;
  }
  // v of a closed step coalition. REQUIRES: ladder().ValidateClosed(q) is OK.
  double Value(const solver::Coalition& q) const { return ValueOfBits(*ladder_.BitsOf(q)); }

  v1::ModelInfo Model() const {
    v1::ModelInfo m;
    m.set_num_players(n());
    for (int i = 0; i < n(); ++i) {
      m.add_player_names("p" + std::to_string(i));
      m.add_bytes2(Bytes(i, 2));
      m.add_bytes4(Bytes(i, 4));
      for (int b : ladder_.widths()) m.add_width_bytes(Bytes(i, b));
    }
    m.set_model_config("ladder test game");
    return m;
  }
  std::vector<int64_t> WidthBytes() const {
    const v1::ModelInfo m = Model();
    return std::vector<int64_t>(m.width_bytes().begin(), m.width_bytes().end());
  }

  // The correct result of unit u (the permutation derived as a worker would).
  v1::WorkResult Evaluate(const v1::WorkUnit& u, const std::string& worker) const {
    return EvaluateGameUnit(
        u, worker, Model(),
        solver::LadderPermutationSampler(ladder_, u.spec().seed(), u.spec().antithetic()),
        [this](const solver::Coalition& q) { return Value(q); });
  }

 private:
  solver::WidthLadder ladder_;
};

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_LADDER_TEST_GAME_H_
