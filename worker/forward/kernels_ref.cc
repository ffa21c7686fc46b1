#include "worker/forward/kernels_ref.h"

#include <algorithm>
#include <cmath>

namespace impq::forward {

std::vector<double> RmsNormRef(const std::vector<float>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = x[i] * inv * w[i];
  return out;
}

std::vector<double> RopeRef(const std::vector<float>& v, int pos, double theta, bool interleaved) {
  const size_t hd = v.size();
  std::vector<double> out(v.begin(), v.end());
  for (size_t i = 0; i < hd / 2; ++i) {
    const double angle = pos / std::pow(theta, 2.0 * static_cast<double>(i) / static_cast<double>(hd));
    const size_t a = interleaved ? 2 * i : i;
    const size_t b = interleaved ? 2 * i + 1 : i + hd / 2;
    out[a] = v[a] * std::cos(angle) - v[b] * std::sin(angle);
    out[b] = v[a] * std::sin(angle) + v[b] * std::cos(angle);
  }
  return out;
}

std::vector<double> SoftmaxPrefixRef(const std::vector<float>& row, size_t valid) {
  std::vector<double> out(row.size(), 0.0);
  double sum = 0;
  for (size_t j = 0; j < valid; ++j) sum += std::exp(static_cast<double>(row[j]));
  for (size_t j = 0; j < valid; ++j) out[j] = std::exp(static_cast<double>(row[j])) / sum;
  return out;
}

std::vector<double> SiluMulRef(const std::vector<float>& gate, const std::vector<float>& up) {
  std::vector<double> out(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    out[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
  }
  return out;
}

double LogSumExpRef(const std::vector<float>& row) {
  long double sum = 0;
  for (float v : row) sum += std::exp(static_cast<long double>(v));
  return static_cast<double>(std::log(sum));
}

std::vector<double> AttentionHeadRef(const std::vector<float>& q, const std::vector<float>& k,
                                     const std::vector<float>& v, int T, int hd, double scale,
                                     double softcap, int window) {
  std::vector<double> out(static_cast<size_t>(T) * hd, 0.0);
  std::vector<double> p(static_cast<size_t>(T));
  for (int t = 0; t < T; ++t) {
    const int first = window > 0 ? std::max(0, t - window + 1) : 0;
    double mx = -1e300;
    for (int j = first; j <= t; ++j) {
      double s = 0;
      for (int d = 0; d < hd; ++d) s += static_cast<double>(q[t * hd + d]) * k[j * hd + d];
      s *= scale;
      if (softcap > 0) s = softcap * std::tanh(s / softcap);
      p[j] = s;
      mx = std::max(mx, s);
    }
    double z = 0;
    for (int j = first; j <= t; ++j) z += (p[j] = std::exp(p[j] - mx));
    for (int j = first; j <= t; ++j) {
      for (int d = 0; d < hd; ++d) out[t * hd + d] += p[j] / z * v[j * hd + d];
    }
  }
  return out;
}

}  // namespace impq::forward
