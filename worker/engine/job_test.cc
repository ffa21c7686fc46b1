#include "job/job.h"
#include "worker/engine/local_game.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>
#include <string>

#include "common/test_paths.h"
#include "gtest/gtest.h"
#include "worker/engine/job_inputs.h"

namespace impq::engine {
namespace {

using job::BudgetResult;
using job::JobOptions;
using job::JobProgress;
using job::JobResult;
using job::JobResultToJson;
using job::JobResultToMarkdown;
using job::MeasuredAllocation;
using job::ValidateJobOptions;

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

TEST(JobTest, RunningOnPreloadedInputsGivesRunJobsResult) {
  const JobOptions o = SmallJob(2);
  auto in = LoadJobInputs(o);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ((*in)->qmodel->num_players(), 5);
  EXPECT_EQ((*in)->calib.sequences.size(), 8u);
  EXPECT_EQ((*in)->heldout.sequences.size(), 16u);
  ASSERT_EQ((*in)->budgets.size(), 2u);
  auto on_inputs = RunJobOnInputs(o, **in);
  auto plain = RunJob(o);
  ASSERT_TRUE(on_inputs.ok()) << on_inputs.status();
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(JobResultToJson(*on_inputs, /*include_timings=*/false),
            JobResultToJson(*plain, /*include_timings=*/false));
  EXPECT_EQ(on_inputs->budgets[0].budget_bytes, (*in)->budgets[0]);
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
  EXPECT_EQ(r->calib_sequences, 8);
  EXPECT_EQ(r->select_sequences, 8);
  EXPECT_TRUE(r->select_on_calibration);  // the default
  EXPECT_EQ(phases, (std::vector<std::string>{"prepare", "baselines", "spqe", "solve", "select",
                                              "measure"}));
  ASSERT_EQ(r->budgets.size(), 2u);
  int64_t total_search = 0;
  const std::set<std::string> expected = {"impq",       "isolated",       "lim",
                                          "zscore",     "actnorm",        "random",
                                          "uniform",    "impq_surrogate", "impq_window",
                                          "impq_local", "impq_search", "impq_window_top"};
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
    // The choice by tiers: never worse on calibration than the best tier-0 candidate, and a
    // more elaborate one only when it wins by more than choice_z paired standard errors.
    const MeasuredAllocation& chosen = b.Chosen();
    const MeasuredAllocation* simpler = nullptr;
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.method == b.simpler) simpler = &m;
    }
    ASSERT_NE(simpler, nullptr) << b.simpler;
    EXPECT_EQ(simpler->tier, 0);
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.candidate && m.tier == 0) {
        EXPECT_LE(simpler->calib_nll, m.calib_nll) << m.method;
      }
    }
    EXPECT_LE(chosen.calib_nll, simpler->calib_nll);
    if (chosen.tier > 0) {
      EXPECT_NEAR(b.chosen_vs_simpler, chosen.calib_nll - simpler->calib_nll, 1e-12);
      EXPECT_LT(b.chosen_vs_simpler, -o.choice_z * b.chosen_vs_simpler_se);
    } else {
      EXPECT_EQ(b.chosen, b.simpler);
    }
    // The margin to the best candidate with another allocation: negative exactly when the tier
    // rule kept a simpler candidate over a lower one.
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.method != b.runner_up) continue;
      EXPECT_NE(m.bits, chosen.bits);
      EXPECT_NEAR(b.chosen_margin, m.calib_ppl / chosen.calib_ppl - 1, 1e-12);
    }
    // The search starts from the best candidate and keeps the best it measured.
    const MeasuredAllocation* search = nullptr;
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.method == "impq_search") search = &m;
    }
    ASSERT_NE(search, nullptr);
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.candidate) {
        EXPECT_LE(search->calib_nll, m.calib_nll) << m.method;
      }
    }
    total_search += b.search_evaluations;
  }
  // The candidates, then the search within what they leave of 25% of SPQE's evaluations.
  EXPECT_GT(total_search, 0);
  EXPECT_LE(r->selection_evaluations, r->coalitions_evaluated / 4);
  // At most one evaluation per tier-0/1 candidate (10) and budget.
  EXPECT_LE(r->selection_evaluations - total_search, 10 * 2);
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

// More widths (issue 14): the ladder game end to end on the 35 module players with widths
// {2, 3, 4, 8}: deterministic across thread counts; every allocation one width from the set
// per player, its bytes the model's at those widths, within the budget; the estimators'
// allocations certified; the walks over the 105 steps; the surrogates (not fitted over
// steps) absent; a per-player score spread over the widths ranks as in the binary game.
TEST(JobTest, MoreWidthsRunTheLadderGameDeterministically) {
  JobOptions o = SmallJob(1);
  o.players = quant::PlayerGranularity::kModule;
  o.widths = {2, 3, 4, 8};
  o.permutations = 2;
  auto r1 = RunJob(o);
  o.threads = 2;
  auto r2 = RunJob(o);
  ASSERT_TRUE(r1.ok()) << r1.status();
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_EQ(JobResultToJson(*r1, /*include_timings=*/false),
            JobResultToJson(*r2, /*include_timings=*/false));
  const JobResult& r = *r2;
  const size_t n = r.player_names.size(), m = 4;
  ASSERT_EQ(n, 35u);
  EXPECT_EQ(r.options.widths, o.widths);
  ASSERT_EQ(r.width_bytes.size(), n * m);
  EXPECT_EQ(r.phi.size(), n * (m - 1));
  EXPECT_EQ(r.isolated_delta.size(), n * (m - 1));
  EXPECT_EQ(r.cov_linear.size(), n * (m - 1));
  EXPECT_TRUE(r.sur_linear.empty());
  EXPECT_EQ(r.isolated_evaluations, static_cast<int64_t>(n * (m - 1) + 1));
  EXPECT_EQ(r.coalitions_requested, 2 * static_cast<int64_t>(n * (m - 1) + 1));
  const std::set<std::string> expected = {"impq",     "impq_window", "impq_window_top",
                                          "impq_search", "isolated", "lim",
                                          "zscore",   "actnorm",     "uniform",
                                          "random"};
  std::set<int> used;
  for (const BudgetResult& b : r.budgets) {
    std::set<std::string> methods;
    for (const MeasuredAllocation& a : b.allocations) {
      methods.insert(a.method);
      ASSERT_EQ(a.bits.size(), n) << a.method;
      int64_t mem = 0;
      for (size_t i = 0; i < n; ++i) {
        const auto w = std::find(o.widths.begin(), o.widths.end(), a.bits[i]);
        ASSERT_NE(w, o.widths.end()) << a.method << " player " << i << ": " << a.bits[i];
        mem += r.width_bytes[i * m + static_cast<size_t>(w - o.widths.begin())];
        used.insert(a.bits[i]);
      }
      EXPECT_EQ(mem, a.memory_bytes) << a.method;
      EXPECT_LE(a.memory_bytes, b.budget_bytes) << a.method << " at " << b.average_bits;
      EXPECT_TRUE(std::isfinite(a.heldout_ppl) && a.heldout_ppl > 1) << a.method;
      if (a.method == "impq" || a.method == "impq_window") {
        EXPECT_TRUE(a.proven_optimal) << a.method;
      }
    }
    EXPECT_EQ(methods, expected);
  }
  EXPECT_TRUE(used.count(3) == 1) << "no allocation used 3 bits";
  // Uniform is the widest single width that fits.
  for (const BudgetResult& b : r.budgets) {
    int widest = 0;
    for (size_t w = 0; w < m; ++w) {
      int64_t all = 0;
      for (size_t i = 0; i < n; ++i) all += r.width_bytes[i * m + w];
      if (all <= b.budget_bytes) widest = o.widths[w];
    }
    for (const MeasuredAllocation& a : b.allocations) {
      if (a.method == "uniform") {
        EXPECT_EQ(a.bits, std::vector<int>(n, widest)) << b.average_bits;
      }
    }
  }
  EXPECT_NE(JobResultToMarkdown(r).find("layers.0.attn_q 8→4"), std::string::npos);
}

TEST(JobTest, WidthOptionsAreChecked) {
  JobOptions o = SmallJob(1);
  for (const std::vector<int>& bad :
       std::vector<std::vector<int>>{{4}, {4, 2}, {2, 5}, {2, 2, 4}}) {
    o.widths = bad;
    const absl::Status s = ValidateJobOptions(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find("widths"), std::string::npos) << s;
  }
  o.widths = {2, 3, 4};
  o.estimator = "surrogate";
  EXPECT_NE(ValidateJobOptions(o).message().find("use covariance"), std::string::npos);
  o.estimator = "covariance";
  o.search_model = "local";
  EXPECT_NE(ValidateJobOptions(o).message().find("use first_order"), std::string::npos);
  // A budget below the narrowest allocation of the widths names both.
  o.search_model = "first_order";
  o.widths = {3, 4};
  o.average_bits = {2.25};
  auto r = RunJob(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("below the narrowest allocation of widths 3,4"),
            std::string::npos)
      << r.status();
}

TEST(JobTest, AnUnreachableMarginKeepsTheSimplestCandidate) {
  // With choice_z this large no elaborate candidate can win by enough standard errors: every
  // budget keeps the best tier-0 candidate (the isolated metrics' and uniform), whatever the
  // search found.
  JobOptions o = SmallJob(2);
  o.choice_z = 1e9;
  auto r = RunJob(o);
  ASSERT_TRUE(r.ok()) << r.status();
  for (const BudgetResult& b : r->budgets) {
    EXPECT_EQ(b.Chosen().tier, 0) << b.chosen;
    EXPECT_EQ(b.chosen, b.simpler);
  }
  // And with no margin at all, the lowest loss wins: the search's. (Here measured on the
  // calibration text's next 6 stories.)
  o.choice_z = 0;
  o.select_docs = 6;
  r = RunJob(o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->select_on_calibration);
  EXPECT_EQ(r->select_sequences, 6);
  EXPECT_NE(r->select_tokens, r->calib_tokens);
  for (const BudgetResult& b : r->budgets) {
    for (const MeasuredAllocation& m : b.allocations) {
      if (m.candidate) {
        EXPECT_LE(b.Chosen().calib_nll, m.calib_nll) << m.method;
      }
    }
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
  for (auto [field, set] : std::vector<std::pair<std::string, std::function<void(JobOptions&)>>>{
           {"select_docs", [](JobOptions& x) { x.select_docs = -1; }},
           {"extra_evaluation_fraction", [](JobOptions& x) { x.extra_evaluation_fraction = -0.1; }},
           {"search_batch", [](JobOptions& x) { x.search_batch = 0; }},
           {"search_max_changed", [](JobOptions& x) { x.search_max_changed = 0; }},
           {"search_model", [](JobOptions& x) { x.search_model = "oracle"; }},
           {"choice_z", [](JobOptions& x) { x.choice_z = -1; }}}) {
    o = SmallJob(1);
    set(o);
    EXPECT_NE(ValidateJobOptions(o).message().find(field), std::string::npos) << field;
  }
}

}  // namespace
}  // namespace impq::engine
