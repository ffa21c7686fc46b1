#include "worker/engine/job.h"

#include <cmath>
#include <set>
#include <string>

#include "common/test_paths.h"
#include "gtest/gtest.h"

namespace impq::engine {
namespace {

// A job small enough for a unit test: 5 block players, 8 calibration stories at ctx 128,
// 16 held-out paragraphs, 4 antithetic permutations, two budgets.
JobOptions SmallJob(int threads) {
  JobOptions o;
  o.model_path = SharedDataPath("stories260K.bin");
  o.tokenizer_path = SharedDataPath("tok512.bin");
  o.calib_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  o.heldout_text_path = SharedDataPath("tinystories_valid_a.txt");
  o.calib_docs = 8;
  o.heldout_docs = 16;
  o.ctx = 128;
  o.players = quant::PlayerGranularity::kBlock;
  o.permutations = 4;
  o.antithetic = true;
  o.seed = 5;
  o.average_bits = {2.5, 3.0};
  o.random_draws = 2;
  o.threads = threads;
  return o;
}

TEST(JobTest, IdenticalSeedGivesIdenticalOutputAtOneAndTwoThreads) {
  auto r1 = RunJob(SmallJob(1));
  auto r2 = RunJob(SmallJob(2));
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(JobResultToJson(*r1, /*include_timings=*/false),
            JobResultToJson(*r2, /*include_timings=*/false));
  EXPECT_EQ(JobResultToMarkdown(*r1), JobResultToMarkdown(*r2));
}

TEST(JobTest, EveryAllocationFitsItsBudgetAndIsMeasured) {
  std::vector<std::string> phases;
  JobOptions o = SmallJob(2);
  o.players = quant::PlayerGranularity::kModule;  // 35 players: the default game
  o.progress = [&](const JobProgress& p) {
    if (phases.empty() || phases.back() != p.phase) phases.push_back(p.phase);
  };
  auto r = RunJob(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const size_t n = r->player_names.size();
  ASSERT_EQ(n, 35u);
  EXPECT_EQ(phases, (std::vector<std::string>{"load", "quantize", "baselines", "spqe", "solve",
                                              "select", "measure"}));
  ASSERT_EQ(r->budgets.size(), 2u);
  const std::set<std::string> expected = {"impq",       "isolated",       "lim",
                                          "zscore",     "actnorm",        "random",
                                          "uniform",    "impq_surrogate", "impq_window",
                                          "impq_local"};
  for (const BudgetResult& b : r->budgets) {
    std::set<std::string> methods;
    for (const MeasuredAllocation& m : b.allocations) {
      methods.insert(m.method);
      ASSERT_EQ(m.bits.size(), n) << m.method;
      int64_t mem = 0;
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(m.bits[i] == 2 || m.bits[i] == 4) << m.method;
        mem += m.bits[i] == 2 ? r->bytes2[i] : r->bytes4[i];
      }
      EXPECT_EQ(mem, m.memory_bytes) << m.method;
      EXPECT_LE(m.memory_bytes, b.budget_bytes) << m.method << " at " << b.average_bits;
      EXPECT_LE(m.average_bits, b.average_bits + 1e-12) << m.method;
      EXPECT_TRUE(std::isfinite(m.heldout_ppl) && m.heldout_ppl > 1) << m.method;
      for (const auto& d : m.draw_bits) {
        int64_t dm = 0;
        for (size_t i = 0; i < n; ++i) dm += d[i] == 2 ? r->bytes2[i] : r->bytes4[i];
        EXPECT_LE(dm, b.budget_bytes) << "random draw";
      }
      EXPECT_EQ(m.candidate, m.method != "random") << m.method;
      if (m.method == "impq") {
        EXPECT_TRUE(m.proven_optimal);
      }
    }
    EXPECT_EQ(methods, expected);
    // The choice: the candidate with the lowest calibration loss.
    const MeasuredAllocation& chosen = b.Chosen();
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.candidate) {
        EXPECT_LE(chosen.calib_nll, m.calib_nll) << m.method;
      }
    }
    EXPECT_GE(b.chosen_margin, 0.0);
  }
  // At most one new calibration evaluation per candidate and budget (9 candidates).
  EXPECT_GT(r->selection_evaluations, 0);
  EXPECT_LE(r->selection_evaluations, 9 * 2);
  EXPECT_EQ(r->isolated_evaluations, 36);
  EXPECT_GT(r->prefix_saved_fraction, 0.0);
  EXPECT_EQ(r->phi.size(), n);
  // The JSON carries the estimates, the interaction matrix and every allocation.
  const std::string json = JobResultToJson(*r);
  for (const char* key : {"\"phi\"", "\"standard_error\"", "\"K\"", "\"allocations\"",
                          "\"bits\"", "\"heldout_ppl\"", "\"timings\"", "\"chosen\"",
                          "\"calibration_ppl\"", "\"selection_ratio\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
}

TEST(JobTest, InfeasibleBudgetIsAClearError) {
  JobOptions o = SmallJob(1);
  o.average_bits = {2.5, 1.5};
  auto r = RunJob(o);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("1.5"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("[2, 4]"), std::string::npos) << r.status();
  o.average_bits = {4.25};
  EXPECT_EQ(RunJob(o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(JobTest, StopsWhenTheAllocationIsStable) {
  // 5 block players: the allocation settles long before 40 walks. The stop must come from the
  // stability rule, after at least 4 walks, with the estimate of the walks actually done.
  JobOptions o = SmallJob(2);
  o.permutations = 40;
  o.stable_batches = 2;
  auto r = RunJob(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->stop_reason, "allocation_stable");
  EXPECT_GE(r->permutations_done, 4 + 2 * 2);
  EXPECT_LT(r->permutations_done, 40);
  // Deterministic: the same options stop at the same walk.
  auto again = RunJob(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->permutations_done, r->permutations_done);
  EXPECT_EQ(again->phi, r->phi);
}

TEST(JobTest, BadOptionsNameTheField) {
  JobOptions o = SmallJob(1);
  o.backend = "awq";
  EXPECT_NE(ValidateJobOptions(o).message().find("awq"), std::string::npos);
  o = SmallJob(1);
  o.permutations = 3;  // odd with antithetic pairs
  EXPECT_NE(ValidateJobOptions(o).message().find("permutations"), std::string::npos);
  o = SmallJob(1);
  o.model_path = SharedDataPath("no_such_model.bin");
  EXPECT_FALSE(RunJob(o).ok());
  o = SmallJob(1);
  o.stable_batches = -1;
  EXPECT_NE(ValidateJobOptions(o).message().find("stable_batches"), std::string::npos);
}

}  // namespace
}  // namespace impq::engine
