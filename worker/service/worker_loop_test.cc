// The worker loop against an in-process coordinator (the embedded mode): several loops on
// threads give exactly the single-loop result, on a synthetic game and on the real engine.
#include "worker/service/worker_loop.h"

#include <thread>

#include "common/test_paths.h"
#include "coordinator/test_game.h"
#include "gtest/gtest.h"

namespace impq::worker_service {
namespace {

class GameExecutor : public UnitExecutor {
 public:
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    return game_.Evaluate(unit, "");
  }

 private:
  coordinator::TestGame game_{5};
};

// Runs `spec` on a fresh in-process coordinator with `workers` loops; returns the result.
v1::JobResult RunEmbedded(const v1::JobSpec& spec, int workers,
                          const std::function<std::unique_ptr<UnitExecutor>()>& make) {
  coordinator::CoordinatorOptions o;
  o.store_path = ":memory:";
  o.lease_duration = absl::Seconds(30);
  auto c = coordinator::Coordinator::Open(o);
  EXPECT_TRUE(c.ok());
  (*c)->StartBackground(absl::Milliseconds(5));
  auto st = (*c)->SubmitJob(spec);
  EXPECT_TRUE(st.ok()) << st.status();
  InProcessWorkerClient client(**c, o.lease_duration);
  std::vector<std::unique_ptr<UnitExecutor>> executors;
  std::vector<std::unique_ptr<WorkerLoop>> loops;
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    executors.push_back(make());
    WorkerLoopOptions lo;
    lo.worker_id = "w" + std::to_string(w);
    lo.idle_poll = absl::Milliseconds(5);
    loops.push_back(std::make_unique<WorkerLoop>(&client, executors.back().get(), lo));
  }
  for (auto& l : loops) threads.emplace_back([&l] { l->Run(); });
  v1::JobStatus s = *st;
  while (s.state() != v1::JOB_STATE_DONE && s.state() != v1::JOB_STATE_FAILED) {
    s = *(*c)->WaitForChange(s.job_id(), s.version(), absl::Seconds(1));
  }
  for (auto& l : loops) l->Stop();
  for (auto& t : threads) t.join();
  EXPECT_EQ(s.state(), v1::JOB_STATE_DONE) << s.error();
  return (*c)->GetJob(s.job_id())->result;
}

TEST(WorkerLoopTest, ManyLoopsMatchOneOnASyntheticGame) {
  v1::JobSpec spec;
  spec.set_model_path("/m");
  spec.set_tokenizer_path("/t");
  spec.set_calibration_text_path("/c");
  spec.set_evaluation_text_path("/e");
  spec.set_permutations(16);
  spec.set_seed(3);
  spec.add_average_bits(3.0);
  auto make = [] { return std::make_unique<GameExecutor>(); };
  const v1::JobResult one = RunEmbedded(spec, 1, make);
  const v1::JobResult three = RunEmbedded(spec, 3, make);
  EXPECT_EQ(one.SerializeAsString(), three.SerializeAsString());
  EXPECT_TRUE(one.allocations(0).measured());
}

TEST(WorkerLoopTest, EngineJobOnStories260K) {
  v1::JobSpec spec;
  spec.set_model_path(SharedDataPath("stories260K.bin"));
  spec.set_tokenizer_path(SharedDataPath("tok512.bin"));
  spec.set_calibration_text_path(SharedDataPath("tinystories_valid_a.txt"));
  spec.set_evaluation_text_path(SharedDataPath("tinystories_v2_valid_100.txt"));
  spec.set_calibration_docs(4);
  spec.set_evaluation_docs(4);
  spec.set_context(128);
  spec.set_permutations(4);
  spec.set_antithetic(true);
  spec.set_seed(11);
  spec.add_average_bits(3.0);
  auto make = [] { return NewEngineExecutor(1); };
  const v1::JobResult one = RunEmbedded(spec, 1, make);
  const v1::JobResult two = RunEmbedded(spec, 2, make);
  ASSERT_EQ(one.phi_size(), 5);  // stories260K: 5 decoder blocks
  EXPECT_GT(one.loss_all2(), one.loss_all4());
  EXPECT_TRUE(one.allocations(0).measured());
  EXPECT_EQ(one.SerializeAsString(), two.SerializeAsString());
}

// An executor whose device fails on its first unit, and a client that always has work.
class FailingDeviceExecutor : public UnitExecutor {
 public:
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit&) override {
    ++executed;
    health_ = absl::UnavailableError("GPU device failed");
    return health_;
  }
  absl::Status Health() const override { return health_; }
  int executed = 0;

 private:
  absl::Status health_;
};

class EndlessClient : public WorkerClient {
 public:
  absl::StatusOr<LeaseReply> AcquireLease(const std::string&, int) override {
    ++leases;
    LeaseReply r;
    r.has_lease = true;
    r.lease_id = "l" + std::to_string(leases);
    r.duration_ms = 60000;
    r.units.resize(3);
    return r;
  }
  absl::StatusOr<v1::LeaseState> Heartbeat(const std::string&, const std::string&) override {
    return v1::LEASE_STATE_ACTIVE;
  }
  absl::StatusOr<v1::ReportOutcome> ReportResult(const std::string&,
                                                 const v1::WorkResult&) override {
    ++reports;
    return v1::REPORT_OUTCOME_ACCEPTED;
  }
  int leases = 0, reports = 0;
};

// A worker whose executor stops serving takes no further lease and reports nothing.
TEST(WorkerLoopTest, StopsTakingWorkWhenTheExecutorIsNotServing) {
  EndlessClient client;
  FailingDeviceExecutor executor;
  WorkerLoopOptions lo;
  lo.worker_id = "w";
  lo.idle_poll = absl::Milliseconds(1);
  WorkerLoop loop(&client, &executor, lo);
  const WorkerLoopStats st = loop.Run();  // returns by itself
  EXPECT_EQ(st.health.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(client.leases, 1);
  EXPECT_EQ(executor.executed, 1);  // the other units of the lease are dropped
  EXPECT_EQ(client.reports, 0);
  EXPECT_EQ(st.units_reported, 0);
}

// The engine's device: parsed by name; the CPU always serves; a device the build or machine
// lacks leaves the executor not serving (Health and every Execute say why), never silently
// on the CPU.
TEST(EngineExecutorTest, DeviceChoice) {
  EXPECT_EQ(*ParseEngineDevice("cpu"), EngineDevice::kCpu);
  EXPECT_EQ(*ParseEngineDevice("auto"), EngineDevice::kAuto);
  EXPECT_EQ(*ParseEngineDevice("gpu"), EngineDevice::kGpu);
  EXPECT_EQ(ParseEngineDevice("tpu").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(NewEngineExecutor(1)->Health().ok());
  EXPECT_TRUE(NewEngineExecutor(1, EngineDevice::kAuto)->Health().ok());
  auto gpu = NewEngineExecutor(1, EngineDevice::kGpu);
  if (!gpu->Health().ok()) {
    EXPECT_EQ(gpu->Health().code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(gpu->Execute(v1::WorkUnit()).status(), gpu->Health());
  }
}

}  // namespace
}  // namespace impq::worker_service
