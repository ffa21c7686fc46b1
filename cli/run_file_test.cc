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

}  // namespace
}  // namespace impq::cli
