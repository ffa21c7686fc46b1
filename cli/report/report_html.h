// The `impq report` page: one self-contained HTML document (inline CSS and SVG; no script, no
// font, image or style sheet fetched) with a header and four figures of an `impq run`:
//   1. #fig-shapley      Shapley value ± standard error next to isolated Δ, per player (per
//                        step, "L0.attn_q 8→4", when the run chose among more than two widths);
//   2. #fig-interactions the interaction matrix K of the allocation's estimator (over players,
//                        or steps), a heatmap on a diverging scale symmetric about 0, with its
//                        legend;
//   3. #fig-ppl          held-out perplexity (log axis) against each allocation's average bits,
//                        one line and marker per method, the chosen ones highlighted, the fp32 /
//                        all-4-bit / all-2-bit references as horizontal lines;
//   4. #fig-allocation   per budget, the chosen allocation as a layer × module grid (one SVG per
//                        budget, #alloc-grid-<i>), color and text = bits, one color per width
//                        (the legend lists every width drawn, and every width of the run);
// then the numbers: #table-ppl (held-out PPL per budget × method, td[data-method]) and
// #table-players (φ, SE, isolated Δ per player, tr[data-player]; the chosen bits per budget).
// With more than two widths, #table-steps (φ, SE, isolated Δ and bytes saved per step,
// tr[data-step]) and #table-players (bytes at each width, the chosen bits per budget).
//
// The document is well-formed XML (XHTML-compatible: every element closed, attributes quoted,
// all text escaped with Escape), so a strict XML parser reads it as well as a browser.
#ifndef IMPQ_CLI_REPORT_REPORT_HTML_H_
#define IMPQ_CLI_REPORT_REPORT_HTML_H_

#include <string>

#include "cli/report/report_data.h"

namespace impq::cli::report {

// The page. `source` names the run file in the header (escaped like everything else).
// Deterministic: the same report and source give the same bytes.
std::string RenderReportHtml(const RunReport& report, const std::string& source);

}  // namespace impq::cli::report

#endif  // IMPQ_CLI_REPORT_REPORT_HTML_H_
