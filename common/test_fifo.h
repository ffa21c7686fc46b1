// A FIFO for tests of code that must refuse one without blocking (OpenRegularFile).
//
// Opening a FIFO for reading blocks until a writer appears. If the code under test does that
// anyway, a watchdog opens the write end after `timeout` (non-blocking: it succeeds only once a
// reader is waiting), which releases the reader with an immediate end of file, so the test
// fails with watchdog_fired() instead of hanging. Thread-compatible.
#ifndef IMPQ_COMMON_TEST_FIFO_H_
#define IMPQ_COMMON_TEST_FIFO_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace impq {

class ScopedFifo {
 public:
  explicit ScopedFifo(std::string path, std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : path_(std::move(path)) {
    ::unlink(path_.c_str());
    made_ = ::mkfifo(path_.c_str(), 0600) == 0;
    watchdog_ = std::thread([this, timeout] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, timeout, [this] { return stop_; })) return;
      while (!stop_) {  // release a reader blocked in open(), as often as it takes
        const int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
          fired_ = true;
          ::close(fd);
        }
        cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stop_; });
      }
    });
  }
  ScopedFifo(const ScopedFifo&) = delete;
  ScopedFifo& operator=(const ScopedFifo&) = delete;
  ~ScopedFifo() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    ::unlink(path_.c_str());
  }

  const std::string& path() const { return path_; }
  bool made() const { return made_; }  // mkfifo succeeded
  // True when something blocked opening the FIFO and had to be released.
  bool watchdog_fired() const { return fired_; }

 private:
  const std::string path_;
  bool made_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::atomic<bool> fired_{false};
  std::thread watchdog_;
};

}  // namespace impq

#endif  // IMPQ_COMMON_TEST_FIFO_H_
