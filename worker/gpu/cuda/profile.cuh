// Opt-in timing of the plugin's operations on a real device (see OpProfile).
#ifndef IMPQ_WORKER_GPU_CUDA_PROFILE_CUH_
#define IMPQ_WORKER_GPU_CUDA_PROFILE_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace impq::gpu {

// Opt-in per-operation timing ($IMPQ_GPU_PROFILE=1 when the model is created): CUDA events
// around every operation of an evaluation, summed per operation name after the evaluation's
// final synchronisation and printed to stderr when the model is destroyed. For finding where
// an evaluation's time goes on a real device; off, it costs a null check per operation (and
// the formatting of each GEMM's name, ~0.1 µs).
struct OpProfile {
  struct Pending {
    std::string name;
    cudaEvent_t start, stop;
  };
  std::vector<cudaEvent_t> pool;  // reused events
  size_t used = 0;
  std::vector<Pending> pending;
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> totals;  // name -> ms, calls
  int64_t evaluations = 0;

  cudaEvent_t NextEvent() {
    if (used == pool.size()) {
      cudaEvent_t e = nullptr;
      if (cudaEventCreate(&e) != cudaSuccess) return nullptr;
      pool.push_back(e);
    }
    return pool[used++];
  }
  // Forgets the events of an evaluation that failed before Collect (called when one starts).
  void Discard() {
    pending.clear();
    used = 0;
  }
  // Called after the stream was synchronised.
  void Collect() {
    for (const Pending& p : pending) {
      float ms = 0.0f;
      if (p.start == nullptr || p.stop == nullptr ||
          cudaEventElapsedTime(&ms, p.start, p.stop) != cudaSuccess) {
        continue;
      }
      auto it = std::find_if(totals.begin(), totals.end(),
                             [&](const auto& t) { return t.first == p.name; });
      if (it == totals.end()) it = totals.insert(totals.end(), {p.name, {0.0, 0}});
      it->second.first += ms;
      it->second.second += 1;
    }
    pending.clear();
    used = 0;
    ++evaluations;
  }
  void Print() const {
    double all = 0.0;
    for (const auto& t : totals) all += t.second.first;
    std::fprintf(stderr, "impq gpu profile: %lld evaluations, %.1f ms of timed operations\n",
                 static_cast<long long>(evaluations), all);
    std::fprintf(stderr,
                 "| operation | calls | ms total | ms / evaluation | share |\n"
                 "|---|---:|---:|---:|---:|\n");
    for (const auto& t : totals) {
      std::fprintf(stderr, "| %s | %lld | %.1f | %.2f | %.1f%% |\n", t.first.c_str(),
                   static_cast<long long>(t.second.second), t.second.first,
                   evaluations > 0 ? t.second.first / evaluations : 0.0,
                   all > 0 ? 100.0 * t.second.first / all : 0.0);
    }
  }
  ~OpProfile() {
    for (cudaEvent_t e : pool) cudaEventDestroy(e);
  }
};

// Records one operation's start and stop events on `st` (no-op without a profile).
class ProfiledOp {
 public:
  ProfiledOp(OpProfile* p, const char* name, cudaStream_t st) : p_(p), st_(st) {
    if (p_ == nullptr) return;
    start_ = p_->NextEvent();
    if (start_ != nullptr) cudaEventRecord(start_, st_);
    name_ = name;
  }
  ~ProfiledOp() {
    if (p_ == nullptr) return;
    cudaEvent_t stop = p_->NextEvent();
    if (stop != nullptr) cudaEventRecord(stop, st_);
    p_->pending.push_back({name_, start_, stop});
  }
  ProfiledOp(const ProfiledOp&) = delete;
  ProfiledOp& operator=(const ProfiledOp&) = delete;

 private:
  OpProfile* p_;
  cudaStream_t st_;
  cudaEvent_t start_ = nullptr;
  std::string name_;
};

}  // namespace impq::gpu

#endif  // IMPQ_WORKER_GPU_CUDA_PROFILE_CUH_
