// Where tests and benchmarks find the shared real data (models, text) and scratch space.
// $IMPQ_SHARED_DATA wins; otherwise the directory CMake was configured with.
#ifndef IMPQ_COMMON_TEST_PATHS_H_
#define IMPQ_COMMON_TEST_PATHS_H_

#include <unistd.h>

#include <cstdlib>
#include <string>

namespace impq {

inline std::string SharedDataPath(const std::string& file) {
  const char* env = std::getenv("IMPQ_SHARED_DATA");
#ifdef IMPQ_SHARED_DATA_DIR
  std::string dir = env != nullptr && *env != '\0' ? env : IMPQ_SHARED_DATA_DIR;
#else
  std::string dir = env != nullptr && *env != '\0' ? env : "../shared/data";
#endif
  return dir + "/" + file;
}

// A fresh path under $TEST_TMPDIR (or /tmp), unique per process.
inline std::string TempFilePath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/impq_" + std::to_string(::getpid()) +
         "_" + name;
}

}  // namespace impq

#endif  // IMPQ_COMMON_TEST_PATHS_H_
