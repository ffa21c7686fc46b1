// impq eval --model M [--tokenizer T] --text F [--mode document|stream] [--ctx N] [--threads K]
//           [--json] [--progress]
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/eval_report.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "nlohmann/json.hpp"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"

namespace impq::cli {

std::string SharedDataDir() {
  const char* env = std::getenv("IMPQ_SHARED_DATA");
  return env != nullptr && *env != '\0' ? env : "../shared/data";
}

int EvalCommand(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, text_path, mode_name = "document";
  int64_t ctx = 0, threads = std::max(1u, std::thread::hardware_concurrency());
  bool json = false, progress = false;
  FlagSet flags("impq eval");
  flags.String("model", &model_path,
               "model: llama2.c .bin, GGUF file, or Hugging Face directory / .safetensors", true);
  flags.String("tokenizer", &tokenizer_path,
               "tokenizer (tokenizer.bin, tokenizer.model, .gguf); default: the model's own");
  flags.String("text", &text_path, "text file to evaluate", true);
  flags.String("mode", &mode_name, "document (each document alone) or stream (llama.cpp windows)");
  flags.Int("ctx", &ctx, "tokens per window (stream) / truncation (document); 0 = model seq_len");
  flags.Int("threads", &threads, "worker threads");
  flags.Bool("json", &json, "print one JSON object instead of text");
  flags.Bool("progress", &progress, "show progress on stderr");
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;
  auto mode = eval::ParseEvalMode(mode_name);
  if (!mode.ok()) {
    std::cerr << mode.status().message() << "\n";
    return 2;
  }
  if (threads < 1) {
    std::cerr << "--threads must be >= 1, got " << threads << "\n";
    return 2;
  }
  auto loaded = model::LoadModelAndTokenizer(model_path, tokenizer_path);
  if (!loaded.ok()) {
    std::cerr << "impq eval: " << loaded.status().message() << "\n";
    return 1;
  }
  auto text = ReadFileToString(text_path);
  if (!text.ok()) {
    std::cerr << "impq eval: " << text.status().message() << "\n";
    return 1;
  }
  const auto& cfg = loaded->model.config;
  if (ctx == 0) ctx = cfg.seq_len;
  auto set = eval::BuildEvalSet(*loaded->tokenizer, *text, *mode, ctx, cfg.seq_len, text_path);
  if (!set.ok()) {
    std::cerr << "impq eval: " << set.status().message() << "\n";
    return 1;
  }
  forward::LlamaForward fwd(loaded->model);
  eval::Evaluator evaluator(fwd, static_cast<int>(threads));
  eval::ProgressFn report;
  if (progress) {
    report = [](int64_t done, int64_t total) {
      if (done == total || done % 16 == 0) std::fprintf(stderr, "\r  %lld/%lld sequences", (long long)done, (long long)total);
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  auto weights = forward::WeightSet::FromModel(loaded->model);
  auto r = evaluator.Nll(weights, *set, report);
  if (!r.ok()) {
    std::cerr << "impq eval: " << r.status().message() << "\n";
    return 1;
  }
  nlohmann::json out = NllReport(model_path, text_path, *set, *r, threads);
  if (json) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << absl::StrFormat(
        "%s on %s (%s mode, ctx %d, %d sequences)\n  tokens %d  NLL %.6f  PPL %.4f  "
        "%.0f tokens/s (%d threads, %.2f s)\n",
        model_path, text_path, eval::EvalModeName(*mode), ctx, set->sequences.size(), r->tokens,
        r->nll, r->ppl, r->tokens_per_s, threads, r->seconds);
  }
  return 0;
}

}  // namespace impq::cli
