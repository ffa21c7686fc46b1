// Embedded mode (embedded.h): the coordinator job run in-process equals engine::RunJob on the
// same settings, whatever the number of worker loops; executor errors end the run.
#include "coordinator/embedded.h"

#include <cmath>

#include "common/test_paths.h"
#include "coordinator/test_game.h"
#include "gtest/gtest.h"

namespace impq::coordinator {
namespace {

class GameExecutor : public worker_service::UnitExecutor {
 public:
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    return game_.Evaluate(unit, "");
  }

 private:
  TestGame game_{6};
};

v1::JobSpec GameSpec() {
  v1::JobSpec spec;
  spec.set_model_path("/m");
  spec.set_tokenizer_path("/t");
  spec.set_calibration_text_path("/c");
  spec.set_evaluation_text_path("/e");
  spec.set_permutations(12);
  spec.set_antithetic(true);
  spec.set_seed(5);
  spec.add_average_bits(3.0);
  return spec;
}

TEST(EmbeddedTest, WorkerCountDoesNotChangeTheResultAndProgressIsMonotonic) {
  EmbeddedOptions one;
  one.make_executor = [] { return std::make_unique<GameExecutor>(); };
  std::vector<v1::JobStatus> seen;
  one.progress = [&](const v1::JobStatus& s) { seen.push_back(s); };
  absl::StatusOr<EmbeddedResult> a = RunEmbedded(GameSpec(), one);
  ASSERT_TRUE(a.ok()) << a.status();
  EmbeddedOptions three = one;
  three.workers = 3;
  three.capacity = 2;
  three.progress = nullptr;
  absl::StatusOr<EmbeddedResult> b = RunEmbedded(GameSpec(), three);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->result.SerializeAsString(), b->result.SerializeAsString());
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(seen.back().state(), v1::JOB_STATE_DONE);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GT(seen[i].version(), seen[i - 1].version());
    EXPECT_GE(seen[i].evaluations_done(), seen[i - 1].evaluations_done());
  }
  EXPECT_EQ(seen.back().evaluations_done(), seen.back().evaluations_total());
  // 12 walks of 7 coalitions + the measurement batch (all-4, all-2, one allocation).
  EXPECT_EQ(seen.back().evaluations_done(), 12 * 7 + 3);
}

TEST(EmbeddedTest, ExecutorErrorEndsTheRunWithThatError) {
  v1::JobSpec spec = GameSpec();
  spec.set_model_path(SharedDataPath("no_such_model.bin"));
  spec.set_tokenizer_path(SharedDataPath("tok512.bin"));
  absl::StatusOr<EmbeddedResult> r = RunEmbedded(spec, EmbeddedOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no_such_model.bin"), std::string::npos) << r.status();
}

TEST(EmbeddedTest, InvalidSpecIsRejectedNamingTheField) {
  v1::JobSpec spec = GameSpec();
  spec.set_average_bits(0, 4.5);
  absl::StatusOr<EmbeddedResult> r = RunEmbedded(spec, EmbeddedOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("average_bits"), std::string::npos) << r.status();
}

engine::JobOptions Stories(bool antithetic, int64_t permutations, double se_threshold) {
  engine::JobOptions o;
  o.model_path = SharedDataPath("stories260K.bin");
  o.tokenizer_path = SharedDataPath("tok512.bin");
  o.calib_text_path = SharedDataPath("tinystories_valid_a.txt");
  o.heldout_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  o.calib_docs = 4;
  o.heldout_docs = 4;
  o.ctx = 128;
  o.players = quant::PlayerGranularity::kBlock;
  o.permutations = permutations;
  o.antithetic = antithetic;
  o.seed = 17;
  o.se_threshold = se_threshold;
  o.average_bits = {2.5, 3.0};
  o.random_draws = 1;
  return o;
}

// RunJob vs the coordinator on the same settings: every shared number bit-identical.
void ExpectSameAsRunJob(const engine::JobOptions& o, int workers) {
  absl::StatusOr<engine::JobResult> local = engine::RunJob(o);
  ASSERT_TRUE(local.ok()) << local.status();
  absl::StatusOr<v1::JobSpec> spec = SpecFromJobOptions(o);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EmbeddedOptions eo;
  eo.workers = workers;
  absl::StatusOr<EmbeddedResult> emb = RunEmbedded(*spec, eo);
  ASSERT_TRUE(emb.ok()) << emb.status();
  const v1::JobResult& r = emb->result;
  const int n = static_cast<int>(local->phi.size());
  ASSERT_EQ(r.phi_size(), n);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(r.phi(i), local->phi[i]) << "phi[" << i << "]";
    EXPECT_EQ(r.standard_error(i), local->phi_se[i]) << "SE[" << i << "]";
    EXPECT_EQ(r.model().bytes2(i), local->bytes2[i]);
    EXPECT_EQ(r.model().bytes4(i), local->bytes4[i]);
  }
  EXPECT_EQ(r.permutations_used(), local->permutations_done);
  EXPECT_EQ(r.stop_reason(), local->stop_reason);
  EXPECT_EQ(r.loss_all4(), local->calib_loss_all4);
  EXPECT_EQ(r.loss_all2(), local->calib_loss_all2);
  EXPECT_EQ(std::exp(r.evaluation_loss_all4()), local->heldout_ppl_all4);
  EXPECT_EQ(std::exp(r.evaluation_loss_all2()), local->heldout_ppl_all2);
  ASSERT_EQ(r.allocations_size(), static_cast<int>(local->budgets.size()));
  for (int b = 0; b < r.allocations_size(); ++b) {
    const engine::BudgetResult& lb = local->budgets[static_cast<size_t>(b)];
    const engine::MeasuredAllocation* impq = nullptr;
    for (const auto& m : lb.allocations) {
      if (m.method == "impq") impq = &m;
    }
    ASSERT_NE(impq, nullptr);
    const v1::Allocation& a = r.allocations(b);
    EXPECT_EQ(a.budget_bytes(), lb.budget_bytes);
    EXPECT_EQ(std::vector<int>(a.bits().begin(), a.bits().end()), impq->bits) << "budget " << b;
    EXPECT_EQ(a.memory_bytes(), impq->memory_bytes);
    EXPECT_EQ(a.objective(), impq->objective);
    EXPECT_EQ(a.proven_optimal(), impq->proven_optimal);
    EXPECT_TRUE(a.measured());
    EXPECT_EQ(a.measured_loss(), impq->heldout_nll) << "budget " << b;
  }
}

TEST(EmbeddedTest, MatchesRunJobAntithetic) { ExpectSameAsRunJob(Stories(true, 6, 0), 2); }

TEST(EmbeddedTest, MatchesRunJobPlainSampling) { ExpectSameAsRunJob(Stories(false, 3, 0), 1); }

TEST(EmbeddedTest, MatchesRunJobWithTheStoppingRule) {
  // A threshold every estimate meets: both stop at min_permutations (4, antithetic).
  ExpectSameAsRunJob(Stories(true, 8, 1e9), 2);
}

}  // namespace
}  // namespace impq::coordinator
