#include "worker/quant/rtn.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "worker/quant/row_parallel.h"

namespace impq::quant {

GroupParams MinMaxGroupParams(double lo, double hi, int max_code) {
  // The scale is rounded to f32 once; the zero is derived from that stored scale so that
  // min maps (up to rounding) to code 0 with the parameters a kernel will actually use.
  const float scale = static_cast<float>((hi - lo) / max_code);
  if (!(scale >= FLT_MIN)) {
    const float c = static_cast<float>(lo);
    if (c == 0.0f) return {1.0f, 0.0f};
    if (c > 0.0f) return {c, 0.0f};
    return {-c, 1.0f};
  }
  return {scale, static_cast<float>(std::nearbyint(-lo / static_cast<double>(scale)))};
}

void QuantizeGroup(const float* w, int64_t n, GroupParams p, int max_code, uint8_t* codes) {
  for (int64_t i = 0; i < n; ++i) {
    codes[i] = static_cast<uint8_t>(impq_quantize_value(w[i], p.scale, p.zero, max_code));
  }
}

absl::StatusOr<PackedTensor> RtnQuantizer::QuantizeValidated(
    const float* w, int64_t rows, int64_t cols, const QuantConfig& cfg,
    const CalibrationStats* /*calib*/) const {
  const int max_code = impq_block_format(cfg.bits).max_code;
  const int64_t g_size = cfg.group_size;
  PackedTensor out = AllocatePacked(rows, cols, cfg.bits, g_size);
  const int64_t groups = out.groups_per_row(), rb = out.row_code_bytes();
  // Rows are independent: each task writes only its own rows, so the result does not depend
  // on the thread count.
  ForEachRowRange(cfg.pool, rows, [&](int64_t r0, int64_t r1) {
    std::vector<uint8_t> codes(static_cast<size_t>(cols));
    for (int64_t r = r0; r < r1; ++r) {
      const float* row = w + r * cols;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c0 = g * g_size, n = std::min(cols, c0 + g_size) - c0;
        float lo = row[c0], hi = row[c0];
        for (int64_t i = 1; i < n; ++i) {
          lo = std::min(lo, row[c0 + i]);
          hi = std::max(hi, row[c0 + i]);
        }
        const GroupParams p = MinMaxGroupParams(lo, hi, max_code);
        out.scales[r * groups + g] = p.scale;
        out.zeros[r * groups + g] = p.zero;
        QuantizeGroup(row + c0, n, p, max_code, codes.data() + c0);
      }
      PackRow(codes, cfg.bits, out.codes.data() + r * rb);
    }
  });
  return out;
}

}  // namespace impq::quant
