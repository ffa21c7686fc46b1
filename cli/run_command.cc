// impq run: the main job on the embedded default.
//
// For now (engine foundation) it evaluates the shared stories260K model on the shared text
// under both protocols and compares with the independent reference perplexities of
// shared/data/README.md. Later stages turn it into the whole estimation job.
#include <cmath>
#include <iostream>
#include <thread>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"

namespace impq::cli {

int RunCommand(const std::vector<std::string>& args) {
  std::string data = SharedDataDir();
  int64_t threads = std::max(1u, std::thread::hardware_concurrency());
  FlagSet flags("impq run");
  flags.String("data", &data, "directory with stories260K.bin, tok512.bin and the texts");
  flags.Int("threads", &threads, "worker threads");
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    std::cerr << s.message() << "\n\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  auto loaded = model::LoadModelAndTokenizer(data + "/stories260K.bin", data + "/tok512.bin");
  if (!loaded.ok()) {
    std::cerr << "impq run: " << loaded.status().message() << "\n";
    return 1;
  }
  std::cout << "model " << loaded->model_path << ": " << loaded->model.config.ToString() << "\n";
  forward::LlamaForward fwd(loaded->model);
  eval::Evaluator evaluator(fwd, static_cast<int>(threads));
  const auto weights = forward::WeightSet::FromModel(loaded->model);

  struct Case {
    const char* text;
    eval::EvalMode mode;
    double reference_ppl;  // 0: no reference with this exact protocol
  };
  const Case cases[] = {
      {"tinystories_v2_valid_100.txt", eval::EvalMode::kDocument, 3.7421},
      {"tinystories_valid_a.txt", eval::EvalMode::kDocument, 4.7097},
      {"tinystories_v2_valid_100.txt", eval::EvalMode::kStream, 0},
  };
  std::cout << "\n| text | mode | tokens | NLL | PPL | reference PPL | rel. diff | tokens/s |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|\n";
  int failures = 0;
  for (const Case& c : cases) {
    const std::string path = data + "/" + c.text;
    auto text = ReadFileToString(path);
    if (!text.ok()) {
      std::cerr << "impq run: " << text.status().message() << "\n";
      return 1;
    }
    const int64_t ctx = loaded->model.config.seq_len;
    auto set = eval::BuildEvalSet(*loaded->tokenizer, *text, c.mode, ctx, ctx, path);
    if (!set.ok()) {
      std::cerr << "impq run: " << set.status().message() << "\n";
      return 1;
    }
    auto r = evaluator.Nll(weights, *set);
    if (!r.ok()) {
      std::cerr << "impq run: " << r.status().message() << "\n";
      return 1;
    }
    std::string ref = "—", diff = "—";
    if (c.reference_ppl > 0) {
      const double rel = (r->ppl - c.reference_ppl) / c.reference_ppl;
      ref = absl::StrFormat("%.4f", c.reference_ppl);
      diff = absl::StrFormat("%+.3f%%", 100 * rel);
      if (std::abs(rel) > 0.005) ++failures;
    }
    std::cout << absl::StrFormat("| %s | %s | %d | %.4f | %.4f | %s | %s | %.0f |\n", c.text,
                                 eval::EvalModeName(c.mode), r->tokens, r->nll, r->ppl, ref,
                                 diff, r->tokens_per_s);
  }
  if (failures > 0) {
    std::cerr << "impq run: " << failures << " perplexities differ from the reference by > 0.5%\n";
    return 1;
  }
  return 0;
}

}  // namespace impq::cli
