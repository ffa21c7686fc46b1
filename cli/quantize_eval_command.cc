// impq quantize-eval --backend rtn|hqq|gptq (--bits 2|3|4|8 | --assign FILE [--assign-budget B]
//                    [--assign-method NAME]) [--calib TEXT] [--calib-docs N]
//                    [--group-size G] [--players block|module] [--kl]
//                    --model M --tokenizer T --text F [--mode document|stream] [--ctx N]
//                    [--threads K] [--json] [--progress]
//
// Quantizes every linear module of the model with one backend (once) at each width the
// assignment uses (any of 2, 3, 4, 8; quantize_seconds counts exactly these), applies
// a bit assignment (a pointer swap, worker/quant/quantized_model.h) and evaluates the loss of
// the resulting model on --text, exactly as `impq eval` does. Also prints the bits per weight
// of the quantized linears including their per-group scales and zeros, the memory of all
// linear weights under the assignment, the quantization time, and with --kl the KL divergence
// of the quantized model's next-token distributions against the full-precision model's.
//
// --calib TEXT: calibration text for GPTQ, turned into sequences in document mode (one
// sequence per story, truncated to --ctx; with --calib-docs N only the first N); GPTQ
// calibrates each linear on the inputs the full-precision model feeds it. RTN and HQQ are
// calibration-free and ignore it.
//
// --assign FILE: a JSON object
//   {"players": "block",           optional, "block" or "module"; default: --players
//    "bits": [4, 2, 4, 4, 2]}      one width per player, in player order
// The widths may be given under "allocation" instead of "bits" (the name `impq run --json`
// uses); when both are present they must be equal. Player order: block i is decoder layer i;
// module player p is layer p / 7, module p % 7 in the order attn_q, attn_k, attn_v, attn_o,
// ffn_gate, ffn_up, ffn_down. Widths are 2, 3, 4 or 8; 16 or 32 keep a player in full
// precision.
// Other keys are ignored.
//
// --assign also accepts the file `impq run --json FILE` writes (recognised by its "budgets"
// array): --assign-budget B picks the budget whose "average_bits" equals B (optional when the
// file holds one budget), --assign-method NAME the allocation of that budget whose "method" is
// NAME (e.g. impq, impq_window, isolated, lim; default: the budget's "chosen" one), and the
// granularity comes from "settings"."players". A budget or method not in the file is a usage
// error listing the ones that are. --assign-budget/--assign-method with a plain file, or
// without --assign, are usage errors too.
//
// Exit codes: 0 success; 2 bad usage (unknown or malformed flag, unsupported --bits, group
// size <= 0, unknown backend or granularity, GPTQ without --calib, a malformed or
// wrong-length --assign file, a budget or method not in an `impq run --json` file);
// 1 runtime failure (a file that cannot be read, a model that
// cannot be loaded or quantized, an evaluation error).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/eval_report.h"
#include "cli/run_file.h"
#include "worker/engine/job_inputs.h"
#include "common/file_util.h"
#include "common/flags.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "nlohmann/json.hpp"
#include "worker/eval/evaluator.h"
#include "worker/forward/llama_forward.h"
#include "worker/model/loader.h"
#include "worker/quant/block_format.h"
#include "worker/quant/quantized_model.h"

namespace impq::cli {
namespace {

struct Assignment {
  std::optional<quant::PlayerGranularity> granularity;  // from the file's "players", if any
  std::vector<int> bits;
  std::string picked;  // run JSON only: "method at b_avg B" (for the report)
  std::string run_backend;   // run JSON only: "settings"."backend" ("" when absent)
  int64_t run_group_size = 0;  // run JSON only: "settings"."group_size" (0 when absent)
};

// A quantized width of block_format.h, or 16/32 (full precision).
bool IsAssignableWidth(int64_t b) {
  return b == 16 || b == 32 || (b >= 2 && b <= 8 && impq_bits_supported(static_cast<int>(b)));
}

// Which allocation of an `impq run --json` file to take.
struct RunPick {
  std::optional<double> budget;  // --assign-budget
  std::string method;            // --assign-method; empty: the budget's chosen one
};

// Picks one allocation out of an `impq run --json` file (cli/run_file.h reads it).
absl::StatusOr<Assignment> PickFromRunJson(const nlohmann::json& j, const RunPick& pick,
                                           const std::string& path) {
  auto run = ParseRunJson(j, path);
  if (!run.ok()) return absl::InvalidArgumentError(absl::StrCat("--assign ", run.status().message()));
  ASSIGN_OR_RETURN(PickedAllocation picked,
                   PickAllocation(*run, pick.budget, pick.method,
                                  PickFlags{"--assign-budget", "--assign-method"}));
  Assignment a;
  a.granularity = run->players;
  a.bits = picked.allocation->bits;
  a.picked = picked.Describe();
  a.run_backend = run->backend;
  a.run_group_size = run->group_size;
  for (size_t i = 0; i < a.bits.size(); ++i) {
    const int b = a.bits[i];
    if (!IsAssignableWidth(b)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--assign ", path, ": ", a.picked, ": width ", b, " of player ", i,
          " is not a supported width (expected 2, 3, 4 or 8, or 16/32 for full precision)"));
    }
  }
  return a;
}

// Parses the --assign file's contents (format in the file comment). Errors name the file and
// the key.
absl::StatusOr<Assignment> ParseAssignment(const std::string& text, const std::string& path,
                                           const std::optional<RunPick>& pick) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("--assign ", path, ": not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--assign ", path, ": expected a JSON object with \"bits\" (or \"allocation\")"));
  }
  if (IsRunJson(j)) return PickFromRunJson(j, pick.value_or(RunPick{}), path);
  Assignment a;
  if (pick) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--assign-budget/--assign-method need an `impq run --json` file; ", path,
        " has no \"budgets\" (a plain {\"bits\": [...]} file holds one allocation)"));
  }
  if (j.contains("players")) {
    if (!j["players"].is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--assign ", path, ": \"players\" must be \"block\" or \"module\""));
    }
    auto g = quant::ParsePlayerGranularity(j["players"].get<std::string>());
    if (!g.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--assign ", path, ": \"players\" is \"",
                                                     j["players"].get<std::string>(),
                                                     "\" (expected block or module)"));
    }
    a.granularity = *g;
  }
  auto read_list = [&](const char* key) -> absl::StatusOr<std::vector<int>> {
    const nlohmann::json& v = j[key];
    if (!v.is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--assign ", path, ": \"", key, "\" must be an array of widths"));
    }
    std::vector<int> out;
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number_integer()) {
        return absl::InvalidArgumentError(absl::StrCat("--assign ", path, ": \"", key, "\"[", i,
                                                       "] is ", v[i].dump(),
                                                       " (expected an integer width)"));
      }
      const int64_t b = v[i].get<int64_t>();
      if (!IsAssignableWidth(b)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--assign ", path, ": \"", key, "\"[", i, "] = ", b,
            " is not a supported width (expected 2, 3, 4 or 8, or 16/32 for full precision)"));
      }
      out.push_back(static_cast<int>(b));
    }
    return out;
  };
  std::optional<std::vector<int>> bits, allocation;
  if (j.contains("bits")) {
    auto v = read_list("bits");
    if (!v.ok()) return v.status();
    bits = *std::move(v);
  }
  if (j.contains("allocation")) {
    auto v = read_list("allocation");
    if (!v.ok()) return v.status();
    allocation = *std::move(v);
  }
  if (!bits && !allocation) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--assign ", path, ": no \"bits\" (or \"allocation\") array of per-player widths"));
  }
  if (bits && allocation && *bits != *allocation) {
    return absl::InvalidArgumentError(
        absl::StrCat("--assign ", path, ": \"bits\" and \"allocation\" differ"));
  }
  a.bits = bits ? *bits : *allocation;
  return a;
}

}  // namespace

int QuantizeEvalCommand(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, text_path, mode_name = "document";
  std::string backend, assign_path, calib_path, players_name = "block", assign_method;
  double assign_budget = 0;
  int64_t ctx = 0, threads = std::max(1u, std::thread::hardware_concurrency());
  int64_t bits = 0, group_size = 64, calib_docs = 0;
  bool json = false, progress = false, kl = false;
  FlagSet flags("impq quantize-eval");
  flags.String("backend", &backend, "quantization backend: rtn, hqq or gptq", true);
  flags.Int("bits", &bits, "width of every linear module: 2, 3, 4 or 8 (or use --assign)");
  flags.String("assign", &assign_path,
               "JSON file {\"players\": \"block\"|\"module\", \"bits\": [...]} (or --bits)");
  flags.Double("assign-budget", &assign_budget,
               "with an `impq run --json` file: the average bit-width whose allocation to take");
  flags.String("assign-method", &assign_method,
               "with an `impq run --json` file: the method (default: the budget's chosen one)");
  flags.String("calib", &calib_path, "calibration text (required by gptq; document mode)");
  flags.Int("calib-docs", &calib_docs,
            "first N documents of --calib (0 = all; `impq run` calibrates on its --calib-docs)");
  flags.Int("group-size", &group_size, "input columns per quantization group (> 0)");
  flags.String("players", &players_name, "player granularity: block or module");
  flags.Bool("kl", &kl, "also compute the KL divergence against the full-precision model");
  flags.String("model", &model_path, "model checkpoint (llama2.c .bin)", true);
  flags.String("tokenizer", &tokenizer_path, "tokenizer (llama2.c tokenizer.bin)", true);
  flags.String("text", &text_path, "text file to evaluate", true);
  flags.String("mode", &mode_name, "document (each document alone) or stream (llama.cpp windows)");
  flags.Int("ctx", &ctx, "tokens per window (stream) / truncation (document); 0 = model seq_len");
  flags.Int("threads", &threads, "worker threads");
  flags.Bool("json", &json, "print one JSON object instead of text");
  flags.Bool("progress", &progress, "show progress on stderr");
  auto usage_error = [&](const std::string& message) {
    std::cerr << "impq quantize-eval: " << message << "\n\n" << flags.Usage();
    return 2;
  };
  if (std::optional<int> exit_code = flags.ParseCommand(args)) return *exit_code;

  // Usage checks first: they need no file.
  auto quantizer = quant::MakeQuantizer(backend);
  if (!quantizer.ok()) return usage_error(absl::StrCat("--backend: ", quantizer.status().message()));
  const bool has_bits = flags.WasSet("bits"), has_assign = flags.WasSet("assign");
  if (has_bits == has_assign) return usage_error("give exactly one of --bits and --assign");
  if (!has_assign && (flags.WasSet("assign-budget") || flags.WasSet("assign-method"))) {
    return usage_error("--assign-budget and --assign-method need --assign");
  }
  if (has_bits && (bits == 16 || bits == 32 || !IsAssignableWidth(bits))) {
    return usage_error(absl::StrCat("--bits must be 2, 3, 4 or 8, got ", bits));
  }
  if (group_size <= 0) {
    return usage_error(absl::StrCat("--group-size must be > 0, got ", group_size));
  }
  if (threads < 1) return usage_error(absl::StrCat("--threads must be >= 1, got ", threads));
  auto mode = eval::ParseEvalMode(mode_name);
  if (!mode.ok()) return usage_error(std::string(mode.status().message()));
  auto players_flag = quant::ParsePlayerGranularity(players_name);
  if (!players_flag.ok()) return usage_error(std::string(players_flag.status().message()));
  const bool needs_calib = backend == "gptq";
  if (needs_calib && calib_path.empty()) {
    return usage_error("GPTQ needs calibration activations (--calib)");
  }
  if (!needs_calib && !calib_path.empty()) {
    std::cerr << "impq quantize-eval: note: " << backend
              << " is calibration-free; --calib is ignored\n";
  }

  quant::PlayerGranularity granularity = *players_flag;
  Assignment assignment;
  if (has_assign) {
    auto text = ReadFileToString(assign_path);
    if (!text.ok()) {
      std::cerr << "impq quantize-eval: --assign: " << text.status().message() << "\n";
      return 1;
    }
    std::optional<RunPick> pick;
    if (flags.WasSet("assign-budget") || flags.WasSet("assign-method")) {
      pick = RunPick{};
      if (flags.WasSet("assign-budget")) pick->budget = assign_budget;
      pick->method = assign_method;
    }
    auto a = ParseAssignment(*text, assign_path, pick);
    if (!a.ok()) return usage_error(std::string(a.status().message()));
    assignment = *std::move(a);
    // The allocation was chosen for the run's quantizer; measuring it under another is
    // legitimate (e.g. transfer), but worth a note.
    if (!assignment.run_backend.empty() && assignment.run_backend != backend) {
      std::cerr << "impq quantize-eval: note: " << assign_path << " was allocated for backend "
                << assignment.run_backend << ", measuring with " << backend << "\n";
    }
    if (assignment.run_group_size > 0 && assignment.run_group_size != group_size) {
      std::cerr << "impq quantize-eval: note: " << assign_path << " was allocated at group size "
                << assignment.run_group_size << ", measuring at " << group_size << "\n";
    }
    if (assignment.granularity) {
      if (flags.WasSet("players") && *assignment.granularity != granularity) {
        return usage_error(absl::StrCat("--players ", players_name, " contradicts --assign ",
                                        assign_path, " (\"players\": \"",
                                        quant::PlayerGranularityName(*assignment.granularity),
                                        "\")"));
      }
      granularity = *assignment.granularity;
    }
  }

  auto fail = [](const absl::Status& s) {
    std::cerr << "impq quantize-eval: " << s.message() << "\n";
    return 1;
  };
  auto loaded = model::LoadModelAndTokenizer(model_path, tokenizer_path);
  if (!loaded.ok()) return fail(loaded.status());
  const model::Model& m = loaded->model;
  const auto& cfg = m.config;
  const int num_players = static_cast<int>(quant::MakePlayers(cfg, granularity).size());
  if (has_bits) {
    assignment.bits.assign(num_players, static_cast<int>(bits));
  } else if (static_cast<int>(assignment.bits.size()) != num_players) {
    return usage_error(absl::StrCat("--assign ", assign_path, ": ", assignment.bits.size(),
                                    " widths, but ", model_path, " has ", num_players,
                                    " players at ", quant::PlayerGranularityName(granularity),
                                    " granularity (", cfg.n_layers, " layers)"));
  }
  if (ctx == 0) ctx = cfg.seq_len;
  auto text = ReadFileToString(text_path);
  if (!text.ok()) return fail(text.status());
  auto set = eval::BuildEvalSet(*loaded->tokenizer, *text, *mode, ctx, cfg.seq_len, text_path);
  if (!set.ok()) return fail(set.status());

  forward::LlamaForward fwd(m);
  std::optional<eval::EvalSet> calib_set;
  if (needs_calib) {
    auto c = engine::LoadFirstSequences(*loaded->tokenizer, calib_path, eval::EvalMode::kDocument,
                                        ctx, cfg.seq_len, calib_docs);
    if (!c.ok()) {
      return fail(absl::Status(c.status().code(), absl::StrCat("--calib: ", c.status().message())));
    }
    calib_set = *std::move(c);
  }
  // Only the widths the assignment uses are quantized (each module's version at a width does
  // not depend on the others, so the result is the same as with more widths prepared).
  engine::QuantizeRecipe recipe;
  recipe.backend = backend;
  recipe.group_size = static_cast<int>(group_size);
  recipe.players = granularity;
  for (int b : assignment.bits) {
    if (b < 16 && std::find(recipe.widths.begin(), recipe.widths.end(), b) == recipe.widths.end()) {
      recipe.widths.push_back(b);
    }
  }
  std::sort(recipe.widths.begin(), recipe.widths.end());
  // All full precision: Build needs a width, none is used.
  if (recipe.widths.empty()) {
    recipe.widths.assign(std::begin(quant::QuantizedModel::kDefaultWidths),
                         std::end(quant::QuantizedModel::kDefaultWidths));
  }
  recipe.calibration = calib_set ? &*calib_set : nullptr;
  recipe.threads = static_cast<int>(threads);
  auto qm = engine::QuantizePlayers(fwd, recipe);
  if (!qm.ok()) return fail(qm.status());
  auto weights = (*qm)->Apply(assignment.bits);
  if (!weights.ok()) return fail(weights.status());  // checked above; kept for safety

  // Memory: every linear under the assignment (full-precision players at f32); bits per
  // weight: the quantized players only, scales and zeros included.
  int64_t linear_bytes = 0, quant_bytes = 0, quant_weights = 0, fp_bytes = 0;
  for (int p = 0; p < num_players; ++p) {
    const int b = assignment.bits[p];
    linear_bytes += (*qm)->PlayerBytes(p, b);
    fp_bytes += (*qm)->PlayerFloatBytes(p);
    if (b < 16) {
      quant_bytes += (*qm)->PlayerBytes(p, b);
      quant_weights += (*qm)->PlayerWeights(p);
    }
  }
  // "n/a" (JSON null) when every player is at full precision.
  const bool has_bpw = quant_weights > 0;
  const double bits_per_weight = has_bpw ? 8.0 * quant_bytes / quant_weights : 0.0;

  eval::Evaluator evaluator(fwd, static_cast<int>(threads));
  eval::ProgressFn report;
  if (progress) {
    report = [](int64_t done, int64_t total) {
      if (done == total || done % 16 == 0) std::fprintf(stderr, "\r  %lld/%lld sequences", (long long)done, (long long)total);
      if (done == total) std::fprintf(stderr, "\n");
    };
  }
  auto r = evaluator.Nll(*weights, *set, report);
  if (!r.ok()) return fail(r.status());
  std::optional<eval::KlResult> klr;
  if (kl) {
    auto k = evaluator.Kl(forward::WeightSet::FromModel(m), *weights, *set, report);
    if (!k.ok()) return fail(k.status());
    klr = *k;
  }

  nlohmann::json out = NllReport(model_path, text_path, *set, *r, threads);
  out.update(nlohmann::json{{"backend", backend},
                        {"group_size", group_size},
                        {"players", quant::PlayerGranularityName(granularity)},
                        {"bits", assignment.bits},
                        {"assign", assign_path},
                        {"assign_pick", assignment.picked},
                        {"bits_per_weight", nullptr},
                        {"linear_weights", m.LinearParameterCount()},
                        {"linear_bytes", linear_bytes},
                        {"linear_fp32_bytes", fp_bytes},
                        {"quantize_seconds", (*qm)->quantize_seconds()},
                        {"quantized_widths", (*qm)->widths()}});
  if (has_bpw) out["bits_per_weight"] = bits_per_weight;
  if (calib_set) {
    out["calib"] = calib_path;
    out["calib_tokens"] = calib_set->processed_tokens;
  }
  if (klr) {
    out["kl"] = {{"tokens", klr->tokens},       {"kl", klr->kl},
                 {"kl_max", klr->kl_max},       {"top1_agree", klr->top1_agree},
                 {"nll_ref", klr->nll_ref},     {"nll_test", klr->nll_test},
                 {"seconds", klr->seconds}};
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << absl::StrFormat(
      "%s, group size %d, %s players, bits [%s]%s%s\n", backend, group_size,
      quant::PlayerGranularityName(granularity), absl::StrJoin(assignment.bits, ","),
      assignment.picked.empty() ? std::string()
                                : absl::StrCat(" (", assignment.picked, " from ", assign_path, ")"),
      calib_set ? absl::StrFormat(" (calibrated on %d tokens of %s)", calib_set->processed_tokens,
                                  calib_path)
            : std::string());
  std::cout << absl::StrFormat(
      "%s on %s (%s mode, ctx %d, %d sequences)\n  tokens %d  NLL %.6f  PPL %.4f  "
      "%.0f tokens/s (%d threads, %.2f s)\n",
      model_path, text_path, eval::EvalModeName(*mode), ctx, set->sequences.size(), r->tokens,
      r->nll, r->ppl, r->tokens_per_s, threads, r->seconds);
  std::cout << absl::StrFormat(
      "  linear weights: %s bits/weight (quantized players, scales/zeros included), "
      "%d bytes under this assignment (fp32: %d bytes)\n",
      has_bpw ? absl::StrFormat("%.4f", bits_per_weight) : std::string("n/a"),
      linear_bytes, fp_bytes);
  std::cout << absl::StrFormat("  quantization: %.3f s (every linear at %s bits)\n",
                               (*qm)->quantize_seconds(), absl::StrJoin((*qm)->widths(), ", "));
  if (klr) {
    std::cout << absl::StrFormat(
        "  KL vs full precision: %.6f nats/token (max %.4f, top-1 agreement %.2f%%, "
        "fp NLL %.6f)\n",
        klr->kl, klr->kl_max, 100.0 * klr->top1_agree, klr->nll_ref);
  }
  return 0;
}

}  // namespace impq::cli
