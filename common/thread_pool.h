// A fixed pool of worker threads for data-parallel loops.
//
// ParallelFor(n, fn) calls fn(i) once for every i in [0, n), spread over the pool's threads and
// the calling thread, and returns when all calls are done. Which thread runs which index is not
// fixed, so callers that need results independent of the thread count must make each fn(i)
// self-contained (write only to slot i) and combine the slots in index order afterwards.
//
// Thread-safe: ParallelFor may be called from several threads; nested calls from inside fn run
// serially on the calling thread (no deadlock, no oversubscription).
#ifndef IMPQ_COMMON_THREAD_POOL_H_
#define IMPQ_COMMON_THREAD_POOL_H_

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace impq {

class ThreadPool {
 public:
  // `num_threads` counts the calling thread: 1 means no extra threads. REQUIRES: >= 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  struct Job;
  void WorkerLoop();
  static void RunJob(Job& job);

  const int num_threads_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;       // work queued or stopping
  std::condition_variable idle_cv_;  // a worker left a job
  std::vector<Job*> queue_;  // guarded by mu_
  bool stop_ = false;        // guarded by mu_
  std::mutex submit_mu_;     // one ParallelFor at a time uses the workers
};

}  // namespace impq

#endif  // IMPQ_COMMON_THREAD_POOL_H_
