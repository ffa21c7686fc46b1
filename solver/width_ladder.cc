#include "solver/width_ladder.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/rng.h"
#include "common/status.h"

namespace impq::solver {

absl::StatusOr<WidthLadder> WidthLadder::Create(int num_players, std::vector<int> widths) {
  if (num_players < 1) {
    return absl::InvalidArgumentError(absl::StrCat("width ladder: ", num_players, " players"));
  }
  if (widths.size() < 2 || widths.size() > 16) {
    return absl::InvalidArgumentError(absl::StrCat("width ladder: ", widths.size(),
                                                   " widths (", absl::StrJoin(widths, ","),
                                                   "), expected 2 to 16"));
  }
  for (size_t w = 0; w < widths.size(); ++w) {
    if (widths[w] < 1 || (w > 0 && widths[w] <= widths[w - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat("width ladder: widths ", absl::StrJoin(widths, ","),
                       " are not positive and strictly ascending (at ", widths[w], ")"));
    }
  }
  return WidthLadder(num_players, std::move(widths));
}

absl::Status WidthLadder::ValidateClosed(const Coalition& q) const {
  if (static_cast<int>(q.size()) != num_steps()) {
    return absl::InvalidArgumentError(absl::StrCat("coalition has ", q.size(),
                                                   " entries, expected ", num_steps(), " (",
                                                   num_players_, " players × ",
                                                   steps_per_player(), " steps)"));
  }
  const int k = steps_per_player();
  for (int i = 0; i < num_players_; ++i) {
    bool taken = true;
    for (int r = 0; r < k; ++r) {
      const uint8_t x = q[Step(i, r)];
      if (x > 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("coalition entry ", Step(i, r), " is ", int{x}, ", expected 0 or 1"));
      }
      if (x == 1 && !taken) {
        return absl::InvalidArgumentError(absl::StrCat(
            "coalition is not closed: player ", i, " takes step ", r, " (to ",
            widths_[num_widths() - 2 - r], " bits) without step ", r - 1, " (to ",
            widths_[num_widths() - 1 - r], " bits); widths ", absl::StrJoin(widths_, ",")));
      }
      taken = x == 1;
    }
  }
  return absl::OkStatus();
}

std::vector<int> WidthLadder::ChoiceOf(const Coalition& q) const {
  std::vector<int> choice(static_cast<size_t>(num_players_));
  for (int i = 0; i < num_players_; ++i) {
    int taken = 0;
    while (taken < steps_per_player() && q[Step(i, taken)] != 0) ++taken;
    choice[i] = num_widths() - 1 - taken;
  }
  return choice;
}

absl::StatusOr<std::vector<int>> WidthLadder::BitsOf(const Coalition& q) const {
  RETURN_IF_ERROR(ValidateClosed(q));
  std::vector<int> bits = ChoiceOf(q);
  for (int& b : bits) b = widths_[b];
  return bits;
}

Coalition WidthLadder::CoalitionOfChoice(std::span<const int> choice) const {
  IMPQ_CHECK(static_cast<int>(choice.size()) == num_players_);
  Coalition q(static_cast<size_t>(num_steps()), 0);
  for (int i = 0; i < num_players_; ++i) {
    IMPQ_CHECK(choice[i] >= 0 && choice[i] < num_widths());
    const int taken = num_widths() - 1 - choice[i];
    for (int r = 0; r < taken; ++r) q[Step(i, r)] = 1;
  }
  return q;
}

absl::StatusOr<Coalition> WidthLadder::CoalitionOfBits(std::span<const int> bits) const {
  if (static_cast<int>(bits.size()) != num_players_) {
    return absl::InvalidArgumentError(
        absl::StrCat("assignment has ", bits.size(), " widths, expected ", num_players_));
  }
  std::vector<int> choice(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    const auto it = std::find(widths_.begin(), widths_.end(), bits[i]);
    if (it == widths_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("player ", i, " at ", bits[i],
                                                     " bits: not one of the widths ",
                                                     absl::StrJoin(widths_, ",")));
    }
    choice[i] = static_cast<int>(it - widths_.begin());
  }
  return CoalitionOfChoice(choice);
}

absl::Status WidthLadder::ValidateWidthBytes(std::span<const int64_t> width_bytes) const {
  const int m = num_widths();
  if (width_bytes.size() != static_cast<size_t>(num_players_) * m) {
    return absl::InvalidArgumentError(absl::StrCat("width bytes have ", width_bytes.size(),
                                                   " entries, expected ", num_players_, " × ",
                                                   m));
  }
  for (int i = 0; i < num_players_; ++i) {
    for (int w = 0; w < m; ++w) {
      const int64_t b = width_bytes[static_cast<size_t>(i) * m + w];
      if (b < 0 || (w > 0 && b < width_bytes[static_cast<size_t>(i) * m + w - 1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "player ", i, ": ", b, " bytes at ", widths_[w],
            " bits (negative, or fewer than at a narrower width)"));
      }
    }
  }
  return absl::OkStatus();
}

PlayerBytes WidthLadder::StepBytes(std::span<const int64_t> width_bytes) const {
  const int m = num_widths();
  PlayerBytes out;
  out.bytes2.assign(static_cast<size_t>(num_steps()), 0);
  out.bytes4.resize(static_cast<size_t>(num_steps()));
  for (int i = 0; i < num_players_; ++i) {
    const int64_t* b = width_bytes.data() + static_cast<size_t>(i) * m;
    for (int r = 0; r < steps_per_player(); ++r) {
      out.bytes4[Step(i, r)] = b[m - 1 - r] - b[m - 2 - r];
    }
  }
  return out;
}

int64_t WidthLadder::NarrowestBytes(std::span<const int64_t> width_bytes) const {
  int64_t total = 0;
  for (int i = 0; i < num_players_; ++i) {
    total += width_bytes[static_cast<size_t>(i) * num_widths()];
  }
  return total;
}

absl::StatusOr<MultiChoiceProblem> WidthLadder::ToMultiChoice(
    const QuadraticObjective& objective, std::span<const int64_t> width_bytes,
    int64_t budget_bytes) const {
  RETURN_IF_ERROR(ValidateObjective(objective));
  RETURN_IF_ERROR(ValidateWidthBytes(width_bytes));
  if (objective.num_players != num_steps()) {
    return absl::InvalidArgumentError(absl::StrCat("objective over ", objective.num_players,
                                                   " players, the ladder has ", num_steps(),
                                                   " steps"));
  }
  const int n = num_players_, m = num_widths();
  const size_t nv = static_cast<size_t>(n) * m;
  MultiChoiceProblem p;
  p.num_players = n;
  p.widths = widths_;
  p.bytes.assign(width_bytes.begin(), width_bytes.end());
  p.budget_bytes = budget_bytes;
  p.constant = objective.constant;
  p.linear.assign(nv, 0.0);
  p.quadratic.assign(nv * nv, 0.0);
  // Width index w of player i takes steps r = 0 .. m−2−w (L[(i,r),(i,w)] = 1 iff w + r <= m−2).
  for (int i = 0; i < n; ++i) {
    for (int w = 0; w < m; ++w) {
      double a = 0.0;
      for (int r = 0; w + r <= m - 2; ++r) a += objective.linear[Step(i, r)];
      p.linear[static_cast<size_t>(i) * m + w] = a;
    }
  }
  // Q is computed on and above the diagonal and mirrored: exactly symmetric.
  for (size_t x = 0; x < nv; ++x) {
    const int i = static_cast<int>(x) / m, w = static_cast<int>(x) % m;
    for (size_t y = x; y < nv; ++y) {
      const int j = static_cast<int>(y) / m, v = static_cast<int>(y) % m;
      double q = 0.0;
      for (int r = 0; w + r <= m - 2; ++r) {
        for (int s = 0; v + s <= m - 2; ++s) q += objective.K(Step(i, r), Step(j, s));
      }
      p.quadratic[x * nv + y] = p.quadratic[y * nv + x] = 2.0 * q;
      if (y == x) p.linear[x] += q;
    }
  }
  return p;
}

LadderPermutationSampler::LadderPermutationSampler(const WidthLadder& ladder, uint64_t seed,
                                                   bool antithetic)
    : num_players_(ladder.num_players()),
      steps_per_player_(ladder.steps_per_player()),
      seed_(seed),
      antithetic_(antithetic) {}

Permutation LadderPermutationSampler::Get(uint64_t index) const {
  const uint64_t stream = antithetic_ ? index / 2 : index;
  const int k = steps_per_player_;
  std::vector<int> labels(static_cast<size_t>(num_players_) * k);
  for (size_t t = 0; t < labels.size(); ++t) labels[t] = static_cast<int>(t) / k;
  Rng rng(DeriveSeed(seed_, stream));
  rng.Shuffle(std::span<int>(labels));
  if (antithetic_ && (index % 2) == 1) std::reverse(labels.begin(), labels.end());
  std::vector<int> taken(static_cast<size_t>(num_players_), 0);
  Permutation perm(labels.size());
  for (size_t t = 0; t < labels.size(); ++t) {
    const int i = labels[t];
    perm[t] = i * k + taken[i]++;
  }
  return perm;
}

}  // namespace impq::solver
