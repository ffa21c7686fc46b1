// RTN and HQQ: fast paths vs scalar references, error properties, exact cases.
#include <cmath>
#include <limits>
#include <vector>

#include "common/rng.h"
#include "common/thread_pool.h"
#include "gtest/gtest.h"
#include "worker/quant/hqq.h"
#include "worker/quant/reference.h"
#include "worker/quant/rtn.h"
#include "worker/quant/test_util.h"

namespace impq::quant {
namespace {

using testing::RandomWeights;
using testing::SquaredError;

struct Shape {
  int64_t rows, cols, group_size;
};
// Includes ragged tails (cols not a multiple of G), G > cols, and G = 1.
const Shape kShapes[] = {{37, 150, 64}, {16, 256, 64}, {5, 100, 32}, {3, 40, 128},
                         {4, 17, 1},    {9, 130, 48}};

PackedTensor MustQuantize(const Quantizer& q, const std::vector<float>& w, int64_t rows,
                          int64_t cols, const QuantConfig& cfg) {
  auto p = q.Quantize(w.data(), rows, cols, cfg, nullptr);
  EXPECT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(ValidatePacked(*p).ok());
  return *std::move(p);
}

// Fast vs reference. Both evaluate the same IEEE-754 operations in the same order on every
// value that matters (min/max, the double scale/zero rule, the f32 code formula; for HQQ the
// per-element double residual/shrink and the column-order double sums of each iteration), and
// the code formula itself is checked against libm rounding in packed_tensor_test. So the
// derived tolerance is zero: codes, scales and zeros must be bit-identical. Any nonzero
// difference is a bug (indexing, ragged tail, early-stop logic), not rounding.
TEST(RtnTest, MatchesReferenceBitForBit) {
  RtnQuantizer rtn;
  uint64_t seed = 100;
  for (const Shape& s : kShapes) {
    for (int bits : {2, 3, 4, 8}) {
      const auto w = RandomWeights(s.rows, s.cols, ++seed);
      QuantConfig cfg;
      cfg.bits = bits;
      cfg.group_size = static_cast<int>(s.group_size);
      const PackedTensor p = MustQuantize(rtn, w, s.rows, s.cols, cfg);
      const RefQuantized ref = RtnQuantizeRef(w.data(), s.rows, s.cols, bits, s.group_size);
      EXPECT_EQ(Unpack(p), ref.codes);
      EXPECT_EQ(p.scales, ref.scales);
      EXPECT_EQ(p.zeros, ref.zeros);
      EXPECT_EQ(Dequantize(p), DequantizeRef(ref));
      for (float z : p.zeros) EXPECT_EQ(z, std::nearbyint(z)) << "RTN zero must be an integer";
    }
  }
}

TEST(HqqTest, MatchesReferenceBitForBit) {
  HqqQuantizer hqq;
  uint64_t seed = 200;
  for (const Shape& s : kShapes) {
    for (int bits : {2, 3, 4, 8}) {
      const auto w = RandomWeights(s.rows, s.cols, ++seed);
      QuantConfig cfg;
      cfg.bits = bits;
      cfg.group_size = static_cast<int>(s.group_size);
      const PackedTensor p = MustQuantize(hqq, w, s.rows, s.cols, cfg);
      const RefQuantized ref =
          HqqQuantizeRef(w.data(), s.rows, s.cols, bits, s.group_size, cfg.hqq);
      EXPECT_EQ(Unpack(p), ref.codes);
      EXPECT_EQ(p.scales, ref.scales);
      EXPECT_EQ(p.zeros, ref.zeros);
    }
  }
}

TEST(HqqTest, LpErrorNeverAboveRtnAndUsuallyBelow) {
  const int64_t rows = 64, cols = 256, g = 64;
  const auto w = RandomWeights(rows, cols, 300);
  for (int bits : {2, 3, 4, 8}) {
    QuantConfig cfg;
    cfg.bits = bits;
    const PackedTensor pr = MustQuantize(RtnQuantizer(), w, rows, cols, cfg);
    const PackedTensor ph = MustQuantize(HqqQuantizer(), w, rows, cols, cfg);
    const auto wr = Dequantize(pr), wh = Dequantize(ph);
    const double p = cfg.hqq.lp_norm;
    double total_rtn = 0.0, total_hqq = 0.0;
    bool any_zero_non_integer = false;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c0 = 0; c0 < cols; c0 += g) {
        const size_t o = static_cast<size_t>(r * cols + c0);
        const double er = LpError(w.data() + o, wr.data() + o, g, p);
        const double eh = LpError(w.data() + o, wh.data() + o, g, p);
        // Exact per group: HQQ starts at RTN's zero and keeps the best iterate.
        EXPECT_LE(eh, er) << "row " << r << " col " << c0;
        total_rtn += er;
        total_hqq += eh;
      }
    }
    for (float z : ph.zeros) any_zero_non_integer |= (z != std::nearbyint(z));
    EXPECT_TRUE(any_zero_non_integer) << "HQQ should produce float zeros";
    EXPECT_LT(total_hqq, total_rtn) << "bits=" << bits;
  }
}

TEST(HqqTest, OptimizeGroupStopsAtOnceOnExactGroup) {
  // A group already on the grid has zero error at iteration 0; the zero stays RTN's.
  const std::vector<float> w = {-0.5f, -0.25f, 0.0f, 0.25f};
  const GroupParams init = MinMaxGroupParams(-0.5, 0.25, 3);
  EXPECT_EQ(init.scale, 0.25f);
  EXPECT_EQ(init.zero, 2.0f);
  const GroupParams out = HqqOptimizeGroup(w.data(), 4, init, 3, HqqOptions{});
  EXPECT_EQ(out.zero, init.zero);
  EXPECT_EQ(GroupLpError(w.data(), 4, out, 3, 0.7), 0.0);
}

// RTN's error bound, derived: with the min/max scale s and the integer zero z = rint(-lo/s),
// lo/s + z and hi/s + z lie within 1/2 of 0 and max_code, so clamping moves a code by at
// most 1/2 and rounding by at most 1/2: |w - (q - z) s| <= s/2 in exact arithmetic. The f32
// evaluation of t = w/s + z adds at most (|w/s| + |z|) eps (two roundings) in code units and
// the dequantization (q - z) * s one rounding of |w_hat| eps/2; the tolerance below is that
// sum, doubled. Checked at every width, on random and heavy-tailed weights.
TEST(RtnTest, ErrorIsAtMostHalfAStepAtEveryWidth) {
  RtnQuantizer rtn;
  for (int bits : {2, 3, 4, 8}) {
    for (const Shape& s : kShapes) {
      auto w = RandomWeights(s.rows, s.cols, 700 + bits);
      for (size_t i = 0; i < w.size(); i += 7) w[i] *= 50.0f;  // outliers widen some groups
      QuantConfig cfg;
      cfg.bits = bits;
      cfg.group_size = static_cast<int>(s.group_size);
      const PackedTensor p = MustQuantize(rtn, w, s.rows, s.cols, cfg);
      const std::vector<float> wh = Dequantize(p);
      const double eps = std::numeric_limits<float>::epsilon();
      for (int64_t r = 0; r < s.rows; ++r) {
        for (int64_t c = 0; c < s.cols; ++c) {
          const double x = w[r * s.cols + c], y = wh[r * s.cols + c];
          const double step = p.Scale(r, c), zero = p.Zero(r, c);
          const double tol =
              2.0 * ((std::abs(x) / step + std::abs(zero)) * eps * step + std::abs(y) * eps / 2);
          ASSERT_LE(std::abs(x - y), step / 2 + tol)
              << bits << " bits, row " << r << " col " << c << " step " << step;
        }
      }
    }
  }
}

TEST(QuantTest, ErrorFallsWithEveryWidth) {
  // Squared error strictly decreases along 2 < 3 < 4 < 8 bits, for RTN and HQQ; at 8 bits it
  // is below 1/100 of the 4-bit error (the step is 17x finer).
  const int64_t rows = 32, cols = 192;
  const auto w = RandomWeights(rows, cols, 410);
  for (const char* name : {"rtn", "hqq"}) {
    auto q = MakeQuantizer(name);
    ASSERT_TRUE(q.ok());
    std::vector<double> err;
    for (int bits : {2, 3, 4, 8}) {
      QuantConfig cfg;
      cfg.bits = bits;
      err.push_back(SquaredError(w, Dequantize(MustQuantize(**q, w, rows, cols, cfg))));
    }
    EXPECT_LT(err[1], err[0]) << name;
    EXPECT_LT(err[2], err[1]) << name;
    EXPECT_LT(err[3] * 100, err[2]) << name;
  }
}

TEST(QuantTest, FourBitsBeatTwoBits) {
  const int64_t rows = 32, cols = 192;
  const auto w = RandomWeights(rows, cols, 400);
  for (const char* name : {"rtn", "hqq"}) {
    auto q = MakeQuantizer(name);
    ASSERT_TRUE(q.ok());
    QuantConfig c2, c4;
    c2.bits = 2;
    c4.bits = 4;
    const double e2 = SquaredError(w, Dequantize(MustQuantize(**q, w, rows, cols, c2)));
    const double e4 = SquaredError(w, Dequantize(MustQuantize(**q, w, rows, cols, c4)));
    EXPECT_LT(e4, e2) << name;
    EXPECT_LT(e4 * 10, e2) << name << ": 4 bits should be far better";
  }
}

// Weights built on the grid: every group holds (q - z) * s with s a power of two, z an
// integer and both codes 0 and 2^b - 1 present, so min/max recover s and z exactly and every
// backend must reproduce W bit for bit.
std::vector<float> OnGridWeights(int64_t rows, int64_t cols, int64_t g, int bits, uint64_t seed) {
  Rng rng(seed);
  const int max_code = (1 << bits) - 1;
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += g) {
      const float s = std::ldexp(1.0f, -3 - static_cast<int>(rng.Below(6)));
      const float z = static_cast<float>(rng.Below(max_code + 1));
      const int64_t n = std::min(g, cols - c0);
      for (int64_t k = 0; k < n; ++k) {
        const int q = k == 0 ? 0 : (k == 1 ? max_code : static_cast<int>(rng.Below(max_code + 1)));
        w[r * cols + c0 + k] = (static_cast<float>(q) - z) * s;
      }
    }
  }
  return w;
}

TEST(QuantTest, ValuesOnTheGridRoundTripExactly) {
  for (int bits : {2, 3, 4, 8}) {
    const int64_t rows = 6, cols = 70, g = 16;  // ragged last group of 6 columns
    const auto w = OnGridWeights(rows, cols, g, bits, 500 + bits);
    QuantConfig cfg;
    cfg.bits = bits;
    cfg.group_size = g;
    for (const char* name : {"rtn", "hqq"}) {
      auto q = MakeQuantizer(name);
      ASSERT_TRUE(q.ok());
      EXPECT_EQ(Dequantize(MustQuantize(**q, w, rows, cols, cfg)), w) << name << " " << bits;
    }
  }
}

TEST(QuantTest, ConstantAndZeroGroupsAreExact) {
  // Row 0 all zeros, row 1 constant positive, row 2 constant negative, row 3 a tiny range
  // (scale would underflow): every group is degenerate.
  const int64_t rows = 4, cols = 10;
  std::vector<float> w(rows * cols);
  for (int64_t c = 0; c < cols; ++c) {
    w[0 * cols + c] = 0.0f;
    w[1 * cols + c] = 0.37f;
    w[2 * cols + c] = -1234.5f;
    w[3 * cols + c] = 1e-40f;  // subnormal, constant
  }
  for (int bits : {2, 3, 4, 8}) {
    for (const char* name : {"rtn", "hqq"}) {
      auto q = MakeQuantizer(name);
      ASSERT_TRUE(q.ok());
      QuantConfig cfg;
      cfg.bits = bits;
      cfg.group_size = 4;
      const PackedTensor p = MustQuantize(**q, w, rows, cols, cfg);
      EXPECT_EQ(Dequantize(p), w) << name << " " << bits;
      for (float s : p.scales) EXPECT_GT(s, 0.0f);
    }
  }
  EXPECT_EQ(MinMaxGroupParams(0.0, 0.0, 3).scale, 1.0f);
  EXPECT_EQ(MinMaxGroupParams(-2.0, -2.0, 15).zero, 1.0f);
}

TEST(QuantTest, ResultsDoNotDependOnThreadCount) {
  const int64_t rows = 70, cols = 100;
  const auto w = RandomWeights(rows, cols, 600);
  ThreadPool one(1), three(3);
  for (const char* name : {"rtn", "hqq"}) {
    auto q = MakeQuantizer(name);
    ASSERT_TRUE(q.ok());
    QuantConfig cfg;
    cfg.bits = 2;
    cfg.group_size = 32;
    const PackedTensor a = MustQuantize(**q, w, rows, cols, cfg);
    cfg.pool = &one;
    const PackedTensor b = MustQuantize(**q, w, rows, cols, cfg);
    cfg.pool = &three;
    const PackedTensor c = MustQuantize(**q, w, rows, cols, cfg);
    EXPECT_EQ(a.codes, b.codes);
    EXPECT_EQ(a.codes, c.codes);
    EXPECT_EQ(a.scales, c.scales);
    EXPECT_EQ(a.zeros, c.zeros);
  }
}

}  // namespace
}  // namespace impq::quant
