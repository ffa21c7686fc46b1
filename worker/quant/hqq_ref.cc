// Scalar reference of HQQ (hqq.h): per group, each iteration in three passes (quantize and
// reconstruct; error and early stop; shrink and zero update).
#include <cmath>
#include <limits>
#include <vector>

#include "worker/quant/reference.h"

namespace impq::quant {

RefQuantized HqqQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                            int64_t group_size, const HqqOptions& options) {
  const int max_code = (1 << bits) - 1;
  const double p = options.lp_norm;
  RefQuantized out = RtnQuantizeRef(w, rows, cols, bits, group_size);  // scales, z_0
  const int64_t groups = (cols + group_size - 1) / group_size;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * group_size;
      const int64_t c1 = c0 + group_size < cols ? c0 + group_size : cols;
      const int64_t n = c1 - c0;
      const float* x = w + r * cols + c0;
      const float s = out.scales[r * groups + g];
      float z = out.zeros[r * groups + g];
      float best_z = z;
      double best_err = std::numeric_limits<double>::infinity();
      double beta = options.beta;
      std::vector<double> wq(n), diff(n);
      for (int it = 0; it < options.iterations; ++it) {
        for (int64_t k = 0; k < n; ++k) {
          const int q = QuantizeValueRef(x[k], s, z, max_code);
          wq[k] = q;
          const float w_r = (static_cast<float>(q) - z) * s;
          diff[k] = static_cast<double>(x[k]) - static_cast<double>(w_r);
        }
        double err = 0.0;
        for (int64_t k = 0; k < n; ++k) {
          if (diff[k] != 0.0) err += std::pow(std::fabs(diff[k]), p);
        }
        if (err >= best_err) break;
        best_err = err;
        best_z = z;
        double sum = 0.0;
        for (int64_t k = 0; k < n; ++k) {
          // shrink_lp(x) = sign(x) relu(|x| - |x|^(p-1) / beta), |x|^(p-1) = |x|^p / |x|.
          double e = 0.0;
          const double a = std::fabs(diff[k]);
          if (a != 0.0) {
            const double t = a - std::pow(a, p) / a / beta;
            e = t > 0.0 ? (diff[k] > 0.0 ? t : -t) : 0.0;
          }
          sum += wq[k] - (static_cast<double>(x[k]) - e) / static_cast<double>(s);
        }
        z = static_cast<float>(sum / static_cast<double>(n));
        beta *= options.kappa;
      }
      out.zeros[r * groups + g] = best_z;
      for (int64_t k = 0; k < n; ++k) {
        out.codes[r * cols + c0 + k] =
            static_cast<uint8_t>(QuantizeValueRef(x[k], s, best_z, max_code));
      }
    }
  }
  return out;
}

}  // namespace impq::quant
