// Seeded test inputs shared by the quant tests.
#ifndef IMPQ_WORKER_QUANT_TEST_UTIL_H_
#define IMPQ_WORKER_QUANT_TEST_UTIL_H_

#include <cstdint>
#include <vector>

#include "common/rng.h"

namespace impq::quant::testing {

// Gaussian weights (std 0.02, like an LLM linear layer) with ~1% outliers of 10x magnitude.
inline std::vector<float> RandomWeights(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) {
    v = static_cast<float>(0.02 * rng.Normal());
    if (rng.Below(100) == 0) v *= 10.0f;
  }
  return w;
}

// Correlated activations X = Z * A ([n][in]): Z standard normal, A a random mixing matrix
// with a few dominant directions, so X^T X is far from diagonal (GPTQ has structure to use).
inline std::vector<float> CorrelatedActivations(int64_t n, int64_t in, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> a(static_cast<size_t>(in * in));
  for (double& v : a) v = rng.Normal();
  for (int64_t k = 0; k < in; ++k) {  // column scales spread over ~2 orders of magnitude
    const double s = 0.1 + 3.0 * rng.Uniform() * rng.Uniform();
    for (int64_t j = 0; j < in; ++j) a[k * in + j] *= s;
  }
  std::vector<double> z(static_cast<size_t>(in));
  std::vector<float> x(static_cast<size_t>(n * in));
  for (int64_t r = 0; r < n; ++r) {
    for (double& v : z) v = rng.Normal();
    for (int64_t j = 0; j < in; ++j) {
      double acc = 0.0;
      for (int64_t k = 0; k < in; ++k) acc += z[k] * a[k * in + j];
      x[r * in + j] = static_cast<float>(acc / 8.0);
    }
  }
  return x;
}

// ||X W^T - X W_hat^T||_F^2 in double: the layer-output error GPTQ minimises.
inline double OutputError(const std::vector<float>& x, int64_t n, const std::vector<float>& w,
                          const std::vector<float>& w_hat, int64_t rows, int64_t cols) {
  double total = 0.0;
  for (int64_t s = 0; s < n; ++s) {
    for (int64_t r = 0; r < rows; ++r) {
      double acc = 0.0;
      for (int64_t c = 0; c < cols; ++c) {
        acc += static_cast<double>(x[s * cols + c]) *
               (static_cast<double>(w[r * cols + c]) - static_cast<double>(w_hat[r * cols + c]));
      }
      total += acc * acc;
    }
  }
  return total;
}

inline double SquaredError(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    s += d * d;
  }
  return s;
}

}  // namespace impq::quant::testing

#endif  // IMPQ_WORKER_QUANT_TEST_UTIL_H_
