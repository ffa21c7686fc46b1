#include "cli/report/markup.h"

#include <cmath>

#include "gtest/gtest.h"

namespace impq::cli::report {
namespace {

TEST(MarkupTest, EscapeMakesAnyTextSafeCharacterData) {
  EXPECT_EQ(Escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
  EXPECT_EQ(Escape("Δ φ ✓"), "Δ φ ✓");          // valid UTF-8 passes through
  EXPECT_EQ(Escape("tab\tnl\n"), "tab\tnl\n");  // allowed controls stay
  EXPECT_EQ(Escape(std::string("a\x01z\x1f", 4)), "a\xEF\xBF\xBDz\xEF\xBF\xBD");
  EXPECT_EQ(Escape("\xC3"), "\xEF\xBF\xBD");                                  // truncated sequence
  EXPECT_EQ(Escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  EXPECT_EQ(Escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(Escape("\xEF\xBF\xBF"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // U+FFFF
}

TEST(MarkupTest, NumberFormats) {
  EXPECT_EQ(Fixed(72.4583, 3), "72.458");
  EXPECT_EQ(Fixed(-0.00001, 3), "0.000");
  EXPECT_EQ(Fixed(-0.5, 1), "-0.5");
  EXPECT_EQ(Short(0.000123456), "0.000123");
  EXPECT_EQ(Short(72.4583), "72.5");
  EXPECT_EQ(Short(4.1493), "4.15");
  EXPECT_EQ(Short(384.07), "384");
  EXPECT_EQ(Short(1.2e-7, 2), "1.2e-07");
  EXPECT_EQ(Short(0), "0");
}

TEST(MarkupTest, LinearTicksAreRoundAndCoverTheRange) {
  for (auto [lo, hi] :
       {std::pair{-0.013, 0.31}, {0.0, 1.0}, {2.19, 3.56}, {5.0, 5.0}, {-3.0, -1.0}}) {
    const std::vector<double> t = LinearTicks(lo, hi, 6);
    ASSERT_GE(t.size(), 2u) << lo << " " << hi;
    EXPECT_LE(t.front(), lo);
    EXPECT_GE(t.back(), hi);
    EXPECT_LE(t.size(), 13u);
    const double step = t[1] - t[0];
    const double mantissa = step / std::pow(10.0, std::floor(std::log10(step)));
    EXPECT_TRUE(std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 ||
                std::fabs(mantissa - 5) < 1e-9)
        << step;
    for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, step * 1e-9);
  }
  EXPECT_EQ(LinearTicks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1}));
  EXPECT_EQ(LinearTicks(-0.013, 0.31, 6), (std::vector<double>{-0.1, 0, 0.1, 0.2, 0.3, 0.4}));
}

TEST(MarkupTest, LogTicks) {
  EXPECT_EQ(LogTicks(3.6, 512), (std::vector<double>{5, 10, 20, 50, 100, 200, 500}));
  EXPECT_EQ(LogTicks(4.1, 9.5), (std::vector<double>{5, 6, 7, 8, 9}));
}

TEST(MarkupTest, ColorScales) {
  EXPECT_EQ(Hex({255, 0, 16}), "#ff0010");
  EXPECT_EQ(Hex(Diverging(0)), "#f7f7f7");
  EXPECT_EQ(Hex(Diverging(-1)), "#2166ac");
  EXPECT_EQ(Hex(Diverging(1)), "#b2182b");
  EXPECT_EQ(Hex(Diverging(7)), "#b2182b");  // clamped
  // Symmetric in strength: as far from white on both sides.
  for (double t : {0.2, 0.5, 0.9}) {
    const Rgb a = Diverging(-t), b = Diverging(t), w = Diverging(0);
    const double da = std::fabs(a.r - w.r) + std::fabs(a.g - w.g) + std::fabs(a.b - w.b);
    const double db = std::fabs(b.r - w.r) + std::fabs(b.g - w.g) + std::fabs(b.b - w.b);
    EXPECT_LT(da, 1.6 * db);
    EXPECT_LT(db, 1.6 * da);
  }
  EXPECT_NE(CategoricalColor(0), CategoricalColor(12));
  EXPECT_EQ(CategoricalColor(13), CategoricalColor(0));
}

}  // namespace
}  // namespace impq::cli::report
