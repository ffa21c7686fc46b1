#include "solver/coalition.h"

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace impq::solver {

Coalition EmptyCoalition(int num_players) {
  return Coalition(static_cast<size_t>(num_players), 0);
}

absl::Status ValidateCoalition(const Coalition& coalition, int num_players) {
  if (static_cast<int64_t>(coalition.size()) != num_players) {
    return absl::InvalidArgumentError(absl::StrCat("coalition has ", coalition.size(),
                                                   " entries, expected ", num_players));
  }
  for (size_t i = 0; i < coalition.size(); ++i) {
    if (coalition[i] > 1) {
      return absl::InvalidArgumentError(absl::StrCat("coalition entry ", i, " is ",
                                                     static_cast<int>(coalition[i]),
                                                     ", expected 0 or 1"));
    }
  }
  return absl::OkStatus();
}

int CoalitionSize(const Coalition& coalition) {
  int size = 0;
  for (uint8_t q : coalition) size += q;
  return size;
}

std::string CoalitionToString(const Coalition& coalition) {
  std::string out(coalition.size(), '0');
  for (size_t i = 0; i < coalition.size(); ++i) {
    if (coalition[i] != 0) out[i] = '1';
  }
  return out;
}

uint64_t CoalitionToMask(const Coalition& coalition) {
  IMPQ_CHECK(coalition.size() <= 64) << "coalition of " << coalition.size() << " players";
  uint64_t mask = 0;
  for (size_t i = 0; i < coalition.size(); ++i) {
    if (coalition[i] != 0) mask |= uint64_t{1} << i;
  }
  return mask;
}

Coalition CoalitionFromMask(uint64_t mask, int num_players) {
  IMPQ_CHECK(num_players >= 0 && num_players <= 64) << "num_players " << num_players;
  Coalition q(static_cast<size_t>(num_players), 0);
  for (int i = 0; i < num_players; ++i) q[i] = static_cast<uint8_t>((mask >> i) & 1);
  return q;
}

}  // namespace impq::solver
