// Phase "measure": every allocation of every budget measured on the held-out set (plus the
// all-widest and all-narrowest references; fp32 came with the facts), then the result's
// per-budget tables: each method's bits, bytes, held-out PPL, choice candidates' calibration
// losses and the estimators' solver details, the random draws folded into one entry, and the
// choice with its runner-up and margins.
//
// The assignments go to the game as one batch in lexicographic order of their bits. Players
// are numbered layer by layer (and, within a layer, attention modules before feed-forward
// ones), so that order is a walk through the assignments' prefix tree: each one shares its
// first sublayers with the one before as far as any order could make it, and an evaluator's
// prefix cache restarts there (exact: the losses are those of full evaluations).
#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "job/phases.h"

namespace impq::job {
namespace {

// Bytes of an assignment from the prepared facts: bytes2/bytes4 and width_bytes.
absl::StatusOr<int64_t> AssignmentBytes(const GameFacts& f, const std::vector<int>& widths,
                                        const std::vector<int>& bits) {
  const size_t m = widths.size();
  int64_t total = 0;
  for (size_t i = 0; i < bits.size(); ++i) {
    if (bits[i] == 2) {
      total += f.bytes2[i];
    } else if (bits[i] == 4) {
      total += f.bytes4[i];
    } else {
      const auto w = std::find(widths.begin(), widths.end(), bits[i]);
      if (w == widths.end()) {
        return absl::InternalError(absl::StrCat("job: player ", i, " at ", bits[i], " bits"));
      }
      total += f.width_bytes[i * m + static_cast<size_t>(w - widths.begin())];
    }
  }
  return total;
}

}  // namespace

absl::Status MeasurePhase(PipelineState& s) {
  const JobOptions& o = s.o;
  JobResult& r = s.r;
  const int n = s.n;
  const solver::WidthLadder& ladder = *s.ladder;
  const auto t0 = PipelineClock::now();
  std::vector<std::vector<int>> assignments = {std::vector<int>(n, 4), std::vector<int>(n, 2)};
  for (const auto& p : s.plan) {
    for (const PlannedAllocation& x : p) {
      ASSIGN_OR_RETURN(std::vector<int> bits, ladder.BitsOf(x.q));
      assignments.push_back(std::move(bits));
    }
  }
  std::sort(assignments.begin(), assignments.end());
  assignments.erase(std::unique(assignments.begin(), assignments.end()), assignments.end());
  s.Report("measure", 0, 1, t0);
  ASSIGN_OR_RETURN(const std::vector<double> heldout_nll, s.game.HeldoutNll(assignments));
  if (heldout_nll.size() != assignments.size()) {
    return absl::InternalError("job: the game answered the held-out batch with a wrong count");
  }
  std::map<std::vector<int>, double> measured;
  for (size_t k = 0; k < assignments.size(); ++k) measured[assignments[k]] = heldout_nll[k];
  auto nll_of = [&](const std::vector<int>& bits) { return measured.at(bits); };
  s.Report("measure", 1, 1, t0);
  r.heldout_ppl_fp32 = std::exp(s.facts.heldout_nll_fp32);
  r.heldout_ppl_all4 = std::exp(nll_of(std::vector<int>(n, 4)));
  r.heldout_ppl_all2 = std::exp(nll_of(std::vector<int>(n, 2)));
  for (size_t b = 0; b < s.budgets.size(); ++b) {
    const std::vector<PlannedAllocation>& plan = s.plan[b];
    BudgetResult br;
    br.average_bits = o.average_bits[b];
    br.budget_bytes = s.budgets[b];
    br.target_size = r.target_sizes[b];
    MeasuredAllocation random;
    random.method = "random";
    double nll_sum = 0, ppl_sum = 0;
    for (size_t k = 0; k < plan.size(); ++k) {
      const PlannedAllocation& p = plan[k];
      MeasuredAllocation m;
      m.method = p.method;
      ASSIGN_OR_RETURN(m.bits, ladder.BitsOf(p.q));
      ASSIGN_OR_RETURN(m.memory_bytes, AssignmentBytes(s.facts, o.widths, m.bits));
      m.average_bits = 2.0 + 2.0 * static_cast<double>(m.memory_bytes - r.all2_bytes) /
                                 static_cast<double>(r.all4_bytes - r.all2_bytes);
      m.heldout_nll = nll_of(m.bits);
      m.heldout_ppl = std::exp(m.heldout_nll);
      if (p.solved) {
        m.objective = p.solved->objective;
        m.lower_bound = p.solved->lower_bound;
        m.proven_optimal = p.solved->proven_optimal;
        m.nodes = p.solved->nodes;
      }
      if (p.tier >= 0) {
        m.candidate = true;
        m.tier = p.tier;
        m.calib_nll = s.calib_loss[b][k];
        m.calib_ppl = std::exp(m.calib_nll);
        br.allocations.push_back(std::move(m));
        continue;
      }
      // Random draws fold into one entry: the first draw's bits, the mean of the measures.
      if (random.draw_bits.empty()) {
        random.bits = m.bits;
        random.memory_bytes = m.memory_bytes;
        random.average_bits = m.average_bits;
      }
      random.draw_bits.push_back(m.bits);
      random.draw_ppl.push_back(m.heldout_ppl);
      nll_sum += m.heldout_nll;
      ppl_sum += m.heldout_ppl;
    }
    random.heldout_nll = nll_sum / o.random_draws;
    random.heldout_ppl = ppl_sum / o.random_draws;
    br.allocations.push_back(std::move(random));
    // The choice was made in the select phase; plan and allocations share the order up to
    // the random draws, which fold into the last entry.
    const int best = s.chosen_index[b];
    int second = -1;
    for (int k = 0; k < static_cast<int>(br.allocations.size()); ++k) {
      const MeasuredAllocation& m = br.allocations[k];
      if (!m.candidate || k == best || m.bits == br.allocations[best].bits) continue;
      if (second < 0 || m.calib_nll < br.allocations[second].calib_nll) second = k;
    }
    br.chosen = br.allocations[best].method;
    br.simpler = br.allocations[s.simpler_index[b]].method;
    br.chosen_vs_simpler = s.chosen_vs_simpler[b].mean;
    br.chosen_vs_simpler_se = s.chosen_vs_simpler[b].standard_error;
    br.search_evaluations = r.search_evaluations[b];
    br.search_moves = r.search_moves[b];
    if (second >= 0) {
      br.runner_up = br.allocations[second].method;
      br.chosen_margin = br.allocations[second].calib_ppl / br.allocations[best].calib_ppl - 1.0;
    }
    r.budgets.push_back(std::move(br));
  }
  r.heldout_evaluations = static_cast<int64_t>(assignments.size()) + 1;  // + fp32
  r.measure_seconds = SecondsSince(t0);
  return absl::OkStatus();
}

}  // namespace impq::job
