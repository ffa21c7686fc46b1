#include "worker/service/worker_loop.h"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "absl/synchronization/notification.h"
#include "common/logging.h"

namespace impq::worker_service {

// One thread running one task at a time: the "one compute executor per device" of the worker.
class WorkerLoop::ComputeThread {
 public:
  ComputeThread() : thread_([this] { Loop(); }) {}
  ~ComputeThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  std::future<absl::StatusOr<v1::WorkResult>> Submit(UnitExecutor* ex, v1::WorkUnit unit) {
    std::packaged_task<absl::StatusOr<v1::WorkResult>()> task(
        [ex, u = std::move(unit)] { return ex->Execute(u); });
    auto fut = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      task_ = std::move(task);
      has_task_ = true;
    }
    cv_.notify_all();
    return fut;
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || has_task_; });
      if (has_task_) {
        auto task = std::move(task_);
        has_task_ = false;
        lock.unlock();
        task();
        lock.lock();
        continue;
      }
      if (stop_) return;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::packaged_task<absl::StatusOr<v1::WorkResult>()> task_;  // guarded by mu_
  bool has_task_ = false;                                      // guarded by mu_
  bool stop_ = false;                                          // guarded by mu_
  std::thread thread_;
};

WorkerLoop::WorkerLoop(WorkerClient* client, UnitExecutor* executor, WorkerLoopOptions options)
    : client_(client),
      executor_(executor),
      options_(std::move(options)),
      compute_(std::make_unique<ComputeThread>()) {}

WorkerLoop::~WorkerLoop() = default;

WorkerLoopStats WorkerLoop::Run() {
  WorkerLoopStats st;
  auto idle = [&] {
    const absl::Time until = absl::Now() + options_.idle_poll;
    // Sleep in slices of at most 20 ms (Stop() is seen promptly), never past idle_poll.
    for (absl::Time now = absl::Now(); !stop_.load() && now < until; now = absl::Now()) {
      absl::SleepFor(std::min(absl::Milliseconds(20), until - now));
    }
  };
  while (!stop_.load()) {
    if (options_.max_units > 0 && st.units_reported >= options_.max_units) break;
    if (absl::Status h = executor_->Health(); !h.ok()) {
      IMPQ_LOG(ERROR) << "worker " << options_.worker_id << " not serving: " << h;
      st.health = h;
      break;
    }
    absl::StatusOr<LeaseReply> lease = client_->AcquireLease(options_.worker_id, options_.capacity);
    if (!lease.ok()) {
      ++st.errors;
      IMPQ_LOG(WARNING) << "AcquireLease: " << lease.status();
      idle();
      continue;
    }
    if (!lease->has_lease) {
      idle();
      continue;
    }
    ++st.leases;
    // Heartbeat at a third of the lease duration.
    const auto beat = std::chrono::milliseconds(std::max<int64_t>(lease->duration_ms / 3, 10));
    bool lease_alive = true;
    for (size_t i = 0; i < lease->units.size() && !stop_.load(); ++i) {
      if (!lease_alive) {
        st.dropped_units += static_cast<int64_t>(lease->units.size() - i);
        break;
      }
      auto fut = compute_->Submit(executor_, lease->units[i]);
      while (fut.wait_for(beat) != std::future_status::ready) {
        absl::StatusOr<v1::LeaseState> hb = client_->Heartbeat(lease->lease_id, options_.worker_id);
        if (hb.ok() && *hb != v1::LEASE_STATE_ACTIVE) lease_alive = false;
        if (!hb.ok()) IMPQ_LOG(WARNING) << "Heartbeat: " << hb.status();
      }
      absl::StatusOr<v1::WorkResult> result = fut.get();
      if (!result.ok()) {
        ++st.errors;
        IMPQ_LOG(ERROR) << "unit " << lease->units[i].job_id() << "/"
                        << lease->units[i].unit_index() << ": " << result.status();
        // A device that stopped serving is this worker's fault, not the unit's: the lease
        // expires and another worker takes the unit.
        if (!executor_->Health().ok()) lease_alive = false;
        if (!lease_alive) continue;
        // Report the failure: the coordinator re-issues the unit (another worker may
        // succeed) and fails the job after repeated failures, instead of waiting for the
        // lease to expire again and again.
        v1::WorkResult failed;
        failed.set_job_id(lease->units[i].job_id());
        failed.set_unit_index(lease->units[i].unit_index());
        failed.set_attempt(lease->units[i].attempt());
        failed.set_worker_id(options_.worker_id);
        failed.set_error(result.status().ToString());
        if (absl::StatusOr<v1::ReportOutcome> out = client_->ReportResult(lease->lease_id, failed);
            !out.ok()) {
          IMPQ_LOG(WARNING) << "ReportResult (failure): " << out.status();
        }
        continue;
      }
      if (!lease_alive) continue;
      result->set_worker_id(options_.worker_id);
      absl::StatusOr<v1::ReportOutcome> out = client_->ReportResult(lease->lease_id, *result);
      ++st.units_reported;
      if (!out.ok()) {
        ++st.errors;
        IMPQ_LOG(WARNING) << "ReportResult: " << out.status();
        continue;
      }
      if (*out == v1::REPORT_OUTCOME_ACCEPTED) ++st.accepted;
      if (*out == v1::REPORT_OUTCOME_DUPLICATE) ++st.duplicate;
      if (*out == v1::REPORT_OUTCOME_STALE) ++st.stale;
    }
  }
  return st;
}

}  // namespace impq::worker_service
