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
#include <set>
#include <thread>

#include "common/test_paths.h"
#include "coordinator/in_process_worker_client.h"
#include "coordinator/store_recover.h"
#include "coordinator/test_game.h"
#include "coordinator/test_sqlite.h"
#include "gtest/gtest.h"
#include "job/spec_options.h"
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
  absl::StatusOr<job::JobOptions> o = job::JobOptionsFromSpec(*normalized);
  EXPECT_TRUE(o.ok()) << o.status();
  SyntheticGame game(kPlayers, o->widths);
  absl::StatusOr<job::JobResult> r = job::RunPipeline(*o, game);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? WithoutTimings(job::JobResultToJson(*r)) : "";
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
       "widths 2,5"},
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
      // A name that would drive the terminal of whoever lists the jobs (issue 20).
      {[](v1::JobSpec& s) { s.set_name("ok\x1b]0;pwned\x07\x1b[2J"); },
       absl::StatusCode::kInvalidArgument, "spec.name: has control character 0x1b at byte 2"},
      {[](v1::JobSpec& s) { s.set_name("line\nbreak"); }, absl::StatusCode::kInvalidArgument,
       "spec.name"},
      {[](v1::JobSpec& s) { s.set_name("c1 \xc2\x9b" "31m"); }, absl::StatusCode::kInvalidArgument,
       "spec.name"},
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
  EXPECT_TRUE(c->ListJobs()->jobs.empty());
}

TEST(CoordinatorTest, NormalizedSpecStatesEverySettingWithTheDefaults) {
  v1::JobSpec s;
  s.set_model_path("m.bin");
  s.set_calibration_text_path("c.txt");
  s.set_evaluation_text_path("e.txt");
  absl::StatusOr<v1::JobSpec> n = NormalizeJobSpec(s, SpecLimits{{DataRoot()}});
  ASSERT_TRUE(n.ok()) << n.status();
  const job::JobOptions d;
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
  // A finished job keeps its evaluation count across another restart (stored with its row).
  const int64_t evaluations = c->GetJob(id)->status.evaluations_done();
  EXPECT_GT(evaluations, 0);
  c->Shutdown();
  c.reset();
  c = Open(path);
  EXPECT_EQ(c->GetJob(id)->status.evaluations_done(), evaluations);
  EXPECT_EQ(c->GetJob(id)->status.state(), v1::JOB_STATE_DONE);
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
  // A wrong answer counts as a failure of the unit: it is taken back from the lease.
  r->set_worker_id("honest");
  EXPECT_EQ(*c->ReportResult(g->lease_id, *r), v1::REPORT_OUTCOME_STALE);
  g = c->AcquireLease("honest", 1);
  ASSERT_TRUE(g.ok() && g->has_lease);
  ASSERT_EQ(g->units[0].kind(), v1::UNIT_KIND_PREPARE);
  EXPECT_EQ(g->units[0].attempt(), 2);
  r = ex.Execute(g->units[0]);
  ASSERT_TRUE(r.ok());
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

// Workers that prepared another game than the PREPARE unit's (other files under the same
// path, or a forged PREPARE claiming thousands of players) cannot mix into the result: their
// answers are refused, each counts as a failure of its unit, and the job fails saying why,
// instead of finishing on mixed data or re-issuing forever.
TEST(CoordinatorTest, AnswersAboutAnotherGameFailTheJobNamingTheDisagreement) {
  std::unique_ptr<Coordinator> c = Open();
  absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Spec());
  ASSERT_TRUE(st.ok());
  // The PREPARE unit is answered by a worker whose game has 4,000 players.
  SyntheticExecutor liar(4000);
  absl::StatusOr<LeaseGrant> g;
  for (int i = 0; i < 200; ++i) {
    g = c->AcquireLease("liar", 1);
    ASSERT_TRUE(g.ok());
    if (g->has_lease) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_TRUE(g->has_lease);
  absl::StatusOr<v1::WorkResult> r = liar.Execute(g->units[0]);
  ASSERT_TRUE(r.ok());
  r->set_worker_id("liar");
  ASSERT_EQ(*c->ReportResult(g->lease_id, *r), v1::REPORT_OUTCOME_ACCEPTED);
  // Honest workers (6 players) answer the rest: every answer disagrees.
  Workers honest(*c, 2);
  const v1::JobStatus end = WaitTerminal(*c, st->job_id());
  EXPECT_EQ(end.state(), v1::JOB_STATE_FAILED);
  EXPECT_NE(end.error().find("3 attempts"), std::string::npos) << end.error();
  EXPECT_NE(end.error().find("4000"), std::string::npos) << end.error();
}

TEST(CoordinatorTest, SubmitWithTheSameRequestIdReturnsTheFirstJob) {
  std::unique_ptr<Coordinator> c = Open();
  v1::JobSpec s = Spec();
  s.set_request_id("retry-me");
  absl::StatusOr<v1::JobStatus> a = c->SubmitJob(s);
  absl::StatusOr<v1::JobStatus> b = c->SubmitJob(s);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->job_id(), b->job_id());
  EXPECT_EQ(c->ListJobs()->jobs.size(), 1u);
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

// --- bounds on the client API (issue 20) ---

// A spec that submits fast and never runs far: no workers lease its units in these tests.
v1::JobSpec Named(int i) {
  v1::JobSpec s = Spec();
  // 200-byte names (the maximum): the pages carry the largest statuses a name allows.
  s.set_name(absl::StrCat("job number ", i, " ", std::string(200, 'n')).substr(0, 200));
  return s;
}

std::unique_ptr<Coordinator> OpenBounded(const std::string& path, RetentionPolicy retention,
                                         Clock* clock = nullptr) {
  CoordinatorOptions o;
  o.store_path = path;
  o.clock = clock;
  o.max_running_jobs = 1;
  o.limits.data_roots = {DataRoot()};
  o.retention = retention;
  absl::StatusOr<std::unique_ptr<Coordinator>> c = Coordinator::Open(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *std::move(c) : nullptr;
}


void RemoveStore(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
}

// The 20,000 jobs: paged, every job is listed exactly once, each page far below gRPC's
// 4 MiB default, also while jobs are submitted and removed between the pages.
TEST(CoordinatorBoundsTest, ListJobsPagesTwentyThousandJobsEachExactlyOnce) {
  RetentionPolicy keep_none;
  keep_none.max_finished_jobs = 0;  // a cancelled job goes at the next prune
  std::unique_ptr<Coordinator> c = OpenBounded(":memory:", keep_none);
  constexpr int kJobs = 20000;
  std::vector<std::string> ids;
  for (int i = 0; i < kJobs; ++i) {
    absl::StatusOr<v1::JobStatus> st = c->SubmitJob(Named(i));
    ASSERT_TRUE(st.ok()) << st.status();
    ids.push_back(st->job_id());
  }
  // The old single response: 20,000 statuses are over gRPC's 4 MiB.
  {
    JobListQuery q;
    std::string token;
    int64_t bytes = 0;
    do {
      q.page_token = token;
      q.page_size = Coordinator::kMaxPageSize;
      absl::StatusOr<JobListPage> p = c->ListJobs(q);
      ASSERT_TRUE(p.ok());
      for (auto& s : p->jobs) bytes += static_cast<int64_t>(s.ByteSizeLong());
      token = p->next_page_token;
    } while (!token.empty());
    EXPECT_GT(bytes, 4 << 20);
  }
  std::map<std::string, int> seen;
  std::set<std::string> removed, added;
  std::string token;
  int pages = 0;
  do {
    JobListQuery q;
    q.page_size = 5000;  // clamped to kMaxPageSize
    q.page_token = token;
    absl::StatusOr<JobListPage> page = c->ListJobs(q);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_LE(page->jobs.size(), static_cast<size_t>(Coordinator::kMaxPageSize));
    // The response's wire size: each status with its field tag and length (<= 6 bytes).
    size_t wire = page->next_page_token.size() + 6;
    for (const auto& s : page->jobs) {
      ++seen[s.job_id()];
      wire += s.ByteSizeLong() + 6;
    }
    EXPECT_LT(wire, size_t{1} << 20);  // well under 4 MiB
    token = page->next_page_token;
    ++pages;
    // Between pages: jobs come (listed at the end) and go (cancelled, then removed by
    // retention): one listed already, one not yet reached.
    if (pages % 4 == 1 && pages * 1000 + 500 < kJobs) {
      absl::StatusOr<v1::JobStatus> n = c->SubmitJob(Named(kJobs + pages));
      ASSERT_TRUE(n.ok()) << n.status();
      added.insert(n->job_id());
      for (const std::string& id : {ids[pages * 1000 - 10], ids[pages * 1000 + 500]}) {
        ASSERT_TRUE(c->CancelJob(id).ok());
        removed.insert(id);
      }
      EXPECT_EQ(c->PruneFinishedJobs(), 2);
    }
  } while (!token.empty());
  EXPECT_GE(pages, kJobs / Coordinator::kMaxPageSize);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id << " listed " << n << " times";
  for (const std::string& id : ids) {
    // A job present for the whole walk is listed; a removed one at most once.
    EXPECT_EQ(seen.count(id), removed.contains(id) ? seen.count(id) : 1u) << id;
  }
  for (const std::string& id : added) EXPECT_EQ(seen.count(id), 1u) << id;
  EXPECT_EQ(c->ListJobs()->jobs.size(), static_cast<size_t>(Coordinator::kDefaultPageSize));
}

TEST(CoordinatorBoundsTest, ListJobsRefusesBadPagingNamingTheField) {
  std::unique_ptr<Coordinator> c = OpenBounded(":memory:", RetentionPolicy());
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(c->SubmitJob(Named(i))->job_id());
  ASSERT_TRUE(c->CancelJob(ids[1]).ok());
  ASSERT_TRUE(c->CancelJob(ids[3]).ok());
  JobListQuery q;
  q.page_size = -1;
  EXPECT_EQ(c->ListJobs(q).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c->ListJobs(q).status().message().find("page_size"), std::string::npos);
  q.page_size = 0;
  q.page_token = "not-a-token";
  EXPECT_EQ(c->ListJobs(q).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c->ListJobs(q).status().message().find("page_token"), std::string::npos);
  // The state filter, one job a page: the cancelled ones only.
  q = JobListQuery();
  q.state = v1::JOB_STATE_CANCELLED;
  q.page_size = 1;
  absl::StatusOr<JobListPage> p = c->ListJobs(q);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->jobs.size(), 1u);
  EXPECT_EQ(p->jobs[0].job_id(), ids[1]);
  // Its token with another filter is refused ...
  JobListQuery other;
  other.page_token = p->next_page_token;
  EXPECT_NE(c->ListJobs(other).status().message().find("page_token"), std::string::npos);
  // ... and with the same one gives the next cancelled job, then the end.
  q.page_token = p->next_page_token;
  p = c->ListJobs(q);
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->jobs.size(), 1u);
  EXPECT_EQ(p->jobs[0].job_id(), ids[3]);
  if (!p->next_page_token.empty()) {
    q.page_token = p->next_page_token;
    EXPECT_TRUE(c->ListJobs(q)->jobs.empty());
  }
}

// Retention: the oldest finished jobs beyond the limit leave memory and the store (job row and
// unit results), also across a restart; their ids answer NOT_FOUND saying why, and are never
// handed out again. A cancelled job's unit results are deleted even when the job is kept.
TEST(CoordinatorBoundsTest, RetentionRemovesOldFinishedJobsFromMemoryAndStore) {
  const std::string path = TempFilePath("coordinator_retention.db");
  RemoveStore(path);
  RetentionPolicy keep2;
  keep2.max_finished_jobs = 2;
  FakeClock clock;  // finish times one second apart: the finish order is unambiguous
  std::vector<std::string> ids;
  {
    std::unique_ptr<Coordinator> c = OpenBounded(path, keep2, &clock);
    ids.push_back(c->SubmitJob(Spec())->job_id());
    // Some unit results of job 0 in the store, then it is cancelled.
    {
      Workers w(*c, 1, /*max_units=*/6);
      for (int i = 0; i < 2000 && c->GetJob(ids[0])->status.units_done() < 6; ++i) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      w.Stop();
    }
    ASSERT_GE(c->GetJob(ids[0])->status.units_done(), 6);
    ASSERT_GE(StoreRows(path, "SELECT count(*) FROM results WHERE job_id='" + ids[0] + "'"), 6);
    for (int i = 1; i < 6; ++i) ids.push_back(c->SubmitJob(Named(i))->job_id());
    ASSERT_TRUE(c->CancelJob(ids[0]).ok());
    const int64_t units_total = c->GetJob(ids[0])->status.units_total();
    // 1 finished job is within the limit, but a cancelled job's results go (once its driver
    // has returned: polled, bounded only against a hang).
    for (int i = 0; i < 2000 && StoreRows(path, "SELECT count(*) FROM results") != 0; ++i) {
      EXPECT_EQ(c->PruneFinishedJobs(), 0);
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_EQ(StoreRows(path, "SELECT count(*) FROM results"), 0);
    EXPECT_EQ(c->GetJob(ids[0])->status.units_total(), units_total);  // the status stays
    for (int i : {3, 1, 4}) {  // finished in this order
      clock.Advance(absl::Seconds(1));
      ASSERT_TRUE(c->CancelJob(ids[i]).ok());
    }
    EXPECT_EQ(c->PruneFinishedJobs(), 2);  // 0 and 3, the first to finish
    EXPECT_EQ(c->ListJobs()->jobs.size(), 4u);
    EXPECT_EQ(StoreRows(path, "SELECT count(*) FROM jobs"), 4);
    for (int i : {0, 3}) {
      absl::StatusOr<JobView> v = c->GetJob(ids[i]);
      EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
      EXPECT_NE(v.status().message().find("removed by the retention"), std::string::npos)
          << v.status();
    }
    EXPECT_EQ(c->GetJob("job-999999").status().message().find("retention"), std::string::npos);
    // The newest job finishes and goes too: its seq is not reused after a restart.
    keep2.max_finished_jobs = 0;
  }
  {
    std::unique_ptr<Coordinator> c = OpenBounded(path, keep2, &clock);  // keeps none: pruned on open
    EXPECT_EQ(c->ListJobs()->jobs.size(), 2u);  // the unfinished 2 and 5
    EXPECT_EQ(StoreRows(path, "SELECT count(*) FROM jobs"), 2);
    ASSERT_TRUE(c->CancelJob(ids[5]).ok());
    EXPECT_EQ(c->PruneFinishedJobs(), 1);
    EXPECT_EQ(c->GetJob(ids[5]).status().code(), absl::StatusCode::kNotFound);
  }
  std::unique_ptr<Coordinator> c = OpenBounded(path, keep2, &clock);
  absl::StatusOr<v1::JobStatus> next = c->SubmitJob(Spec());
  ASSERT_TRUE(next.ok());
  EXPECT_GT(next->job_id(), ids[5]);  // "job-%06d": the order of the ids is their seqs'
  EXPECT_NE(c->GetJob(ids[5]).status().message().find("retention"), std::string::npos);
}

// A retried submit whose job retention removed is refused, naming the job, instead of running
// the job again: the newest max_removed_requests request_ids are remembered, in the store
// too (across a restart); older ones are forgotten and a retry of one runs anew.
TEST(CoordinatorBoundsTest, ARetriedRequestOfARemovedJobIsRefusedNamingIt) {
  const std::string path = TempFilePath("coordinator_removed_requests.db");
  RemoveStore(path);
  RetentionPolicy keep_none;
  keep_none.max_finished_jobs = 0;
  keep_none.max_removed_requests = 2;
  FakeClock clock;
  // The last request_id holds what a terminal must not see raw.
  const std::vector<std::string> requests = {"req-0", "req-1", "req-2", "req-3\n'\x1b[2J"};
  auto spec_of = [&](int i) {
    v1::JobSpec s = Named(i);
    s.set_request_id(requests[i]);
    return s;
  };
  std::vector<std::string> ids;
  {
    std::unique_ptr<Coordinator> c = OpenBounded(path, keep_none, &clock);
    for (int i = 0; i < 4; ++i) ids.push_back(c->SubmitJob(spec_of(i))->job_id());
    EXPECT_EQ(c->SubmitJob(spec_of(0))->job_id(), ids[0]);  // a retry: the same job
    for (int i = 0; i < 4; ++i) {
      clock.Advance(absl::Seconds(1));
      ASSERT_TRUE(c->CancelJob(ids[i]).ok());
      for (int k = 0; k < 2000 && c->GetJob(ids[i]).ok(); ++k) {
        c->PruneFinishedJobs();
        absl::SleepFor(absl::Milliseconds(5));
      }
      ASSERT_EQ(c->GetJob(ids[i]).status().code(), absl::StatusCode::kNotFound);
    }
    for (int i : {2, 3}) {
      absl::StatusOr<v1::JobStatus> again = c->SubmitJob(spec_of(i));
      ASSERT_FALSE(again.ok()) << i;
      EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
      EXPECT_NE(again.status().message().find(ids[i] + ", removed by retention"),
                std::string::npos)
          << again.status();
    }
    // Escaped, never raw.
    absl::StatusOr<v1::JobStatus> raw = c->SubmitJob(spec_of(3));
    EXPECT_EQ(raw.status().message().find('\n'), std::string::npos);
    EXPECT_EQ(raw.status().message().find('\x1b'), std::string::npos);
    EXPECT_EQ(StoreRows(path, "SELECT count(*) FROM removed_requests"), 2);
    // Beyond the bound: forgotten, so a retry is a new job.
    absl::StatusOr<v1::JobStatus> anew = c->SubmitJob(spec_of(0));
    ASSERT_TRUE(anew.ok()) << anew.status();
    EXPECT_GT(anew->job_id(), ids[3]);
  }
  // A row of another shape (scribbled) is skipped, not fatal; and --recover's salvage carries
  // the records over.
  StoreExec(path, "INSERT INTO removed_requests VALUES(NULL, 'job-x', 'x')");
  ASSERT_TRUE(RecoverStore(path).ok());
  std::unique_ptr<Coordinator> c = OpenBounded(path, keep_none, &clock);
  ASSERT_NE(c, nullptr);
  absl::StatusOr<v1::JobStatus> again = c->SubmitJob(spec_of(2));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  EXPECT_NE(again.status().message().find(ids[2]), std::string::npos) << again.status();
}

TEST(CoordinatorBoundsTest, RetentionByAgeUsesTheClock) {
  FakeClock clock;
  RetentionPolicy day;
  day.max_finished_jobs = -1;
  day.max_age = absl::Hours(24);
  std::unique_ptr<Coordinator> c = OpenBounded(":memory:", day, &clock);
  // The one driver slot goes to this job, so no driver of a or b is still returning when the
  // policy is applied.
  ASSERT_TRUE(c->SubmitJob(Spec()).ok());
  const std::string a = c->SubmitJob(Spec())->job_id();
  const std::string b = c->SubmitJob(Spec())->job_id();
  ASSERT_TRUE(c->CancelJob(a).ok());
  clock.Advance(absl::Hours(20));
  ASSERT_TRUE(c->CancelJob(b).ok());
  EXPECT_EQ(c->PruneFinishedJobs(), 0);
  clock.Advance(absl::Hours(5));  // a finished 25 h ago, b 5 h ago
  EXPECT_EQ(c->PruneFinishedJobs(), 1);
  EXPECT_EQ(c->GetJob(a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(c->GetJob(b).ok());
}

// What a watch stream sees (JobObserver): the current status at once, then each change up to
// the terminal state; nothing after RemoveJobObserver; OnShutdown on Shutdown.
class RecordingObserver : public JobObserver {
 public:
  void OnJobChanged(const v1::JobStatus& s) override {
    absl::MutexLock lock(&mu);
    seen.push_back(s);
  }
  void OnShutdown() override {
    absl::MutexLock lock(&mu);
    ++shutdowns;
  }
  absl::Mutex mu;
  std::vector<v1::JobStatus> seen;
  int shutdowns = 0;
};

TEST(CoordinatorBoundsTest, ObserversGetTheCurrentStatusThenEveryChange) {
  std::unique_ptr<Coordinator> c = OpenBounded(":memory:", RetentionPolicy());
  const std::string id = c->SubmitJob(Spec())->job_id();
  RecordingObserver first, second;
  absl::StatusOr<int64_t> h1 = c->AddJobObserver(id, &first);
  absl::StatusOr<int64_t> h2 = c->AddJobObserver(id, &second);
  ASSERT_TRUE(h1.ok() && h2.ok());
  EXPECT_EQ(c->AddJobObserver("job-424242", &first).status().code(), absl::StatusCode::kNotFound);
  {
    absl::MutexLock lock(&first.mu);
    ASSERT_EQ(first.seen.size(), 1u);
    EXPECT_EQ(first.seen[0].job_id(), id);
  }
  c->RemoveJobObserver(*h2);
  ASSERT_TRUE(c->CancelJob(id).ok());
  const int64_t version = c->GetJob(id)->status.version();  // (not under an observer's lock)
  {
    absl::MutexLock lock(&first.mu);
    ASSERT_GE(first.seen.size(), 2u);
    for (size_t i = 1; i < first.seen.size(); ++i) {
      EXPECT_GT(first.seen[i].version(), first.seen[i - 1].version());
    }
    EXPECT_EQ(first.seen.back().state(), v1::JOB_STATE_CANCELLED);
    EXPECT_EQ(first.seen.back().version(), version);
  }
  {
    absl::MutexLock lock(&second.mu);
    for (const auto& s : second.seen) EXPECT_NE(s.state(), v1::JOB_STATE_CANCELLED);
  }
  c->Shutdown();
  EXPECT_EQ(first.shutdowns, 1);
  EXPECT_EQ(second.shutdowns, 0);
  EXPECT_EQ(c->AddJobObserver(id, &second).status().code(), absl::StatusCode::kUnavailable);
  c->RemoveJobObserver(*h1);
}

}  // namespace
}  // namespace impq::coordinator
