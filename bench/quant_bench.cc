// quant_bench: what do the three quantization backends cost and buy on the shared model?
//
// Prints a Markdown table: for stories260K (../shared/data) and each backend (rtn, hqq, gptq),
// the perplexity at full precision, with every linear module at 4 bits and with every linear
// module at 2 bits, the bits per weight of the linears including the per-group scales and
// zeros (f32 each) at 4 and at 2 bits, and the time to quantize every linear at both widths.
//
// Evaluation: document mode (each paragraph alone, shared/data/README.md's reference
// protocol) on tinystories_valid_a.txt, held out from the calibration text. GPTQ calibrates on
// the first 50 stories of tinystories_v2_valid_100.txt (document mode, full-precision inputs
// of every linear); its calibration pass is timed separately. Embeddings, norms and the (tied)
// output head stay in f32 throughout.
//
//   build/bench/quant_bench [--group-size 64] [--threads 2]
#include <algorithm>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/test_paths.h"
#include "common/thread_pool.h"
#include "worker/eval/evaluator.h"
#include "worker/model/loader.h"
#include "worker/quant/quantized_model.h"

namespace impq {
namespace {

constexpr int kCalibStories = 50;

int Fail(const absl::Status& s) {
  std::cerr << "quant_bench: " << s.message() << "\n";
  return 1;
}

int Main(int argc, char** argv) {
  int64_t group_size = 64, threads = std::min(2u, std::max(1u, std::thread::hardware_concurrency()));
  FlagSet flags("quant_bench");
  flags.Int("group-size", &group_size, "input columns per quantization group (> 0)");
  flags.Int("threads", &threads, "worker threads (evaluation, calibration, quantization)");
  if (std::optional<int> exit_code = flags.ParseMain(argc, argv)) return *exit_code;
  if (group_size <= 0 || threads < 1) {
    std::cerr << "quant_bench: --group-size and --threads must be positive\n";
    return 2;
  }

  const std::string eval_file = "tinystories_valid_a.txt";
  const std::string calib_file = "tinystories_v2_valid_100.txt";
  auto loaded = model::LoadModelAndTokenizer(SharedDataPath("stories260K.bin"),
                                             SharedDataPath("tok512.bin"));
  if (!loaded.ok()) return Fail(loaded.status());
  const model::Model& m = loaded->model;
  auto eval_text = ReadFileToString(SharedDataPath(eval_file));
  if (!eval_text.ok()) return Fail(eval_text.status());
  auto calib_text = ReadFileToString(SharedDataPath(calib_file));
  if (!calib_text.ok()) return Fail(calib_text.status());
  const int64_t ctx = m.config.seq_len;
  auto eval_set = eval::BuildEvalSet(*loaded->tokenizer, *eval_text, eval::EvalMode::kDocument,
                                     ctx, ctx, eval_file);
  if (!eval_set.ok()) return Fail(eval_set.status());
  auto calib_set = eval::BuildEvalSet(*loaded->tokenizer, *calib_text, eval::EvalMode::kDocument,
                                      ctx, ctx, calib_file);
  if (!calib_set.ok()) return Fail(calib_set.status());
  if (calib_set->sequences.size() > kCalibStories) calib_set->sequences.resize(kCalibStories);

  forward::LlamaForward fwd(m);
  eval::Evaluator evaluator(fwd, static_cast<int>(threads));
  ThreadPool pool(static_cast<int>(threads));
  auto fp = evaluator.Nll(forward::WeightSet::FromModel(m), *eval_set);
  if (!fp.ok()) return Fail(fp.status());

  const auto calib_start = std::chrono::steady_clock::now();
  auto calib = quant::CollectCalibration(fwd, *calib_set, static_cast<int>(threads));
  if (!calib.ok()) return Fail(calib.status());
  const double calib_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - calib_start).count();

  std::cout << absl::StrFormat(
      "stories260K (%d linear weights), group size %d, %d threads. PPL: document mode on %s "
      "(%d paragraphs, %d scored tokens). GPTQ calibration: first %d stories of %s "
      "(%d tokens, %.2f s).\n\n",
      m.LinearParameterCount(), group_size, threads, eval_file, eval_set->sequences.size(),
      fp->tokens, calib_set->sequences.size(), calib_file, calib->tokens(), calib_seconds);
  std::cout << "| model | backend | PPL fp32 | PPL all-4-bit | PPL all-2-bit | bits/weight 4-bit "
               "| bits/weight 2-bit | quantize s (2+4 bit) |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|\n";
  for (const char* backend : {"rtn", "hqq", "gptq"}) {
    auto quantizer = quant::MakeQuantizer(backend);
    if (!quantizer.ok()) return Fail(quantizer.status());
    quant::QuantConfig cfg;
    cfg.group_size = static_cast<int>(group_size);
    auto qm = quant::QuantizedModel::Build(m, **quantizer, cfg, quant::PlayerGranularity::kBlock,
                                           &*calib, threads > 1 ? &pool : nullptr);
    if (!qm.ok()) return Fail(qm.status());
    double ppl[2], bpw[2];
    for (int i = 0; i < 2; ++i) {
      const int bits = i == 0 ? 4 : 2;
      auto r = evaluator.Nll((*qm)->Uniform(bits), *eval_set);
      if (!r.ok()) return Fail(r.status());
      ppl[i] = r->ppl;
      auto bytes = (*qm)->AssignmentBytes(std::vector<int>((*qm)->num_players(), bits));
      if (!bytes.ok()) return Fail(bytes.status());
      bpw[i] = 8.0 * static_cast<double>(*bytes) / static_cast<double>(m.LinearParameterCount());
    }
    std::cout << absl::StrFormat("| stories260K | %s | %.4f | %.4f | %.2f | %.3f | %.3f | %.3f |\n",
                                 backend, fp->ppl, ppl[0], ppl[1], bpw[0], bpw[1],
                                 (*qm)->quantize_seconds());
    std::cout.flush();
  }
  std::cout << absl::StrFormat(
      "\nquantize s: every linear module at 2 and at 4 bits (Build); GPTQ excludes its "
      "%.2f s calibration pass.\n",
      calib_seconds);
  return 0;
}

}  // namespace
}  // namespace impq

int main(int argc, char** argv) { return impq::Main(argc, argv); }
