// ScopedEnv: sets an environment variable for the scope of the object and restores the old
// value (or its absence) afterwards. For tests that switch behaviour read from the environment.
#ifndef IMPQ_COMMON_SCOPED_ENV_H_
#define IMPQ_COMMON_SCOPED_ENV_H_

#include <cstdlib>
#include <string>

namespace impq {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace impq

#endif  // IMPQ_COMMON_SCOPED_ENV_H_
