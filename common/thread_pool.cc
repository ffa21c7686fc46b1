#include "common/thread_pool.h"

#include <algorithm>
#include <atomic>

#include "common/logging.h"

namespace impq {
namespace {
thread_local bool tls_inside_pool = false;
}  // namespace

struct ThreadPool::Job {
  const std::function<void(size_t)>* fn = nullptr;
  size_t n = 0;
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  int active = 0;  // workers inside RunJob; guarded by the pool's mu_
};

ThreadPool::ThreadPool(int num_threads) : num_threads_(num_threads) {
  IMPQ_CHECK(num_threads >= 1) << "num_threads=" << num_threads;
  for (int i = 1; i < num_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::RunJob(Job& job) {
  const bool was_inside = tls_inside_pool;
  tls_inside_pool = true;
  for (;;) {
    const size_t i = job.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= job.n) break;
    (*job.fn)(i);
    job.done.fetch_add(1, std::memory_order_acq_rel);
  }
  tls_inside_pool = was_inside;
}

void ThreadPool::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    Job* job = queue_.back();
    if (job->next.load(std::memory_order_relaxed) >= job->n) {
      queue_.pop_back();  // every index is claimed; nothing for us here
      continue;
    }
    ++job->active;
    lock.unlock();
    RunJob(*job);
    lock.lock();
    --job->active;
    idle_cv_.notify_all();
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1 || tls_inside_pool) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mu_);
  Job job;
  job.fn = &fn;
  job.n = n;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(&job);
  }
  cv_.notify_all();
  RunJob(job);
  // Wait until every index is finished and no worker still touches `job`, then unqueue it.
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [&] {
    return job.done.load(std::memory_order_acquire) == job.n && job.active == 0;
  });
  queue_.erase(std::remove(queue_.begin(), queue_.end(), &job), queue_.end());
}

}  // namespace impq
