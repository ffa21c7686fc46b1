// Internal helper of worker/quant: runs fn(r0, r1) over fixed row ranges [r0, r1) covering
// [0, rows), on `pool` when given, else serially. The ranges are a fixed function of `rows`
// (kRowsPerTask), never of the thread count, so a backend whose fn writes only rows
// [r0, r1) produces bit-identical results on any pool.
#ifndef IMPQ_WORKER_QUANT_ROW_PARALLEL_H_
#define IMPQ_WORKER_QUANT_ROW_PARALLEL_H_

#include <algorithm>
#include <cstdint>

#include "common/thread_pool.h"

namespace impq::quant {

inline constexpr int64_t kRowsPerTask = 16;

template <typename Fn>
void ForEachRowRange(ThreadPool* pool, int64_t rows, const Fn& fn) {
  const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  auto run = [&](size_t t) {
    const int64_t r0 = static_cast<int64_t>(t) * kRowsPerTask;
    fn(r0, std::min(rows, r0 + kRowsPerTask));
  };
  if (pool == nullptr || tasks <= 1) {
    for (int64_t t = 0; t < tasks; ++t) run(static_cast<size_t>(t));
  } else {
    pool->ParallelFor(static_cast<size_t>(tasks), run);
  }
}

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_ROW_PARALLEL_H_
