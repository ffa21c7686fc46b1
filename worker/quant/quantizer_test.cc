#include "worker/quant/quantizer.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace impq::quant {
namespace {

using ::testing::HasSubstr;

TEST(QuantizerTest, FactoryKnowsTheBackends) {
  for (const char* name : {"rtn", "hqq", "gptq"}) {
    auto q = MakeQuantizer(name);
    ASSERT_TRUE(q.ok()) << q.status();
    EXPECT_EQ((*q)->name(), name);
  }
  auto bad = MakeQuantizer("awq");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown quantizer \"awq\""));
  EXPECT_THAT(bad.status().message(), HasSubstr("rtn, hqq, gptq"));
}

TEST(QuantizerTest, EveryBadInputIsInvalidArgumentNamingTheProblem) {
  const int64_t rows = 3, cols = 5;
  std::vector<float> w(rows * cols, 0.25f);
  for (const char* name : {"rtn", "hqq", "gptq"}) {
    auto q = MakeQuantizer(name);
    ASSERT_TRUE(q.ok());
    auto expect_bad = [&](const float* data, int64_t r, int64_t c, const QuantConfig& cfg,
                          const char* needle) {
      auto res = (*q)->Quantize(data, r, c, cfg, nullptr);
      EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << name << " " << needle;
      EXPECT_THAT(res.status().message(), HasSubstr(needle)) << name;
    };
    QuantConfig cfg;
    cfg.bits = 5;
    expect_bad(w.data(), rows, cols, cfg, "bits = 5");
    cfg.bits = 0;
    expect_bad(w.data(), rows, cols, cfg, "bits = 0");
    cfg.bits = 16;
    expect_bad(w.data(), rows, cols, cfg, "bits = 16");
    cfg.bits = 2;
    cfg.group_size = 0;
    expect_bad(w.data(), rows, cols, cfg, "group_size = 0");
    cfg.group_size = -4;
    expect_bad(w.data(), rows, cols, cfg, "group_size = -4");
    cfg.group_size = 64;
    expect_bad(w.data(), 0, cols, cfg, "rows > 0 and cols > 0");
    expect_bad(w.data(), rows, -1, cfg, "rows > 0 and cols > 0");
    expect_bad(nullptr, rows, cols, cfg, "null");
    w[1 * cols + 2] = std::numeric_limits<float>::quiet_NaN();
    expect_bad(w.data(), rows, cols, cfg, "row 1 column 2");
    w[1 * cols + 2] = 0.25f;
    w[2 * cols + 4] = -std::numeric_limits<float>::infinity();
    expect_bad(w.data(), rows, cols, cfg, "row 2 column 4");
    w[2 * cols + 4] = 0.25f;
  }
  // Backend options.
  auto hqq = MakeQuantizer("hqq");
  ASSERT_TRUE(hqq.ok());
  QuantConfig cfg;
  cfg.bits = 4;
  cfg.hqq.lp_norm = 1.5;
  EXPECT_THAT((*hqq)->Quantize(w.data(), rows, cols, cfg, nullptr).status().message(),
              HasSubstr("lp_norm = 1.5"));
  cfg.hqq = HqqOptions{};
  cfg.hqq.iterations = 0;
  EXPECT_THAT((*hqq)->Quantize(w.data(), rows, cols, cfg, nullptr).status().message(),
              HasSubstr("iterations = 0"));
  cfg.hqq = HqqOptions{};
  cfg.hqq.beta = 0.0;
  EXPECT_THAT((*hqq)->Quantize(w.data(), rows, cols, cfg, nullptr).status().message(),
              HasSubstr("beta = 0"));
  cfg.hqq = HqqOptions{};
  cfg.hqq.kappa = 0.5;
  EXPECT_THAT((*hqq)->Quantize(w.data(), rows, cols, cfg, nullptr).status().message(),
              HasSubstr("kappa = 0.5"));
}

TEST(QuantizerTest, CallCounterCountsEveryCall) {
  auto q = MakeQuantizer("rtn");
  ASSERT_TRUE(q.ok());
  const std::vector<float> w(8, 1.0f);
  QuantConfig cfg;
  cfg.bits = 4;
  const int64_t before = QuantizeCallCount();
  EXPECT_TRUE((*q)->Quantize(w.data(), 2, 4, cfg, nullptr).ok());
  EXPECT_TRUE((*q)->Quantize(w.data(), 2, 4, cfg, nullptr).ok());
  cfg.bits = 5;
  EXPECT_FALSE((*q)->Quantize(w.data(), 2, 4, cfg, nullptr).ok());
  EXPECT_EQ(QuantizeCallCount() - before, 3);
}

}  // namespace
}  // namespace impq::quant
