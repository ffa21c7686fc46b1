// GPTQ: fast (Cholesky, lazy blocks, BLAS) vs the column-by-column reference, and the
// property GPTQ exists for: lower layer-output error than RTN on correlated activations.
#include "worker/quant/gptq.h"

#include <cmath>
#include <vector>

#include "common/thread_pool.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/quant/reference.h"
#include "worker/quant/rtn.h"
#include "worker/quant/test_util.h"

namespace impq::quant {
namespace {

using ::testing::HasSubstr;
using testing::CorrelatedActivations;
using testing::OutputError;
using testing::RandomWeights;

CalibrationStats MakeCalib(const std::vector<float>& x, int64_t n, int64_t in) {
  CalibrationStats c(in);
  EXPECT_TRUE(c.Accumulate(x.data(), n, in).ok());
  return c;
}

PackedTensor MustGptq(const std::vector<float>& w, int64_t rows, int64_t cols,
                      const QuantConfig& cfg, const CalibrationStats& calib) {
  auto p = GptqQuantizer().Quantize(w.data(), rows, cols, cfg, &calib);
  EXPECT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(ValidatePacked(*p).ok());
  return *std::move(p);
}

// Tolerances for fast vs reference. Both run the same algorithm in double; they differ in
// operation order (Cholesky rows of H^-1 vs the explicit OBQ recurrence, lazy block updates
// vs immediate ones), so every updated weight differs by about cond(H) * cols * 2^-53
// (here <= ~1e-10 relative). Those doubles are then rounded to the f32 grid of the codes and
// to the f32 scale. A code can differ only when a weight lies within ~1e-10 of a rounding
// boundary (chance ~1e-10 per code, ~1e-6 over all codes tested): codes must be identical.
// A scale (max - min)/qmax rounded to f32 can differ by at most one f32 ulp when the double
// value straddles a rounding boundary: |ds| <= ulp(s). Zeros are integers from
// round(-min/s): identical. Everything else would be a bug.
void ExpectMatchesRef(const PackedTensor& p, const RefQuantized& ref, const char* what) {
  EXPECT_EQ(Unpack(p), ref.codes) << what;
  ASSERT_EQ(p.scales.size(), ref.scales.size());
  for (size_t i = 0; i < p.scales.size(); ++i) {
    const float ulp = std::nextafter(ref.scales[i], INFINITY) - ref.scales[i];
    EXPECT_LE(std::fabs(p.scales[i] - ref.scales[i]), ulp) << what << " scale " << i;
  }
  EXPECT_EQ(p.zeros, ref.zeros) << what;
}

TEST(GptqTest, MatchesColumnByColumnReference) {
  struct Case {
    int64_t rows, cols, group_size;
    int block_size;
  };
  // Ragged tails, G < B (groups inside blocks), G not dividing B (block cut before a group),
  // G > B (a group spanning blocks), tiny blocks.
  const Case cases[] = {{24, 96, 32, 128}, {10, 100, 48, 128}, {7, 70, 16, 5},
                        {9, 90, 64, 20},   {5, 33, 8, 1}};
  uint64_t seed = 1000;
  for (const Case& k : cases) {
    const int64_t n = 3 * k.cols;
    auto x = CorrelatedActivations(n, k.cols, ++seed);
    for (int64_t s = 0; s < n; ++s) x[s * k.cols + 3] = 0.0f;  // a dead input column
    const CalibrationStats calib = MakeCalib(x, n, k.cols);
    const auto w = RandomWeights(k.rows, k.cols, ++seed);
    for (int bits : {2, 3, 4, 8}) {
      for (bool act_order : {false, true}) {
        QuantConfig cfg;
        cfg.bits = bits;
        cfg.group_size = static_cast<int>(k.group_size);
        cfg.gptq.block_size = k.block_size;
        cfg.gptq.act_order = act_order;
        const PackedTensor p = MustGptq(w, k.rows, k.cols, cfg, calib);
        const RefQuantized ref = GptqQuantizeRef(w.data(), k.rows, k.cols, bits, k.group_size,
                                                 calib.Hessian(), cfg.gptq);
        ExpectMatchesRef(p, ref, act_order ? "act_order" : "in order");
      }
    }
  }
}

TEST(GptqTest, BlockSizeDoesNotChangeTheResult) {
  const int64_t rows = 12, cols = 80, n = 240;
  const CalibrationStats calib = MakeCalib(CorrelatedActivations(n, cols, 7), n, cols);
  const auto w = RandomWeights(rows, cols, 8);
  QuantConfig cfg;
  cfg.bits = 2;
  cfg.group_size = 16;
  cfg.gptq.block_size = 128;
  const PackedTensor base = MustGptq(w, rows, cols, cfg, calib);
  for (int b : {1, 3, 16, 17, 64}) {
    cfg.gptq.block_size = b;
    const PackedTensor p = MustGptq(w, rows, cols, cfg, calib);
    EXPECT_EQ(Unpack(p), Unpack(base)) << "block " << b;
    EXPECT_EQ(p.zeros, base.zeros) << "block " << b;
  }
}

TEST(GptqTest, LowerOutputErrorThanRtnOnCorrelatedActivations) {
  const int64_t rows = 64, cols = 128, n = 512;
  const auto x = CorrelatedActivations(n, cols, 21);
  const CalibrationStats calib = MakeCalib(x, n, cols);
  const auto w = RandomWeights(rows, cols, 22);
  for (int bits : {2, 3, 4, 8}) {
    QuantConfig cfg;
    cfg.bits = bits;
    cfg.group_size = 32;
    auto rtn = RtnQuantizer().Quantize(w.data(), rows, cols, cfg, nullptr);
    ASSERT_TRUE(rtn.ok());
    const double e_rtn = OutputError(x, n, w, Dequantize(*rtn), rows, cols);
    for (bool act_order : {false, true}) {
      cfg.gptq.act_order = act_order;
      const double e_gptq = OutputError(x, n, w, Dequantize(MustGptq(w, rows, cols, cfg, calib)),
                                        rows, cols);
      EXPECT_LT(e_gptq, e_rtn) << "bits " << bits << " act_order " << act_order;
    }
  }
}

TEST(GptqTest, DeadInputColumnsAreZeroed) {
  const int64_t rows = 8, cols = 40, n = 120;
  auto x = CorrelatedActivations(n, cols, 31);
  for (int64_t s = 0; s < n; ++s) x[s * cols + 5] = x[s * cols + 39] = 0.0f;
  const CalibrationStats calib = MakeCalib(x, n, cols);
  const auto w = RandomWeights(rows, cols, 32);
  QuantConfig cfg;
  cfg.bits = 2;
  cfg.group_size = 16;
  const auto w_hat = Dequantize(MustGptq(w, rows, cols, cfg, calib));
  for (int64_t r = 0; r < rows; ++r) {
    // The zeroed column is inside its group's [min, max], so it codes to exactly 0.
    EXPECT_EQ(w_hat[r * cols + 5], 0.0f);
    EXPECT_EQ(w_hat[r * cols + 39], 0.0f);
  }
}

TEST(GptqTest, ConstantRowsAndThreadCountIndependence) {
  const int64_t rows = 40, cols = 48, n = 100;
  const CalibrationStats calib = MakeCalib(CorrelatedActivations(n, cols, 41), n, cols);
  std::vector<float> c(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) c[r * cols + k] = 0.125f * static_cast<float>(r - 20);
  }
  QuantConfig cfg;
  cfg.bits = 2;
  cfg.group_size = 16;
  // Constant rows: the first group is exact, so no error is ever propagated.
  EXPECT_EQ(Dequantize(MustGptq(c, rows, cols, cfg, calib)), c);

  const auto w = RandomWeights(rows, cols, 42);
  const PackedTensor a = MustGptq(w, rows, cols, cfg, calib);
  ThreadPool three(3);
  cfg.pool = &three;
  const PackedTensor b = MustGptq(w, rows, cols, cfg, calib);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  EXPECT_EQ(a.zeros, b.zeros);
}

TEST(GptqTest, BadInputs) {
  const int64_t rows = 2, cols = 8;
  const std::vector<float> w(rows * cols, 0.5f);
  QuantConfig cfg;
  cfg.bits = 4;
  GptqQuantizer gptq;
  auto no_calib = gptq.Quantize(w.data(), rows, cols, cfg, nullptr);
  EXPECT_EQ(no_calib.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_calib.status().message(),
              HasSubstr("GPTQ needs calibration activations (--calib)"));

  CalibrationStats wrong(9);
  const std::vector<float> x(9, 1.0f);
  ASSERT_TRUE(wrong.Accumulate(x.data(), 1, 9).ok());
  EXPECT_THAT(gptq.Quantize(w.data(), rows, cols, cfg, &wrong).status().message(),
              HasSubstr("9 features"));

  CalibrationStats empty(cols);
  EXPECT_THAT(gptq.Quantize(w.data(), rows, cols, cfg, &empty).status().message(),
              HasSubstr("0 samples"));

  CalibrationStats ok(cols);
  ASSERT_TRUE(ok.Accumulate(std::vector<float>(cols, 1.0f).data(), 1, cols).ok());
  cfg.gptq.block_size = 0;
  EXPECT_THAT(gptq.Quantize(w.data(), rows, cols, cfg, &ok).status().message(),
              HasSubstr("block_size = 0"));
  cfg.gptq.block_size = 128;
  cfg.gptq.damp_percent = -1.0;
  EXPECT_THAT(gptq.Quantize(w.data(), rows, cols, cfg, &ok).status().message(),
              HasSubstr("damp_percent = -1"));
  cfg.gptq.damp_percent = 0.01;
  EXPECT_TRUE(gptq.Quantize(w.data(), rows, cols, cfg, &ok).ok());

  // `ok` saw one all-ones row: H = 2 * ones, rank 1. Undamped it is singular.
  cfg.gptq.damp_percent = 0.0;
  EXPECT_EQ(gptq.Quantize(w.data(), rows, cols, cfg, &ok).status().code(),
            absl::StatusCode::kFailedPrecondition);
  cfg.gptq.damp_percent = 0.01;
  EXPECT_THAT(GptqQuantizeWithHessian(w.data(), rows, cols, std::vector<double>(5), cfg)
                  .status()
                  .message(),
              HasSubstr("expected cols^2 = 64"));
  std::vector<double> h = ok.Hessian();
  h[9] = NAN;
  EXPECT_THAT(GptqQuantizeWithHessian(w.data(), rows, cols, h, cfg).status().message(),
              HasSubstr("Hessian entry (1, 1) is nan"));
}

}  // namespace
}  // namespace impq::quant
