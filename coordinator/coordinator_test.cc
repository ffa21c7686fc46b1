#include "coordinator/coordinator.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "common/test_paths.h"
#include "coordinator/ladder_test_game.h"
#include "coordinator/test_game.h"
#include "gtest/gtest.h"
#include "solver/allocation_problem.h"
#include "solver/coalition_evaluator.h"
#include "solver/interactions.h"
#include "solver/multi_choice.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"

namespace impq::coordinator {
namespace {

v1::JobSpec Spec(int64_t permutations = 8) {
  v1::JobSpec s;
  s.set_model_path("/data/m.bin");
  s.set_tokenizer_path("/data/t.bin");
  s.set_calibration_text_path("/data/c.txt");
  s.set_permutations(permutations);
  s.set_antithetic(true);
  s.set_seed(7);
  s.add_average_bits(2.5);
  s.add_average_bits(3.0);
  return s;
}

class CoordinatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Coordinator> Open(const std::string& path = ":memory:") {
    CoordinatorOptions o;
    o.store_path = path;
    o.clock = &clock_;
    o.lease_duration = absl::Seconds(10);
    o.max_units_per_lease = 4;
    o.limits.data_roots = {"/data"};
    auto c = Coordinator::Open(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  // Runs one lease of `capacity` units through the game; returns false when no lease.
  bool Step(Coordinator& c, const std::string& worker, int capacity, bool reverse = false) {
    auto grant = c.AcquireLease(worker, capacity);
    EXPECT_TRUE(grant.ok()) << grant.status();
    if (!grant->has_lease) return false;
    std::vector<v1::WorkUnit> units = grant->units;
    if (reverse) std::reverse(units.begin(), units.end());
    for (const auto& u : units) {
      auto out = c.ReportResult(grant->lease_id, game_.Evaluate(u, worker));
      EXPECT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, v1::REPORT_OUTCOME_ACCEPTED);
    }
    return true;
  }
  v1::JobResult RunToEnd(Coordinator& c, const std::string& id, int capacity, bool reverse) {
    for (int guard = 0; guard < 1000; ++guard) {
      if (!Step(c, "w", capacity, reverse)) {
        if (c.SolvePending() == 0) break;
      }
    }
    auto v = c.GetJob(id);
    EXPECT_TRUE(v.ok());
    EXPECT_EQ(v->status.state(), v1::JOB_STATE_DONE) << v->status.error();
    return v->result;
  }

  FakeClock clock_;
  TestGame game_{6};
};

TEST_F(CoordinatorTest, RejectsBadSpecsNamingTheField) {
  auto c = Open();
  struct Case {
    std::function<void(v1::JobSpec&)> mutate;
    absl::StatusCode code;
    std::string field;
  } cases[] = {
      {[](v1::JobSpec& s) { s.clear_model_path(); }, absl::StatusCode::kInvalidArgument, "model_path"},
      {[](v1::JobSpec& s) { s.set_permutations(-3); }, absl::StatusCode::kInvalidArgument, "permutations"},
      {[](v1::JobSpec& s) { s.set_permutations(7); }, absl::StatusCode::kInvalidArgument, "permutations"},
      {[](v1::JobSpec& s) { s.add_average_bits(4.5); }, absl::StatusCode::kInvalidArgument, "average_bits[2]"},
      {[](v1::JobSpec& s) { s.clear_average_bits(); }, absl::StatusCode::kInvalidArgument, "average_bits"},
      {[](v1::JobSpec& s) { s.set_backend("fp8"); }, absl::StatusCode::kInvalidArgument, "backend"},
      {[](v1::JobSpec& s) { s.set_calibration_docs(-1); }, absl::StatusCode::kInvalidArgument, "calibration_docs"},
      {[](v1::JobSpec& s) { s.set_model_path("/etc/passwd"); }, absl::StatusCode::kPermissionDenied, "model_path"},
      {[](v1::JobSpec& s) { s.set_tokenizer_path("../etc/x"); }, absl::StatusCode::kPermissionDenied, "tokenizer_path"},
      {[](v1::JobSpec& s) { s.set_se_threshold(-1); }, absl::StatusCode::kInvalidArgument, "se_threshold"},
  };
  for (const auto& k : cases) {
    v1::JobSpec s = Spec();
    k.mutate(s);
    auto st = c->SubmitJob(s);
    ASSERT_FALSE(st.ok()) << k.field;
    EXPECT_EQ(st.status().code(), k.code) << st.status();
    EXPECT_NE(st.status().message().find(k.field), std::string::npos) << st.status();
  }
  EXPECT_TRUE(c->ListJobs().empty());
  // Relative paths are resolved under the first root.
  v1::JobSpec s = Spec();
  s.set_model_path("models/m.bin");
  ASSERT_TRUE(c->SubmitJob(s).ok());
  EXPECT_EQ(c->GetJob("job-000001")->spec.model_path(), "/data/models/m.bin");
}

TEST_F(CoordinatorTest, MatchesRunSpqeAndIgnoresArrivalOrder) {
  auto c = Open();
  auto a = c->SubmitJob(Spec(12));
  auto b = c->SubmitJob(Spec(12));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->state(), v1::JOB_STATE_QUEUED);
  const v1::JobResult ra = RunToEnd(*c, a->job_id(), 1, false);
  const v1::JobResult rb = RunToEnd(*c, b->job_id(), 4, true);
  // The reference: the solver's own SPQE on the same game.
  solver::FunctionEvaluator fe([&](const solver::Coalition& q) { return game_.Value(q); });
  solver::SpqeOptions so;
  so.num_players = 6;
  so.max_permutations = 12;
  so.antithetic = true;
  so.seed = 7;
  auto ref = solver::RunSpqe(fe, so);
  ASSERT_TRUE(ref.ok());
  ASSERT_EQ(ra.phi_size(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(ra.phi(i), ref->estimate.phi[i]);
    EXPECT_EQ(ra.standard_error(i), ref->estimate.standard_error[i]);
  }
  EXPECT_EQ(ra.permutations_used(), 12);
  EXPECT_EQ(ra.stop_reason(), "max_permutations");
  v1::JobResult rb2 = rb;
  rb2.set_job_id(ra.job_id());
  EXPECT_EQ(ra.SerializeAsString(), rb2.SerializeAsString());
  ASSERT_EQ(ra.allocations_size(), 2);
  EXPECT_EQ(ra.allocations(0).bits_size(), 6);
  EXPECT_FALSE(ra.allocations(0).measured());
  auto st = c->GetJob(a->job_id())->status;
  EXPECT_EQ(st.evaluations_done(), 12 * 7);
  EXPECT_EQ(st.evaluations_total(), 12 * 7);
}

TEST_F(CoordinatorTest, ExpiredLeaseIsReissuedAndLateReportIsStale) {
  auto c = Open();
  auto job = c->SubmitJob(Spec(2));
  auto a = c->AcquireLease("a", 1);
  ASSERT_TRUE(a.ok() && a->has_lease);
  EXPECT_EQ(a->units[0].unit_index(), 0);
  EXPECT_EQ(a->units[0].attempt(), 1);
  EXPECT_TRUE(a->units[0].permutation().empty());  // n unknown yet: worker derives it
  // Heartbeats keep it alive past the original deadline.
  clock_.Advance(absl::Seconds(8));
  EXPECT_EQ(c->Heartbeat(a->lease_id, "a")->state, v1::LEASE_STATE_ACTIVE);
  clock_.Advance(absl::Seconds(8));
  EXPECT_EQ(c->ExpireLeases(), 0);
  clock_.Advance(absl::Seconds(11));
  EXPECT_EQ(c->ExpireLeases(), 1);
  EXPECT_EQ(c->Heartbeat(a->lease_id, "a")->state, v1::LEASE_STATE_EXPIRED);
  auto b = c->AcquireLease("b", 4);
  ASSERT_TRUE(b.ok() && b->has_lease);
  ASSERT_EQ(b->units.size(), 2u);
  EXPECT_EQ(b->units[0].unit_index(), 0);
  EXPECT_EQ(b->units[0].attempt(), 2);
  EXPECT_EQ(*c->ReportResult(a->lease_id, game_.Evaluate(a->units[0], "a")),
            v1::REPORT_OUTCOME_STALE);
  EXPECT_EQ(*c->ReportResult(b->lease_id, game_.Evaluate(b->units[0], "b")),
            v1::REPORT_OUTCOME_ACCEPTED);
  EXPECT_EQ(*c->ReportResult(b->lease_id, game_.Evaluate(b->units[0], "b")),
            v1::REPORT_OUTCOME_DUPLICATE);
  EXPECT_EQ(*c->ReportResult(a->lease_id, game_.Evaluate(a->units[0], "a")),
            v1::REPORT_OUTCOME_DUPLICATE);
  EXPECT_EQ(c->GetJob(job->job_id())->status.evaluations_done(), 7);
  // Once n is known, units carry their permutation explicitly.
  EXPECT_EQ(c->Heartbeat(b->lease_id, "b")->state, v1::LEASE_STATE_ACTIVE);
}

TEST_F(CoordinatorTest, MalformedResultsAreRejectedNamingTheField) {
  auto c = Open();
  auto job = c->SubmitJob(Spec(2));
  auto g = c->AcquireLease("a", 2);
  v1::WorkResult r = game_.Evaluate(g->units[0], "a");
  r.mutable_losses()->RemoveLast();
  auto st = c->ReportResult(g->lease_id, r);
  EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.status().message().find("result.losses"), std::string::npos);
  r = game_.Evaluate(g->units[0], "a");
  r.set_permutation(0, r.permutation(1));
  st = c->ReportResult(g->lease_id, r);
  EXPECT_NE(st.status().message().find("result.permutation"), std::string::npos) << st.status();
  r = game_.Evaluate(g->units[0], "a");
  r.set_losses(2, std::nan(""));
  EXPECT_NE(c->ReportResult(g->lease_id, r).status().message().find("losses[2]"), std::string::npos);
  r = game_.Evaluate(g->units[0], "a");
  r.set_unit_index(99);
  EXPECT_EQ(c->ReportResult(g->lease_id, r).status().code(), absl::StatusCode::kInvalidArgument);
  r.set_job_id("job-nope");
  EXPECT_EQ(c->ReportResult(g->lease_id, r).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->AcquireLease("", 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->AcquireLease("a", 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->GetJob(job->job_id())->status.evaluations_done(), 0);
}

TEST_F(CoordinatorTest, CancelStopsLeasesAndReports) {
  auto c = Open();
  auto job = c->SubmitJob(Spec(4));
  auto g = c->AcquireLease("a", 1);
  auto st = c->CancelJob(job->job_id());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(c->Heartbeat(g->lease_id, "a")->state, v1::LEASE_STATE_CANCELLED);
  EXPECT_EQ(*c->ReportResult(g->lease_id, game_.Evaluate(g->units[0], "a")),
            v1::REPORT_OUTCOME_STALE);
  EXPECT_FALSE(c->AcquireLease("a", 1)->has_lease);
  EXPECT_EQ(c->CancelJob("job-zzz").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CoordinatorTest, StandardErrorRuleIsDeterministic) {
  auto c = Open();
  v1::JobSpec s = Spec(40);
  s.set_antithetic(false);
  s.set_se_threshold(0.02);
  auto a = c->SubmitJob(s);
  auto b = c->SubmitJob(s);
  const v1::JobResult ra = RunToEnd(*c, a->job_id(), 1, false);
  const v1::JobResult rb = RunToEnd(*c, b->job_id(), 4, true);
  EXPECT_EQ(ra.stop_reason(), "standard_error");
  EXPECT_LT(ra.permutations_used(), 40);
  EXPECT_EQ(ra.permutations_used(), rb.permutations_used());
  for (int i = 0; i < ra.phi_size(); ++i) EXPECT_EQ(ra.phi(i), rb.phi(i));
}

TEST_F(CoordinatorTest, MeasuresAllocationsOnTheEvaluationText) {
  auto c = Open();
  v1::JobSpec s = Spec(4);
  s.set_evaluation_text_path("/data/e.txt");
  auto job = c->SubmitJob(s);
  while (Step(*c, "w", 4)) {
  }
  EXPECT_EQ(c->GetJob(job->job_id())->status.state(), v1::JOB_STATE_SOLVING);
  EXPECT_EQ(c->SolvePending(), 1);
  EXPECT_EQ(c->GetJob(job->job_id())->status.state(), v1::JOB_STATE_MEASURING);
  auto g = c->AcquireLease("w", 4);
  ASSERT_TRUE(g->has_lease);
  ASSERT_EQ(g->units.size(), 1u);
  EXPECT_EQ(g->units[0].kind(), v1::UNIT_KIND_BATCH);
  EXPECT_EQ(g->units[0].dataset(), v1::DATASET_EVALUATION);
  EXPECT_EQ(g->units[0].coalitions_size(), 4);
  EXPECT_EQ(g->units[0].coalitions(0), "000000");
  ASSERT_EQ(*c->ReportResult(g->lease_id, game_.Evaluate(g->units[0], "w")),
            v1::REPORT_OUTCOME_ACCEPTED);
  auto v = c->GetJob(job->job_id());
  EXPECT_EQ(v->status.state(), v1::JOB_STATE_DONE);
  EXPECT_DOUBLE_EQ(v->result.evaluation_loss_all4(), 2.25);
  EXPECT_TRUE(v->result.allocations(1).measured());
  EXPECT_GT(v->result.allocations(1).measured_loss(), 2.25);
}

TEST_F(CoordinatorTest, RestartRestoresJobsAndResults) {
  const std::string path = TempFilePath("restart.db");
  std::remove(path.c_str());
  v1::JobResult uninterrupted;
  {
    auto c = Open(TempFilePath("restart_ref.db"));
    auto job = c->SubmitJob(Spec(8));
    uninterrupted = RunToEnd(*c, job->job_id(), 2, false);
  }
  std::string id, old_lease;
  v1::WorkUnit in_flight;
  {
    auto c = Open(path);
    id = c->SubmitJob(Spec(8))->job_id();
    ASSERT_TRUE(c->SubmitJob(Spec(4)).ok());  // stays queued
    ASSERT_TRUE(Step(*c, "w", 2));
    ASSERT_TRUE(Step(*c, "w", 1));
    auto g = c->AcquireLease("w", 1);  // in flight at the "crash"
    old_lease = g->lease_id;
    in_flight = g->units[0];
    // The object is dropped without Shutdown(): only what was committed survives.
  }
  auto c = Open(path);
  ASSERT_EQ(c->ListJobs().size(), 2u);
  auto v = c->GetJob(id);
  EXPECT_EQ(v->status.state(), v1::JOB_STATE_ESTIMATING);
  EXPECT_EQ(v->status.evaluations_done(), 3 * 7);
  EXPECT_EQ(c->GetJob("job-000002")->status.state(), v1::JOB_STATE_QUEUED);
  // A report under a lease of the previous incarnation is stale; the unit is re-issued.
  EXPECT_EQ(*c->ReportResult(old_lease, game_.Evaluate(in_flight, "w")), v1::REPORT_OUTCOME_STALE);
  auto g = c->AcquireLease("w", 1);
  EXPECT_EQ(g->units[0].unit_index(), in_flight.unit_index());
  EXPECT_NE(g->lease_id, old_lease);
  ASSERT_EQ(*c->ReportResult(g->lease_id, game_.Evaluate(g->units[0], "w")),
            v1::REPORT_OUTCOME_ACCEPTED);
  v1::JobResult resumed = RunToEnd(*c, id, 2, false);
  resumed.set_job_id(uninterrupted.job_id());
  EXPECT_EQ(resumed.SerializeAsString(), uninterrupted.SerializeAsString());
  EXPECT_EQ(c->GetJob(id)->status.evaluations_done(), 8 * 7);  // none lost, none twice
  // New ids continue after the restored ones.
  EXPECT_EQ(c->SubmitJob(Spec(2))->job_id(), "job-000003");
  // And a DONE job survives a further restart as DONE with its result.
  c.reset();
  auto c2 = Open(path);
  EXPECT_EQ(c2->GetJob(id)->status.state(), v1::JOB_STATE_DONE);
  EXPECT_TRUE(c2->GetJob(id)->has_result);
}

// Group commit: reports arriving together share a store transaction, and each is ACCEPTED
// only once durable — dropping the coordinator without Shutdown() loses none of them.
TEST_F(CoordinatorTest, ConcurrentReportsAreAllDurableWhenAccepted) {
  const std::string path = TempFilePath("group_commit.db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  constexpr int kWalks = 64;
  std::string id;
  {
    auto c = Open(path);
    id = c->SubmitJob(Spec(kWalks))->job_id();
    std::atomic<int> accepted{0}, other{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < 8; ++t) {
      workers.emplace_back([&, t] {
        const std::string w = "w" + std::to_string(t);
        while (true) {
          auto g = c->AcquireLease(w, 1);
          if (!g.ok() || !g->has_lease) break;
          auto out = c->ReportResult(g->lease_id, game_.Evaluate(g->units[0], w));
          (out.ok() && *out == v1::REPORT_OUTCOME_ACCEPTED ? accepted : other)++;
        }
      });
    }
    for (auto& t : workers) t.join();
    EXPECT_EQ(accepted.load(), kWalks);
    EXPECT_EQ(other.load(), 0);
    auto v = c->GetJob(id);
    EXPECT_EQ(v->status.units_done(), kWalks);
    EXPECT_EQ(v->status.evaluations_done(), kWalks * 7);
    EXPECT_EQ(v->status.state(), v1::JOB_STATE_SOLVING);
    // Dropped without Shutdown(): only what was committed survives.
  }
  auto c = Open(path);
  auto v = c->GetJob(id);
  EXPECT_EQ(v->status.units_done(), kWalks);
  EXPECT_EQ(v->status.evaluations_done(), kWalks * 7);
  EXPECT_EQ(v->status.state(), v1::JOB_STATE_SOLVING);  // re-derived from the results
  EXPECT_EQ(c->SolvePending(), 1);
  EXPECT_EQ(c->GetJob(id)->status.state(), v1::JOB_STATE_DONE);
}

// The same result reported twice at once (a retried RPC): one ACCEPTED, one DUPLICATE, the
// losses counted once, whichever report commits first.
TEST_F(CoordinatorTest, SimultaneousDuplicateReportsAreAcceptedOnce) {
  auto c = Open();
  constexpr int kWalks = 32;
  const std::string id = c->SubmitJob(Spec(kWalks))->job_id();
  int accepted = 0, duplicate = 0;
  for (int k = 0; k < kWalks; ++k) {
    auto g = c->AcquireLease("w", 1);
    ASSERT_TRUE(g.ok() && g->has_lease);
    const v1::WorkResult r = game_.Evaluate(g->units[0], "w");
    std::atomic<bool> go{false};
    v1::ReportOutcome outcomes[2];
    std::vector<std::thread> twins;
    for (int t = 0; t < 2; ++t) {
      twins.emplace_back([&, t] {
        while (!go.load()) {
        }
        auto out = c->ReportResult(g->lease_id, r);
        outcomes[t] = out.ok() ? *out : v1::REPORT_OUTCOME_UNSPECIFIED;
      });
    }
    go.store(true);
    for (auto& t : twins) t.join();
    for (v1::ReportOutcome o : outcomes) {
      accepted += o == v1::REPORT_OUTCOME_ACCEPTED;
      duplicate += o == v1::REPORT_OUTCOME_DUPLICATE;
    }
  }
  EXPECT_EQ(accepted, kWalks);
  EXPECT_EQ(duplicate, kWalks);
  EXPECT_EQ(c->GetJob(id)->status.evaluations_done(), kWalks * 7);
}

// A commit that fails is not an acceptance: the report returns the store's error, the unit
// stays under its lease, and the worker's retry is accepted once the store works again.
TEST_F(CoordinatorTest, FailedCommitIsNotAcceptedAndTheRetryIs) {
  const std::string path = TempFilePath("failed_commit.db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  auto c = Open(path);
  const std::string id = c->SubmitJob(Spec(4))->job_id();
  auto g = c->AcquireLease("w", 1);
  ASSERT_TRUE(g.ok() && g->has_lease);
  // The fault: another connection drops the results table under the coordinator.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE results", nullptr, nullptr, nullptr), SQLITE_OK);
  const v1::WorkResult r = game_.Evaluate(g->units[0], "w");
  auto failed = c->ReportResult(g->lease_id, r);
  EXPECT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("write result"), std::string::npos) << failed.status();
  EXPECT_EQ(c->GetJob(id)->status.evaluations_done(), 0);
  EXPECT_EQ(c->Heartbeat(g->lease_id, "w")->state, v1::LEASE_STATE_ACTIVE);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE results (job_id TEXT NOT NULL, unit_index INTEGER NOT NULL, "
                         "result BLOB NOT NULL, PRIMARY KEY (job_id, unit_index))",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_EQ(*c->ReportResult(g->lease_id, r), v1::REPORT_OUTCOME_ACCEPTED);
  EXPECT_EQ(c->GetJob(id)->status.evaluations_done(), 7);
}

TEST_F(CoordinatorTest, RejectsBadWidthsNamingTheEntry) {
  auto c = Open();
  struct Case {
    std::vector<int> widths;
    std::string field, value;
  } cases[] = {
      {{4}, "spec.widths", "[4]"},
      {{2, 5}, "spec.widths[1]", "5"},
      {{0, 2}, "spec.widths[0]", "0"},
      {{16, 32}, "spec.widths[0]", "16"},
      {{4, 2}, "spec.widths[1]", "2 after 4"},
      {{2, 3, 3}, "spec.widths[2]", "3 after 3"},
  };
  for (const auto& k : cases) {
    v1::JobSpec s = Spec();
    for (int w : k.widths) s.add_widths(w);
    auto st = c->SubmitJob(s);
    ASSERT_FALSE(st.ok()) << k.field;
    EXPECT_EQ(st.status().code(), absl::StatusCode::kInvalidArgument) << st.status();
    EXPECT_NE(st.status().message().find(k.field + ": " + k.value), std::string::npos)
        << st.status();
  }
  EXPECT_TRUE(c->ListJobs().empty());
  for (const std::vector<int>& ok : {std::vector<int>{2, 4}, {2, 3, 4, 8}, {3, 8}, {2, 3}}) {
    v1::JobSpec s = Spec();
    for (int w : ok) s.add_widths(w);
    auto st = c->SubmitJob(s);
    ASSERT_TRUE(st.ok()) << st.status();
    // Persisted with the spec (the store keeps the serialized JobSpec).
    auto v = c->GetJob(st->job_id());
    EXPECT_EQ(std::vector<int>(v->spec.widths().begin(), v->spec.widths().end()), ok);
  }
}

// Width sets (issue 14) on a synthetic game over the steps of {2, 3, 4, 8}: the walks are the
// ladder sampler's, φ and SE equal solver::RunSpqe with that sampler bit for bit, the result
// does not depend on capacity or arrival order, every allocation is feasible, uses widths of
// the set and is SolveMultiChoiceExact's optimum of the ladder's multiple-choice program (the
// brute force agrees), and the measurement unit evaluates the allocations' closed coalitions.
TEST_F(CoordinatorTest, WidthLadderJobIsDeterministicAndSolvesTheMultiChoiceProgram) {
  const std::vector<int> widths = {2, 3, 4, 8};
  const LadderTestGame game(4, widths);
  const int steps = game.steps();  // 4 players × 3 steps
  ASSERT_EQ(steps, 12);
  auto c = Open();
  v1::JobSpec spec = Spec(16);
  for (int w : widths) spec.add_widths(w);
  spec.clear_average_bits();
  for (double b : {2.25, 3.0, 3.75}) spec.add_average_bits(b);
  spec.set_evaluation_text_path("/data/e.txt");
  auto run = [&](int capacity, bool reverse) {
    const std::string id = c->SubmitJob(spec)->job_id();
    for (int guard = 0; guard < 1000; ++guard) {
      auto grant = c->AcquireLease("w", capacity);
      EXPECT_TRUE(grant.ok());
      if (!grant->has_lease) {
        if (c->SolvePending() == 0) break;
        continue;
      }
      std::vector<v1::WorkUnit> units = grant->units;
      if (reverse) std::reverse(units.begin(), units.end());
      for (const auto& u : units) {
        if (u.kind() == v1::UNIT_KIND_WALK && u.permutation_size() > 0) {
          // Once n is known the coordinator sends the ladder walk itself.
          EXPECT_EQ(solver::Permutation(u.permutation().begin(), u.permutation().end()),
                    solver::LadderPermutationSampler(game.ladder(), 7, true)
                        .Get(static_cast<uint64_t>(u.permutation_index())));
        }
        EXPECT_EQ(*c->ReportResult(grant->lease_id, game.Evaluate(u, "w")),
                  v1::REPORT_OUTCOME_ACCEPTED);
      }
    }
    auto v = c->GetJob(id);
    EXPECT_EQ(v->status.state(), v1::JOB_STATE_DONE) << v->status.error();
    EXPECT_EQ(v->status.evaluations_done(), 16 * (steps + 1) + 2 + 3);
    EXPECT_EQ(v->status.evaluations_total(), 16 * (steps + 1) + 2 + 3);
    return v->result;
  };
  const v1::JobResult ra = run(1, false);
  v1::JobResult rb = run(4, true);
  rb.set_job_id(ra.job_id());
  EXPECT_EQ(ra.SerializeAsString(), rb.SerializeAsString());

  // The reference: RunSpqe over the steps with the ladder's sampler.
  solver::FunctionEvaluator fe([&](const solver::Coalition& q) { return game.Value(q); });
  const solver::LadderPermutationSampler sampler(game.ladder(), 7, true);
  solver::SpqeOptions so;
  so.num_players = steps;
  so.max_permutations = 16;
  so.antithetic = true;
  so.seed = 7;
  so.sampler = &sampler;
  auto ref = solver::RunSpqe(fe, so);
  ASSERT_TRUE(ref.ok()) << ref.status();
  ASSERT_EQ(ra.phi_size(), steps);
  for (int s = 0; s < steps; ++s) {
    EXPECT_EQ(ra.phi(s), ref->estimate.phi[s]) << s;
    EXPECT_EQ(ra.standard_error(s), ref->estimate.standard_error[s]) << s;
  }
  EXPECT_EQ(ra.loss_all4(), game.ValueOfBits({8, 8, 8, 8}));
  EXPECT_EQ(ra.loss_all2(), game.ValueOfBits({2, 2, 2, 2}));
  EXPECT_EQ(ra.evaluation_loss_all4(), game.ValueOfBits({8, 8, 8, 8}) + 0.25);

  // Allocations: the multiple-choice program of the covariance objective, per budget.
  solver::InteractionInput ii;
  ii.num_players = steps;
  ii.marginals = ref->marginals;
  auto objective = solver::CovarianceInteractionEstimator(0.5).Estimate(ii);
  ASSERT_TRUE(objective.ok()) << objective.status();
  const v1::ModelInfo model = game.Model();
  solver::PlayerBytes bytes;
  bytes.bytes2.assign(model.bytes2().begin(), model.bytes2().end());
  bytes.bytes4.assign(model.bytes4().begin(), model.bytes4().end());
  ASSERT_EQ(ra.allocations_size(), 3);
  std::set<std::vector<int>> distinct;
  for (const v1::Allocation& a : ra.allocations()) {
    SCOPED_TRACE(testing::Message() << "average bits " << a.average_bits());
    auto budget = solver::BudgetForAverageBits(bytes, a.average_bits());
    ASSERT_TRUE(budget.ok());
    EXPECT_EQ(a.budget_bytes(), *budget);
    const std::vector<int> bits(a.bits().begin(), a.bits().end());
    ASSERT_EQ(bits.size(), 4u);
    int64_t memory = 0;
    for (int i = 0; i < 4; ++i) {
      EXPECT_NE(std::find(widths.begin(), widths.end(), bits[i]), widths.end()) << bits[i];
      memory += LadderTestGame::Bytes(i, bits[i]);
    }
    EXPECT_EQ(a.memory_bytes(), memory);
    EXPECT_LE(a.memory_bytes(), a.budget_bytes());
    auto problem = game.ladder().ToMultiChoice(*objective, game.WidthBytes(), *budget);
    ASSERT_TRUE(problem.ok()) << problem.status();
    auto exact = solver::SolveMultiChoiceExact(*problem);
    auto brute = solver::SolveMultiChoiceBruteForce(*problem);
    ASSERT_TRUE(exact.ok() && brute.ok());
    EXPECT_EQ(bits, exact->bits);
    EXPECT_EQ(a.objective(), exact->objective);
    EXPECT_TRUE(a.proven_optimal());
    EXPECT_NEAR(a.objective(), brute->objective, 1e-9);
    // The measured loss is that of the allocation's closed coalition.
    EXPECT_TRUE(a.measured());
    EXPECT_DOUBLE_EQ(a.measured_loss(), game.ValueOfBits(bits) + 0.25);
    distinct.insert(bits);
  }
  EXPECT_EQ(distinct.size(), 3u) << "the budgets should pick different allocations";
}

// Width-set results must carry consistent width_bytes and a walk over the steps.
TEST_F(CoordinatorTest, WidthLadderResultsAreValidatedNamingTheField) {
  const LadderTestGame game(3, {2, 3, 4});
  auto c = Open();
  v1::JobSpec spec = Spec(2);
  for (int w : {2, 3, 4}) spec.add_widths(w);
  ASSERT_TRUE(c->SubmitJob(spec).ok());
  auto g = c->AcquireLease("a", 2);
  ASSERT_TRUE(g.ok() && g->has_lease);
  auto message = [&](const v1::WorkResult& r) {
    return std::string(c->ReportResult(g->lease_id, r).status().message());
  };
  v1::WorkResult r = game.Evaluate(g->units[0], "a");
  r.mutable_model()->clear_width_bytes();
  EXPECT_NE(message(r).find("result.model.width_bytes has 0 entries"), std::string::npos)
      << message(r);
  r = game.Evaluate(g->units[0], "a");
  r.mutable_model()->set_width_bytes(1, r.model().width_bytes(1) + 1);  // player 0 at 3 bits
  r.mutable_model()->set_width_bytes(0, r.model().width_bytes(0) + 1);  // ... and at 2 bits
  EXPECT_NE(message(r).find("disagrees with bytes2"), std::string::npos) << message(r);
  r = game.Evaluate(g->units[0], "a");
  r.mutable_losses()->RemoveLast();
  EXPECT_NE(message(r).find("a walk over 6 ladder steps has 7"), std::string::npos) << message(r);
  r = game.Evaluate(g->units[0], "a");
  // A permutation of the steps that is not closed: player 0's second step first.
  std::swap(*r.mutable_permutation()->Mutable(0), *r.mutable_permutation()->Mutable(5));
  EXPECT_NE(message(r).find("result.permutation"), std::string::npos) << message(r);
  EXPECT_EQ(*c->ReportResult(g->lease_id, game.Evaluate(g->units[0], "a")),
            v1::REPORT_OUTCOME_ACCEPTED);
}

// A width-set job survives a restart: the spec (widths included) and its results are
// restored, and the result equals an uninterrupted run's.
TEST_F(CoordinatorTest, WidthLadderJobSurvivesARestart) {
  const LadderTestGame game(3, {2, 3, 4, 8});
  v1::JobSpec spec = Spec(6);
  for (int w : {2, 3, 4, 8}) spec.add_widths(w);
  auto run_to_end = [&](Coordinator& c, const std::string& id) {
    for (int guard = 0; guard < 1000; ++guard) {
      auto grant = c.AcquireLease("w", 2);
      if (!grant->has_lease) {
        if (c.SolvePending() == 0) break;
        continue;
      }
      for (const auto& u : grant->units) {
        EXPECT_TRUE(c.ReportResult(grant->lease_id, game.Evaluate(u, "w")).ok());
      }
    }
    auto v = c.GetJob(id);
    EXPECT_EQ(v->status.state(), v1::JOB_STATE_DONE) << v->status.error();
    return v->result;
  };
  v1::JobResult uninterrupted;
  {
    auto c = Open();
    uninterrupted = run_to_end(*c, c->SubmitJob(spec)->job_id());
  }
  const std::string path = TempFilePath("ladder_restart.db");
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  std::string id;
  {
    auto c = Open(path);
    id = c->SubmitJob(spec)->job_id();
    auto g = c->AcquireLease("w", 3);
    for (const auto& u : g->units) {
      ASSERT_TRUE(c->ReportResult(g->lease_id, game.Evaluate(u, "w")).ok());
    }
  }
  auto c = Open(path);
  auto v = c->GetJob(id);
  EXPECT_EQ(v->status.state(), v1::JOB_STATE_ESTIMATING);
  EXPECT_EQ(v->status.evaluations_done(), 3 * (9 + 1));
  EXPECT_EQ(v->spec.widths_size(), 4);
  v1::JobResult resumed = run_to_end(*c, id);
  resumed.set_job_id(uninterrupted.job_id());
  EXPECT_EQ(resumed.SerializeAsString(), uninterrupted.SerializeAsString());
}

TEST_F(CoordinatorTest, ShutdownStopsIntakeButDrains) {
  auto c = Open();
  auto job = c->SubmitJob(Spec(2));
  auto g = c->AcquireLease("w", 1);
  c->Shutdown();
  EXPECT_EQ(c->SubmitJob(Spec(2)).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->AcquireLease("w", 1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(*c->ReportResult(g->lease_id, game_.Evaluate(g->units[0], "w")),
            v1::REPORT_OUTCOME_ACCEPTED);
}

}  // namespace
}  // namespace impq::coordinator
