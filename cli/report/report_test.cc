// The report generator on run files written by job::JobResultToJson itself (so the reader
// follows the writer's schema), read back with a strict XML parser.
#include <cmath>
#include <set>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/report/mini_xml.h"
#include "cli/report/report_data.h"
#include "cli/report/report_html.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "job/job.h"

namespace impq::cli::report {
namespace {

using ::testing::HasSubstr;
using testing::ParseXml;
using testing::XmlElement;

constexpr const char* kKinds[7] = {"attn_q",   "attn_k", "attn_v",  "attn_o",
                                   "ffn_gate", "ffn_up", "ffn_down"};

job::MeasuredAllocation Allocation(const std::string& method, std::vector<int> bits, double avg,
                                      double ppl) {
  job::MeasuredAllocation m;
  m.method = method;
  m.bits = std::move(bits);
  m.average_bits = avg;
  m.heldout_ppl = ppl;
  m.heldout_nll = std::log(ppl);
  m.memory_bytes = 1000 + static_cast<int64_t>(avg * 100);
  if (method != "random") {
    m.candidate = true;
    m.tier = method.rfind("impq", 0) == 0 ? 1 : 0;
    m.calib_ppl = ppl * 1.1;
    m.calib_nll = std::log(m.calib_ppl);
  }
  return m;
}

// A job result of `layers` layers of module (or block) players with distinct values, two
// budgets and five methods, as RunJob would fill it.
job::JobResult FakeJob(int layers, bool module_players) {
  job::JobResult r;
  r.options.players =
      module_players ? quant::PlayerGranularity::kModule : quant::PlayerGranularity::kBlock;
  r.options.model_path = "/data/stories260K.bin";
  r.options.backend = "rtn";
  r.options.permutations = 6;
  r.options.seed = 17;
  r.options.random_draws = 3;
  r.model_config = absl::StrCat("llama dim=64 hidden=172 layers=", layers,
                                " heads=8 kv_heads=4 head_dim=8 vocab=512 seq_len=512 tied");
  const int n = module_players ? 7 * layers : layers;
  r.options.widths = {2, 4};
  for (int i = 0; i < n; ++i) {
    r.player_names.push_back(module_players ? absl::StrCat("layers.", i / 7, ".", kKinds[i % 7])
                                            : absl::StrCat("block", i));
    r.bytes2.push_back(100 + 10 * i);
    r.bytes4.push_back(180 + 17 * i);
    r.width_bytes.push_back(r.bytes2.back());
    r.width_bytes.push_back(r.bytes4.back());
    r.phi.push_back(0.01 * (i + 1) + 0.003 * (i % 3) - (i == 3 ? 0.05 : 0));  // one negative
    r.phi_se.push_back(0.002 * (i % 4));
    r.isolated_delta.push_back(0.8 * r.phi.back() - 0.0011 * i);
  }
  r.permutations_done = 6;
  r.stop_reason = "permutations";
  r.allocation_estimator = "covariance";
  r.cov_linear = r.phi;
  r.sur_linear = r.phi;
  r.cov_quadratic.assign(static_cast<size_t>(n) * n, 0);
  r.sur_quadratic.assign(static_cast<size_t>(n) * n, 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const double v =
          i == j ? 0.004 + 0.0001 * i : 0.0005 * std::cos(0.7 * (i + j)) * ((i * j) % 3 - 1);
      r.cov_quadratic[static_cast<size_t>(i) * n + j] = v;
      r.sur_quadratic[static_cast<size_t>(i) * n + j] = -v;
    }
  }
  r.heldout_ppl_fp32 = 4.149362;
  r.heldout_ppl_all4 = 4.802719;
  r.heldout_ppl_all2 = 445.940245;
  r.calib_evaluations = 128;
  r.heldout_evaluations = 27;
  r.total_seconds = 211.5;
  auto bits = [&](int seed) {
    std::vector<int> b;
    for (int i = 0; i < n; ++i) b.push_back((i * 7 + seed) % 5 < 2 ? 4 : 2);
    return b;
  };
  const std::vector<int> all2(n, 2);
  job::BudgetResult b1;
  b1.average_bits = 2.5;
  b1.budget_bytes = 99920;
  b1.allocations = {Allocation("impq", bits(0), 2.4903954, 80.540464),
                    Allocation("impq_window", bits(1), 2.4891, 83.882364),
                    Allocation("isolated", bits(2), 2.4542373, 108.086606),
                    Allocation("uniform", all2, 2.0, 445.940245),
                    Allocation("random", bits(3), 2.4723164, 182.805294)};
  b1.chosen = "impq_window";
  job::BudgetResult b2;
  b2.average_bits = 3.0;
  b2.budget_bytes = 114080;
  b2.allocations = {Allocation("impq", bits(4), 2.9981, 24.932),
                    Allocation("impq_window", bits(5), 2.99, 22.467123),
                    Allocation("isolated", bits(6), 2.97, 24.341),
                    Allocation("uniform", all2, 2.0, 445.940245),
                    Allocation("random", bits(7), 2.95, 87.961)};
  b2.chosen = "impq";
  r.budgets = {b1, b2};
  return r;
}

nlohmann::json FakeRun(int layers = 2, bool module_players = true) {
  return nlohmann::json::parse(job::JobResultToJson(FakeJob(layers, module_players)));
}

std::string Render(const nlohmann::json& run, const std::string& source = "run.json") {
  absl::StatusOr<RunReport> r = ReadRunReport(run, source);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? RenderReportHtml(*r, source) : "";
}

std::unique_ptr<XmlElement> Parse(const std::string& html) {
  auto doc = ParseXml(html);
  EXPECT_TRUE(doc.ok()) << doc.status();
  return doc.ok() ? std::move(*doc) : std::make_unique<XmlElement>();
}

// The number a cell shows and the tolerance its printed digits imply (half a unit of the last
// printed place).
void ExpectCellEquals(const std::string& cell, double expected, const std::string& what) {
  const std::string text(absl::StripAsciiWhitespace(cell));
  double shown;
  ASSERT_TRUE(absl::SimpleAtod(text, &shown)) << what << ": '" << text << "'";
  const size_t dot = text.find('.');
  const int decimals = dot == std::string::npos ? 0 : static_cast<int>(text.size() - dot - 1);
  EXPECT_NEAR(shown, expected, 0.5 * std::pow(10.0, -decimals) * (1 + 1e-9)) << what;
}

TEST(ReportTest, WellFormedWithFourFiguresEveryPlayerAndEveryBudget) {
  const nlohmann::json run = FakeRun();
  const std::string html = Render(run);
  auto doc = Parse(html);
  ASSERT_EQ(doc->name, "html");
  for (const char* id : {"fig-shapley", "fig-interactions", "fig-ppl", "fig-allocation",
                         "table-ppl", "table-bits", "table-players", "facts"}) {
    EXPECT_NE(doc->FindById(id), nullptr) << id;
  }
  const std::string shapley = doc->FindById("fig-shapley")->TextContent();
  const std::string heat = doc->FindById("fig-interactions")->TextContent();
  const std::string players = doc->FindById("table-players")->TextContent();
  for (int i = 0; i < 14; ++i) {
    const std::string label = absl::StrCat("L", i / 7, ".", kKinds[i % 7]);
    EXPECT_THAT(shapley, HasSubstr(label));
    EXPECT_THAT(heat, HasSubstr(label));
    EXPECT_THAT(players, HasSubstr(label));
  }
  const XmlElement* grids = doc->FindById("fig-allocation");
  EXPECT_EQ(grids->FindAll("svg").size(), 2u);
  for (const char* budget : {"2.50", "3.00"}) {
    EXPECT_THAT(grids->TextContent(), HasSubstr(absl::StrCat("b_avg ", budget)));
    EXPECT_THAT(doc->FindById("table-ppl")->TextContent(), HasSubstr(budget));
  }
  // No script, no external reference of any kind.
  EXPECT_TRUE(doc->FindAll("script").empty());
  EXPECT_TRUE(doc->FindAll("link").empty());
  EXPECT_TRUE(doc->FindAll("img").empty());
  // The only URLs are the two namespace names.
  for (size_t at = 0; (at = html.find("http", at)) != std::string::npos; ++at) {
    const std::string ns = html.substr(at, 26);
    EXPECT_TRUE(ns.rfind("http://www.w3.org/2000/svg", 0) == 0 ||
                ns.rfind("http://www.w3.org/1999/xht", 0) == 0)
        << ns;
  }
  EXPECT_EQ(html, Render(run)) << "not deterministic";
}

TEST(ReportTest, TableNumbersEqualTheJson) {
  const nlohmann::json run = FakeRun();
  auto doc = Parse(Render(run));
  const XmlElement* ppl = doc->FindById("table-ppl");
  const XmlElement* bits = doc->FindById("table-bits");
  ASSERT_NE(ppl, nullptr);
  ASSERT_NE(bits, nullptr);
  for (size_t b = 0; b < run["budgets"].size(); ++b) {
    const nlohmann::json& budget = run["budgets"][b];
    std::set<std::string> seen;
    // Rows are tagged with their budget, cells with their method.
    const std::string label = b == 0 ? "2.50" : "3.00";
    for (const XmlElement* tr : ppl->FindAll("tr")) {
      if (tr->Attribute("data-budget") != label) continue;
      for (const XmlElement* td : tr->FindAll("td")) {
        const std::string method = td->Attribute("data-method");
        if (method.empty()) continue;
        seen.insert(method);
        const std::string wanted =
            method == "chosen" ? budget["chosen"]["method"].get<std::string>() : method;
        for (const auto& a : budget["allocations"]) {
          if (a["method"] == wanted) {
            ExpectCellEquals(td->TextContent(), a["heldout_ppl"].get<double>(),
                             absl::StrCat(label, " ", method));
            // The hover text carries the calibration PPL the choice compared (random has none).
            if (method != "chosen" && a.contains("calibration_ppl")) {
              const std::string title = td->Attribute("title");
              ASSERT_EQ(title.rfind("calibration PPL ", 0), 0u) << title;
              ExpectCellEquals(title.substr(16, title.find(',') - 16),
                               a["calibration_ppl"].get<double>(), title);
            }
          }
        }
      }
    }
    EXPECT_EQ(seen.size(), budget["allocations"].size() + 1) << label;  // + the chosen column
    int checked = 0;
    for (const XmlElement* tr : bits->FindAll("tr")) {
      if (tr->Attribute("data-budget") != label) continue;
      for (const XmlElement* td : tr->FindAll("td")) {
        for (const auto& a : budget["allocations"]) {
          if (a["method"] == td->Attribute("data-method")) {
            ExpectCellEquals(td->TextContent(), a["average_bits"].get<double>(), label);
            ++checked;
          }
        }
      }
    }
    EXPECT_EQ(checked, static_cast<int>(budget["allocations"].size()));
  }
  const auto rows = doc->FindById("table-players")->FindAll("tr");
  int players = 0;
  for (const XmlElement* tr : rows) {
    const std::string name = tr->Attribute("data-player");
    if (name.empty()) continue;
    int i = -1;
    for (size_t k = 0; k < run["model"]["players"].size(); ++k) {
      if (run["model"]["players"][k]["name"] == name) i = static_cast<int>(k);
    }
    ASSERT_GE(i, 0) << name;
    ++players;
    const auto cells = tr->FindAll("td");
    ASSERT_EQ(cells.size(), 5u + run["budgets"].size());
    ExpectCellEquals(cells[1]->TextContent(), run["spqe"]["phi"][i].get<double>(), name + " phi");
    ExpectCellEquals(cells[2]->TextContent(), run["spqe"]["standard_error"][i].get<double>(),
                     name + " se");
    ExpectCellEquals(cells[3]->TextContent(),
                     run["baseline_scores"]["isolated_delta"][i].get<double>(), name + " iso");
    ExpectCellEquals(cells[4]->TextContent(),
                     run["model"]["players"][i]["bytes4"].get<double>() -
                         run["model"]["players"][i]["bytes2"].get<double>(),
                     name + " bytes");
    for (size_t b = 0; b < run["budgets"].size(); ++b) {
      ExpectCellEquals(cells[5 + b]->TextContent(),
                       run["budgets"][b]["chosen"]["bits"][i].get<double>(), name + " bits");
    }
  }
  EXPECT_EQ(players, 14);
}

// Figure 4 draws the chosen bits of every player in its layer × module cell.
TEST(ReportTest, AllocationGridsShowTheChosenBitsPerCell) {
  const nlohmann::json run = FakeRun();
  auto doc = Parse(Render(run));
  for (size_t b = 0; b < 2; ++b) {
    const XmlElement* grid = doc->FindById(absl::StrCat("alloc-grid-", b));
    ASSERT_NE(grid, nullptr);
    int cells = 0;
    for (const XmlElement* rect : grid->FindAll("rect")) {
      const std::string title = rect->TextContent();  // "L1.ffn_up: 4 bits"
      std::vector<std::string> parts = absl::StrSplit(title, ": ");
      ASSERT_EQ(parts.size(), 2u) << title;
      const int i =
          std::stoi(parts[0].substr(1, 1)) * 7 +
          static_cast<int>(std::find(std::begin(kKinds), std::end(kKinds), parts[0].substr(3)) -
                           std::begin(kKinds));
      EXPECT_EQ(parts[1], absl::StrCat(run["budgets"][b]["chosen"]["bits"][i].get<int>(), " bits"))
          << title;
      ++cells;
    }
    EXPECT_EQ(cells, 14);
  }
}

TEST(ReportTest, PplFigureHasEveryMethodAtEveryBudgetAndTheReferences) {
  const nlohmann::json run = FakeRun();
  auto doc = Parse(Render(run));
  const XmlElement* fig = doc->FindById("fig-ppl");
  const std::string text = fig->TextContent();
  for (const char* title :
       {"IMPQ (covariance) at b_avg 2.50: 2.490 bits, held-out PPL 80.540",
        "IMPQ (window) at b_avg 3.00: 2.990 bits, held-out PPL 22.467",
        "random (mean of 3) at b_avg 2.50: 2.472 bits, held-out PPL 182.805",
        "chosen at b_avg 2.50: IMPQ (window), 2.489 bits, held-out PPL 83.882",
        "chosen at b_avg 3.00: IMPQ (covariance), 2.998 bits, held-out PPL 24.932", "fp32 4.149",
        "all 4-bit 4.803", "all 2-bit 445.940"}) {
    EXPECT_THAT(text, HasSubstr(title));
  }
  // Without references in the file there are no reference lines.
  nlohmann::json bare = run;
  bare.erase("references");
  bare.erase("timings");
  bare.erase("cost");
  auto bare_doc = Parse(Render(bare));
  EXPECT_THAT(bare_doc->FindById("fig-ppl")->TextContent(), ::testing::Not(HasSubstr("fp32")));
  EXPECT_THAT(bare_doc->FindById("facts")->TextContent(), ::testing::Not(HasSubstr("wall time")));
}

TEST(ReportTest, BlockPlayersFillWholeRows) {
  const nlohmann::json run = FakeRun(/*layers=*/5, /*module_players=*/false);
  auto doc = Parse(Render(run));
  const std::string shapley = doc->FindById("fig-shapley")->TextContent();
  for (int l = 0; l < 5; ++l) EXPECT_THAT(shapley, HasSubstr(absl::StrCat("L", l)));
  const XmlElement* grid = doc->FindById("alloc-grid-1");
  ASSERT_NE(grid, nullptr);
  int cells = 0;
  for (const XmlElement* rect : grid->FindAll("rect")) {
    const std::string title = rect->TextContent();  // "L3: 4 bits"
    const int l = title[1] - '0';
    EXPECT_EQ(title, absl::StrCat("L", l, ": ", run["budgets"][1]["chosen"]["bits"][l].get<int>(),
                                  " bits"));
    ++cells;
  }
  EXPECT_EQ(cells, 35);
}

TEST(ReportTest, HostileTextIsEscaped) {
  nlohmann::json run = FakeRun();
  const std::string evil = "</title><script>alert('x')</script> & \"q\" \x01 ]]> <!--";
  run["settings"]["model"] = evil;
  run["model"]["players"][3]["name"] = evil;
  run["budgets"][0]["allocations"][2]["method"] = evil;
  const std::string html = Render(run, "a<b>&c.json");
  auto doc = ParseXml(html);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_TRUE((*doc)->FindAll("script").empty());
  // The text survives, the control character replaced (XML cannot carry it).
  const std::string shown = absl::StrReplaceAll(evil, {{"\x01", "\xEF\xBF\xBD"}});
  EXPECT_THAT((*doc)->FindById("facts")->TextContent(), HasSubstr(shown));
  EXPECT_THAT((*doc)->FindById("facts")->TextContent(), HasSubstr("a<b>&c.json"));
  EXPECT_THAT((*doc)->FindById("table-players")->TextContent(), HasSubstr(shown));
  EXPECT_THAT((*doc)->FindById("table-ppl")->TextContent(), HasSubstr(shown));
  bool found = false;
  for (const XmlElement* tr : (*doc)->FindById("table-players")->FindAll("tr")) {
    found = found || tr->Attribute("data-player") == shown;
  }
  EXPECT_TRUE(found);
}

// Each required field, removed, is named in the error.
TEST(ReportTest, MissingOrBadFieldsAreNamed) {
  const nlohmann::json run = FakeRun();
  struct Case {
    std::string pointer;  // what to erase (JSON pointer)
    std::string message;
  };
  const Case cases[] = {
      {"/settings", "run.json: settings is missing"},
      {"/settings/players", "run.json: settings.players is missing"},
      {"/model/players", "run.json: model.players is missing"},
      {"/model/players/3/name", "run.json: model.players[3].name is missing"},
      {"/spqe/phi", "run.json: spqe.phi is missing"},
      {"/spqe/standard_error", "run.json: spqe.standard_error is missing"},
      {"/baseline_scores/isolated_delta", "run.json: baseline_scores.isolated_delta is missing"},
      {"/interactions/allocation_estimator",
       "run.json: interactions.allocation_estimator is missing"},
      {"/interactions/covariance/K", "run.json: interactions.covariance.K is missing"},
      {"/budgets", "run.json: not an `impq run --json` file (no \"budgets\""},
      {"/budgets/1/average_bits", "run.json: budgets[1].average_bits is missing"},
      {"/budgets/1/chosen", "run.json: budgets[1].chosen.method is missing"},
      {"/budgets/0/allocations/2/heldout_ppl",
       "run.json: budgets[0].allocations[2].heldout_ppl is missing"},
      {"/budgets/0/allocations/4/bits", "run.json: budgets[0].allocations[4].bits is missing"},
      {"/budgets/0/allocations/1/average_bits",
       "run.json: budgets[0].allocations[1].average_bits is missing"},
  };
  for (const Case& c : cases) {
    nlohmann::json broken = run;
    const nlohmann::json::json_pointer p(c.pointer);
    broken[p.parent_pointer()].erase(p.back());
    absl::StatusOr<RunReport> r = ReadRunReport(broken, "run.json");
    ASSERT_FALSE(r.ok()) << c.pointer;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(c.message)) << c.pointer;
  }
  auto expect_error = [&](nlohmann::json broken, const std::string& message) {
    absl::StatusOr<RunReport> r = ReadRunReport(broken, "run.json");
    ASSERT_FALSE(r.ok()) << message;
    EXPECT_THAT(r.status().message(), HasSubstr(message));
  };
  nlohmann::json j = run;
  j["spqe"]["phi"].erase(0);
  expect_error(j, "spqe.phi has 13 entries (expected 14, one per player)");
  j = run;
  j["budgets"][1]["allocations"][0]["heldout_ppl"] = "80";
  expect_error(j, "budgets[1].allocations[0].heldout_ppl is \"80\" (expected a perplexity > 0)");
  j = run;
  j["budgets"][1]["allocations"][0]["heldout_ppl"] = nullptr;  // how a NaN is written
  expect_error(j, "budgets[1].allocations[0].heldout_ppl is null (expected a perplexity > 0)");
  j = run;
  j["budgets"][0]["allocations"][1]["heldout_ppl"] = 0;
  expect_error(j, "budgets[0].allocations[1].heldout_ppl is 0 (expected a perplexity > 0)");
  j = run;
  j["budgets"][0]["allocations"][1]["average_bits"] = nullptr;
  expect_error(j, "budgets[0].allocations[1].average_bits is null (expected a number)");
  j = run;
  j["budgets"][0]["chosen"]["method"] = "lim";
  expect_error(j, "budgets[0].chosen.method is \"lim\", not one of the budget's allocations");
  j = run;
  j["budgets"][0]["allocations"][3]["bits"][5] = 0;
  expect_error(j, "budgets[0].allocations[3].bits[5] is 0 (expected a width");
  j = run;
  j["interactions"]["covariance"]["K"][2].erase(1);
  expect_error(j, "interactions.covariance.K[2] has 13 entries (expected 14");
  j = run;
  j["interactions"]["covariance"]["K"].erase(2);
  expect_error(j, "interactions.covariance.K has 13 rows (expected 14");
  j = run;
  j["spqe"]["standard_error"][4] = -0.5;
  expect_error(j, "spqe.standard_error[4] is -0.5 (expected a number >= 0)");
  j = run;
  j["settings"]["players"] = "tensor";
  expect_error(j, "settings.players is \"tensor\" (expected block or module)");
  j = run;
  j["budgets"] = nlohmann::json::array();
  expect_error(j, "budgets is empty");
  j = run;
  j["timings"]["total_s"] = "soon";
  expect_error(j, "timings.total_s is \"soon\" (expected a number)");
  j = run;
  j["references"]["heldout_ppl_fp32"] = -1;
  expect_error(j, "references.heldout_ppl_fp32 is -1 (expected a perplexity > 0)");
  expect_error(nlohmann::json::array(), "not an `impq run --json` file");
}

// A run over widths {2, 3, 4, 8} as RunJob fills it: φ, SE, isolated Δ and K per step of the
// ladder (3 per player), the allocations' bits from the four widths.
job::JobResult FakeFourWidthJob(int layers) {
  job::JobResult r = FakeJob(layers, /*module_players=*/true);
  const std::vector<int> widths = {2, 3, 4, 8};
  const int n = 7 * layers, ns = 3 * n;
  r.options.widths = widths;
  r.width_bytes.clear();
  for (int i = 0; i < n; ++i) {
    for (int bits : widths) r.width_bytes.push_back((10 + i) * (bits + 1));
  }
  r.phi.clear();
  r.phi_se.clear();
  r.isolated_delta.clear();
  for (int s = 0; s < ns; ++s) {
    // Deeper steps (to fewer bits) cost more.
    r.phi.push_back(0.002 * (s % 3 + 1) * (s % 3 + 1) + 0.0003 * (s / 3));
    r.phi_se.push_back(0.0004 * (s % 5));
    r.isolated_delta.push_back(0.9 * r.phi.back());
  }
  r.cov_linear = r.phi;
  r.sur_linear.clear();  // fitted in the binary game only
  r.sur_quadratic.clear();
  r.cov_quadratic.assign(static_cast<size_t>(ns) * ns, 0);
  for (int i = 0; i < ns; ++i) {
    for (int j = 0; j < ns; ++j) {
      r.cov_quadratic[static_cast<size_t>(i) * ns + j] =
          i == j ? 0.003 : 0.0002 * std::sin(0.3 * (i + 2 * j));
    }
  }
  for (job::BudgetResult& b : r.budgets) {
    for (size_t k = 0; k < b.allocations.size(); ++k) {
      std::vector<int>& bits = b.allocations[k].bits;
      for (int i = 0; i < n; ++i) bits[i] = widths[(i + k + (b.average_bits > 2.7)) % 4];
    }
  }
  return r;
}

TEST(ReportTest, FourWidthsDrawEveryStepAndEveryWidth) {
  const nlohmann::json run =
      nlohmann::json::parse(job::JobResultToJson(FakeFourWidthJob(/*layers=*/2)));
  ASSERT_EQ(run["steps"].size(), 42u);
  const std::string html = Render(run);
  auto doc = Parse(html);  // well-formed XML
  ASSERT_EQ(doc->name, "html");
  for (const char* id : {"fig-shapley", "fig-interactions", "fig-ppl", "fig-allocation",
                         "table-ppl", "table-bits", "table-players", "table-steps", "facts"}) {
    EXPECT_NE(doc->FindById(id), nullptr) << id;
  }
  // Figure 1 and the step table: every step, labelled with its player and its two widths.
  const std::string shapley = doc->FindById("fig-shapley")->TextContent();
  EXPECT_THAT(shapley, HasSubstr("when the player goes one width down"));
  const auto step_rows = doc->FindById("table-steps")->FindAll("tr");
  int steps = 0;
  for (const XmlElement* tr : step_rows) {
    const std::string step = tr->Attribute("data-step");
    if (step.empty()) continue;
    const int s = std::stoi(step);
    ASSERT_EQ(s, steps);
    ++steps;
    const int i = s / 3;
    const nlohmann::json& want = run["steps"][s];
    const std::string label = absl::StrCat("L", i / 7, ".", kKinds[i % 7], " ",
                                           want["from_bits"].get<int>(), "→",
                                           want["to_bits"].get<int>());
    EXPECT_THAT(shapley, HasSubstr(label + ": φ = "));
    EXPECT_THAT(shapley, HasSubstr(label + ": isolated Δ = "));
    EXPECT_EQ(tr->Attribute("data-player"), run["model"]["players"][i]["name"]);
    const auto cells = tr->FindAll("td");
    ASSERT_EQ(cells.size(), 5u);
    EXPECT_EQ(std::string(absl::StripAsciiWhitespace(cells[0]->TextContent())), label);
    ExpectCellEquals(cells[1]->TextContent(), run["spqe"]["phi"][s].get<double>(), label);
    ExpectCellEquals(cells[2]->TextContent(), run["spqe"]["standard_error"][s].get<double>(),
                     label);
    ExpectCellEquals(cells[3]->TextContent(),
                     run["baseline_scores"]["isolated_delta"][s].get<double>(), label);
    // The bytes the step saves: the player's bytes at the two widths.
    const nlohmann::json& wb = run["width_bytes"][i];
    auto at = [&](int bits) { return wb[bits == 2 ? 0 : bits == 3 ? 1 : bits == 4 ? 2 : 3]; };
    ExpectCellEquals(cells[4]->TextContent(),
                     at(want["from_bits"]).get<double>() - at(want["to_bits"]).get<double>(),
                     label);
  }
  EXPECT_EQ(steps, 42);
  // Step 0 of player 0 goes from 8 to 4 bits, step 2 from 3 to 2.
  EXPECT_THAT(shapley, HasSubstr("L0.attn_q 8→4"));
  EXPECT_THAT(shapley, HasSubstr("L0.attn_q 4→3"));
  EXPECT_THAT(shapley, HasSubstr("L0.attn_q 3→2"));
  // The interaction matrix is steps × steps.
  EXPECT_EQ(doc->FindById("interactions-svg")->FindAll("rect").size(), 42u * 42u + 2u);

  // Figure 4: every width in the legend with its own color, every cell as the chosen bits.
  const std::string page_text = doc->TextContent();
  std::set<std::string> colors;
  for (const XmlElement* span : doc->FindAll("span")) {
    if (span->Attribute("class") == "swatch") colors.insert(span->Attribute("style"));
  }
  EXPECT_EQ(colors.size(), 4u);
  for (int bits : {2, 3, 4, 8}) {
    EXPECT_THAT(html, HasSubstr(absl::StrCat("</span>", bits, " bits")));
  }
  for (size_t b = 0; b < 2; ++b) {
    const XmlElement* grid = doc->FindById(absl::StrCat("alloc-grid-", b));
    ASSERT_NE(grid, nullptr);
    std::set<std::string> fills;
    for (const XmlElement* rect : grid->FindAll("rect")) {
      const std::string title = rect->TextContent();  // "L1.ffn_up: 8 bits"
      const int i =
          std::stoi(title.substr(1, 1)) * 7 +
          static_cast<int>(std::find(std::begin(kKinds), std::end(kKinds),
                                     title.substr(3, title.find(':') - 3)) -
                           std::begin(kKinds));
      EXPECT_EQ(title.substr(title.find(": ") + 2),
                absl::StrCat(run["budgets"][b]["chosen"]["bits"][i].get<int>(), " bits"));
      fills.insert(rect->Attribute("fill"));
    }
    EXPECT_EQ(fills.size(), 4u) << "one color per width";
  }
  // The players table: bytes at every width and the chosen bits.
  int players = 0;
  for (const XmlElement* tr : doc->FindById("table-players")->FindAll("tr")) {
    if (tr->Attribute("data-player").empty()) continue;
    const auto cells = tr->FindAll("td");
    ASSERT_EQ(cells.size(), 1u + 4u + 2u);
    for (int w = 0; w < 4; ++w) {
      ExpectCellEquals(cells[1 + w]->TextContent(),
                       run["width_bytes"][players][w].get<double>(), "bytes");
    }
    for (int b = 0; b < 2; ++b) {
      ExpectCellEquals(cells[5 + b]->TextContent(),
                       run["budgets"][b]["chosen"]["bits"][players].get<double>(), "bits");
    }
    ++players;
  }
  EXPECT_EQ(players, 14);
  EXPECT_THAT(doc->FindById("facts")->TextContent(), HasSubstr("2, 3, 4, 8 bits: 42 steps"));
  EXPECT_THAT(page_text, HasSubstr("held-out PPL"));
  EXPECT_EQ(html, Render(run)) << "not deterministic";

  // Step-indexed arrays of the wrong length are named with the step count.
  nlohmann::json j = run;
  j["spqe"]["phi"].erase(0);
  absl::StatusOr<RunReport> r = ReadRunReport(j, "run.json");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("spqe.phi has 41 entries (expected 42, one per step)"));
}

TEST(ReportTest, MethodTitlesFollowTheRunTable) {
  absl::StatusOr<RunReport> r = ReadRunReport(FakeRun(), "run.json");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(MethodTitle(*r, "impq"), "IMPQ (covariance)");
  EXPECT_EQ(MethodTitle(*r, "impq_search"), "IMPQ (measured search)");
  EXPECT_EQ(MethodTitle(*r, "isolated"), "isolated Δ");
  EXPECT_EQ(MethodTitle(*r, "random"), "random (mean of 3)");
  EXPECT_EQ(MethodTitle(*r, "something_new"), "something_new");
}

}  // namespace
}  // namespace impq::cli::report
