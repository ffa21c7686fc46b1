// The arithmetic of gpu_bench's projection: the wall time of a whole SPQE run (P permutation
// walks) on G GPU workers, from the measured time of one walk on one GPU and a measured
// scaling figure of the service (e.g. cluster_bench's speed-up of 2 workers over 1).
//
// Model (stated, not measured at G): one walk's wall time T_walk (prefix reuse on, measured);
// P walks on one GPU take P · T_walk; on G GPUs the service keeps the parallel efficiency
// e = S / W it was measured at with W workers (speed-up S), i.e. P · T_walk / (G · e). The
// efficiency of the service at G > W is not known (issue 19's 4-worker synthetic run scaled
// worse than 2), so the G-GPU figure is a projection from the measured W-worker efficiency.
// Header-only, pure; tested in gpu_projection_test.cc.
#ifndef IMPQ_BENCH_GPU_PROJECTION_H_
#define IMPQ_BENCH_GPU_PROJECTION_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace impq::bench {

// A measured scaling figure of the service: `workers` workers ran the same job `speedup`
// times faster than one.
struct ScalingFigure {
  int64_t workers = 1;
  double speedup = 1.0;
  double Efficiency() const { return speedup / static_cast<double>(workers); }
};

// Parses "W:S" (e.g. "2:1.79"). InvalidArgument naming the text unless W >= 2 is an integer
// and 0 < S <= W (a super-linear figure would inflate the projection; refused).
inline absl::StatusOr<ScalingFigure> ParseScaling(absl::string_view text) {
  const size_t colon = text.find(':');
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--scaling \"", text, "\": ", why,
        " (expected W:S, the measured speed-up S of W workers over one, e.g. cluster_bench's "
        "2-worker ratio)"));
  };
  if (colon == absl::string_view::npos) return bad("no ':'");
  ScalingFigure f;
  if (!absl::SimpleAtoi(text.substr(0, colon), &f.workers) || f.workers < 2) {
    return bad("W must be an integer >= 2");
  }
  if (!absl::SimpleAtod(text.substr(colon + 1), &f.speedup) || !(f.speedup > 0.0) ||
      f.speedup > static_cast<double>(f.workers)) {
    return bad("S must be a number in (0, W]");
  }
  return f;
}

// Seconds of `permutations` walks of `walk_seconds` each on `gpus` GPUs (file comment).
// REQUIRES: gpus >= 1, permutations >= 0, walk_seconds >= 0.
inline double ProjectedSeconds(double walk_seconds, int64_t permutations, int64_t gpus,
                               const ScalingFigure& scaling) {
  const double one = walk_seconds * static_cast<double>(permutations);
  if (gpus == 1) return one;
  return one / (static_cast<double>(gpus) * scaling.Efficiency());
}

}  // namespace impq::bench

#endif  // IMPQ_BENCH_GPU_PROJECTION_H_
