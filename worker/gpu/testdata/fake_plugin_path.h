// Where the tests find testdata/fake_plugin_v1.cc's library (a CUDA plugin of API version 1
// that reports a device and runs nothing): $IMPQ_FAKE_GPU_PLUGIN_V1 (the device bundle sets
// it), else the build tree's (the test target's IMPQ_FAKE_GPU_PLUGIN_V1 definition), else "".
#ifndef IMPQ_WORKER_GPU_TESTDATA_FAKE_PLUGIN_PATH_H_
#define IMPQ_WORKER_GPU_TESTDATA_FAKE_PLUGIN_PATH_H_

#include <cstdlib>
#include <string>

namespace impq::gpu {

inline std::string FakePluginV1Path() {
  const char* env = std::getenv("IMPQ_FAKE_GPU_PLUGIN_V1");
  if (env != nullptr && env[0] != '\0') return env;
#ifdef IMPQ_FAKE_GPU_PLUGIN_V1
  return IMPQ_FAKE_GPU_PLUGIN_V1;
#else
  return "";
#endif
}

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_TESTDATA_FAKE_PLUGIN_PATH_H_
