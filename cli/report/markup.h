// Small, domain-free pieces of the HTML/SVG report: escaping, number formatting, axis ticks
// and color scales. Pure functions; thread-safe.
#ifndef IMPQ_CLI_REPORT_MARKUP_H_
#define IMPQ_CLI_REPORT_MARKUP_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace impq::cli::report {

// `text` as XML character data or a quoted attribute value: & < > " ' become references;
// characters XML 1.0 forbids (C0 controls other than tab, newline and carriage return) and
// bytes that are not valid UTF-8 become U+FFFD. The result is well-formed in both HTML and
// XHTML.
std::string Escape(absl::string_view text);

// `value` with `decimals` digits after the point ("%.*f"); never "-0.000".
std::string Fixed(double value, int decimals);

// `value` with `significant` significant digits, without an exponent for magnitudes in
// [1e-4, 1e6) (e.g. 0.000123, 72.46, 4.15), with one otherwise (1.2e-07).
std::string Short(double value, int significant = 3);

// Axis ticks: about `target` round values (1, 2 or 5 × 10^k apart) covering [lo, hi].
// REQUIRES: lo <= hi, both finite. lo == hi gives ticks around that value.
std::vector<double> LinearTicks(double lo, double hi, int target = 6);

// Ticks for a log axis on [lo, hi] (0 < lo <= hi): 1, 2, 5 × 10^k inside the range, or every
// integer multiple of 10^k when that gives fewer than 3.
std::vector<double> LogTicks(double lo, double hi);

struct Rgb {
  double r = 0, g = 0, b = 0;  // each in [0, 255]
};

// "#rrggbb".
std::string Hex(Rgb color);

// A diverging scale (blue for negative, near-white for 0, red for positive) at t in [-1, 1]
// (clamped); symmetric, so equal magnitudes look equally strong.
Rgb Diverging(double t);

// Color i of a categorical palette of distinguishable colors (cycles after 13).
std::string CategoricalColor(int i);

}  // namespace impq::cli::report

#endif  // IMPQ_CLI_REPORT_MARKUP_H_
