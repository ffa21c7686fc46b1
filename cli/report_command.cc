// impq report --from RUN.json --out report.html
//
// Draws the file `impq run --json RUN.json` wrote as one self-contained HTML page (inline SVG
// and CSS, nothing fetched; cli/report/report_html.h lists the figures) and writes it with a
// crash-safe write (temporary file, fsync, rename), so `--out` holds either its old content or
// the whole new page.
//
// Exit codes: 0 written; 2 bad input or usage — a missing or unreadable --from file, text that
// is not JSON, a JSON without a field the report needs (the message names it, e.g.
// `budgets[0].allocations[2].heldout_ppl`), missing flags; nothing is written then;
// 1 the page could not be written.
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/report/report_data.h"
#include "cli/report/report_html.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"

namespace impq::cli {

int ReportCommand(const std::vector<std::string>& args) {
  std::string from, out;
  bool quiet = false;
  FlagSet flags("impq report");
  flags.String("from", &from, "the file `impq run --json FILE` wrote", /*required=*/true);
  flags.String("out", &out, "the HTML page to write", /*required=*/true);
  flags.Bool("quiet", &quiet, "do not print where the page was written");
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;
  // Every message names the file; nothing has been written when one is printed.
  auto bad_input = [&](const std::string& what) {
    std::cerr << "impq report: " << what << " (nothing written)\n";
    return 2;
  };
  absl::StatusOr<std::string> text = ReadFileToString(from);
  if (!text.ok()) return bad_input(std::string(text.status().message()));
  nlohmann::json run;
  try {
    // nlohmann's parse error says where the text stops being JSON; it is caught right here.
    run = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::parse_error& e) {
    return bad_input(absl::StrCat(from, ": not valid JSON: ", e.what()));
  }
  absl::StatusOr<report::RunReport> data = report::ReadRunReport(run, from);
  if (!data.ok()) return bad_input(std::string(data.status().message()));
  const std::string html = report::RenderReportHtml(*data, from);
  if (absl::Status s = WriteFileAtomically(out, html); !s.ok()) {
    std::cerr << "impq report: " << s.message() << "\n";
    return 1;
  }
  if (!quiet) std::cout << "wrote " << out << " (" << html.size() << " bytes)\n";
  return 0;
}

}  // namespace impq::cli
