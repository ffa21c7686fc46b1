// The worker loop against scripted clients: it stops when its executor stops serving, and it
// reports a unit it could not compute with the executor's error (the coordinator then
// re-issues the unit or fails the job). Loops against the real coordinator: coordinator/.
#include "worker/service/worker_loop.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/scoped_env.h"
#include "common/test_paths.h"
#include "gtest/gtest.h"
#include "worker/gpu/testdata/fake_plugin_path.h"
#include "job/job.h"
#include "job/spec_options.h"
#include "worker/service/unit_executor.h"

namespace impq::worker_service {
namespace {

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
                                                 const v1::WorkResult& result) override {
    ++reports;
    last = result;
    return v1::REPORT_OUTCOME_ACCEPTED;
  }
  std::atomic<int> leases{0}, reports{0};
  v1::WorkResult last;
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

class FailingExecutor : public UnitExecutor {
 public:
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit&) override {
    return absl::NotFoundError("model file /m.bin: no such file");
  }
};

TEST(WorkerLoopTest, FailedUnitIsReportedWithTheError) {
  EndlessClient client;
  FailingExecutor executor;
  WorkerLoopOptions lo;
  lo.worker_id = "w";
  lo.idle_poll = absl::Milliseconds(1);
  WorkerLoop loop(&client, &executor, lo);
  std::thread t([&] { loop.Run(); });
  for (int i = 0; i < 1000 && client.reports < 3; ++i) absl::SleepFor(absl::Milliseconds(1));
  loop.Stop();
  t.join();
  ASSERT_GE(client.reports, 3);
  EXPECT_EQ(client.last.worker_id(), "w");
  EXPECT_NE(client.last.error().find("no such file"), std::string::npos) << client.last.error();
  EXPECT_EQ(client.last.losses_size(), 0);
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

// A GPU worker whose libimpq_cuda.so predates 3/8 bits (worker/gpu/testdata's fake
// version-1 plugin, loaded through the real dlopen seam: it reports a device and runs
// nothing): the executor serves, a width-set job's calibration losses are computed on the CPU
// (GpuRuntime::CheckWidths refuses the plugin by name, logged) and equal the CPU executor's,
// and so are a {2, 4} job's (the plugin is tried and answers "no device").
TEST(EngineExecutorTest, OlderPluginServesWidthSetJobsOnTheCpu) {
  const std::string plugin = gpu::FakePluginV1Path();
  if (plugin.empty() || !std::ifstream(plugin).good()) GTEST_SKIP() << "no fake plugin built";
  ScopedEnv env("IMPQ_CUDA_PLUGIN", plugin);
  auto gpu = NewEngineExecutor(1, EngineDevice::kGpu);
  if (!gpu->Health().ok()) GTEST_SKIP() << "built without the GPU path: " << gpu->Health();
  auto cpu = NewEngineExecutor(1, EngineDevice::kCpu);
  for (const std::vector<int>& widths : {std::vector<int>{2, 3, 4}, std::vector<int>{2, 4}}) {
    job::JobOptions o;
    o.model_path = SharedDataPath("stories260K.bin");
    o.tokenizer_path = SharedDataPath("tok512.bin");
    o.calib_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
    o.heldout_text_path = SharedDataPath("tinystories_valid_a.txt");
    o.calib_docs = 4;
    o.heldout_docs = 2;
    o.ctx = 128;
    o.widths = widths;
    v1::WorkUnit prepare;
    prepare.set_kind(v1::UNIT_KIND_PREPARE);
    *prepare.mutable_spec() = job::SpecFromJobOptions(o);
    absl::StatusOr<v1::WorkResult> facts = cpu->Execute(prepare);
    ASSERT_TRUE(facts.ok()) << facts.status();
    const size_t steps = facts->facts().player_names_size() * (widths.size() - 1);
    ASSERT_GT(steps, 0u);
    v1::WorkUnit batch = prepare;
    batch.set_kind(v1::UNIT_KIND_BATCH);
    batch.set_dataset(v1::DATASET_CALIBRATION);
    batch.add_coalitions(std::string(steps, '0'));
    const size_t rungs = widths.size() - 1;  // player 0 down to the narrowest width
    batch.add_coalitions(std::string(rungs, '1') + std::string(steps - rungs, '0'));
    batch.add_coalitions(std::string(steps, '1'));
    absl::StatusOr<v1::WorkResult> want = cpu->Execute(batch);
    absl::StatusOr<v1::WorkResult> got = gpu->Execute(batch);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->losses_size(), 3);
    for (int k = 0; k < 3; ++k) EXPECT_EQ(got->losses(k), want->losses(k)) << k;
    EXPECT_TRUE(gpu->Health().ok()) << gpu->Health();
  }
}

// The worker's own confinement: a unit whose file resolves outside the worker's --data_root is
// refused before any file is opened, naming the field; with the root holding the files, the
// same unit's paths pass the check (and the failure, if any, is a load error of the model).
TEST(EngineExecutorTest, PathsOutsideTheDataRootsAreRefusedBeforeOpening) {
  const std::string root = TempFilePath("executor_root");
  std::filesystem::remove_all(root);
  std::filesystem::create_directories(root);
  ASSERT_EQ(::symlink("/etc/passwd", (root + "/calib.txt").c_str()), 0);
  job::JobOptions o;
  o.model_path = SharedDataPath("stories260K.bin");
  o.tokenizer_path = SharedDataPath("tok512.bin");
  o.calib_text_path = root + "/calib.txt";
  o.heldout_text_path = SharedDataPath("tinystories_v2_valid_100.txt");
  v1::WorkUnit unit;
  *unit.mutable_spec() = job::SpecFromJobOptions(o);
  // Model outside the root: refused first, naming the field.
  absl::StatusOr<v1::WorkResult> r =
      NewEngineExecutor(1, EngineDevice::kCpu, {root})->Execute(unit);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_NE(r.status().message().find("spec.model_path: '"), absl::string_view::npos)
      << r.status();
  // Everything else inside (the shared data as a second root): the symlink is the refusal.
  r = NewEngineExecutor(1, EngineDevice::kCpu, {root, SharedDataPath("")})->Execute(unit);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_NE(r.status().message().find("spec.calibration_text_path: '" + root +
                                      "/calib.txt' resolves outside the data roots"),
            absl::string_view::npos)
      << r.status();
  // A single safetensors file: its folder's config.json (opened by name) is checked too.
  std::filesystem::create_directories(root + "/hf");
  { std::ofstream(root + "/hf/model.safetensors") << "weights"; }
  ASSERT_EQ(::symlink("/etc/passwd", (root + "/hf/config.json").c_str()), 0);
  o.model_path = root + "/hf/model.safetensors";
  o.calib_text_path = SharedDataPath("tinystories_valid_a.txt");
  *unit.mutable_spec() = job::SpecFromJobOptions(o);
  r = NewEngineExecutor(1, EngineDevice::kCpu, {root, SharedDataPath("")})->Execute(unit);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_NE(r.status().message().find("spec.model_path: '" + root +
                                      "/hf/model.safetensors': a file in its folder"),
            absl::string_view::npos)
      << r.status();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace impq::worker_service
