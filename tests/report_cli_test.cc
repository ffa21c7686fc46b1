// End-to-end: `impq report` on the file a real (small) `impq run --json` wrote, its bad-input
// handling, and — when Debian's chromium is installed — the page rendered by a headless
// browser, every figure measured.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/report/mini_xml.h"
#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/shell.h"

namespace impq {
namespace {

using cli::report::testing::ParseXml;
using cli::report::testing::XmlElement;
using ::testing::HasSubstr;

using Result = impq::tests::ShellResult;
using impq::tests::Shell;

Result Impq(const std::string& args) { return Shell(std::string(IMPQ_BINARY) + " " + args); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string FreshDir(const std::string& name) {
  const std::string dir = TempFilePath(name);
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  return dir;
}

// One small real run per test process (2 permutations, 2 budgets, few documents: ~10 s on 2
// cores), shared by the tests that need it.
struct RealRun {
  std::string dir, json_path, report_path;
  nlohmann::json json;
  Result run, report;
};

const RealRun& TheRun() {
  static const RealRun* const run = [] {
    auto* r = new RealRun;
    r->dir = FreshDir("report_cli");
    r->json_path = r->dir + "/run.json";
    r->report_path = r->dir + "/report.html";
    r->run = Impq("run --quiet --threads 2 --data " + SharedDataPath("") +
                  " --permutations 2 --budgets 2.5,3.0 --calib-docs 6 --heldout-docs 8 --json " +
                  r->json_path);
    if (r->run.exit_code == 0) {
      r->json = nlohmann::json::parse(*ReadFileToString(r->json_path));
      r->report = Impq("report --from " + r->json_path + " --out " + r->report_path);
    }
    return r;
  }();
  return *run;
}

// Removes the shared run's folder after the last test of the process.
class CleanUp : public ::testing::Environment {
 public:
  void TearDown() override {
    EXPECT_EQ(
        std::system(("rm -rf " + TempFilePath("report_cli") + " " + TempFilePath("report_cli_bad"))
                        .c_str()),
        0);
  }
};
const auto* const kCleanUp = ::testing::AddGlobalTestEnvironment(new CleanUp);

// "layers.3.ffn_down" -> "L3.ffn_down", as the report labels module players.
std::string Label(const std::string& name) {
  std::vector<std::string> parts = absl::StrSplit(name, '.');
  return parts.size() == 3 ? absl::StrCat("L", parts[1], ".", parts[2]) : name;
}

TEST(ReportCliTest, ReportOfARealRun) {
  const RealRun& r = TheRun();
  ASSERT_EQ(r.run.exit_code, 0) << r.run.out;
  ASSERT_EQ(r.report.exit_code, 0) << r.report.out;
  EXPECT_THAT(r.report.out, HasSubstr("wrote " + r.report_path));
  absl::StatusOr<std::string> html = ReadFileToString(r.report_path);
  ASSERT_TRUE(html.ok()) << html.status();
  auto doc = ParseXml(*html);
  ASSERT_TRUE(doc.ok()) << doc.status();
  if (Exists("/usr/bin/xmllint")) {  // a second, independent XML parser
    Result lint = Shell("/usr/bin/xmllint --noout " + r.report_path);
    EXPECT_EQ(lint.exit_code, 0) << lint.out;
  }
  const std::string shapley = (*doc)->FindById("fig-shapley")->TextContent();
  const std::string heat = (*doc)->FindById("fig-interactions")->TextContent();
  ASSERT_EQ(r.json["model"]["players"].size(), 35u);
  for (const auto& p : r.json["model"]["players"]) {
    const std::string label = Label(p["name"].get<std::string>());
    EXPECT_THAT(shapley, HasSubstr(label));
    EXPECT_THAT(heat, HasSubstr(label));
  }
  const XmlElement* table = (*doc)->FindById("table-ppl");
  ASSERT_NE(table, nullptr);
  int cells = 0;
  for (const auto& budget : r.json["budgets"]) {
    char label[16];
    std::snprintf(label, sizeof(label), "%.2f", budget["average_bits"].get<double>());
    EXPECT_THAT((*doc)->FindById("fig-allocation")->TextContent(),
                HasSubstr(absl::StrCat("b_avg ", label)));
    for (const XmlElement* tr : table->FindAll("tr")) {
      if (tr->Attribute("data-budget") != label) continue;
      for (const XmlElement* td : tr->FindAll("td")) {
        std::string method = td->Attribute("data-method");
        if (method == "chosen") method = budget["chosen"]["method"].get<std::string>();
        for (const auto& a : budget["allocations"]) {
          if (a["method"] != method) continue;
          double shown;
          ASSERT_TRUE(absl::SimpleAtod(absl::StripAsciiWhitespace(td->TextContent()), &shown));
          EXPECT_NEAR(shown, a["heldout_ppl"].get<double>(), 0.0005 + 1e-12) << label << method;
          ++cells;
        }
      }
    }
    // Every allocation of the budget, plus the chosen column.
    cells -= static_cast<int>(budget["allocations"].size()) + 1;
    EXPECT_EQ(cells, 0) << label;
    cells = 0;
  }
}

TEST(ReportCliTest, BadInputExitsTwoNamesTheProblemAndWritesNothing) {
  const std::string dir = FreshDir("report_cli_bad");
  const std::string out = dir + "/report.html";
  const std::string kept = dir + "/kept.html";
  ASSERT_TRUE(WriteFileAtomically(kept, "old page").ok());
  auto expect_rejected = [&](const std::string& from, const std::string& message) {
    for (const std::string& target : {out, kept}) {
      Result r = Impq("report --from " + from + " --out " + target);
      EXPECT_EQ(r.exit_code, 2) << r.out;
      EXPECT_THAT(r.out, HasSubstr(message));
      EXPECT_THAT(r.out, HasSubstr("nothing written"));
    }
    EXPECT_FALSE(Exists(out)) << from;
    EXPECT_EQ(*ReadFileToString(kept), "old page") << from;
  };
  expect_rejected(dir + "/missing.json", dir + "/missing.json");
  ASSERT_TRUE(WriteFileAtomically(dir + "/garbage.json", "{\"budgets\": [1, 2,").ok());
  expect_rejected(dir + "/garbage.json", "not valid JSON");
  // JSON, but not a whole run file: the first missing field is named.
  ASSERT_TRUE(
      WriteFileAtomically(dir + "/partial.json", R"({"budgets": [{"average_bits": 2.5}]})").ok());
  expect_rejected(dir + "/partial.json", dir + "/partial.json: settings is missing");
  // Nothing but the inputs is left behind (no temporary file either).
  Result ls = Shell("ls -A " + dir);
  EXPECT_EQ(ls.out, "garbage.json\nkept.html\npartial.json\n");

  Result r = Impq("report --from " + dir + "/partial.json");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("--out"));
}

// The page in a real browser engine: a copy with a measuring script appended (the report
// itself carries none) is loaded by headless chromium, which prints the DOM after the script
// ran; every figure's SVG must have been laid out at its declared, nonzero size and every
// label in it must have rendered with a nonzero width.
TEST(ReportCliTest, EveryFigureRendersInAHeadlessBrowser) {
  // $IMPQ_CHROMIUM names another browser binary (chromium or chrome).
  const char* env = std::getenv("IMPQ_CHROMIUM");
  const std::string chromium = env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
  if (!Exists(chromium)) {
    GTEST_SKIP() << chromium << " is not installed (Debian package chromium)";
  }
  const RealRun& r = TheRun();
  ASSERT_EQ(r.run.exit_code, 0) << r.run.out;
  ASSERT_EQ(r.report.exit_code, 0) << r.report.out;
  std::string html = *ReadFileToString(r.report_path);
  const size_t body_end = html.rfind("</body>");
  ASSERT_NE(body_end, std::string::npos);
  html.insert(body_end, R"js(<script>
const lines = [];
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  let texts = 0, drawn = 0;
  for (const t of svg.querySelectorAll('text')) {
    ++texts;
    if (t.getBBox().width > 0) ++drawn;
  }
  lines.push([svg.id, box.width, box.height, svg.getAttribute('width'),
              svg.getAttribute('height'), texts, drawn].join(' '));
}
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = lines.join('\n');
document.body.appendChild(pre);
</script>
)js");
  const std::string page = r.dir + "/measured.html";
  ASSERT_TRUE(WriteFileAtomically(page, html).ok());
  const std::string profile = FreshDir("report_cli_chromium_profile");
  Result dom =
      Shell("timeout 120 " + chromium +
            " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
            " --disable-background-networking --disable-component-update --disable-sync"
            " --disable-dev-shm-usage"
            " --user-data-dir=" +
            profile + " --window-size=1400,3000 --dump-dom file://" + page + " 2>/dev/null");
  ASSERT_EQ(dom.exit_code, 0) << dom.out.substr(0, 2000);
  const size_t begin = dom.out.find("<pre id=\"measured\">");
  ASSERT_NE(begin, std::string::npos) << dom.out.substr(0, 2000);
  const size_t end = dom.out.find("</pre>", begin);
  const std::string measured = dom.out.substr(begin + 19, end - begin - 19);
  std::vector<std::string> ids;
  for (absl::string_view line : absl::StrSplit(measured, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    ASSERT_EQ(f.size(), 7u) << line;
    double w, h, declared_w, declared_h;
    int texts, drawn;
    ASSERT_TRUE(absl::SimpleAtod(f[1], &w) && absl::SimpleAtod(f[2], &h) &&
                absl::SimpleAtod(f[3], &declared_w) && absl::SimpleAtod(f[4], &declared_h) &&
                absl::SimpleAtoi(f[5], &texts) && absl::SimpleAtoi(f[6], &drawn))
        << line;
    EXPECT_GT(w, 0) << line;
    EXPECT_GT(h, 0) << line;
    EXPECT_NEAR(w, declared_w, 0.5) << line;
    EXPECT_NEAR(h, declared_h, 0.5) << line;
    EXPECT_GT(texts, 0) << line;
    EXPECT_EQ(drawn, texts) << line;
    ids.push_back(f[0]);
  }
  EXPECT_THAT(ids, ::testing::ElementsAre("shapley-svg", "interactions-svg", "ppl-svg",
                                          "alloc-grid-0", "alloc-grid-1"));
  EXPECT_EQ(std::system(("rm -rf " + profile).c_str()), 0);
}

}  // namespace
}  // namespace impq
