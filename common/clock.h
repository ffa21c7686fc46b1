// The Clock seam: code that reads time (lease deadlines, timestamps) takes a Clock so tests
// drive time by hand with FakeClock instead of sleeping.
#ifndef IMPQ_COMMON_CLOCK_H_
#define IMPQ_COMMON_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace impq {

class Clock {
 public:
  virtual ~Clock() = default;
  // Current time. Thread-safe in every implementation.
  virtual absl::Time Now() const = 0;
};

// Wall-clock time (absl::Now()). Thread-safe, stateless.
class RealClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  // A process-wide instance (never destroyed).
  static Clock* Default() {
    static RealClock* clock = new RealClock();
    return clock;
  }
};

// Time that moves only when told to. Starts at `start` (default: 2025-01-01T00:00:00Z).
// Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1735689600)) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace impq

#endif  // IMPQ_COMMON_CLOCK_H_
