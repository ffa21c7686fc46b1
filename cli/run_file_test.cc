// cli/run_file: the typed reader of `impq run --json` files, on small hand-made files (the
// real ones are covered end to end by tests/export_test.cc).
#include "cli/run_file.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace impq::cli {
namespace {

using ::testing::HasSubstr;
using nlohmann::json;

// A run of a 2-layer model with block players and two budgets.
json SmallRun() {
  json j;
  j["settings"] = {{"players", "block"},        {"backend", "rtn"},
                   {"group_size", 64},          {"model", "m.bin"},
                   {"tokenizer", "t.bin"},      {"calibration_text", "c.txt"},
                   {"calibration_docs", 4},     {"ctx", 512},
                   {"eval_mode", "document"}};
  j["model"] = {{"config", "llama dim=64 hidden=172 layers=2 heads=8 kv_heads=4 head_dim=8 vocab=512"},
                {"players", {{{"name", "block0"}}, {{"name", "block1"}}}}};
  j["budgets"] = json::array();
  j["budgets"].push_back({{"average_bits", 2.5},
                          {"chosen", {{"method", "isolated"}}},
                          {"allocations",
                           {{{"method", "impq"}, {"bits", {2, 4}}},
                            {{"method", "isolated"}, {"bits", {4, 2}}, {"heldout_ppl", 9.5}}}}});
  j["budgets"].push_back({{"average_bits", 3.0},
                          {"allocations", {{{"method", "impq"}, {"bits", {4, 4}}}}}});
  return j;
}

TEST(RunFileTest, ReadsSettingsModelAndAllocations) {
  auto run = ParseRunJson(SmallRun(), "run.json");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->players, quant::PlayerGranularity::kBlock);
  EXPECT_EQ(run->backend, "rtn");
  EXPECT_EQ(run->group_size, 64);
  EXPECT_EQ(run->calibration_docs, 4);
  EXPECT_EQ(run->model.arch, "llama");
  EXPECT_EQ(run->model.n_layers, 2);
  EXPECT_EQ(run->model.q_dim, 64);
  EXPECT_EQ(run->model.hidden_dim, 172);
  ASSERT_EQ(run->budgets.size(), 2u);
  EXPECT_EQ(run->budgets[0].chosen, "isolated");
  EXPECT_EQ(run->budgets[0].allocations[1].heldout_ppl, 9.5);
  EXPECT_EQ(run->BudgetList(), "average bits 2.5, 3");
}

TEST(RunFileTest, PicksTheChosenOrTheNamedAllocation) {
  auto run = ParseRunJson(SmallRun(), "run.json");
  ASSERT_TRUE(run.ok());
  auto chosen = PickAllocation(*run, 2.5, "");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(chosen->allocation->bits, (std::vector<int>{4, 2}));
  EXPECT_EQ(chosen->Describe(), "isolated at b_avg 2.5");
  auto named = PickAllocation(*run, 2.5, "impq");
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->allocation->bits, (std::vector<int>{2, 4}));

  auto missing_budget = PickAllocation(*run, 2.75, "", PickFlags{"--assign-budget", "--m"});
  EXPECT_THAT(std::string(missing_budget.status().message()),
              HasSubstr("--assign-budget 2.75: not in run.json (its budgets: average bits 2.5, 3)"));
  auto no_budget = PickAllocation(*run, std::nullopt, "");
  EXPECT_THAT(std::string(no_budget.status().message()), HasSubstr("pick one with --budget"));
  auto no_method = PickAllocation(*run, 2.5, "lim");
  EXPECT_THAT(std::string(no_method.status().message()),
              HasSubstr("--method lim: no such allocation at average bits 2.5 in run.json "
                        "(it has: impq, isolated)"));
  auto no_chosen = PickAllocation(*run, 3.0, "chosen");
  EXPECT_THAT(std::string(no_chosen.status().message()), HasSubstr("records no chosen allocation"));
}

TEST(RunFileTest, ErrorsNameTheFieldAndWhatIsThere) {
  auto expect_error = [](json j, const std::string& text) {
    auto run = ParseRunJson(j, "run.json");
    ASSERT_FALSE(run.ok()) << text;
    EXPECT_THAT(std::string(run.status().message()), HasSubstr(text));
  };
  json j = SmallRun();
  j["settings"].erase("players");
  expect_error(j, "run.json: settings.players is missing");
  j = SmallRun();
  j["settings"]["group_size"] = "64";
  expect_error(j, "settings.group_size is \"64\" (expected an integer)");
  j = SmallRun();
  j["budgets"][0]["allocations"][1]["bits"] = {4, 2, 4};
  expect_error(j, "budgets[0].allocations[1].bits has 3 widths for 2 players");
  j = SmallRun();
  j["budgets"][1]["allocations"][0]["bits"][1] = 5;
  expect_error(j, "budgets[1].allocations[0].bits[1] is 5");
  j = SmallRun();
  j["model"]["config"] = "llama dim=64";
  expect_error(j, "model.config is \"llama dim=64\"");
  j = SmallRun();
  j["settings"]["players"] = "module";
  expect_error(j, "model.players has 2 entries, but 2 layers at module granularity make 14");
  expect_error(json{{"bits", {2, 4}}}, "not an `impq run --json` file");
}

TEST(RunFileTest, OlderFilesHaveWidthsTwoAndFourOneStepPerPlayer) {
  json j = SmallRun();
  j["model"]["players"][0]["bytes2"] = 100;
  j["model"]["players"][0]["bytes4"] = 180;
  j["model"]["players"][1]["bytes2"] = 110;
  j["model"]["players"][1]["bytes4"] = 197;
  auto run = ParseRunJson(j, "run.json");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->widths, (std::vector<int>{2, 4}));
  EXPECT_TRUE(run->binary());
  ASSERT_EQ(run->steps.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(run->steps[i].player, i);
    EXPECT_EQ(run->steps[i].from_bits, 4);
    EXPECT_EQ(run->steps[i].to_bits, 2);
  }
  EXPECT_EQ(run->width_bytes, (std::vector<std::vector<int64_t>>{{100, 180}, {110, 197}}));
  // Without bytes in the file there are none.
  run = ParseRunJson(SmallRun(), "run.json");
  ASSERT_TRUE(run.ok());
  EXPECT_TRUE(run->width_bytes.empty());
}

// A run over widths {2, 3, 4, 8}: 2 players × 3 steps each.
json FourWidthRun() {
  json j = SmallRun();
  j["widths"] = {2, 3, 4, 8};
  j["width_bytes"] = {{100, 140, 180, 340}, {110, 154, 197, 371}};
  j["steps"] = json::array();
  for (int i = 0; i < 2; ++i) {
    for (auto [from, to] : {std::pair{8, 4}, std::pair{4, 3}, std::pair{3, 2}}) {
      j["steps"].push_back({{"player", i}, {"from_bits", from}, {"to_bits", to}});
    }
  }
  j["budgets"][1]["allocations"][0]["bits"] = {8, 3};
  return j;
}

TEST(RunFileTest, ReadsWidthsWidthBytesAndSteps) {
  auto run = ParseRunJson(FourWidthRun(), "run.json");
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->widths, (std::vector<int>{2, 3, 4, 8}));
  EXPECT_FALSE(run->binary());
  EXPECT_EQ(run->width_bytes[1], (std::vector<int64_t>{110, 154, 197, 371}));
  ASSERT_EQ(run->steps.size(), 6u);
  EXPECT_EQ(run->steps[4].player, 1);
  EXPECT_EQ(run->steps[4].from_bits, 4);
  EXPECT_EQ(run->steps[4].to_bits, 3);
  EXPECT_EQ(run->budgets[1].allocations[0].bits, (std::vector<int>{8, 3}));
  // Steps may be left out: they follow from the widths.
  json j = FourWidthRun();
  j.erase("steps");
  j.erase("width_bytes");
  run = ParseRunJson(j, "run.json");
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->steps.size(), 6u);
  EXPECT_EQ(run->steps[0].from_bits, 8);
  EXPECT_EQ(run->steps[5].to_bits, 2);
  EXPECT_TRUE(run->width_bytes.empty());
  // Full precision stays allowed whatever the widths.
  j = FourWidthRun();
  j["budgets"][0]["allocations"][0]["bits"] = {16, 32};
  EXPECT_TRUE(ParseRunJson(j, "run.json").ok());
}

TEST(RunFileTest, WidthErrorsNameTheField) {
  auto expect_error = [](json j, const std::string& text) {
    auto run = ParseRunJson(j, "run.json");
    ASSERT_FALSE(run.ok()) << text;
    EXPECT_THAT(std::string(run.status().message()), HasSubstr(text));
  };
  // A bit outside the run's widths, in an older file ([2, 4]) and in a newer one.
  json j = SmallRun();
  j["budgets"][1]["allocations"][0]["bits"][1] = 3;
  expect_error(j, "run.json: budgets[1].allocations[0].bits[1] is 3 (expected a width in 2, 4 "
                  "(the run's widths), or 16/32 for full precision)");
  j = FourWidthRun();
  j["widths"] = {2, 3, 4};
  j["width_bytes"] = {{100, 140, 180}, {110, 154, 197}};
  j.erase("steps");
  expect_error(j, "budgets[1].allocations[0].bits[0] is 8 (expected a width in 2, 3, 4");
  j = FourWidthRun();
  j["widths"] = {2, 5};
  expect_error(j, "run.json: widths[1] is 5 (expected 2, 3, 4 or 8)");
  j = FourWidthRun();
  j["widths"] = {4, 2};
  expect_error(j, "widths[1] is 2 after 4 (expected ascending widths, each once)");
  j = FourWidthRun();
  j["widths"] = {4};
  expect_error(j, "widths is [4] (expected at least two widths)");
  j = FourWidthRun();
  j["width_bytes"].erase(1);
  expect_error(j, "width_bytes has 1 entries for 2 players");
  j = FourWidthRun();
  j["width_bytes"][1] = {110, 154, 197};
  expect_error(j, "width_bytes[1] is [110,154,197] (expected 4 byte counts, one per width of "
                  "[2, 3, 4, 8])");
  j = FourWidthRun();
  j["width_bytes"][0][2] = -1;
  expect_error(j, "width_bytes[0][2] is -1 (expected bytes >= 0)");
  j = FourWidthRun();
  j["steps"].erase(5);
  expect_error(j, "steps has 5 entries (expected 6: 2 players × 3 steps down [2, 3, 4, 8])");
  j = FourWidthRun();
  j["steps"][1]["from_bits"] = 8;
  expect_error(j, "steps[1] is player 0 from 8 to 3 bits (expected player 0 from 4 to 3");
  j = FourWidthRun();
  j["steps"][3].erase("to_bits");
  expect_error(j, "steps[3].to_bits is missing");
}

}  // namespace
}  // namespace impq::cli
