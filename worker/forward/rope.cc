#include "worker/forward/rope.h"

#include <cmath>
#include <numbers>

namespace impq::forward {

std::vector<double> RopeInvFrequencies(const model::ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int i = 0; i < half; ++i) {
    inv[i] = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / static_cast<double>(c.head_dim));
  }
  if (c.rope_scaling.factor > 0) {
    // transformers' _compute_llama3_parameters: wavelengths longer than the low-frequency
    // wavelength are slowed by `factor`, shorter than the high-frequency one kept, and the
    // band between interpolated linearly in original_max_position / wavelength.
    const model::RopeScaling& r = c.rope_scaling;
    const double factor = r.factor, lo = r.low_freq_factor, hi = r.high_freq_factor;
    const double orig = r.original_max_position;
    const double low_freq_wavelen = orig / lo, high_freq_wavelen = orig / hi;
    for (double& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen < high_freq_wavelen) continue;
      if (wavelen > low_freq_wavelen) {
        f /= factor;
      } else {
        const double smooth = (orig / wavelen - lo) / (hi - lo);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
  }
  if (!c.rope_freq_factors.empty()) {
    for (int i = 0; i < half; ++i) inv[i] /= c.rope_freq_factors[i];
  }
  return inv;
}

}  // namespace impq::forward
