// Coalitions of the IMPQ quantization game (IMPQ §3).
//
// Players are the quantizable layers, indexed 0..n-1. A coalition q ∈ {0,1}^n marks the players
// dropped to 2 bits: q[i] == 1 means player i runs at 2 bits, q[i] == 0 means 4 bits. The empty
// coalition is the all-4-bit model. v(q) is the mean NLL of the model under that assignment.
#ifndef IMPQ_SOLVER_COALITION_H_
#define IMPQ_SOLVER_COALITION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace impq::solver {

// q[i] ∈ {0, 1}; size is the number of players. Any other byte value is invalid.
using Coalition = std::vector<uint8_t>;

// One evaluated coalition: the loss v(q) measured for it.
struct Observation {
  Coalition coalition;
  double loss = 0.0;
};

// The all-4-bit coalition of n players.
Coalition EmptyCoalition(int num_players);
// OK iff coalition has num_players entries, each 0 or 1; InvalidArgument naming the bad entry.
absl::Status ValidateCoalition(const Coalition& coalition, int num_players);
// Number of players at 2 bits.
int CoalitionSize(const Coalition& coalition);
// "0110..." (player 0 first); for messages and logs.
std::string CoalitionToString(const Coalition& coalition);
// Bit i of the mask is q[i]. REQUIRES: coalition.size() <= 64.
uint64_t CoalitionToMask(const Coalition& coalition);
// Inverse of CoalitionToMask. REQUIRES: 0 <= num_players <= 64.
Coalition CoalitionFromMask(uint64_t mask, int num_players);

}  // namespace impq::solver

#endif  // IMPQ_SOLVER_COALITION_H_
