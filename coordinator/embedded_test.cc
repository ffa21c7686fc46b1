// Embedded mode (embedded.h) on the real model: the coordinator's result document equals the
// pipeline run on a LocalGame in this thread (engine::RunJob), whatever the number of worker
// loops; executor errors end the run with that error; bad specs are refused naming the field.
#include "coordinator/embedded.h"

#include "common/test_paths.h"
#include "coordinator/test_game.h"
#include "gtest/gtest.h"
#include "job/spec_options.h"
#include "worker/engine/local_game.h"

namespace impq::coordinator {
namespace {

job::JobOptions Stories(std::vector<int> widths = {2, 4}) {
  job::JobOptions o;
  o.model_path = SharedDataPath("stories260K.bin");
  o.tokenizer_path = SharedDataPath("tok512.bin");
  o.calib_text_path = SharedDataPath("tinystories_valid_a.txt");
  o.heldout_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  o.calib_docs = 4;
  o.heldout_docs = 4;
  o.ctx = 128;
  o.players = quant::PlayerGranularity::kBlock;
  o.permutations = 4;
  o.seed = 17;
  o.average_bits = {2.5, 3.0};
  o.random_draws = 1;
  o.widths = std::move(widths);
  return o;
}

void ExpectSameAsRunJob(const job::JobOptions& o, int workers) {
  absl::StatusOr<job::JobResult> local = engine::RunJob(o);
  ASSERT_TRUE(local.ok()) << local.status();
  EmbeddedOptions eo;
  eo.workers = workers;
  absl::StatusOr<EmbeddedResult> emb = RunEmbedded(job::SpecFromJobOptions(o), eo);
  ASSERT_TRUE(emb.ok()) << emb.status();
  EXPECT_EQ(WithoutTimings(emb->result.document()),
            WithoutTimings(job::JobResultToJson(*local)));
  ASSERT_NE(emb->pipeline, nullptr);
  EXPECT_EQ(job::JobResultToJson(*emb->pipeline), emb->result.document());
  // The summary fields are the document's.
  ASSERT_EQ(emb->result.allocations_size(), 2);
  EXPECT_EQ(emb->result.phi_size(), static_cast<int>(local->phi.size()));
  for (size_t b = 0; b < local->budgets.size(); ++b) {
    const job::MeasuredAllocation& c = local->budgets[b].Chosen();
    const v1::Allocation& a = emb->result.allocations(static_cast<int>(b));
    EXPECT_EQ(std::vector<int>(a.bits().begin(), a.bits().end()), c.bits);
    EXPECT_EQ(a.measured_loss(), c.heldout_nll);
  }
}

TEST(EmbeddedTest, OneWorkerEqualsRunJob) { ExpectSameAsRunJob(Stories(), 1); }
TEST(EmbeddedTest, TwoWorkersEqualRunJob) { ExpectSameAsRunJob(Stories(), 2); }
TEST(EmbeddedTest, WidthSetEqualsRunJob) { ExpectSameAsRunJob(Stories({2, 3, 4}), 2); }

TEST(EmbeddedTest, ExecutorErrorEndsTheRunWithThatError) {
  job::JobOptions o = Stories();
  o.model_path = SharedDataPath("no_such_model.bin");
  absl::StatusOr<EmbeddedResult> r = RunEmbedded(job::SpecFromJobOptions(o), EmbeddedOptions());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no_such_model.bin"), std::string::npos) << r.status();
}

TEST(EmbeddedTest, InvalidSpecIsRejectedNamingTheField) {
  job::JobOptions o = Stories();
  o.average_bits = {4.5};
  absl::StatusOr<EmbeddedResult> r = RunEmbedded(job::SpecFromJobOptions(o), EmbeddedOptions());
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("4.5"), std::string::npos) << r.status();
}

TEST(EmbeddedTest, SyntheticExecutorsAndProgressMoveForward) {
  v1::JobSpec spec;
  spec.set_model_path("/m");
  spec.set_calibration_text_path("/c");
  spec.set_evaluation_text_path("/e");
  spec.set_permutations(4);
  EmbeddedOptions eo;
  eo.workers = 2;
  eo.make_executor = [] { return std::make_unique<SyntheticExecutor>(5); };
  std::vector<v1::JobStatus> seen;
  eo.progress = [&](const v1::JobStatus& s) { seen.push_back(s); };
  absl::StatusOr<EmbeddedResult> r = RunEmbedded(spec, eo);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.back().state(), v1::JOB_STATE_DONE);
  for (size_t i = 1; i < seen.size(); ++i) {
    EXPECT_GT(seen[i].version(), seen[i - 1].version());
    EXPECT_GE(seen[i].units_done(), seen[i - 1].units_done());
  }
  EXPECT_EQ(seen.back().units_done(), seen.back().units_total());
}

}  // namespace
}  // namespace impq::coordinator
