#include "cli/report/report_html.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/report/markup.h"

namespace impq::cli::report {
namespace {

// Every coordinate is written with one decimal: enough for a screen, and it keeps the file
// small and byte-stable.
std::string C(double v) { return Fixed(v, 1); }

// Width of `text` at `font_px`, estimated (no font metrics without a browser): 0.62 em per
// character covers the sans-serif digits and lower-case letters the labels are made of.
double TextWidth(const std::string& text, double font_px) {
  size_t chars = 0;  // code points, not bytes: "Δ" is one character
  for (unsigned char c : text) chars += (c & 0xC0) != 0x80;
  return static_cast<double>(chars) * font_px * 0.62;
}

// A tick label: as many decimals as the tick spacing needs.
std::string TickLabel(double value, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return Fixed(value, std::min(decimals, 8));
}

std::string SvgOpen(const std::string& id, double width, double height, const std::string& label) {
  return absl::StrCat("<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"", id, "\" width=\"",
                      C(width), "\" height=\"", C(height), "\" viewBox=\"0 0 ", C(width), " ",
                      C(height), "\" role=\"img\" aria-label=\"", Escape(label),
                      "\" font-family=\"sans-serif\" font-size=\"11\">\n");
}

std::string Text(double x, double y, const std::string& text, const std::string& attrs = "") {
  return absl::StrCat("<text x=\"", C(x), "\" y=\"", C(y), "\"", attrs.empty() ? "" : " ", attrs,
                      ">", Escape(text), "</text>\n");
}

std::string Line(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return absl::StrCat("<line x1=\"", C(x1), "\" y1=\"", C(y1), "\" x2=\"", C(x2), "\" y2=\"", C(y2),
                      "\" ", attrs, "/>\n");
}

std::string Rect(double x, double y, double w, double h, const std::string& attrs,
                 const std::string& title = "") {
  std::string s = absl::StrCat("<rect x=\"", C(x), "\" y=\"", C(y), "\" width=\"", C(w),
                               "\" height=\"", C(h), "\" ", attrs);
  if (title.empty()) return s + "/>\n";
  return absl::StrCat(s, "><title>", Escape(title), "</title></rect>\n");
}

std::string FormatSeconds(double s) {
  const int t = static_cast<int>(std::lround(s));
  if (t < 60) return absl::StrFormat("%.1f s", s);
  return absl::StrFormat("%d min %d s", t / 60, t % 60);
}

std::string BudgetLabel(double average_bits) { return Fixed(average_bits, 2); }

// --- Figure 1: Shapley values ± SE next to isolated Δ --------------------------------------

// One row per step of the SPQE game (per player on widths {2, 4}).
std::string ShapleyFigure(const RunReport& r) {
  constexpr double kPlotW = 560, kRowH = 20, kTop = 34, kBottom = 44, kFont = 11;
  double label_w = 0;
  double lo = 0, hi = 0;
  for (const ReportStep& p : r.steps) {
    label_w = std::max(label_w, TextWidth(p.label, kFont));
    lo = std::min({lo, p.phi - p.phi_se, p.isolated_delta});
    hi = std::max({hi, p.phi + p.phi_se, p.isolated_delta});
  }
  label_w += 14;
  const std::vector<double> ticks = LinearTicks(lo, hi, 6);
  const double step = ticks.size() > 1 ? ticks[1] - ticks[0] : 1;
  const double x0 = ticks.front(), x1 = ticks.back();
  auto X = [&](double v) { return label_w + (v - x0) / (x1 - x0) * kPlotW; };
  const double rows_h = kRowH * static_cast<double>(r.steps.size());
  const double width = label_w + kPlotW + 24, height = kTop + rows_h + kBottom;

  std::string s = SvgOpen(
      "shapley-svg", width, height,
      r.binary() ? "Shapley values with standard errors and isolated deltas per player"
                 : "Shapley values with standard errors and isolated deltas per step down a width");
  // Legend.
  s += Rect(label_w, 8, 12, 10, "fill=\"#4e79a7\"");
  s += Text(label_w + 16, 17, "Shapley value φ ± SE");
  s += Rect(label_w + 170, 8, 12, 10, "fill=\"#f28e2b\"");
  s += Text(label_w + 186, 17,
            r.binary() ? "isolated Δ (player alone at 2 bits)"
                       : "isolated Δ (the step alone, every other player at its widest)");
  for (size_t i = 0; i < r.steps.size(); ++i) {
    if (i % 2 == 1) {
      s += Rect(0, kTop + kRowH * static_cast<double>(i), width, kRowH, "fill=\"#f4f4f4\"");
    }
  }
  for (double t : ticks) {
    s += Line(X(t), kTop, X(t), kTop + rows_h,
              t == 0 ? "stroke=\"#444\" stroke-width=\"1\"" : "stroke=\"#ddd\" stroke-width=\"1\"");
    s += Text(X(t), kTop + rows_h + 15, TickLabel(t, step), "text-anchor=\"middle\"");
  }
  s += Text(label_w + kPlotW / 2, kTop + rows_h + 34,
            r.binary()
                ? "ΔNLL on the calibration text when the player goes from 4 to 2 bits (nats/token)"
                : "ΔNLL on the calibration text when the player goes one width down (nats/token)",
            "text-anchor=\"middle\"");
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const ReportStep& p = r.steps[i];
    const double top = kTop + kRowH * static_cast<double>(i);
    s += Text(label_w - 6, top + 14, p.label, "text-anchor=\"end\"");
    const double zero = X(0);
    s += Rect(std::min(zero, X(p.phi)), top + 3, std::fabs(X(p.phi) - zero), 7, "fill=\"#4e79a7\"",
              absl::StrCat(p.label, ": φ = ", Short(p.phi, 4), " ± ", Short(p.phi_se, 2)));
    if (p.phi_se > 0) {
      const double y = top + 6.5, a = X(p.phi - p.phi_se), b = X(p.phi + p.phi_se);
      const std::string st = "stroke=\"#1b2a3a\" stroke-width=\"1.2\"";
      s += Line(a, y, b, y, st) + Line(a, y - 3, a, y + 3, st) + Line(b, y - 3, b, y + 3, st);
    }
    s += Rect(std::min(zero, X(p.isolated_delta)), top + 11, std::fabs(X(p.isolated_delta) - zero),
              7, "fill=\"#f28e2b\"",
              absl::StrCat(p.label, ": isolated Δ = ", Short(p.isolated_delta, 4)));
  }
  s += "</svg>\n";
  return s;
}

// --- Figure 2: the interaction matrix ------------------------------------------------------

// K over the steps of the SPQE game (the players on widths {2, 4}).
std::string InteractionFigure(const RunReport& r) {
  const int n = static_cast<int>(r.steps.size());
  const double cell = std::clamp(std::floor(560.0 / n), 4.0, 18.0);
  const bool labels = cell >= 8;
  const double font = std::min(10.0, cell - 1);
  double label_w = 8;
  if (labels) {
    for (const ReportStep& p : r.steps) label_w = std::max(label_w, TextWidth(p.label, font));
    label_w += 8;
  }
  // The diagonal (each player's own term, a variance for the covariance estimator) is usually
  // far larger than the pairwise entries; scaled by it, the interactions would all look white.
  double max_abs = 0, max_diag = 0;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double& max = i == j ? max_diag : max_abs;
      max = std::max(max, std::fabs(r.interaction[i][j]));
    }
  }
  const bool diagonal_only = max_abs == 0;
  if (diagonal_only) max_abs = max_diag > 0 ? max_diag : 1;
  const double left = label_w, top = label_w, side = cell * n;
  const double legend_x = left + side + 28, legend_h = std::min(side, 240.0);
  const double width = legend_x + 16 + 80, height = top + side + 16;

  std::string s =
      SvgOpen("interactions-svg", width, height,
              absl::StrCat("Interaction matrix K (", r.interaction_estimator, ") as a heatmap"));
  s += "<defs><linearGradient id=\"diverging-scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n";
  for (int k = 0; k <= 12; ++k) {
    const double t = -1 + 2.0 * k / 12;
    s += absl::StrCat("<stop offset=\"", Fixed(k / 12.0, 4), "\" stop-color=\"", Hex(Diverging(t)),
                      "\"/>\n");
  }
  s += "</linearGradient></defs>\n";
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const double v = r.interaction[i][j];
      std::string attrs = absl::StrCat("fill=\"", Hex(Diverging(v / max_abs)), "\"");
      if (i == j && !diagonal_only) attrs += " stroke=\"#555\" stroke-width=\"0.6\"";
      s += Rect(
          left + cell * j, top + cell * i, cell, cell, attrs,
          absl::StrCat("K[", r.steps[i].label, ", ", r.steps[j].label, "] = ", Short(v, 4)));
    }
  }
  // Layer boundaries make 35 module players readable as 5 × 7.
  auto layer = [&](int i) { return r.players[r.steps[i].player].layer; };
  for (int i = 1; i < n; ++i) {
    if (layer(i) == layer(i - 1)) continue;
    const double at = cell * i;
    s += Line(left + at, top, left + at, top + side, "stroke=\"#333\" stroke-width=\"0.8\"");
    s += Line(left, top + at, left + side, top + at, "stroke=\"#333\" stroke-width=\"0.8\"");
  }
  s += Rect(left, top, side, side, "fill=\"none\" stroke=\"#333\" stroke-width=\"1\"");
  if (labels) {
    const std::string fs = absl::StrCat("font-size=\"", Fixed(font, 1), "\"");
    for (int i = 0; i < n; ++i) {
      const double c = cell * i + cell / 2 + font * 0.35;
      s += Text(left - 4, top + c, r.steps[i].label, "text-anchor=\"end\" " + fs);
      s += absl::StrCat("<text transform=\"translate(", C(left + c), ",", C(top - 4),
                        ") rotate(-90)\" ", fs, ">", Escape(r.steps[i].label), "</text>\n");
    }
  }
  // Legend: the gradient with its values.
  s += Rect(legend_x, top, 16, legend_h,
            "fill=\"url(#diverging-scale)\" stroke=\"#333\" stroke-width=\"0.5\"");
  for (int k = 0; k <= 4; ++k) {
    const double v = max_abs * (1 - k / 2.0);
    const double y = top + legend_h * k / 4.0;
    s += Line(legend_x + 16, y, legend_x + 20, y, "stroke=\"#333\"");
    // Only the ends are clamped.
    s += Text(legend_x + 23, y + 4, (k == 0 ? "≥ " : k == 4 ? "≤ " : "") + Short(v, 2));
  }
  s += "</svg>\n";
  return s;
}

// --- Figure 3: held-out PPL versus average bits ---------------------------------------------

struct Point {
  double bits, ppl;
  size_t budget;
};

std::string Marker(int shape, double x, double y, const std::string& color,
                   const std::string& title) {
  const std::string attrs =
      absl::StrCat("fill=\"", color, "\" stroke=\"#222\" stroke-width=\"0.6\"");
  const std::string t = title.empty() ? "" : absl::StrCat("<title>", Escape(title), "</title>");
  const std::string close = title.empty() ? "/>\n" : absl::StrCat(">", t);
  switch (shape % 5) {
    case 0:
      return absl::StrCat("<circle cx=\"", C(x), "\" cy=\"", C(y), "\" r=\"4\" ", attrs, close,
                          title.empty() ? "" : "</circle>\n");
    case 1:
      return absl::StrCat("<rect x=\"", C(x - 3.5), "\" y=\"", C(y - 3.5),
                          "\" width=\"7\" height=\"7\" ", attrs, close,
                          title.empty() ? "" : "</rect>\n");
    default: {
      std::vector<std::pair<double, double>> pts;
      if (shape % 5 == 2) pts = {{0, -5}, {4.5, 3.5}, {-4.5, 3.5}};
      if (shape % 5 == 3) pts = {{0, -5}, {4.5, 0}, {0, 5}, {-4.5, 0}};
      if (shape % 5 == 4) pts = {{0, 5}, {4.5, -3.5}, {-4.5, -3.5}};
      std::vector<std::string> coords;
      for (auto [dx, dy] : pts) coords.push_back(absl::StrCat(C(x + dx), ",", C(y + dy)));
      return absl::StrCat("<polygon points=\"", absl::StrJoin(coords, " "), "\" ", attrs, close,
                          title.empty() ? "" : "</polygon>\n");
    }
  }
}

std::string PplFigure(const RunReport& r) {
  constexpr double kLeft = 64, kTop = 16, kPlotW = 600, kPlotH = 420, kBottom = 52;
  // Methods in first-seen order, each with its points in budget order.
  std::vector<std::string> methods;
  std::map<std::string, std::vector<Point>> series;
  std::set<std::string> ever_chosen;
  std::vector<Point> chosen;
  double bits_lo = 1e300, bits_hi = -1e300, ppl_lo = 1e300, ppl_hi = 0;
  for (size_t b = 0; b < r.budgets.size(); ++b) {
    const ReportBudget& budget = r.budgets[b];
    for (const ReportAllocation& a : budget.allocations) {
      if (!series.count(a.method)) methods.push_back(a.method);
      series[a.method].push_back({a.average_bits, a.heldout_ppl, b});
      bits_lo = std::min(bits_lo, a.average_bits);
      bits_hi = std::max(bits_hi, a.average_bits);
      ppl_lo = std::min(ppl_lo, a.heldout_ppl);
      ppl_hi = std::max(ppl_hi, a.heldout_ppl);
    }
    const ReportAllocation& c = budget.Chosen();
    chosen.push_back({c.average_bits, c.heldout_ppl, b});
    ever_chosen.insert(c.method);
  }
  struct Reference {
    const char* name;
    std::optional<double> ppl;
    const char* dash;
  };
  const Reference refs[] = {{"fp32", r.ppl_fp32, "7 4"},
                            {"all 4-bit", r.ppl_all4, "2 3"},
                            {"all 2-bit", r.ppl_all2, "9 3 2 3"}};
  for (const Reference& ref : refs) {
    if (!ref.ppl.has_value()) continue;
    ppl_lo = std::min(ppl_lo, *ref.ppl);
    ppl_hi = std::max(ppl_hi, *ref.ppl);
  }
  const std::vector<double> xt = LinearTicks(bits_lo - 0.05, bits_hi + 0.05, 8);
  const double x_step = xt.size() > 1 ? xt[1] - xt[0] : 1;
  const double x0 = xt.front(), x1 = xt.back();
  const double y0 = std::log10(ppl_lo / 1.15), y1 = std::log10(ppl_hi * 1.15);
  auto X = [&](double v) { return kLeft + (v - x0) / (x1 - x0) * kPlotW; };
  auto Y = [&](double ppl) { return kTop + kPlotH - (std::log10(ppl) - y0) / (y1 - y0) * kPlotH; };

  double legend_w = TextWidth("chosen per budget", 11);
  for (const std::string& m : methods)
    legend_w = std::max(legend_w, TextWidth(MethodTitle(r, m), 11));
  const double legend_x = kLeft + kPlotW + 24;
  const double width = legend_x + 40 + legend_w + 16;
  const double legend_h = 20.0 * (static_cast<double>(methods.size()) + 1) + 8;
  const double height = std::max(kTop + kPlotH + kBottom, kTop + legend_h);

  std::string s =
      SvgOpen("ppl-svg", width, height, "Held-out perplexity versus average bits for every method");
  s += Rect(kLeft, kTop, kPlotW, kPlotH, "fill=\"#fcfcfc\" stroke=\"#333\" stroke-width=\"1\"");
  for (double t : LogTicks(ppl_lo / 1.15, ppl_hi * 1.15)) {
    s += Line(kLeft, Y(t), kLeft + kPlotW, Y(t), "stroke=\"#e2e2e2\"");
    s += Text(kLeft - 6, Y(t) + 4, t >= 1 ? Fixed(t, 0) : Short(t, 1), "text-anchor=\"end\"");
  }
  for (double t : xt) {
    s += Line(X(t), kTop, X(t), kTop + kPlotH, "stroke=\"#e2e2e2\"");
    s += Text(X(t), kTop + kPlotH + 16, TickLabel(t, x_step), "text-anchor=\"middle\"");
  }
  s += Text(kLeft + kPlotW / 2, kTop + kPlotH + 38,
            "average bits per weight of the allocation (linear modules)", "text-anchor=\"middle\"");
  s += absl::StrCat(
      "<text transform=\"translate(16,", C(kTop + kPlotH / 2),
      ") rotate(-90)\" text-anchor=\"middle\">held-out perplexity (log scale)</text>\n");
  // Reference labels sit above their line at the right end; fp32 and all-4-bit are often a
  // few pixels apart, so a label that would overlap one already placed moves to the left end
  // (low bits with low perplexity: where no allocation lies), then below its line.
  std::vector<std::pair<bool, double>> placed;  // (at the left end, baseline)
  auto free = [&](bool left, double y) {
    for (const auto& [l, py] : placed) {
      if (l == left && std::fabs(py - y) < 12) return false;
    }
    return true;
  };
  for (const Reference& ref : refs) {
    if (!ref.ppl.has_value()) continue;
    const double y = Y(*ref.ppl);
    s += Line(
        kLeft, y, kLeft + kPlotW, y,
        absl::StrCat("stroke=\"#555\" stroke-width=\"1.2\" stroke-dasharray=\"", ref.dash, "\""));
    bool left = false;
    double label_y = y - 4;
    if (!free(false, label_y)) {
      left = free(true, label_y);
      if (!left) label_y = y + 13;
    }
    placed.push_back({left, label_y});
    s += Text(left ? kLeft + 4 : kLeft + kPlotW - 4, label_y,
              absl::StrCat(ref.name, " ", Fixed(*ref.ppl, 3)),
              absl::StrCat("text-anchor=\"", left ? "start" : "end", "\" fill=\"#333\""));
  }
  // The chosen allocations under everything else: a wide translucent band the markers sit on.
  auto polyline = [&](const std::vector<Point>& pts, const std::string& attrs) {
    std::vector<std::string> coords;
    for (const Point& p : pts) coords.push_back(absl::StrCat(C(X(p.bits)), ",", C(Y(p.ppl))));
    return absl::StrCat("<polyline points=\"", absl::StrJoin(coords, " "), "\" fill=\"none\" ",
                        attrs, "/>\n");
  };
  s += polyline(chosen,
                "stroke=\"#000\" stroke-opacity=\"0.18\" stroke-width=\"9\" "
                "stroke-linejoin=\"round\" stroke-linecap=\"round\"");
  for (size_t k = 0; k < methods.size(); ++k) {
    const std::string color = CategoricalColor(static_cast<int>(k));
    s += polyline(
        series[methods[k]],
        absl::StrCat("stroke=\"", color, "\" stroke-width=\"1.5\" stroke-opacity=\"0.85\""));
  }
  for (size_t k = 0; k < methods.size(); ++k) {
    const std::string color = CategoricalColor(static_cast<int>(k));
    for (const Point& p : series[methods[k]]) {
      s += Marker(static_cast<int>(k), X(p.bits), Y(p.ppl), color,
                  absl::StrCat(MethodTitle(r, methods[k]), " at b_avg ",
                               BudgetLabel(r.budgets[p.budget].average_bits), ": ",
                               Fixed(p.bits, 3), " bits, held-out PPL ", Fixed(p.ppl, 3)));
    }
  }
  for (const Point& p : chosen) {
    const ReportBudget& b = r.budgets[p.budget];
    s += absl::StrCat("<circle cx=\"", C(X(p.bits)), "\" cy=\"", C(Y(p.ppl)),
                      "\" r=\"8\" fill=\"none\" stroke=\"#000\" stroke-width=\"2\"><title>",
                      Escape(absl::StrCat("chosen at b_avg ", BudgetLabel(b.average_bits), ": ",
                                          MethodTitle(r, b.chosen), ", ", Fixed(p.bits, 3),
                                          " bits, held-out PPL ", Fixed(p.ppl, 3))),
                      "</title></circle>\n");
  }
  // Legend.
  double y = kTop + 10;
  s += absl::StrCat("<circle cx=\"", C(legend_x + 14), "\" cy=\"", C(y),
                    "\" r=\"8\" fill=\"none\" stroke=\"#000\" stroke-width=\"2\"/>\n");
  s += Text(legend_x + 34, y + 4, "chosen per budget", "font-weight=\"bold\"");
  for (size_t k = 0; k < methods.size(); ++k) {
    y += 20;
    const std::string color = CategoricalColor(static_cast<int>(k));
    s += Line(legend_x, y, legend_x + 28, y,
              absl::StrCat("stroke=\"", color, "\" stroke-width=\"1.5\""));
    s += Marker(static_cast<int>(k), legend_x + 14, y, color, "");
    s += Text(legend_x + 34, y + 4, MethodTitle(r, methods[k]),
              ever_chosen.count(methods[k]) ? "font-weight=\"bold\"" : "");
  }
  s += "</svg>\n";
  return s;
}

// --- Figure 4: the chosen allocation per budget as a layer × module grid ---------------------

std::string BitsColor(int bits) {
  switch (bits) {
    case 2:
      return "#c0392b";
    case 3:
      return "#f0a070";
    case 4:
      return "#2e6fb0";
    case 8:
      return "#9cc8e6";
    case 16:
    case 32:
      return "#dddddd";
    default:
      return "#a0a0a0";
  }
}

std::string BitsTextColor(int bits) { return bits == 2 || bits == 4 ? "#ffffff" : "#111111"; }

std::string AllocationGrid(const RunReport& r, size_t b) {
  constexpr double kCellW = 64, kCellH = 24, kLabelW = 34, kTop = 22;
  const ReportAllocation& chosen = r.budgets[b].Chosen();
  // cell[layer][module] = player index, -1 when no player covers it.
  std::vector<std::vector<int>> cell(r.num_layers, std::vector<int>(kNumModules, -1));
  for (size_t i = 0; i < r.players.size(); ++i) {
    const ReportPlayer& p = r.players[i];
    for (int m = 0; m < kNumModules; ++m) {
      if (p.module == m || p.module < 0) cell[p.layer][m] = static_cast<int>(i);
    }
  }
  const double width = kLabelW + kNumModules * kCellW + 4,
               height = kTop + kCellH * r.num_layers + 4;
  std::string s =
      SvgOpen(absl::StrCat("alloc-grid-", b), width, height,
              absl::StrCat("Chosen allocation at b_avg ", BudgetLabel(r.budgets[b].average_bits),
                           " as a layer by module grid"));
  for (int m = 0; m < kNumModules; ++m) {
    s += Text(kLabelW + kCellW * m + kCellW / 2, kTop - 7, ModuleName(m),
              "text-anchor=\"middle\" font-size=\"10\"");
  }
  for (int l = 0; l < r.num_layers; ++l) {
    const double y = kTop + kCellH * l;
    s += Text(kLabelW - 6, y + kCellH / 2 + 4, absl::StrCat("L", l), "text-anchor=\"end\"");
    for (int m = 0; m < kNumModules; ++m) {
      const double x = kLabelW + kCellW * m;
      const int i = cell[l][m];
      if (i < 0) {
        s += Rect(x, y, kCellW, kCellH, "fill=\"#ffffff\" stroke=\"#bbbbbb\"",
                  absl::StrCat("L", l, ".", ModuleName(m), ": not a player"));
        continue;
      }
      const int bits = chosen.bits[i];
      s += Rect(
          x, y, kCellW, kCellH,
          absl::StrCat("fill=\"", BitsColor(bits), "\" stroke=\"#ffffff\" stroke-width=\"1.5\""),
          absl::StrCat(r.players[i].label, ": ", bits, " bits"));
      s += Text(x + kCellW / 2, y + kCellH / 2 + 4, absl::StrCat(bits),
                absl::StrCat("text-anchor=\"middle\" fill=\"", BitsTextColor(bits), "\""));
    }
  }
  s += "</svg>\n";
  return s;
}

// --- Header and tables -----------------------------------------------------------------------

void Fact(std::string& out, const std::string& key, const std::string& value) {
  absl::StrAppend(&out, "<tr><th>", Escape(key), "</th><td>", Escape(value), "</td></tr>\n");
}

std::string Header(const RunReport& r, const std::string& source) {
  const ReportHeader& h = r.header;
  std::string out = "<table id=\"facts\" class=\"facts\">\n";
  Fact(out, "run file", source);
  if (h.model_path.has_value() || h.model_config.has_value()) {
    Fact(out, "model",
         absl::StrCat(h.model_path.value_or(""), h.model_path && h.model_config ? " — " : "",
                      h.model_config.value_or("")));
  }
  if (h.backend.has_value()) {
    Fact(
        out, "backend",
        absl::StrCat(*h.backend,
                     h.group_size.has_value() ? absl::StrCat(", group size ", *h.group_size) : ""));
  }
  Fact(out, "players",
       absl::StrCat(r.players.size(), " ", r.granularity, " players, ", r.num_layers, " layers"));
  if (!r.binary()) {
    Fact(out, "widths",
         absl::StrCat(absl::StrJoin(r.widths, ", "), " bits: ", r.steps.size(),
                      " steps in the Shapley game"));
  }
  if (h.permutations_done.has_value() || h.permutations_requested.has_value()) {
    std::string v = h.permutations_done.has_value() ? absl::StrCat(*h.permutations_done) : "?";
    if (h.permutations_requested.has_value() && h.permutations_requested != h.permutations_done) {
      absl::StrAppend(&v, " of ", *h.permutations_requested, " requested");
    }
    if (h.antithetic.has_value()) absl::StrAppend(&v, *h.antithetic ? ", antithetic" : "");
    if (h.stop_reason.has_value() && !h.stop_reason->empty()) {
      absl::StrAppend(&v, " (stopped: ", *h.stop_reason, ")");
    }
    Fact(out, "SPQE permutations", v);
  }
  if (h.seed.has_value()) Fact(out, "seed", absl::StrCat(*h.seed));
  Fact(out, "interactions", absl::StrCat(r.interaction_estimator, " estimator"));
  std::vector<std::string> evals;
  if (h.calib_evaluations.has_value()) {
    evals.push_back(absl::StrCat(*h.calib_evaluations, " on calibration text"));
  }
  if (h.selection_evaluations.has_value()) {
    evals.push_back(
        absl::StrCat("of which ", *h.selection_evaluations, " for the per-budget choice"));
  }
  if (h.heldout_evaluations.has_value()) {
    evals.push_back(absl::StrCat(*h.heldout_evaluations, " on held-out text"));
  }
  if (!evals.empty()) Fact(out, "evaluations", absl::StrJoin(evals, ", "));
  if (h.calib_sequences.has_value()) {
    Fact(out, "calibration set",
         absl::StrCat(*h.calib_sequences, " sequences, ", h.calib_tokens.value_or(0),
                      " scored tokens"));
  }
  if (h.heldout_sequences.has_value()) {
    Fact(out, "held-out set",
         absl::StrCat(*h.heldout_sequences, " sequences, ", h.heldout_tokens.value_or(0),
                      " scored tokens"));
  }
  std::vector<std::string> budgets;
  for (const ReportBudget& b : r.budgets) budgets.push_back(BudgetLabel(b.average_bits));
  Fact(out, "budgets (average bits)", absl::StrJoin(budgets, ", "));
  if (h.total_seconds.has_value()) {
    Fact(out, "wall time",
         absl::StrCat(FormatSeconds(*h.total_seconds),
                      h.threads.has_value() ? absl::StrCat(" at ", *h.threads, " threads") : ""));
  }
  out += "</table>\n";
  return out;
}

std::string PplTable(const RunReport& r) {
  std::vector<std::string> methods;
  for (const ReportBudget& b : r.budgets) {
    for (const ReportAllocation& a : b.allocations) {
      if (std::find(methods.begin(), methods.end(), a.method) == methods.end()) {
        methods.push_back(a.method);
      }
    }
  }
  auto table = [&](const std::string& id, bool ppl) {
    std::string out =
        absl::StrCat("<table id=\"", id, "\" class=\"numbers\">\n<tr><th>b_avg</th>",
                     ppl ? "<th>budget (bytes)</th><th>chosen</th><th>chosen PPL</th>" : "", "");
    for (const std::string& m : methods) {
      absl::StrAppend(&out, "<th>", Escape(MethodTitle(r, m)), "</th>");
    }
    out += "</tr>\n";
    for (const ReportBudget& b : r.budgets) {
      const std::string label = BudgetLabel(b.average_bits);
      absl::StrAppend(&out, "<tr data-budget=\"", label, "\"><td class=\"num\">", label, "</td>");
      double best = 1e300;
      for (const ReportAllocation& a : b.allocations) best = std::min(best, a.heldout_ppl);
      if (ppl) {
        absl::StrAppend(&out, "<td class=\"num\">",
                        b.budget_bytes.has_value() ? absl::StrCat(*b.budget_bytes) : "–",
                        "</td><td>", Escape(MethodTitle(r, b.chosen)),
                        "</td><td class=\"num chosen\" data-method=\"chosen\">",
                        Fixed(b.Chosen().heldout_ppl, 3), "</td>");
      }
      for (const std::string& m : methods) {
        const ReportAllocation* a = nullptr;
        for (const ReportAllocation& x : b.allocations) {
          if (x.method == m) a = &x;
        }
        if (a == nullptr) {
          out += "<td class=\"num\">–</td>";
          continue;
        }
        const std::string cls = absl::StrCat("num", m == b.chosen ? " chosen" : "");
        const std::string v = ppl ? Fixed(a->heldout_ppl, 3) : Fixed(a->average_bits, 3);
        // The hover text: what the per-budget choice saw (calibration PPL) and the bytes.
        std::vector<std::string> hover;
        if (a->calibration_ppl.has_value()) {
          hover.push_back("calibration PPL " + Fixed(*a->calibration_ppl, 3));
        }
        if (a->memory_bytes.has_value()) hover.push_back(absl::StrCat(*a->memory_bytes, " bytes"));
        const std::string title =
            hover.empty() ? ""
                          : absl::StrCat(" title=\"", Escape(absl::StrJoin(hover, ", ")), "\"");
        absl::StrAppend(
            &out, "<td class=\"", cls, "\" data-method=\"", Escape(m), "\"", title, ">",
            ppl && a->heldout_ppl == best ? absl::StrCat("<strong>", v, "</strong>") : v, "</td>");
      }
      out += "</tr>\n";
    }
    out += "</table>\n";
    return out;
  };
  std::string out = "<h3>Held-out perplexity</h3>\n";
  out +=
      "<p class=\"caption\">Lower is better; the best of each row in bold, the chosen allocation "
      "shaded.";
  std::vector<std::string> refs;
  if (r.ppl_fp32.has_value()) refs.push_back("fp32 " + Fixed(*r.ppl_fp32, 3));
  if (r.ppl_all4.has_value()) refs.push_back("all 4-bit " + Fixed(*r.ppl_all4, 3));
  if (r.ppl_all2.has_value()) refs.push_back("all 2-bit " + Fixed(*r.ppl_all2, 3));
  if (!refs.empty()) absl::StrAppend(&out, " References: ", absl::StrJoin(refs, ", "), ".");
  out += "</p>\n";
  out += table("table-ppl", true);
  out += "<h3>Average bits of each allocation</h3>\n";
  out += table("table-bits", false);
  return out;
}

// Widths {2, 4}: one row per player with its φ, SE, isolated Δ, the bytes 2 bits save and the
// chosen bits per budget.
std::string PlayerTable(const RunReport& r) {
  std::string out =
      "<table id=\"table-players\" class=\"numbers\">\n<tr><th>player</th><th>φ</th><th>SE</th>"
      "<th>isolated Δ</th><th>bytes saved at 2 bits</th>";
  for (const ReportBudget& b : r.budgets) {
    absl::StrAppend(&out, "<th>bits at ", BudgetLabel(b.average_bits), "</th>");
  }
  out += "</tr>\n";
  for (size_t i = 0; i < r.players.size(); ++i) {
    const ReportPlayer& p = r.players[i];
    const ReportStep& step = r.steps[i];  // binary: step i is player i
    absl::StrAppend(&out, "<tr data-player=\"", Escape(p.name), "\"><td>", Escape(p.label),
                    "</td><td class=\"num\">", Fixed(step.phi, 4), "</td><td class=\"num\">",
                    Fixed(step.phi_se, 4), "</td><td class=\"num\">",
                    Fixed(step.isolated_delta, 4), "</td><td class=\"num\">",
                    p.bytes2 && p.bytes4 ? absl::StrCat(*p.bytes4 - *p.bytes2) : "–", "</td>");
    for (const ReportBudget& b : r.budgets) {
      absl::StrAppend(&out, "<td class=\"num\">", b.Chosen().bits[i], "</td>");
    }
    out += "</tr>\n";
  }
  out += "</table>\n";
  return out;
}

// More widths: one row per step (φ, SE, isolated Δ, the bytes the step saves)...
std::string StepTable(const RunReport& r) {
  std::string out =
      "<table id=\"table-steps\" class=\"numbers\">\n<tr><th>step</th><th>φ</th><th>SE</th>"
      "<th>isolated Δ</th><th>bytes saved</th></tr>\n";
  auto index = [&](int bits) {
    return static_cast<size_t>(std::find(r.widths.begin(), r.widths.end(), bits) -
                               r.widths.begin());
  };
  for (size_t s = 0; s < r.steps.size(); ++s) {
    const ReportStep& step = r.steps[s];
    const ReportPlayer& p = r.players[step.player];
    const std::string saved =
        p.width_bytes.empty()
            ? "–"
            : absl::StrCat(p.width_bytes[index(step.from_bits)] - p.width_bytes[index(step.to_bits)]);
    absl::StrAppend(&out, "<tr data-step=\"", s, "\" data-player=\"", Escape(p.name), "\"><td>",
                    Escape(step.label), "</td><td class=\"num\">", Fixed(step.phi, 4),
                    "</td><td class=\"num\">", Fixed(step.phi_se, 4), "</td><td class=\"num\">",
                    Fixed(step.isolated_delta, 4), "</td><td class=\"num\">", saved,
                    "</td></tr>\n");
  }
  out += "</table>\n";
  return out;
}

// ... and one row per player with its bytes at every width and the chosen bits per budget.
std::string WidthPlayerTable(const RunReport& r) {
  std::string out = "<table id=\"table-players\" class=\"numbers\">\n<tr><th>player</th>";
  for (int w : r.widths) absl::StrAppend(&out, "<th>bytes at ", w, " bits</th>");
  for (const ReportBudget& b : r.budgets) {
    absl::StrAppend(&out, "<th>bits at ", BudgetLabel(b.average_bits), "</th>");
  }
  out += "</tr>\n";
  for (size_t i = 0; i < r.players.size(); ++i) {
    const ReportPlayer& p = r.players[i];
    absl::StrAppend(&out, "<tr data-player=\"", Escape(p.name), "\"><td>", Escape(p.label),
                    "</td>");
    for (size_t w = 0; w < r.widths.size(); ++w) {
      absl::StrAppend(&out, "<td class=\"num\">",
                      p.width_bytes.empty() ? "–" : absl::StrCat(p.width_bytes[w]), "</td>");
    }
    for (const ReportBudget& b : r.budgets) {
      absl::StrAppend(&out, "<td class=\"num\">", b.Chosen().bits[i], "</td>");
    }
    out += "</tr>\n";
  }
  out += "</table>\n";
  return out;
}

constexpr char kStyle[] = R"css(
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px 32px;
       color: #1a1a1a; background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 12px; }
h2 { font-size: 17px; margin: 32px 0 6px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 14px; margin: 16px 0 4px; }
p.caption { max-width: 900px; color: #444; font-size: 13px; margin: 4px 0 10px; }
figure { margin: 0; overflow-x: auto; }
svg { display: block; background: #ffffff; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 14px; }
th, td { border: 1px solid #d4d4d4; padding: 3px 7px; }
th { background: #f0f0f0; font-weight: 600; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.chosen { background: #fff1b8; }
table.facts th { background: none; border: none; color: #555; font-weight: normal; padding-left: 0; }
table.facts td { border: none; }
.grids { display: flex; flex-wrap: wrap; gap: 18px 34px; }
.grids p { margin: 2px 0 6px; font-size: 12.5px; color: #333; }
.swatch { display: inline-block; width: 14px; height: 14px; vertical-align: -2px;
          margin: 0 4px 0 0; border: 1px solid #999; }
.swatch:not(:first-child) { margin-left: 14px; }
)css";

}  // namespace

std::string RenderReportHtml(const RunReport& r, const std::string& source) {
  std::string out;
  out +=
      "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
      "<meta charset=\"utf-8\"/>\n";
  absl::StrAppend(&out, "<title>impq report: ", Escape(source), "</title>\n<style>", kStyle,
                  "</style>\n</head>\n<body>\n<h1>impq run report</h1>\n");
  out += Header(r, source);

  out += "<h2 id=\"shapley\">1. Shapley values and isolated Δ</h2>\n";
  if (r.binary()) {
    out +=
        "<p class=\"caption\">Each player's Shapley value φ (its average loss increase over "
        "random orders of quantizing the players to 2 bits, IMPQ §3.2) with ± one standard "
        "error, next to its isolated Δ (the loss increase when it alone goes to 2 bits). A "
        "player whose φ and isolated Δ differ interacts with the others.</p>\n";
  } else {
    absl::StrAppend(
        &out, "<p class=\"caption\">The run chose among ", r.widths.size(), " widths (",
        absl::StrJoin(r.widths, ", "),
        " bits), so the players of the Shapley game are steps: a player going one width down "
        "(“L0.attn_q 8→4”), each player's steps taken in order from its widest width to its "
        "narrowest. Each step's Shapley value φ (its average loss increase over random orders "
        "of the steps, IMPQ §3.2) with ± one standard error, next to its isolated Δ (the loss "
        "increase of that step alone). A step whose φ and isolated Δ differ interacts with the "
        "others.</p>\n");
  }
  out += "<figure id=\"fig-shapley\">\n" + ShapleyFigure(r) + "</figure>\n";

  out += "<h2 id=\"interactions\">2. Interaction matrix</h2>\n";
  absl::StrAppend(
      &out, "<p class=\"caption\">K of the ", Escape(r.interaction_estimator),
      " estimator (IMPQ §3.3), the quadratic part of the objective aᵀq + qᵀKq the allocation "
      "minimises ",
      r.binary() ? "(q<sub>i</sub> = 1: player i at 2 bits). Red: quantizing both players costs "
                   "more than the sum of their parts; blue: less."
                 : "(q<sub>s</sub> = 1: step s taken; one row and column per step). Red: taking "
                   "both steps costs more than the sum of their parts; blue: less.",
      " The color scale spans the largest "
      "off-diagonal magnitude; the diagonal entries (outlined), which act as linear terms, are "
      "drawn on the same scale and saturate when larger. Hover a cell for its value.</p>\n");
  out += "<figure id=\"fig-interactions\">\n" + InteractionFigure(r) + "</figure>\n";

  out += "<h2 id=\"ppl\">3. Held-out perplexity versus average bits</h2>\n";
  out +=
      "<p class=\"caption\">Every method's allocation per budget, at the average bits it "
      "actually uses (at most the budget), measured on held-out text. The ringed points on "
      "the grey band are the allocations the per-budget choice picked (on calibration text "
      "only); methods chosen at least once are bold in the legend.</p>\n";
  out += "<figure id=\"fig-ppl\">\n" + PplFigure(r) + "</figure>\n";

  out += "<h2 id=\"allocation\">4. Chosen allocation per budget</h2>\n";
  // The legend: every width drawn, and with more than two widths every width of the run.
  std::set<int> widths;
  for (const ReportBudget& b : r.budgets) {
    for (int bits : b.Chosen().bits) widths.insert(bits);
  }
  if (!r.binary()) widths.insert(r.widths.begin(), r.widths.end());
  out +=
      "<p class=\"caption\">Rows are decoder layers, columns the seven linear modules; the "
      "color and the number give the bits of each module.";
  if (r.granularity == "block") out += " Block players: a whole layer shares one width.";
  out += "</p>\n<p class=\"caption\">";
  for (int bits : widths) {
    absl::StrAppend(&out, "<span class=\"swatch\" style=\"background:", BitsColor(bits),
                    "\"></span>", bits, " bits");
  }
  out += "</p>\n<figure id=\"fig-allocation\" class=\"grids\">\n";
  for (size_t b = 0; b < r.budgets.size(); ++b) {
    const ReportBudget& budget = r.budgets[b];
    const ReportAllocation& c = budget.Chosen();
    absl::StrAppend(&out, "<div class=\"grid\">\n<h3>b_avg ", BudgetLabel(budget.average_bits),
                    "</h3>\n<p>", Escape(MethodTitle(r, c.method)), " · ", Fixed(c.average_bits, 3),
                    " bits · held-out PPL ", Fixed(c.heldout_ppl, 3), "</p>\n",
                    AllocationGrid(r, b), "</div>\n");
  }
  out += "</figure>\n";

  out += "<h2 id=\"numbers\">Numbers</h2>\n";
  out += PplTable(r);
  if (r.binary()) {
    out +=
        "<h3>Players</h3>\n<p class=\"caption\">φ, SE and isolated Δ in nats/token on the "
        "calibration text; the last columns are the chosen allocation's bits per budget.</p>\n";
    out += PlayerTable(r);
  } else {
    out +=
        "<h3>Steps</h3>\n<p class=\"caption\">φ, SE and isolated Δ in nats/token on the "
        "calibration text, and the bytes each step saves.</p>\n";
    out += StepTable(r);
    out +=
        "<h3>Players</h3>\n<p class=\"caption\">Each player's bytes at every width; the last "
        "columns are the chosen allocation's bits per budget.</p>\n";
    out += WidthPlayerTable(r);
  }
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace impq::cli::report
