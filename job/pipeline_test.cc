// The job pipeline on a synthetic game (no model): what each phase leaves in the result, the
// order of the phases, determinism, and a game whose answers are wrong failing the job with a
// message that says what was wrong.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "job/job.h"
#include "job/synthetic_game.h"
#include "job/work_plan.h"

namespace impq::job {
namespace {

using ::testing::HasSubstr;

JobOptions Synthetic(std::vector<int> widths = {2, 4}) {
  JobOptions o;
  o.model_path = "synthetic.bin";
  o.calib_text_path = "calib.txt";
  o.heldout_text_path = "heldout.txt";
  o.widths = std::move(widths);
  o.permutations = 6;
  o.average_bits = {2.5, 3.0, 3.5};
  o.random_draws = 2;
  return o;
}

TEST(PipelineTest, EveryBudgetsAllocationsFitAndTheChoiceIsAMeasuredCandidate) {
  for (const std::vector<int>& widths : {std::vector<int>{2, 4}, std::vector<int>{2, 3, 4}}) {
    const JobOptions o = Synthetic(widths);
    SyntheticGame game(8, widths);
    absl::StatusOr<JobResult> r = RunPipeline(o, game);
    ASSERT_TRUE(r.ok()) << r.status();
    const size_t steps = 8 * (widths.size() - 1);
    EXPECT_EQ(r->phi.size(), steps);
    EXPECT_EQ(r->isolated_delta.size(), steps);
    EXPECT_EQ(r->permutations_done, o.permutations);
    ASSERT_EQ(r->budgets.size(), o.average_bits.size());
    for (const BudgetResult& b : r->budgets) {
      std::vector<std::string> methods;
      for (const MeasuredAllocation& m : b.allocations) {
        methods.push_back(m.method);
        EXPECT_LE(m.memory_bytes, b.budget_bytes) << m.method << " at " << b.average_bits;
        for (int bits : m.bits) {
          EXPECT_NE(std::find(widths.begin(), widths.end(), bits), widths.end()) << m.method;
        }
        EXPECT_TRUE(std::isfinite(m.heldout_ppl)) << m.method;
      }
      for (const char* method : {"impq", "impq_window", "impq_window_top", "impq_search",
                                 "isolated", "lim", "zscore", "actnorm", "uniform", "random"}) {
        EXPECT_NE(std::find(methods.begin(), methods.end(), method), methods.end())
            << method << " at " << b.average_bits;
      }
      const MeasuredAllocation& chosen = b.Chosen();
      EXPECT_TRUE(chosen.candidate);
      EXPECT_GT(chosen.calib_ppl, 0);
    }
    // The choice's evaluations stay within the allowance (candidates always measured).
    EXPECT_GT(r->selection_evaluations, 0);
  }
}

TEST(PipelineTest, PhasesRunInOrderAndTheResultIsAFunctionOfTheOptions) {
  JobOptions o = Synthetic();
  std::vector<std::string> phases;
  o.progress = [&](const JobProgress& p) {
    if (phases.empty() || phases.back() != p.phase) phases.push_back(p.phase);
  };
  SyntheticGame a(8, o.widths), b(8, o.widths);
  absl::StatusOr<JobResult> ra = RunPipeline(o, a);
  o.progress = nullptr;
  absl::StatusOr<JobResult> rb = RunPipeline(o, b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(phases, (std::vector<std::string>{"prepare", "baselines", "spqe", "solve", "select",
                                              "measure"}));
  EXPECT_EQ(JobResultToJson(*ra, /*include_timings=*/false),
            JobResultToJson(*rb, /*include_timings=*/false));
}

// A game that answers one call wrongly.
class FaultyGame : public SyntheticGame {
 public:
  enum class Fault { kNone, kInconsistentFacts, kNanCalibration, kShortHeldout, kShortSums };
  FaultyGame(int n, std::vector<int> widths, Fault fault)
      : SyntheticGame(n, std::move(widths)), fault_(fault) {}
  absl::StatusOr<GameFacts> Prepare() override {
    absl::StatusOr<GameFacts> f = SyntheticGame::Prepare();
    if (f.ok() && fault_ == Fault::kInconsistentFacts) f->bytes4.pop_back();
    return f;
  }
  absl::StatusOr<std::vector<double>> CalibrationLosses(
      std::span<const solver::Coalition> coalitions) override {
    absl::StatusOr<std::vector<double>> l = SyntheticGame::CalibrationLosses(coalitions);
    if (l.ok() && fault_ == Fault::kNanCalibration && l->size() > 1) (*l)[1] = std::nan("");
    return l;
  }
  absl::StatusOr<std::vector<std::vector<double>>> SelectionSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) override {
    absl::StatusOr<std::vector<std::vector<double>>> s =
        SyntheticGame::SelectionSums(coalitions, begin, end);
    if (s.ok() && fault_ == Fault::kShortSums) s->front().pop_back();
    return s;
  }
  absl::StatusOr<std::vector<double>> HeldoutNll(
      std::span<const std::vector<int>> assignments) override {
    absl::StatusOr<std::vector<double>> h = SyntheticGame::HeldoutNll(assignments);
    if (h.ok() && fault_ == Fault::kShortHeldout) h->pop_back();
    return h;
  }

 private:
  const Fault fault_;
};

TEST(PipelineTest, AWrongAnswerFailsTheJobSayingWhatWasWrong) {
  using Fault = FaultyGame::Fault;
  const struct {
    Fault fault;
    const char* message;
  } cases[] = {
      {Fault::kInconsistentFacts, "the prepared game is inconsistent"},
      {Fault::kNanCalibration, "is not finite"},
      {Fault::kShortSums, "sequence sums for a choice set of 3 sequences"},
      {Fault::kShortHeldout, "answered the held-out batch with a wrong count"},
  };
  const JobOptions o = Synthetic();
  for (const auto& c : cases) {
    FaultyGame game(8, o.widths, c.fault);
    absl::StatusOr<JobResult> r = RunPipeline(o, game);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_THAT(r.status().message(), HasSubstr(c.message));
  }
  FaultyGame fine(8, o.widths, Fault::kNone);
  EXPECT_TRUE(RunPipeline(o, fine).ok());
}

TEST(PipelineTest, BadOptionsAndUnmeetableBudgetsNameTheSetting) {
  JobOptions o = Synthetic();
  o.average_bits = {4.5};
  SyntheticGame game(8, o.widths);
  absl::StatusOr<JobResult> r = RunPipeline(o, game);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("average_bits 4.5 is outside [2, 4]"));
  // Widths {3, 4}: 2.5 average bits (on the 2/4-bit scale) is below every player at 3 bits.
  o = Synthetic({3, 4});
  o.average_bits = {2.5};
  SyntheticGame ladder(8, o.widths);
  r = RunPipeline(o, ladder);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(),
              HasSubstr("average bit-width 2.5: 4500 bytes is below the narrowest allocation "
                        "of widths 3,4 (5400 bytes)"));
}

// The time-left estimate: the rate of the work done so far applied to the work left.
TEST(JobWorkPlanTest, ExtrapolatesTheRateSoFar) {
  JobOptions o;  // 4 budgets, extra fraction 0.25, 3 random draws
  o.permutations = 24;
  const JobWorkPlan plan(o, 35, 18000, 48000);
  EXPECT_EQ(plan.SecondsLeft("load", 0, 1, 5.0), 0.0);       // before the plan
  EXPECT_EQ(plan.SecondsLeft("baselines", 0, 2, 0.0), 0.0);  // nothing done yet
  // Half of SPQE done after 100 s: left = 100 s / work done × work left, by the plan's units.
  const double n = 35, spqe = 0.6 * 24 * n, base = 0.6 * n + 1;
  const double rest = 2 * 4 + (0.25 * 24 * n + 40) + 0.85 * (48000.0 / 18000) * (4 * 15 + 3);
  EXPECT_NEAR(plan.SecondsLeft("spqe", 12, 24, 100.0),
              100.0 / (base + spqe / 2) * (spqe / 2 + rest), 1e-9);
  EXPECT_EQ(plan.SecondsLeft("measure", 10, 10, 300.0), 0.0);  // the end
  // Monotone within a phase at a steady rate: more done, less left.
  EXPECT_GT(plan.SecondsLeft("select", 1, 4, 200.0), plan.SecondsLeft("select", 3, 4, 220.0));
  EXPECT_EQ(JobWorkPlan().SecondsLeft("spqe", 1, 2, 10.0), 0.0);  // no plan
}

}  // namespace
}  // namespace impq::job
