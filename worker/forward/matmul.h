// Matrix products of the forward pass, on OpenBLAS.
//
// MatMulWt computes y[T, out] = x[T, in] · w[out, in]ᵀ (nn.Linear without bias) as fixed
// column chunks of kMatMulChunk output features, each one single-threaded cblas_sgemm call.
// The chunking depends only on the shapes, never on the thread count, so the result is bit for
// bit the same whether the chunks run serially or on a ThreadPool (IMPQ's estimates must not
// depend on how many threads measured them). OpenBLAS's own threading is switched off: impq
// parallelises above it.
#ifndef IMPQ_WORKER_FORWARD_MATMUL_H_
#define IMPQ_WORKER_FORWARD_MATMUL_H_

#include <cstdint>

#include "common/thread_pool.h"

namespace impq::forward {

inline constexpr int kMatMulChunk = 128;

// Pins OpenBLAS to one thread per call and stops its idle worker threads (idempotent,
// thread-safe).
void UseSingleThreadedBlas();

// y = x · wᵀ. x: [rows, in] with row stride ldx; w: [out, in] contiguous; y: [rows, out] with
// row stride ldy. `pool` may be null (serial).
void MatMulWt(const float* x, int64_t ldx, int64_t rows, int64_t in, const float* w, int64_t out,
              float* y, int64_t ldy, ThreadPool* pool);

// Plain sgemm wrappers for attention (single call, no chunking):
// c[m, n] = alpha · a[m, k] · b[n, k]ᵀ      (MatMulNT)
// c[m, n] = a[m, k] · b[k, n]                (MatMulNN)
void MatMulNT(int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
              const float* b, int64_t ldb, float* c, int64_t ldc);
void MatMulNN(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
              int64_t ldb, float* c, int64_t ldc);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_MATMUL_H_
