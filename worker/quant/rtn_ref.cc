// Scalar reference of RTN (rtn.h) and of the format's code formula (block_format.h).
#include <cfloat>
#include <cmath>

#include "worker/quant/reference.h"

namespace impq::quant {

int QuantizeValueRef(float w, float scale, float zero, int max_code) {
  float q = std::nearbyintf(w / scale + zero);
  if (q < 0.0f) q = 0.0f;
  if (q > static_cast<float>(max_code)) q = static_cast<float>(max_code);
  return static_cast<int>(q);
}

GroupParams MinMaxParamsRef(double lo, double hi, int max_code) {
  GroupParams p;
  p.scale = static_cast<float>((hi - lo) / static_cast<double>(max_code));
  if (p.scale == 0.0f || p.scale < FLT_MIN) {
    // Constant group c = lo: reproduce it exactly with a positive scale.
    const float c = static_cast<float>(lo);
    if (c > 0.0f) {
      p.scale = c;
      p.zero = 0.0f;
    } else if (c < 0.0f) {
      p.scale = -c;
      p.zero = 1.0f;
    } else {
      p.scale = 1.0f;
      p.zero = 0.0f;
    }
    return p;
  }
  p.zero = static_cast<float>(std::nearbyint(-lo / static_cast<double>(p.scale)));
  return p;
}

RefQuantized RtnQuantizeRef(const float* w, int64_t rows, int64_t cols, int bits,
                            int64_t group_size) {
  const int max_code = (1 << bits) - 1;
  const int64_t groups = (cols + group_size - 1) / group_size;
  RefQuantized out;
  out.rows = rows;
  out.cols = cols;
  out.bits = bits;
  out.group_size = group_size;
  out.codes.resize(rows * cols);
  out.scales.resize(rows * groups);
  out.zeros.resize(rows * groups);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = c / group_size;
      if (c % group_size == 0) {
        // Entering a group: its range over the columns it really has.
        float lo = w[r * cols + c], hi = lo;
        for (int64_t k = c; k < cols && k < c + group_size; ++k) {
          if (w[r * cols + k] < lo) lo = w[r * cols + k];
          if (w[r * cols + k] > hi) hi = w[r * cols + k];
        }
        const GroupParams p = MinMaxParamsRef(lo, hi, max_code);
        out.scales[r * groups + g] = p.scale;
        out.zeros[r * groups + g] = p.zero;
      }
      out.codes[r * cols + c] = static_cast<uint8_t>(QuantizeValueRef(
          w[r * cols + c], out.scales[r * groups + g], out.zeros[r * groups + g], max_code));
    }
  }
  return out;
}

std::vector<float> DequantizeRef(const RefQuantized& q) {
  const int64_t groups = (q.cols + q.group_size - 1) / q.group_size;
  std::vector<float> out(q.rows * q.cols);
  for (int64_t r = 0; r < q.rows; ++r) {
    for (int64_t c = 0; c < q.cols; ++c) {
      const int64_t g = r * groups + c / q.group_size;
      out[r * q.cols + c] =
          (static_cast<float>(q.codes[r * q.cols + c]) - q.zeros[g]) * q.scales[g];
    }
  }
  return out;
}

}  // namespace impq::quant
