#include "worker/quant/calibration.h"

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/quant/test_util.h"

namespace impq::quant {
namespace {

using ::testing::HasSubstr;

TEST(CalibrationStatsTest, HessianMatchesNaiveSumAndIsBatchIndependent) {
  const int64_t n = 700, in = 24;  // n > one internal chunk (256 rows)
  const auto x = testing::CorrelatedActivations(n, in, 5);
  CalibrationStats one(in), split(in), a(in), b(in);
  ASSERT_TRUE(one.Accumulate(x.data(), n, in).ok());
  ASSERT_TRUE(split.Accumulate(x.data(), 1, in).ok());
  ASSERT_TRUE(split.Accumulate(x.data() + in, 300, in).ok());
  ASSERT_TRUE(split.Accumulate(x.data() + 301 * in, n - 301, in).ok());
  ASSERT_TRUE(a.Accumulate(x.data(), 350, in).ok());
  ASSERT_TRUE(b.Accumulate(x.data() + 350 * in, n - 350, in).ok());
  ASSERT_TRUE(a.Merge(b).ok());
  EXPECT_EQ(one.num_samples(), n);
  EXPECT_EQ(split.num_samples(), n);
  EXPECT_EQ(a.num_samples(), n);
  const auto h = one.Hessian(), hs = split.Hessian(), hm = a.Hessian();
  for (int64_t i = 0; i < in; ++i) {
    for (int64_t j = 0; j < in; ++j) {
      double naive = 0.0, abs_sum = 0.0;
      for (int64_t s = 0; s < n; ++s) {
        const double p = static_cast<double>(x[s * in + i]) * x[s * in + j];
        naive += p;
        abs_sum += std::fabs(p);
      }
      naive *= 2.0 / n;
      abs_sum *= 2.0 / n;
      // Products of floats are exact in double; only the n additions round, so any two
      // summation orders agree within n * 2^-53 * sum|x_i x_j|.
      const double tol = static_cast<double>(n) * 0x1p-53 * abs_sum;
      EXPECT_NEAR(h[i * in + j], naive, tol);
      EXPECT_NEAR(hs[i * in + j], naive, tol);
      EXPECT_NEAR(hm[i * in + j], naive, tol);
      EXPECT_EQ(h[i * in + j], h[j * in + i]);
    }
  }
}

TEST(CalibrationStatsTest, BadInputs) {
  CalibrationStats c(3);
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f, NAN, 6.0f};
  EXPECT_THAT(c.Accumulate(x.data(), 2, 4).message(), HasSubstr("expected 3"));
  const absl::Status nan = c.Accumulate(x.data(), 2, 3);
  EXPECT_EQ(nan.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(nan.message(), HasSubstr("row 1 column 1"));
  EXPECT_EQ(c.num_samples(), 0);
  CalibrationStats other(4);
  EXPECT_EQ(c.Merge(other).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace impq::quant
