#include "cli/report/markup.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_format.h"

namespace impq::cli::report {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// Length of the valid UTF-8 sequence at s[i] (1–4), or 0 if it is not one. Overlong forms,
// surrogates and code points above U+10FFFF are invalid.
size_t Utf8Length(absl::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  const uint8_t c = byte(i);
  if (c < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if ((c & 0xE0) == 0xC0) {
    len = 2;
    cp = c & 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3;
    cp = c & 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  // U+FFFE and U+FFFF are not XML characters either.
  if (cp == 0xFFFE || cp == 0xFFFF) return 0;
  return len;
}

}  // namespace

std::string Escape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const char c = text[i];
    switch (c) {
      case '&':
        out += "&amp;";
        ++i;
        continue;
      case '<':
        out += "&lt;";
        ++i;
        continue;
      case '>':
        out += "&gt;";
        ++i;
        continue;
      case '"':
        out += "&quot;";
        ++i;
        continue;
      case '\'':
        out += "&#39;";
        ++i;
        continue;
      default:
        break;
    }
    const auto u = static_cast<uint8_t>(c);
    if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') {
      out += kReplacement;
      ++i;
      continue;
    }
    const size_t len = Utf8Length(text, i);
    if (len == 0) {
      out += kReplacement;
      ++i;
      continue;
    }
    out.append(text.data() + i, len);
    i += len;
  }
  return out;
}

std::string Fixed(double value, int decimals) {
  std::string s = absl::StrFormat("%.*f", decimals, value);
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

std::string Short(double value, int significant) {
  const double a = std::fabs(value);
  if (a == 0) return "0";
  if (a >= 1e-4 && a < 1e6) {
    const int magnitude = static_cast<int>(std::floor(std::log10(a)));
    return Fixed(value, std::max(0, significant - 1 - magnitude));
  }
  return absl::StrFormat("%.*e", significant - 1, value);
}

std::vector<double> LinearTicks(double lo, double hi, int target) {
  if (hi <= lo) {
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const int exponent = static_cast<int>(std::floor(std::log10(raw)));
  double mantissa = 10;
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * std::pow(10.0, exponent) >= raw) {
      mantissa = m;
      break;
    }
  }
  const double step = mantissa * std::pow(10.0, exponent);
  // Tick k is (first + k)·mantissa·10^exponent, computed as an integer multiple divided by a
  // power of ten (never accumulated), so 0.6 is 0.6 and not 0.6000000000000001.
  const double scale = std::pow(10.0, std::abs(exponent));
  auto tick = [&](double k) { return exponent < 0 ? k * mantissa / scale : k * mantissa * scale; };
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9);
  for (int k = 0; k < 1000; ++k) {
    ticks.push_back(tick(first + k));
    if (ticks.back() >= hi - step * 1e-9) break;
  }
  return ticks;
}

std::vector<double> LogTicks(double lo, double hi) {
  std::vector<double> ticks;
  const int k_lo = static_cast<int>(std::floor(std::log10(lo)));
  const int k_hi = static_cast<int>(std::ceil(std::log10(hi)));
  auto collect = [&](std::initializer_list<double> mantissas) {
    ticks.clear();
    for (int k = k_lo; k <= k_hi; ++k) {
      for (double m : mantissas) {
        const double t = m * std::pow(10.0, k);
        if (t >= lo * (1 - 1e-12) && t <= hi * (1 + 1e-12)) ticks.push_back(t);
      }
    }
  };
  collect({1, 2, 5});
  if (ticks.size() < 3) collect({1, 2, 3, 4, 5, 6, 7, 8, 9});
  return ticks;
}

std::string Hex(Rgb c) {
  auto channel = [](double v) { return static_cast<int>(std::lround(std::clamp(v, 0.0, 255.0))); };
  return absl::StrFormat("#%02x%02x%02x", channel(c.r), channel(c.g), channel(c.b));
}

Rgb Diverging(double t) {
  // ColorBrewer's RdBu end and middle colors, interpolated linearly in RGB through two more
  // stops on each side so the light middle does not wash out small values.
  static constexpr Rgb kStops[] = {{33, 102, 172},  {103, 169, 207}, {209, 229, 240},
                                   {247, 247, 247}, {253, 219, 199}, {239, 138, 98},
                                   {178, 24, 43}};
  constexpr int kLast = static_cast<int>(std::size(kStops)) - 1;
  const double x = (std::clamp(t, -1.0, 1.0) + 1) / 2 * kLast;
  const int i = std::min(static_cast<int>(x), kLast - 1);
  const double f = x - i;
  const Rgb& a = kStops[i];
  const Rgb& b = kStops[i + 1];
  return {a.r + (b.r - a.r) * f, a.g + (b.g - a.g) * f, a.b + (b.b - a.b) * f};
}

std::string CategoricalColor(int i) {
  // Tableau 10, then three darker hues that stay apart from it.
  static constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                             "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
                                             "#1b3a6b", "#7a5195", "#2f6b2f"};
  constexpr int kSize = static_cast<int>(std::size(kPalette));
  return kPalette[((i % kSize) + kSize) % kSize];
}

}  // namespace impq::cli::report
