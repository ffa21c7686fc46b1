#include "bench/gpu_projection.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace impq::bench {
namespace {

using ::testing::HasSubstr;

TEST(GpuProjectionTest, ParsesAMeasuredScalingFigure) {
  absl::StatusOr<ScalingFigure> f = ParseScaling("2:1.79");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->workers, 2);
  EXPECT_EQ(f->speedup, 1.79);
  EXPECT_EQ(f->Efficiency(), 1.79 / 2);
  f = ParseScaling("4:4");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->Efficiency(), 1.0);
}

TEST(GpuProjectionTest, RefusesWhatIsNoScalingFigureNamingIt) {
  for (const char* text : {"", "1.79", "1:1", "2.5:2", "x:1", "2:", "2:0", "2:-1", "2:2.1",
                           "2:nan"}) {
    absl::StatusOr<ScalingFigure> f = ParseScaling(text);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(f.status().message(), HasSubstr("--scaling \"" + std::string(text) + "\""));
  }
}

TEST(GpuProjectionTest, OneGpuRunsEveryWalkAndMoreKeepTheMeasuredEfficiency) {
  const ScalingFigure s{2, 1.5};  // efficiency 0.75
  // 100 walks of 12 s: 1200 s on one GPU whatever the figure.
  EXPECT_EQ(ProjectedSeconds(12.0, 100, 1, s), 1200.0);
  // 8 GPUs at efficiency 0.75: a speed-up of 6.
  EXPECT_DOUBLE_EQ(ProjectedSeconds(12.0, 100, 8, s), 200.0);
  // At the measured point itself the projection is the measurement: 2 workers, 1.5x.
  EXPECT_DOUBLE_EQ(ProjectedSeconds(12.0, 100, 2, s), 1200.0 / 1.5);
  // Perfect scaling divides by the GPU count.
  EXPECT_DOUBLE_EQ(ProjectedSeconds(12.0, 100, 8, ScalingFigure{2, 2.0}), 150.0);
  EXPECT_EQ(ProjectedSeconds(12.0, 0, 8, s), 0.0);
}

}  // namespace
}  // namespace impq::bench
