#include "worker/forward/matmul.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>

namespace impq::forward {

// OpenBLAS (pthread build) starts its worker threads when it is loaded; lowering the thread
// count leaves them alive, and they keep calling sched_yield, taking ~8% of a core from the
// evaluator's own threads (measured: 76k vs 85k tokens/s at 2 threads on stories260K). Its
// fork handler, blas_thread_shutdown_, stops them; a later threaded call would start them
// again. Weak: other BLAS builds (OpenBLAS serial) have no such symbol and no such threads.
extern "C" int blas_thread_shutdown_(void) __attribute__((weak));

void UseSingleThreadedBlas() {
  static std::once_flag once;
  std::call_once(once, [] {
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_ != nullptr) blas_thread_shutdown_();
  });
}

void MatMulWt(const float* x, int64_t ldx, int64_t rows, int64_t in, const float* w, int64_t out,
              float* y, int64_t ldy, ThreadPool* pool) {
  UseSingleThreadedBlas();
  const int64_t chunks = (out + kMatMulChunk - 1) / kMatMulChunk;
  auto run = [&](size_t c) {
    const int64_t j0 = static_cast<int64_t>(c) * kMatMulChunk;
    const int64_t n = std::min<int64_t>(kMatMulChunk, out - j0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(rows),
                static_cast<blasint>(n), static_cast<blasint>(in), 1.0f, x,
                static_cast<blasint>(ldx), w + j0 * in, static_cast<blasint>(in), 0.0f, y + j0,
                static_cast<blasint>(ldy));
  };
  if (pool != nullptr) {
    pool->ParallelFor(static_cast<size_t>(chunks), run);
  } else {
    for (int64_t c = 0; c < chunks; ++c) run(static_cast<size_t>(c));
  }
}

void MatMulNT(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float* c, int64_t ldc) {
  UseSingleThreadedBlas();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c,
              static_cast<blasint>(ldc));
}

void MatMulNN(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc) {
  UseSingleThreadedBlas();
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), 0.0f, c,
              static_cast<blasint>(ldc));
}

}  // namespace impq::forward
