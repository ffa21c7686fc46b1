// The coordinator drives the job pipeline over work units (coordinator.h): its result equals
// the pipeline run in one process, whatever the number of workers; a restart replays the job
// without evaluating a reported unit again; a poison job fails and does not starve another;
// leases belong to their worker; bad specs and results are refused naming the field.
#include "coordinator/coordinator.h"

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "common/test_paths.h"
#include "coordinator/in_process_worker_client.h"
#include "coordinator/test_game.h"
#include "gtest/gtest.h"
#include "worker/engine/spec_options.h"
#include "worker/service/worker_loop.h"

namespace impq::coordinator {
namespace {

constexpr int kPlayers = 6;

// The data root of these tests: a fresh directory with the files the specs name (the
// coordinator resolves every path and requires it to exist under the root; the synthetic
// executors never read them).
const std::string& DataRoot() {
  static const std::string* root = [] {
    auto* r = new std::string(TempFilePath("coordinator_test_data"));
    std::filesystem::create_directories(*r);
    for (const char* f : {"m.bin", "t.bin", "c.txt", "e.txt", "poison.bin"}) {
      std::ofstream(*r + "/" + f) << f;
    }
    // A safetensors file whose folder's config.json (read by name next to it) leads outside.
    std::filesystem::create_directories(*r + "/hf");
    std::ofstream(*r + "/hf/model.safetensors") << "weights";
    std::filesystem::create_symlink("/etc/passwd", *r + "/hf/config.json");
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(DataRoot(), ec);
    });
    return r;
  }();
  return *root;
}

std::string DataPath(const std::string& file) { return DataRoot() + "/" + file; }

v1::JobSpec Spec(const std::string& model = DataPath("m.bin")) {
  v1::JobSpec s;
  s.set_model_path(model);
  s.set_tokenizer_path(DataPath("t.bin"));
  s.set_calibration_text_path(DataPath("c.txt"));
  s.set_evaluation_text_path(DataPath("e.txt"));
  s.set_permutations(8);
  s.set_seed(7);
  s.add_average_bits(2.5);
  s.add_average_bits(3.0);
  s.set_random_draws(2);
  return s;
}

std::unique_ptr<Coordinator> Open(const std::string& path = ":memory:",
                                  int max_running_jobs = 4) {
  CoordinatorOptions o;
  o.store_path = path;
  o.lease_duration = absl::Seconds(30);
  o.max_units_per_lease = 2;
  o.max_running_jobs = max_running_jobs;
  o.limits.data_roots = {DataRoot()};
  absl::StatusOr<std::unique_ptr<Coordinator>> c = Coordinator::Open(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}

// `n` in-process worker loops on synthetic executors, stopped on destruction.
class Workers {
 public:
  Workers(Coordinator& c, int n, int64_t max_units = 0) : client_(c, absl::Seconds(30)) {
    for (int w = 0; w < n; ++w) {
      executors_.push_back(std::make_unique<SyntheticExecutor>(kPlayers));
      worker_service::WorkerLoopOptions lo;
      lo.worker_id = absl::StrCat("w", w);
      lo.idle_poll = absl::Milliseconds(2);
      lo.max_units = max_units;
      loops_.push_back(std::make_unique<worker_service::WorkerLoop>(&client_, executors_.back().get(), lo));
    }
    for (auto& l : loops_) threads_.emplace_back([p = l.get()] { p->Run(); });
  }
  ~Workers() { Stop(); }
  void Stop() {
    for (auto& l : loops_) l->Stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int64_t CalibrationEvaluations() const {
    int64_t n = 0;
    for (const auto& e : executors_) n += e->executed.load();
    return n;
  }

 private:
  InProcessWorkerClient client_;
  std::vector<std::unique_ptr<SyntheticExecutor>> executors_;
  std::vector<std::unique_ptr<worker_service::WorkerLoop>> loops_;
  std::vector<std::thread> threads_;
};

v1::JobStatus WaitTerminal(Coordinator& c, const std::string& id) {
  v1::JobStatus s;
  for (int i = 0; i < 3000; ++i) {
    absl::StatusOr<v1::JobStatus> st = c.WaitForChange(id, s.version(), absl::Milliseconds(50));
    EXPECT_TRUE(st.ok()) << st.status();
    s = *st;
    if (s.state() == v1::JOB_STATE_DONE || s.state() == v1::JOB_STATE_FAILED ||
        s.state() == v1::JOB_STATE_CANCELLED) {
      break;
    }
  }
  return s;
}

// The pipeline on a SyntheticGame in this thread: what the coordinator must reproduce.
std::string InProcessDocument(const v1::JobSpec& spec) {
  absl::StatusOr<v1::JobSpec> normalized = NormalizeJobSpec(spec, SpecLimits{{DataRoot()}});
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  absl::StatusOr<engine::JobOptions> o = engine::JobOptionsFromSpec(*normalized);
  EXPECT_TRUE(o.ok()) << o.status();
  SyntheticGame game(kPlayers, o->widths);
  absl::StatusOr<engine::JobResult> r = engine::RunPipeline(*o, game);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? WithoutTimings(engine::JobResultToJson(*r)) : "";
}

std::string RunToEnd(const v1::JobSpec& spec, int workers) {
  std::unique_ptr<Coordinator> c = Open();
  absl::StatusOr<v1::JobStatus> st = c->SubmitJob(spec);
  EXPECT_TRUE(st.ok()) << st.status();
  Workers w(*c, workers);
  const v1::JobStatus end = WaitTerminal(*c, st->job_id());
  EXPECT_EQ(end.state(), v1::JOB_STATE_DONE) << end.error();
  absl::StatusOr<JobView> v = c->GetJob(st->job_id());
  EXPECT_TRUE(v->has_result);
  return WithoutTimings(v->result.document());
}

TEST(CoordinatorTest, RejectsBadSpecsNamingTheField) {
  std::unique_ptr<Coordinator> c = Open();
  struct Case {
    std::function<void(v1::JobSpec&)> edit;
    absl::StatusCode code;
    std::string field;
  } cases[] = {
      {[](v1::JobSpec& s) { s.clear_model_path(); }, absl::StatusCode::kInvalidArgument, "model_path"},
      {[](v1::JobSpec& s) { s.clear_evaluation_text_path(); }, absl::StatusCode::kInvalidArgument,
       "evaluation_text_path"},
      {[](v1::JobSpec& s) { s.set_model_path("/etc/passwd"); }, absl::StatusCode::kPermissionDenied,
       "model_path"},
      {[](v1::JobSpec& s) { s.set_model_path("/data/../etc/passwd"); },
       absl::StatusCode::kPermissionDenied, "model_path"},
      {[](v1::JobSpec& s) { s.set_model_path(DataPath("missing.bin")); },
       absl::StatusCode::kNotFound, "model_path"},
      {[](v1::JobSpec& s) { s.set_tokenizer_path("../../../etc/shadow"); },
       absl::StatusCode::kPermissionDenied, "tokenizer_path"},
      {[](v1::JobSpec& s) { s.set_model_path("hf/model.safetensors"); },
       absl::StatusCode::kPermissionDenied,
       "spec.model_path: 'hf/model.safetensors': a file in its folder"},
      {[](v1::JobSpec& s) { s.set_permutations(7); }, absl::StatusCode::kInvalidArgument, "permutations"},
      {[](v1::JobSpec& s) { s.set_permutations(1000000); }, absl::StatusCode::kInvalidArgument,
       "permutations"},
      {[](v1::JobSpec& s) { s.set_average_bits(0, 4.5); }, absl::StatusCode::kInvalidArgument, "4.5"},
      {[](v1::JobSpec& s) { s.set_backend("awq"); }, absl::StatusCode::kInvalidArgument, "backend"},
      {[](v1::JobSpec& s) { s.set_players("layer"); }, absl::StatusCode::kInvalidArgument, "players"},
      {[](v1::JobSpec& s) { s.set_estimator("magic"); }, absl::StatusCode::kInvalidArgument, "estimator"},
      {[](v1::JobSpec& s) { s.set_search_model("x"); }, absl::StatusCode::kInvalidArgument, "search_model"},
      {[](v1::JobSpec& s) { s.add_widths(2); s.add_widths(5); }, absl::StatusCode::kInvalidArgument,
       "widths[1]"},
      {[](v1::JobSpec& s) { s.set_request_id(std::string(65, 'r')); },
       absl::StatusCode::kInvalidArgument, "request_id"},
      {[](v1::JobSpec& s) { s.set_random_draws(2000000000); }, absl::StatusCode::kInvalidArgument,
       "random_draws"},
      {[](v1::JobSpec& s) { s.set_extra_evaluation_fraction(1e9); },
       absl::StatusCode::kInvalidArgument, "extra_evaluation_fraction"},
      {[](v1::JobSpec& s) { s.set_search_batch(1 << 30); }, absl::StatusCode::kInvalidArgument,
       "search_batch"},
      {[](v1::JobSpec& s) { s.set_ridge(std::numeric_limits<double>::infinity()); },
       absl::StatusCode::kInvalidArgument, "ridge"},
  };
  for (const Case& k : cases) {
    v1::JobSpec s = Spec();
    k.edit(s);
    absl::StatusOr<v1::JobStatus> st = c->SubmitJob(s);
    ASSERT_FALSE(st.ok()) << k.field;
    EXPECT_EQ(st.status().code(), k.code) << st.status();
    EXPECT_NE(st.status().message().find(k.field), std::string::npos) << st.status();
    // Refusals of a path quote the path but never state where the data roots are.
    if (st.status().code() == absl::StatusCode::kPermissionDenied) {
      EXPECT_EQ(st.status().message().find(DataRoot()), std::string::npos) << st.status();
    }
  }
  EXPECT_TRUE(c->ListJobs().empty());
}

TEST(CoordinatorTest, NormalizedSpecStatesEverySettingWithTheDefaults) {
  v1::JobSpec s;
  s.set_model_path("m.bin");
  s.set_calibration_text_path("c.txt");
  s.set_evaluation_text_path("e.txt");
  absl::StatusOr<v1::JobSpec> n = NormalizeJobSpec(s, SpecLimits{{DataRoot()}});
  ASSERT_TRUE(n.ok()) << n.status();
  const engine::JobOptions d;
  EXPECT_EQ(n->model_path(), DataPath("m.bin"));
  EXPECT_EQ(n->players(), "module");
  EXPECT_EQ(n->permutations(), d.permutations);
  EXPECT_TRUE(n->antithetic());
  EXPECT_EQ(n->average_bits_size(), static_cast<int>(d.average_bits.size()));
  EXPECT_EQ(n->search_model(), d.search_model);
  EXPECT_EQ(n->choice_z(), d.choice_z);
}

TEST(CoordinatorTest, ResultIsThePipelinesWhateverTheWorkers) {
  const std::string want = InProcessDocument(Spec());
  ASSERT_FALSE(want.empty());
  EXPECT_EQ(RunToEnd(Spec(), 1), want);
  EXPECT_EQ(RunToEnd(Spec(), 3), want);
}

TEST(CoordinatorTest, WidthSetJobIsThePipelinesWhateverTheWorkers) {
  v1::JobSpec s = Spec();
  for (int w : {2, 3, 4, 8}) s.add_widths(w);
  const std::string want = InProcessDocument(s);
  ASSERT_FALSE(want.empty());
  EXPECT_NE(want.find("\"to_bits\": 3"), std::string::npos);
  EXPECT_EQ(RunToEnd(s, 2), want);
}

TEST(CoordinatorTest, RestartReplaysTheJobWithoutEvaluatingAReportedUnitAgain) {
  const std::string path = TempFilePath("coordinator_restart.db");
  std::remove(path.c_str());
  // The units of a whole job, counted in one run.
  int64_t all_units = 0;
  {
    std::unique_ptr<Coordinator> c = Open();
    absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
    Workers w(*c, 1);
    const v1::JobStatus end = WaitTerminal(*c, st->job_id());
    ASSERT_EQ(end.state(), v1::JOB_STATE_DONE);
    all_units = end.units_total();
    w.Stop();
  }
  ASSERT_GT(all_units, 10);
  std::string id;
  int64_t executed_before = 0;
  {
    std::unique_ptr<Coordinator> c = Open(path);
    absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
    id = st->job_id();
    Workers w(*c, 1, /*max_units=*/all_units / 2);  // stops halfway through the pipeline
    for (int i = 0; i < 2000; ++i) {
      if (c->GetJob(id)->status.units_done() >= all_units / 2) break;
      absl::SleepFor(absl::Milliseconds(5));
    }
    w.Stop();
    executed_before = w.CalibrationEvaluations();
    EXPECT_NE(c->GetJob(id)->status.state(), v1::JOB_STATE_DONE);
    c->Shutdown();
  }
  std::unique_ptr<Coordinator> c = Open(path);
  Workers w(*c, 2);
  const v1::JobStatus end = WaitTerminal(*c, id);
  ASSERT_EQ(end.state(), v1::JOB_STATE_DONE) << end.error();
  w.Stop();
  // Every unit was executed once in all: the replay answered the reported ones from the store.
  EXPECT_EQ(executed_before + w.CalibrationEvaluations(), all_units);
  EXPECT_EQ(WithoutTimings(c->GetJob(id)->result.document()), InProcessDocument(Spec()));
}

TEST(CoordinatorTest, PoisonJobFailsWithTheWorkersErrorAndDoesNotStarveAGoodJob) {
  std::unique_ptr<Coordinator> c = Open();
  v1::JobSpec poison = Spec(DataPath("poison.bin"));
  poison.set_permutations(1000);
  absl::StatusOr<v1::JobStatus> bad = c->SubmitJob(poison);
  absl::StatusOr<v1::JobStatus> good = c->SubmitJob(Spec());
  ASSERT_TRUE(bad.ok() && good.ok());
  Workers w(*c, 2);
  const v1::JobStatus b = WaitTerminal(*c, bad->job_id());
  EXPECT_EQ(b.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(b.error().find("no such file"), std::string::npos) << b.error();
  EXPECT_NE(b.error().find("3 attempts"), std::string::npos) << b.error();
  EXPECT_EQ(WaitTerminal(*c, good->job_id()).state(), v1::JOB_STATE_DONE);
}

TEST(CoordinatorTest, LeasesBelongToTheirWorkerAndResultsAreChecked) {
  std::unique_ptr<Coordinator> c = Open();
  absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
  absl::StatusOr<LeaseGrant> g;
  for (int i = 0; i < 200; ++i) {  // the driver asks for the PREPARE unit
    g = c->AcquireLease("honest", 1);
    ASSERT_TRUE(g.ok());
    if (g->has_lease) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(g->has_lease);
  EXPECT_GE(g->lease_id.size(), 32u);  // 128 random bits, not a counter
  EXPECT_EQ(c->Heartbeat(g->lease_id, "thief").status().code(), absl::StatusCode::kPermissionDenied);
  SyntheticExecutor ex(kPlayers);
  absl::StatusOr<v1::WorkResult> r = ex.Execute(g->units[0]);
  ASSERT_TRUE(r.ok());
  r->set_worker_id("thief");
  EXPECT_EQ(c->ReportResult(g->lease_id, *r).status().code(), absl::StatusCode::kPermissionDenied);
  // A forged PREPARE answer: players claimed beyond any model.
  v1::WorkResult forged = *r;
  forged.set_worker_id("honest");
  forged.mutable_facts()->clear_bytes2();
  absl::StatusOr<v1::ReportOutcome> f = c->ReportResult(g->lease_id, forged);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find("result.facts"), std::string::npos) << f.status();
  r->set_worker_id("honest");
  EXPECT_EQ(*c->ReportResult(g->lease_id, *r), v1::REPORT_OUTCOME_ACCEPTED);
  EXPECT_EQ(*c->ReportResult(g->lease_id, *r), v1::REPORT_OUTCOME_DUPLICATE);
  // A BATCH answer with a non-finite loss names the entry.
  for (int i = 0; i < 200; ++i) {
    g = c->AcquireLease("honest", 1);
    if (g->has_lease) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(g->has_lease);
  r = ex.Execute(g->units[0]);
  ASSERT_TRUE(r.ok());
  r->set_worker_id("honest");
  r->set_losses(0, std::nan(""));
  absl::StatusOr<v1::ReportOutcome> n = c->ReportResult(g->lease_id, *r);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("result.losses[0] is not finite"), std::string::npos);
  (void)c->CancelJob(st->job_id());
}

TEST(CoordinatorTest, SubmitWithTheSameRequestIdReturnsTheFirstJob) {
  std::unique_ptr<Coordinator> c = Open();
  v1::JobSpec s = Spec();
  s.set_request_id("retry-me");
  absl::StatusOr<v1::JobStatus> a = c->SubmitJob(s);
  absl::StatusOr<v1::JobStatus> b = c->SubmitJob(s);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->job_id(), b->job_id());
  EXPECT_EQ(c->ListJobs().size(), 1u);
  (void)c->CancelJob(a->job_id());
}

TEST(CoordinatorTest, CancelEndsTheDriverAndRefusesFurtherReports) {
  std::unique_ptr<Coordinator> c = Open();
  absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
  absl::StatusOr<LeaseGrant> g;
  for (int i = 0; i < 200; ++i) {
    g = c->AcquireLease("w", 1);
    if (g->has_lease) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(g->has_lease);
  EXPECT_EQ(c->CancelJob(st->job_id())->state(), v1::JOB_STATE_CANCELLED);
  SyntheticExecutor ex(kPlayers);
  absl::StatusOr<v1::WorkResult> r = ex.Execute(g->units[0]);
  r->set_worker_id("w");
  EXPECT_EQ(*c->ReportResult(g->lease_id, *r), v1::REPORT_OUTCOME_STALE);
  EXPECT_EQ(c->Heartbeat(g->lease_id, "w")->state, v1::LEASE_STATE_CANCELLED);
}

TEST(CoordinatorTest, ShutdownStopsIntakeAndLeavesTheJobToResume) {
  std::unique_ptr<Coordinator> c = Open();
  absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
  c->Shutdown();
  EXPECT_EQ(c->SubmitJob(Spec()).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(c->AcquireLease("w", 1).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(c->GetJob(st->job_id())->status.state(), v1::JOB_STATE_FAILED);
}

}  // namespace
}  // namespace impq::coordinator
