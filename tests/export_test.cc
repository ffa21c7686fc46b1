// End-to-end: `impq export` on a real `impq run --json` file (one small run per test binary),
// each format parsed back and checked against the allocation; the safetensors checkpoint
// reloaded by `impq eval` gives the loss `impq quantize-eval` gives for the same allocation;
// bad input exits 2 and writes nothing.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/model/fingerprint.h"
#include "worker/model/gguf_file.h"
#include "worker/model/model_reader.h"
#include "tests/shell.h"

namespace impq {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using nlohmann::json;

using Result = tests::ShellResult;

Result RunImpq(const std::string& args) {
  return tests::Shell(std::string(IMPQ_BINARY) + " " + args);
}

// The JSON object in a command's output (stderr notes may precede it).
json JsonIn(const std::string& out) { return json::parse(out.substr(out.find('{'))); }

const char* const kHfModules[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                   "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                   "mlp.down_proj"};
const char* const kGgufModules[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                     "ffn_gate", "ffn_up", "ffn_down"};

class ExportTest : public ::testing::Test {
 protected:
  // One real run, small: 35 module players, 2 walks, two budgets.
  static void SetUpTestSuite() {
    dir_ = new std::string(TempFilePath("export_test"));
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    run_json_ = new std::string(*dir_ + "/run.json");
    const Result r = RunImpq("run --quiet --threads 2 --data " + SharedDataPath("") +
                             " --permutations 2 --calib-docs 4 --heldout-docs 5"
                             " --budgets 2.5,3.0 --json " + *run_json_);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    run_ = new json(json::parse(*ReadFileToString(*run_json_)));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete run_json_;
    delete run_;
  }

  // The bits of `method` (empty: the chosen one) at average bits `b` in the run file.
  static std::vector<int> Bits(double b, std::string method = "") {
    for (const json& budget : (*run_)["budgets"]) {
      if (budget["average_bits"].get<double>() != b) continue;
      if (method.empty()) method = budget["chosen"]["method"];
      for (const json& a : budget["allocations"]) {
        if (a["method"] == method) return a["bits"].get<std::vector<int>>();
      }
    }
    ADD_FAILURE() << "no allocation " << method << " at " << b;
    return {};
  }

  static std::string Export(const std::string& flags, const std::string& out) {
    const Result r = RunImpq("export --from " + *run_json_ + " " + flags + " --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return out;
  }

  static std::string* dir_;
  static std::string* run_json_;
  static json* run_;
};
std::string* ExportTest::dir_ = nullptr;
std::string* ExportTest::run_json_ = nullptr;
json* ExportTest::run_ = nullptr;

TEST_F(ExportTest, RunFileRecordsTheModelIdentity) {
  const json& id = (*run_)["model"]["identity"];
  auto m = model::LoadModel(SharedDataPath("stories260K.bin"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(id["fingerprint"], model::WeightsFingerprint(*m));
  EXPECT_TRUE(fs::path(id["absolute_path"].get<std::string>()).is_absolute());
  // The same weights through GGUF and Hugging Face (rotate_half Q/K) files: the same
  // fingerprint; the BF16 copy is other weights.
  for (const char* same : {"stories260K.gguf", "stories260K-hf"}) {
    auto other = model::LoadModel(SharedDataPath(same));
    ASSERT_TRUE(other.ok()) << other.status();
    EXPECT_EQ(model::WeightsFingerprint(*other), id["fingerprint"]) << same;
  }
  auto bf16 = model::LoadModel(SharedDataPath("stories260K-hf-bf16"));
  ASSERT_TRUE(bf16.ok()) << bf16.status();
  EXPECT_NE(model::WeightsFingerprint(*bf16), id["fingerprint"]);
}

TEST_F(ExportTest, LlamaCppLinesNameGgufTensorsWithTheAllocationsTypes) {
  const std::string gguf = SharedDataPath("stories260K.gguf");
  const std::string path = Export("--budget 3.0 --format llama.cpp --model " + gguf,
                                  *dir_ + "/types.txt");
  const std::vector<int> bits = Bits(3.0);
  ASSERT_EQ(bits.size(), 35u);
  auto file = model::GgufFile::Open(gguf);
  ASSERT_TRUE(file.ok()) << file.status();
  std::set<std::string> tensors;
  for (const auto& t : (*file)->tensors()) tensors.insert(t.name);

  // One token per line, `^NAME$=TYPE` with NAME escaped, nothing else (the
  // --tensor-type-file parser has no comments); export_tools_test replays llama-quantize on it.
  const std::regex line_re("\\^([a-z0-9_\\\\.]+)\\$=([a-zA-Z0-9_]+)");
  std::vector<std::string> names, types;
  for (absl::string_view l : absl::StrSplit(*ReadFileToString(path), '\n', absl::SkipEmpty())) {
    const std::string line(l);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, line_re)) << line;
    const std::string name = absl::StrReplaceAll(m[1].str(), {{"\\.", "."}});
    EXPECT_EQ(tensors.count(name), 1u) << name << " is not in " << gguf;
    names.push_back(name);
    types.push_back(m[2].str());
  }
  ASSERT_EQ(names.size(), 35u);
  for (int layer = 0, p = 0; layer < 5; ++layer) {
    for (int k = 0; k < 7; ++k, ++p) {
      EXPECT_EQ(names[p], absl::StrCat("blk.", layer, ".", kGgufModules[k], ".weight"));
      // stories260K's rows (64, 172) fit no k-quant: q4_0 where 32 divides them, else f16.
      EXPECT_EQ(types[p], k == 6 ? "f16" : "q4_0") << names[p];
    }
  }
  const std::string notes = *ReadFileToString(path + ".notes.txt");
  EXPECT_THAT(notes, HasSubstr("--tensor-type-file " + path + " " + gguf + " "));
  EXPECT_THAT(notes, HasSubstr(" Q6_K\n"));
}

TEST_F(ExportTest, GptqModelDynamicGivesEveryModuleItsBits) {
  const std::string path =
      Export("--budget 2.5 --method impq --format gptqmodel", *dir_ + "/gptq.json");
  const std::vector<int> bits = Bits(2.5, "impq");
  const json j = json::parse(*ReadFileToString(path));
  EXPECT_EQ(j["group_size"], 64);
  EXPECT_EQ(j["sym"], false);
  const json& dynamic = j["dynamic"];
  ASSERT_EQ(dynamic.size(), 35u);
  for (int layer = 0, p = 0; layer < 5; ++layer) {
    for (int k = 0; k < 7; ++k, ++p) {
      const std::string module = absl::StrCat("model.layers.", layer, ".", kHfModules[k]);
      // GPTQModel takes the first key whose regex matches at the start (Python re.match).
      int matches = 0;
      for (const auto& [key, value] : dynamic.items()) {
        ASSERT_EQ(key.substr(0, 3), "+:^") << key;
        if (std::regex_search(module, std::regex(key.substr(2)),
                              std::regex_constants::match_continuous)) {
          ++matches;
          EXPECT_EQ(value["bits"], bits[p]) << module;
          EXPECT_EQ(value["group_size"], 64) << module;
        }
      }
      EXPECT_EQ(matches, 1) << module;
    }
  }
}

TEST_F(ExportTest, HqqConfigGivesEveryModuleItsBits) {
  const std::string path = Export("--budget 3.0 --format hqq", *dir_ + "/hqq.json");
  EXPECT_TRUE(fs::exists(*dir_ + "/impq_hqq_apply.py"));  // the loader, beside it
  const std::vector<int> bits = Bits(3.0);
  const json j = json::parse(*ReadFileToString(path))["modules"];
  ASSERT_EQ(j.size(), 35u);
  for (int layer = 0, p = 0; layer < 5; ++layer) {
    for (int k = 0; k < 7; ++k, ++p) {
      const std::string module = absl::StrCat("model.layers.", layer, ".", kHfModules[k]);
      ASSERT_TRUE(j.contains(module)) << module;
      EXPECT_EQ(j[module]["nbits"], bits[p]) << module;
      EXPECT_EQ(j[module]["group_size"], 64);
      EXPECT_EQ(j[module]["axis"], 1);
    }
  }
}

// The checkpoint holds the very codes, scales and zeros quantize-eval dequantizes, and the
// reader dequantizes them with the same function, so the two losses are equal bit for bit
// (no tolerance: any difference is a bug).
void ExpectCheckpointMatchesQuantizeEval(const std::string& run_json, const std::string& out,
                                         double budget, const std::string& backend,
                                         const std::string& extra_quantize_eval_flags) {
  const std::string text = SharedDataPath("tinystories_v2_valid_100.txt");
  Result r = RunImpq(absl::StrCat("export --from ", run_json, " --budget ", budget,
                                  " --format safetensors --threads 2 --out ", out));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  ASSERT_TRUE(fs::exists(out + "/config.json"));
  ASSERT_TRUE(fs::exists(out + "/tokenizer.bin"));  // the run's llama2.c tokenizer, shipped
  const json config = json::parse(*ReadFileToString(out + "/config.json"));
  EXPECT_EQ(config["quantization_config"]["quant_method"], "impq");
  EXPECT_EQ(config["quantization_config"]["backend"], backend);

  r = RunImpq("eval --threads 2 --json --model " + out + " --text " + text);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json from_checkpoint = JsonIn(r.out);
  r = RunImpq(absl::StrCat("quantize-eval --threads 2 --json --backend ", backend, " --assign ",
                           run_json, " --assign-budget ", budget, " --model ",
                           SharedDataPath("stories260K.bin"), " --tokenizer ",
                           SharedDataPath("tok512.bin"), " --text ", text, " ",
                           extra_quantize_eval_flags));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json from_quantize_eval = JsonIn(r.out);
  EXPECT_EQ(from_checkpoint["tokens"], from_quantize_eval["tokens"]);
  EXPECT_EQ(from_checkpoint["nll"].get<double>(), from_quantize_eval["nll"].get<double>());
  EXPECT_EQ(from_checkpoint["ppl"].get<double>(), from_quantize_eval["ppl"].get<double>());
  // And it is a quantized model: far from full precision (PPL 3.74 on this text).
  EXPECT_GT(from_checkpoint["ppl"].get<double>(), 4.0);
}

TEST_F(ExportTest, SafetensorsCheckpointReloadsWithQuantizeEvalsLoss) {
  ExpectCheckpointMatchesQuantizeEval(*run_json_, *dir_ + "/ckpt", 3.0, "rtn", "");
}

// The run's backend quantizes: the same allocation under HQQ and under GPTQ (calibrated as the
// run was, on its first calibration_docs stories) also reloads with quantize-eval's loss.
TEST_F(ExportTest, SafetensorsUsesTheRunsBackendAndCalibration) {
  for (const std::string backend : {"hqq", "gptq"}) {
    json other = *run_;
    other["settings"]["backend"] = backend;
    const std::string path = *dir_ + "/run_" + backend + ".json";
    ASSERT_TRUE(WriteFileAtomically(path, other.dump()).ok());
    const std::string calib = backend == "gptq"
                                  ? absl::StrCat("--calib ", other["settings"]["calibration_text"]
                                                                 .get<std::string>(),
                                                 " --calib-docs ",
                                                 other["settings"]["calibration_docs"].dump())
                                  : "";
    ExpectCheckpointMatchesQuantizeEval(path, *dir_ + "/ckpt_" + backend, 2.5, backend, calib);
  }
}

// --- Widths beyond {2, 4} (issue 14) --------------------------------------------------------

// The run file with widths [2, 3, 4, 8] and the chosen allocation at b_avg 3 replaced by one
// using every width (player p at kMixed[p % 4]), under `backend`; its path. The bits are made
// by hand (not by a run over four widths): the exports only read them.
constexpr int kMixed[4] = {3, 8, 2, 4};

std::string WriteMixedRun(const json& run, const std::string& dir, const std::string& backend) {
  json mixed = run;
  mixed["widths"] = {2, 3, 4, 8};
  mixed.erase("width_bytes");  // a run over [2, 4] has them for two widths
  mixed.erase("steps");
  mixed["settings"]["backend"] = backend;
  std::vector<int> bits;
  for (int p = 0; p < 35; ++p) bits.push_back(kMixed[p % 4]);
  for (json& budget : mixed["budgets"]) {
    if (budget["average_bits"].get<double>() != 3.0) continue;
    for (json& a : budget["allocations"]) {
      if (a["method"] == budget["chosen"]["method"]) a["bits"] = bits;
    }
  }
  const std::string path = dir + "/run_mixed_" + backend + ".json";
  EXPECT_TRUE(WriteFileAtomically(path, mixed.dump()).ok());
  return path;
}

TEST_F(ExportTest, ThreeAndEightBitPlayersInEveryFormat) {
  const std::string from = WriteMixedRun(*run_, *dir_, "rtn");
  auto export_mixed = [&](const std::string& flags, const std::string& out) {
    const Result r = RunImpq("export --from " + from + " --budget 3 " + flags + " --out " + out);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    return *ReadFileToString(out);
  };
  // llama.cpp: stories260K's rows fit no k-quant, so 2/3/4 bits are q4_0 and 8 bits q8_0 on
  // 64-wide rows, and everything on ffn_down's 172-wide rows is f16 (q8_0 there would make
  // llama.cpp abort); the notes say so per module.
  const std::string gguf = SharedDataPath("stories260K.gguf");
  const std::string types_path = *dir_ + "/mixed_types.txt";
  const std::string types = export_mixed("--format llama.cpp --model " + gguf, types_path);
  std::vector<std::string> lines = absl::StrSplit(types, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 35u);
  for (int layer = 0, p = 0; layer < 5; ++layer) {
    for (int k = 0; k < 7; ++k, ++p) {
      const std::string type = k == 6 ? "f16" : kMixed[p % 4] == 8 ? "q8_0" : "q4_0";
      EXPECT_EQ(lines[p], absl::StrCat("^blk\\.", layer, "\\.", kGgufModules[k],
                                       "\\.weight$=", type));
    }
  }
  const std::string notes = *ReadFileToString(types_path + ".notes.txt");
  EXPECT_THAT(notes, HasSubstr("blk.1.ffn_down.weight: 8 bits -> f16 (16 bits): rows of 172"));

  // GPTQModel: "dynamic" bits 3 and 8; the base bits are the most frequent width (ties: wider).
  const json gptq =
      json::parse(export_mixed("--format gptqmodel", *dir_ + "/mixed_gptq.json"));
  EXPECT_EQ(gptq["bits"], 8);  // 9 players each at 3, 8, 2; 8 at 4
  // HQQ: nbits 3 and 8.
  const json hqq =
      json::parse(export_mixed("--format hqq", *dir_ + "/mixed_hqq.json"))["modules"];
  ASSERT_EQ(gptq["dynamic"].size(), 35u);
  ASSERT_EQ(hqq.size(), 35u);
  for (int layer = 0, p = 0; layer < 5; ++layer) {
    for (int k = 0; k < 7; ++k, ++p) {
      const std::string module = absl::StrCat("model.layers.", layer, ".", kHfModules[k]);
      const std::string key = "+:^" + absl::StrReplaceAll(module, {{".", "\\."}}) + "$";
      ASSERT_TRUE(gptq["dynamic"].contains(key)) << key;
      EXPECT_EQ(gptq["dynamic"][key]["bits"], kMixed[p % 4]) << module;
      EXPECT_EQ(hqq[module]["nbits"], kMixed[p % 4]) << module;
      EXPECT_EQ(hqq[module]["group_size"], 64);
    }
  }
}

// The checkpoint packs 3- and 8-bit modules as block_format.h's bit streams; `impq eval` on it
// gives quantize-eval's loss bit for bit, under RTN, HQQ and GPTQ (3-bit codes straddle
// bytes, HQQ's solver and GPTQ's error feedback at 3 and 8 bits are other code paths than at
// 2 and 4).
TEST_F(ExportTest, SafetensorsWithThreeAndEightBitPlayersReloadsWithQuantizeEvalsLoss) {
  for (const std::string backend : {"rtn", "hqq", "gptq"}) {
    SCOPED_TRACE(backend);
    const std::string path = WriteMixedRun(*run_, *dir_, backend);
    const std::string calib =
        backend == "gptq"
            ? absl::StrCat("--calib ", (*run_)["settings"]["calibration_text"].get<std::string>(),
                           " --calib-docs ", (*run_)["settings"]["calibration_docs"].dump())
            : "";
    const std::string out = *dir_ + "/ckpt_mixed_" + backend;
    ExpectCheckpointMatchesQuantizeEval(path, out, 3.0, backend, calib);
    const json config = json::parse(*ReadFileToString(out + "/config.json"));
    std::set<int> widths;
    for (const auto& [module, bits] : config["quantization_config"]["modules"].items()) {
      widths.insert(bits.get<int>());
    }
    EXPECT_EQ(widths, (std::set<int>{2, 3, 4, 8}));
  }
}

// A real run over widths {2, 3, 4}: its file reads back (widths, width_bytes, steps) and its
// chosen allocation exports and reloads with quantize-eval's loss.
TEST_F(ExportTest, RunOverThreeWidthsExportsAndReloads) {
  const std::string path = *dir_ + "/run_234.json";
  const Result r = RunImpq("run --quiet --threads 2 --data " + SharedDataPath("") +
                           " --permutations 2 --calib-docs 4 --heldout-docs 5 --widths 2,3,4"
                           " --budgets 3.0 --json " + path);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const json run = json::parse(*ReadFileToString(path));
  EXPECT_EQ(run["widths"], json({2, 3, 4}));
  EXPECT_EQ(run["steps"].size(), 70u);
  ExpectCheckpointMatchesQuantizeEval(path, *dir_ + "/ckpt_234", 3.0, "rtn", "");
}

// Bad input: exit 2, a message naming the problem, and no output file.
TEST_F(ExportTest, BadInputExitsTwoAndWritesNothing) {
  const std::string out = *dir_ + "/never";
  const std::string from = "export --from " + *run_json_;
  auto expect_refused = [&](const std::string& args, const std::string& text) {
    const Result r = RunImpq(args + " --out " + out);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.out;
    EXPECT_THAT(r.out, HasSubstr(text)) << args;
    EXPECT_FALSE(fs::exists(out)) << args;
  };
  expect_refused(from + " --budget 2.75 --format hqq",
                 "--budget 2.75: not in " + *run_json_ + " (its budgets: average bits 2.5, 3)");
  expect_refused(from + " --budget 3 --method nope --format hqq",
                 "--method nope: no such allocation at average bits 3");
  expect_refused(from + " --budget 3 --format onnx", "--format onnx: unknown");
  expect_refused(from + " --format hqq", "holds 2 budgets");
  expect_refused("export --from /nonexistent/run.json --budget 3 --format hqq",
                 "/nonexistent/run.json");
  const std::string garbage = *dir_ + "/garbage.json";
  ASSERT_TRUE(WriteFileAtomically(garbage, "{\"budgets\": [").ok());
  expect_refused("export --from " + garbage + " --budget 3 --format hqq", "not valid JSON");
  // A plain assignment file is not a run file.
  const std::string plain = *dir_ + "/plain.json";
  ASSERT_TRUE(WriteFileAtomically(plain, "{\"bits\": [4, 2, 4, 4, 2]}").ok());
  expect_refused("export --from " + plain + " --format hqq", "not an `impq run --json` file");
  // A field of the wrong type is named with its path.
  json broken = *run_;
  broken["budgets"][1]["allocations"][0]["bits"][7] = 5;
  const std::string broken_path = *dir_ + "/broken.json";
  ASSERT_TRUE(WriteFileAtomically(broken_path, broken.dump()).ok());
  expect_refused("export --from " + broken_path + " --budget 3 --format hqq",
                 "budgets[1].allocations[0].bits[7] is 5");

  // Another model: the BF16 copy has the same config and other weights; a model of another
  // shape has another config.
  expect_refused(from + " --budget 3 --format hqq --model " +
                     SharedDataPath("stories260K-hf-bf16"),
                 "same config, other weights");
  json foreign = *run_;
  foreign["model"]["identity"]["fingerprint"] = "fnv1a64:0000000000000000";
  const std::string foreign_path = *dir_ + "/foreign.json";
  ASSERT_TRUE(WriteFileAtomically(foreign_path, foreign.dump()).ok());
  expect_refused("export --from " + foreign_path + " --budget 3 --format safetensors",
                 "is not the model " + foreign_path + " was run on");
  json other_shape = *run_;
  other_shape["model"]["config"] =
      "llama dim=64 hidden=172 layers=5 heads=8 kv_heads=8 head_dim=8 vocab=512 seq_len=512 tied";
  const std::string shape_path = *dir_ + "/other_shape.json";
  ASSERT_TRUE(WriteFileAtomically(shape_path, other_shape.dump()).ok());
  expect_refused("export --from " + shape_path + " --budget 3 --format llama.cpp --model " +
                     SharedDataPath("stories260K.gguf"),
                 "its config is \"llama dim=64 hidden=172 layers=5 heads=8 kv_heads=4");

  // safetensors never writes into a non-empty directory.
  const std::string full = *dir_ + "/full";
  fs::create_directories(full);
  ASSERT_TRUE(WriteFileAtomically(full + "/keep.txt", "x").ok());
  const Result r = RunImpq(from + " --budget 3 --format safetensors --out " + full);
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_THAT(r.out, HasSubstr("is not an empty directory"));
  EXPECT_EQ(std::vector<fs::path>(fs::directory_iterator(full), fs::directory_iterator()).size(),
            1u);
}

}  // namespace
}  // namespace impq
