// Each CPU kernel against its double-precision scalar reference (kernels_ref.h).
// Tolerances are derived from float32's unit roundoff u = 2^-24 and the number of rounding
// steps in each kernel, as noted per test.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"
#include "worker/forward/attention_kernel.h"
#include "worker/forward/kernels.h"
#include "worker/forward/kernels_ref.h"

namespace impq::forward {
namespace {

constexpr double kU = 0x1p-24;  // float32 unit roundoff

std::vector<float> RandomVec(Rng& rng, size_t n, double scale) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(scale * rng.Normal());
  return v;
}

TEST(KernelsTest, FastExpWithinTwoUlpOfExp) {
  // Dense sweep of the range the kernels use, plus the clamps.
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.00731) {
    const float xf = static_cast<float>(x);
    const double ref = std::exp(static_cast<double>(xf));
    const double rel = std::abs(FastExp(xf) - ref) / ref;
    worst = std::max(worst, rel);
  }
  EXPECT_LE(worst, 2 * 2 * kU) << "max relative error";  // 2 ulp = 2 · 2u
  EXPECT_EQ(FastExp(0.0f), 1.0f);
  EXPECT_GT(FastExp(-1000.0f), 0.0f);
  EXPECT_LT(FastExp(-1000.0f), 1e-37f);
  EXPECT_TRUE(std::isfinite(FastExp(1000.0f)));
}

TEST(KernelsTest, RmsNormMatchesReference) {
  Rng rng(1);
  for (size_t n : {1u, 7u, 64u, 768u}) {
    auto x = RandomVec(rng, n, 3.0), w = RandomVec(rng, n, 1.0);
    std::vector<float> out(n);
    RmsNormRow(x.data(), w.data(), static_cast<int64_t>(n), 1e-5f, out.data());
    auto ref = RmsNormRef(x, w, 1e-5);
    // Sum in double; then the inverse norm rounded once and two float products: <= 4u relative.
    for (size_t i = 0; i < n; ++i) EXPECT_NEAR(out[i], ref[i], 4 * kU * std::abs(ref[i]) + 1e-30) << n << " " << i;
  }
}

TEST(KernelsTest, RopeMatchesReferenceBothStyles) {
  Rng rng(2);
  const int hd = 16;
  for (bool interleaved : {true, false}) {
    for (int pos : {0, 1, 17, 511}) {
      auto v = RandomVec(rng, hd, 1.0);
      std::vector<float> cs(hd / 2), sn(hd / 2);
      for (int i = 0; i < hd / 2; ++i) {
        const double angle = pos * std::pow(10000.0, -2.0 * i / hd);
        cs[i] = static_cast<float>(std::cos(angle));
        sn[i] = static_cast<float>(std::sin(angle));
      }
      std::vector<float> got = v;
      RopeHead(got.data(), hd, cs.data(), sn.data(), interleaved);
      auto ref = RopeRef(v, pos, 10000.0, interleaved);
      // cos/sin rounded (u each), two products and a sum (3u): 5u · (|a| + |b|) bounds it.
      for (int i = 0; i < hd / 2; ++i) {
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + hd / 2;
        const double tol = 5 * kU * (std::abs(v[a]) + std::abs(v[b]));
        EXPECT_NEAR(got[a], ref[a], tol);
        EXPECT_NEAR(got[b], ref[b], tol);
      }
    }
  }
}

TEST(KernelsTest, SoftmaxPrefixMatchesReferenceAndZeroesTheRest) {
  Rng rng(3);
  for (size_t n : {1u, 5u, 64u, 300u}) {
    for (size_t valid : {size_t{1}, (n + 1) / 2, n}) {
      auto row = RandomVec(rng, n, 4.0);
      auto got = row;
      SoftmaxPrefixRow(got.data(), static_cast<int64_t>(valid), static_cast<int64_t>(n));
      auto ref = SoftmaxPrefixRef(row, valid);
      // Each exp within 2 ulp (4u), a float sum of `valid` terms (valid·u), a division:
      // (valid + 6)u relative.
      for (size_t j = 0; j < n; ++j) {
        EXPECT_NEAR(got[j], ref[j], (static_cast<double>(valid) + 6) * kU * ref[j] + 1e-30);
        if (j >= valid) {
          EXPECT_EQ(got[j], 0.0f);
        }
      }
    }
  }
}

TEST(KernelsTest, SiluMulMatchesReference) {
  Rng rng(4);
  auto g = RandomVec(rng, 1000, 5.0), u = RandomVec(rng, 1000, 1.0);
  auto got = g;
  SiluMul(got.data(), u.data(), 1000);
  auto ref = SiluMulRef(g, u);
  // exp (4u, entering through 1 + e^-g with weight <= 1), an add, a division, a product: 8u.
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(got[i], ref[i], 8 * kU * std::abs(ref[i]) + 1e-30);
}

TEST(KernelsTest, LogSumExpMatchesReference) {
  Rng rng(5);
  for (size_t n : {1u, 2u, 512u, 32000u}) {
    auto row = RandomVec(rng, n, 6.0);
    const double got = LogSumExp(row.data(), static_cast<int64_t>(n));
    const double ref = LogSumExpRef(row);
    double spread = 0;
    for (float x : row) spread = std::max(spread, std::abs(static_cast<double>(x)));
    // row - max is rounded (u · 2·spread absolute in the exponent), exp adds 4u relative, the
    // double sum and log are exact to float precision: |Δ| <= u · (2·spread + 5).
    EXPECT_NEAR(got, ref, kU * (2 * spread + 5)) << n;
  }
}

TEST(KernelsTest, FastExpFmaWithinTwoUlpOfExp) {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.00731) {
    const float xf = static_cast<float>(x);
    const double ref = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(FastExpFma(xf) - ref) / ref);
  }
  EXPECT_LE(worst, 2 * 2 * kU) << "max relative error";
  EXPECT_EQ(FastExpFma(0.0f), 1.0f);
  EXPECT_GT(FastExpFma(-1000.0f), 0.0f);
  EXPECT_TRUE(std::isfinite(FastExpFma(1000.0f)));
}

// CausalAttentionHead against the double reference, for the head dims with a specialised path
// (8, 16), a generic one (5, 12: not multiples of 8, and below 16 lanes), windows and
// soft-caps. The bound, per output, follows the kernel's rounding steps: each score is a fused
// sum of hd + 1 products (the scale folded into q), so |Δs_j| <= (hd + 2)·u·S_j with
// S_j = Σ_d |scale·q_d·k_dj| (plus 4u·|s_j| through a soft-cap); the exponent s_j − max moves
// by twice the largest score error plus its own rounding u·|s_j − max|, and FastExpFma adds
// 4u; the key sums (Σ e, Σ e·v) round at most n times (n visible keys) and the final product
// and division twice. So |Δout_d| <= (2·ε + (2n + 4)·u) · Σ_j p_j·|v_dj|, ε the largest
// relative error of an e_j.
TEST(KernelsTest, CausalAttentionHeadMatchesReference) {
  Rng rng(6);
  struct Case {
    int T, hd, window;
    float softcap;
  };
  for (const Case& c : {Case{1, 8, 0, 0}, Case{70, 8, 0, 0}, Case{300, 8, 0, 0},
                        Case{100, 16, 0, 0}, Case{90, 5, 0, 0}, Case{64, 12, 0, 0},
                        Case{120, 8, 33, 0}, Case{80, 16, 0, 30.0f}}) {
    const size_t n = static_cast<size_t>(c.T) * c.hd;
    auto q = RandomVec(rng, n, 1.5), k = RandomVec(rng, n, 1.5), v = RandomVec(rng, n, 1.0);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.hd));
    // The kernel reads keys and values transposed, [hd][T].
    // ld >= T + 15; the padding holds large finite values, which must not leak in.
    const int ld = c.T + 17;
    std::vector<float> kt(static_cast<size_t>(ld) * c.hd, 1e4f), vt(kt.size(), 1e4f), out(n);
    std::vector<float> scratch(static_cast<size_t>(c.T) + 15);
    for (int t = 0; t < c.T; ++t) {
      for (int d = 0; d < c.hd; ++d) {
        kt[d * ld + t] = k[t * c.hd + d];
        vt[d * ld + t] = v[t * c.hd + d];
      }
    }
    CausalAttentionHead(q.data(), c.hd, kt.data(), vt.data(), ld, c.T, c.hd, scale, c.softcap,
                        c.window, out.data(), c.hd, scratch.data());
    const auto ref = AttentionHeadRef(q, k, v, c.T, c.hd, scale, c.softcap, c.window);
    for (int t = 0; t < c.T; ++t) {
      const int first = c.window > 0 ? std::max(0, t - c.window + 1) : 0;
      const int keys = t + 1 - first;
      // Reference scores and weights, for the bound.
      std::vector<double> s(static_cast<size_t>(keys)), big(static_cast<size_t>(keys));
      double mx = -1e300, worst_s = 0;
      for (int j = 0; j < keys; ++j) {
        double dot = 0, abs_sum = 0;
        for (int d = 0; d < c.hd; ++d) {
          const double x = static_cast<double>(scale) * q[t * c.hd + d] * k[(first + j) * c.hd + d];
          dot += x;
          abs_sum += std::abs(x);
        }
        double err = (c.hd + 2) * kU * abs_sum;
        if (c.softcap > 0) {
          dot = c.softcap * std::tanh(dot / c.softcap);
          err += 4 * kU * std::abs(dot);
        }
        s[j] = dot;
        worst_s = std::max(worst_s, err);
        mx = std::max(mx, dot);
      }
      double eps = 0, z = 0;
      for (int j = 0; j < keys; ++j) {
        eps = std::max(eps, 2 * worst_s + kU * std::abs(s[j] - mx) + 4 * kU);
        z += std::exp(s[j] - mx);
      }
      for (int d = 0; d < c.hd; ++d) {
        double weighted = 0;
        for (int j = 0; j < keys; ++j) {
          weighted += std::exp(s[j] - mx) / z * std::abs(v[(first + j) * c.hd + d]);
        }
        const double tol = (2 * eps + (2.0 * keys + 4) * kU) * weighted + 1e-30;
        ASSERT_NEAR(out[t * c.hd + d], ref[t * c.hd + d], tol)
            << "T=" << c.T << " hd=" << c.hd << " window=" << c.window << " t=" << t << " d=" << d;
      }
    }
  }
}

}  // namespace
}  // namespace impq::forward
