// Each CPU kernel against its double-precision scalar reference (kernels_ref.h).
// Tolerances are derived from float32's unit roundoff u = 2^-24 and the number of rounding
// steps in each kernel, as noted per test.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/rng.h"
#include "gtest/gtest.h"
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

}  // namespace
}  // namespace impq::forward
