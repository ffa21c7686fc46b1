// impq: interaction-aware layerwise mixed-precision quantization.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] =
    "usage: impq <command> [flags]\n"
    "\n"
    "commands:\n"
    "  run    the main job on the embedded default (the shared stories260K model)\n"
    "  eval   loss / perplexity / KL of a model on a text file\n"
    "  quantize-eval  loss of a model quantized by rtn|hqq|gptq under a 2/3/4/8-bit assignment\n"
    "  export  an allocation of `impq run --json` (or `impqctl result --json`) for llama.cpp,\n"
    "          GPTQModel, HQQ, optimum-quanto or as impq's own quantized checkpoint\n"
    "  report the `impq run --json` file as one self-contained HTML page (figures, tables)\n"
    "\n"
    "`impq <command> --help` lists a command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (cmd == "run") return impq::cli::RunCommand(args);
  if (cmd == "eval") return impq::cli::EvalCommand(args);
  if (cmd == "quantize-eval") return impq::cli::QuantizeEvalCommand(args);
  if (cmd == "export") return impq::cli::ExportCommand(args);
  if (cmd == "report") return impq::cli::ReportCommand(args);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  std::fprintf(stderr, "impq: unknown command '%s'\n\n%s", cmd.c_str(), kUsage);
  return 2;
}
