// End-to-end: the `impq` binary on real and broken inputs. Every bad input must end in a
// clear message naming the file or flag and a non-zero exit code, never a crash.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <map>
#include <string>

#include "common/file_util.h"
#include "common/test_paths.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "worker/quant/block_format.h"
#include "tests/shell.h"

namespace impq {
namespace {

using ::testing::HasSubstr;

using Result = tests::ShellResult;

Result RunImpq(const std::string& args) {
  return tests::Shell(std::string(IMPQ_BINARY) + " " + args);
}

std::string EvalArgs(const std::string& model, const std::string& tok, const std::string& text) {
  return "eval --threads 2 --model " + model + " --tokenizer " + tok + " --text " + text;
}

const std::string kModel = SharedDataPath("stories260K.bin");
const std::string kTok = SharedDataPath("tok512.bin");
const std::string kText = SharedDataPath("tinystories_v2_valid_100.txt");

TEST(CliTest, EvalJsonHasTheDocumentedKeysAndTheReferencePerplexity) {
  Result r = RunImpq(EvalArgs(kModel, kTok, kText) + " --json 2>/dev/null");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"tokens", "nll", "ppl", "tokens_per_s"}) EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["tokens"].get<int64_t>(), 35351);
  EXPECT_NEAR(j["ppl"].get<double>(), 3.7421, 0.005 * 3.7421);
}

TEST(CliTest, StreamModeAndCtx) {
  Result r = RunImpq(EvalArgs(kModel, kTok, kText) + " --mode stream --ctx 256 --json");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["mode"], "stream");
  EXPECT_EQ(j["ctx"], 256);
}

TEST(CliTest, MissingFilesAreNamed) {
  Result r = RunImpq(EvalArgs("/nonexistent/m.bin", kTok, kText));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("/nonexistent/m.bin"));
  r = RunImpq(EvalArgs(kModel, "/nonexistent/t.bin", kText));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("/nonexistent/t.bin"));
  r = RunImpq(EvalArgs(kModel, kTok, "/nonexistent/x.txt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("/nonexistent/x.txt"));
}

TEST(CliTest, BrokenInputsGiveClearErrors) {
  auto bytes = ReadFileToString(kModel);
  ASSERT_TRUE(bytes.ok());
  const std::string truncated = TempFilePath("cli_truncated.bin");
  ASSERT_TRUE(WriteFileAtomically(truncated, bytes->substr(0, 5000)).ok());
  const std::string empty = TempFilePath("cli_empty.txt");
  ASSERT_TRUE(WriteFileAtomically(empty, "\n\n").ok());

  Result r = RunImpq(EvalArgs(truncated, kTok, kText));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr(truncated));
  EXPECT_THAT(r.out, HasSubstr("truncated checkpoint"));

  r = RunImpq(EvalArgs(kModel, kTok, empty));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("no text to evaluate"));

  r = RunImpq(EvalArgs(kModel, kTok, kText) + " --ctx 4096");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("--ctx 4096 is larger than the model's sequence length 512"));

  r = RunImpq(EvalArgs(kModel, kModel, kText));  // a model file given as the tokenizer
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr(kModel));
  ::unlink(truncated.c_str());
  ::unlink(empty.c_str());
}

TEST(CliTest, Llama2cCheckpointNeedsATokenizer) {
  Result r = RunImpq("eval --model " + kModel + " --text " + kText);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("--tokenizer"));
  EXPECT_THAT(r.out, HasSubstr(kModel));
}

TEST(CliTest, GgufAndSafetensorsFindTheirOwnTokenizer) {
  for (const std::string& model : {SharedDataPath("stories260K.gguf"), SharedDataPath("stories260K-hf")}) {
    Result r = RunImpq("eval --threads 2 --json --model " + model + " --text " + kText + " 2>/dev/null");
    ASSERT_EQ(r.exit_code, 0) << model << ": " << r.out;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_NEAR(j["ppl"].get<double>(), 3.7421, 0.005 * 3.7421) << model;
  }
}

TEST(CliTest, RunAcceptsOtherModelFormats) {
  // The estimation job on the HF safetensors copy (its own SentencePiece tokenizer), small.
  Result r = RunImpq("run --quiet --data " + SharedDataPath("") + " --model " + SharedDataPath("stories260K-hf") +
                     " --players block --permutations 2 --calib-docs 4 --heldout-docs 5 --budgets 3.0");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("5 block players"));
  EXPECT_THAT(r.out, HasSubstr("| 3.00 |"));
}

// Runs `impq run --quiet <args>` through the coordinator and with --in-process into `dir`;
// expects the same table and the same JSON but the timings, and returns that JSON.
nlohmann::json ExpectCoordinatorEqualsInProcess(const std::string& dir, const std::string& args) {
  EXPECT_EQ(std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  Result via = RunImpq("run --quiet" + args + " --json " + dir + "/via.json");
  Result direct = RunImpq("run --quiet" + args + " --json " + dir + "/direct.json --in-process");
  EXPECT_EQ(via.exit_code, 0) << via.out;
  EXPECT_EQ(direct.exit_code, 0) << direct.out;
  // The report up to its cost line (prefix reuse depends on where units ran).
  auto table = [](const std::string& out) { return out.substr(0, out.find("\nCost:")); };
  EXPECT_EQ(table(via.out), table(direct.out));
  EXPECT_THAT(via.out, HasSubstr("| 2.50 |"));
  auto a = nlohmann::json::parse(ReadFileToString(dir + "/via.json").value_or("null"));
  auto b = nlohmann::json::parse(ReadFileToString(dir + "/direct.json").value_or("null"));
  if (a.is_object()) a.erase("timings");
  if (b.is_object()) b.erase("timings");
  EXPECT_EQ(a, b) << a.dump(1).substr(0, 2000);
  return a;
}

// `impq run` is the embedded coordinator (coordinator/embedded.h) driving the job pipeline over
// work units; the table and every JSON field but the timings equal the pipeline run on this
// thread's game (--in-process).
TEST(CliTest, RunThroughTheCoordinatorEqualsInProcess) {
  const std::string dir = TempFilePath("cli_run_coordinator");
  const std::string args = " --threads 2 --data " + SharedDataPath("") +
                           " --players block --permutations 4 --calib-docs 6 --heldout-docs 8"
                           " --budgets 2.5,3.0";
  ExpectCoordinatorEqualsInProcess(dir, args);
  // Progress lines (stderr), one per unit of the pipeline's work, through the coordinator.
  Result progress = RunImpq("run" + args + " --json " + dir + "/p.json");
  ASSERT_EQ(progress.exit_code, 0) << progress.out;
  EXPECT_THAT(progress.out, HasSubstr("spqe: 4/4 permutations"));
  EXPECT_THAT(progress.out, HasSubstr("measure: "));
}

// The same with a width set (issue 14).
TEST(CliTest, RunWithWidthsThroughTheCoordinatorEqualsInProcess) {
  const nlohmann::json run = ExpectCoordinatorEqualsInProcess(
      TempFilePath("cli_run_widths"),
      " --threads 2 --data " + SharedDataPath("") +
          " --players block --widths 2,3,4,8 --permutations 4 --calib-docs 6"
          " --heldout-docs 8 --budgets 2.5,3.0");
  ASSERT_TRUE(run.is_object());
  EXPECT_EQ(run["widths"], nlohmann::json::parse("[2, 3, 4, 8]"));
  EXPECT_EQ(run["steps"].size(), 15u);
  const Result bad = RunImpq("run --widths 2,5 --data " + SharedDataPath(""));
  EXPECT_EQ(bad.exit_code, 2) << bad.out;
  EXPECT_THAT(bad.out, HasSubstr("widths 2,5"));
}

// `impq <args>` exits with `code` and its output names `text`.
void ExpectExit(const std::string& args, int code, const std::string& text) {
  const Result r = RunImpq(args);
  EXPECT_EQ(r.exit_code, code) << args << "\n" << r.out;
  EXPECT_THAT(r.out, HasSubstr(text)) << args;
}

// quantize-eval at every width of block_format.h: exact bytes of the packed linears and
// perplexity falling with the width (8 bits within 0.5% of fp32, whose PPL is 3.7421).
TEST(CliTest, QuantizeEvalAtEveryWidth) {
  // stories260K's linears per layer as [rows, cols]: q, k, v, o, gate, up, down (5 layers).
  const int64_t kShapes[7][2] = {{64, 64}, {32, 64}, {32, 64}, {64, 64},
                                 {172, 64}, {172, 64}, {64, 172}};
  std::map<int, double> ppl;
  for (int bits : {2, 3, 4, 8}) {
    Result r = RunImpq("quantize-eval --backend rtn --json --threads 2 --bits " +
                       std::to_string(bits) + " --model " + kModel + " --tokenizer " + kTok +
                       " --text " + kText);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
    int64_t bytes = 0;
    for (const auto& shape : kShapes) {
      bytes += 5 * impq_storage_bytes(impq_block_format(bits), shape[0], shape[1], 64);
    }
    EXPECT_EQ(j["linear_bytes"].get<int64_t>(), bytes) << bits << " bits";
    EXPECT_DOUBLE_EQ(j["bits_per_weight"].get<double>(), 8.0 * bytes / 226560) << bits;
    EXPECT_EQ(j["quantized_widths"], nlohmann::json::array({bits}));
    ppl[bits] = j["ppl"].get<double>();
  }
  EXPECT_GT(ppl[2], ppl[3]);
  EXPECT_GT(ppl[3], ppl[4]);
  EXPECT_GT(ppl[4], ppl[8]);
  EXPECT_NEAR(ppl[8], 3.7421, 0.005 * 3.7421);

  // A mixed assignment with 3- and 8-bit players quantizes exactly those two widths.
  const std::string assign = TempFilePath("cli_assign_38.json");
  ASSERT_TRUE(WriteFileAtomically(assign, R"({"players": "block", "bits": [8, 3, 3, 16, 8]})").ok());
  Result r = RunImpq("quantize-eval --backend hqq --json --threads 2 --assign " + assign +
                     " --model " + kModel + " --tokenizer " + kTok + " --text " + kText);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out.substr(r.out.find('{')));
  EXPECT_EQ(j["quantized_widths"], nlohmann::json::array({3, 8}));
  EXPECT_GT(j["ppl"].get<double>(), ppl[8]);
  EXPECT_LT(j["ppl"].get<double>(), ppl[2]);
  ASSERT_TRUE(WriteFileAtomically(assign, R"({"players": "block", "bits": [8, 3, 5, 16, 8]})").ok());
  r = RunImpq("quantize-eval --backend rtn --assign " + assign + " --model " + kModel +
              " --tokenizer " + kTok + " --text " + kText);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("\"bits\"[2] = 5 is not a supported width (expected 2, 3, 4 or 8"));
  ::unlink(assign.c_str());
  ExpectExit("quantize-eval --backend rtn --bits 5 --model " + kModel + " --tokenizer " + kTok +
                 " --text " + kText,
             2, "--bits must be 2, 3, 4 or 8, got 5");
  ExpectExit("quantize-eval --backend rtn --bits 16 --model " + kModel + " --tokenizer " + kTok +
                 " --text " + kText,
             2, "--bits must be 2, 3, 4 or 8, got 16");
}

TEST(CliTest, UsageErrorsExitWithTwo) {
  ExpectExit("eval --model x", 2, "missing required flag --text");
  ExpectExit(EvalArgs(kModel, kTok, kText) + " --mode windows", 2,
             "unknown evaluation mode 'windows'");
  ExpectExit("frobnicate", 2, "unknown command 'frobnicate'");
  ExpectExit("eval --help", 0, "--tokenizer");
  // The per-budget choice's flags (shared with impq_bench) reach JobOptions' validation.
  ExpectExit("run --quiet --choice-z -1", 2, "choice_z = -1");
  ExpectExit("run --quiet --search-model bogus", 2, "bogus");
  ExpectExit("run --help", 0, "--extra-fraction");
}

}  // namespace
}  // namespace impq
