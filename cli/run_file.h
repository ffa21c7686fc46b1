// The file `impq run --json FILE` writes, read back as types: the run's settings (backend,
// group size, player granularity, calibration), the model it ran on, and every budget's
// allocations as bit lists. `impq quantize-eval --assign`, `impq export` and `impq report` read
// run files through this one reader, so a field means the same thing to all of them.
//
// What is read (job/result.cc JobResultToJson writes it; cli/run_command.cc adds
// "model"."identity"):
//   settings: players ("module" | "block"), backend, group_size, model, tokenizer,
//             calibration_text, calibration_docs, ctx, eval_mode
//   model:    config (ModelConfig::ToString(): "llama dim=64 hidden=172 layers=5 ..."),
//             players[].name, and optionally identity {absolute_path, absolute_tokenizer,
//             absolute_calibration_text, fingerprint, ...}
//   budgets[]: average_bits, budget_bytes, chosen.method, allocations[] {method, bits[],
//             heldout_ppl}
//   widths:   the run's quantized widths, ascending, each in {2, 3, 4, 8} (issue 14; absent in
//             older files: [2, 4])
//   width_bytes: optional, one array per player of its exact bytes at each width of `widths`
//             (absent: taken from model.players[].bytes2/bytes4 when widths is [2, 4])
//   steps:    optional, one {player, from_bits, to_bits} per player of the SPQE step game, in
//             the order step s = i·(m−1) + r moves player i from widths[m−1−r] to
//             widths[m−2−r] (solver/width_ladder.h); checked against that order, and derived
//             from it when absent. spqe.phi, standard_error, baseline_scores.isolated_delta
//             and the interaction matrices are indexed by step (for [2, 4], steps == players).
// Every other key is ignored. An allocation's widths are the run's widths or 16/32 (full
// precision); which of them a consumer supports is the consumer's check.
#ifndef IMPQ_CLI_RUN_FILE_H_
#define IMPQ_CLI_RUN_FILE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "worker/eval/eval_set.h"
#include "worker/model/model.h"
#include "worker/model/tokenizer.h"
#include "worker/quant/quantized_model.h"

namespace impq::cli {

struct RunAllocation {
  std::string method;     // "impq", "isolated", "impq_search", ...
  std::vector<int> bits;  // one width per player, in player order
  double heldout_ppl = 0; // 0 when the file has none
};

struct RunBudget {
  double average_bits = 0;
  int64_t budget_bytes = 0;
  std::string chosen;  // the per-budget choice's method; empty in files older than issue 8
  std::vector<RunAllocation> allocations;
};

// The model the run measured on.
struct RunModel {
  std::string path;       // settings.model, as `impq run` was given it (may be relative)
  std::string tokenizer;  // settings.tokenizer; empty: the model's own
  std::string config;     // model.config, ModelConfig::ToString()
  std::string arch;       // the config's first word ("llama")
  int n_layers = 0;       // the config's "layers=N"
  int dim = 0, hidden_dim = 0, q_dim = 0;  // "dim=", "hidden=", "heads=" x "head_dim="
  std::vector<std::string> player_names;  // model.players[].name
  // model.identity, written by `impq run` since issue 14 (empty in older files).
  std::string absolute_path;  // the model path made absolute when the run wrote the file
  std::string absolute_tokenizer;  // the same for settings.tokenizer (empty: the model's own)
  std::string fingerprint;    // model::WeightsFingerprint of the run's model
};

// One player of the SPQE step game: player `player` going from `from_bits` down to `to_bits`.
struct RunStep {
  int player = 0;
  int from_bits = 0;
  int to_bits = 0;
};

struct RunFile {
  std::string path;  // the file read (labels every error)
  std::vector<int> widths = {2, 4};  // ascending; [2, 4] for files older than issue 14
  // [player][w]: bytes of the player at widths[w]; empty when the file gives no bytes.
  std::vector<std::vector<int64_t>> width_bytes;
  std::vector<RunStep> steps;  // n·(widths.size() − 1), in step order; never empty
  quant::PlayerGranularity players = quant::PlayerGranularity::kModule;
  std::string backend;  // rtn | hqq | gptq
  int group_size = 0;
  std::string calibration_text;  // as `impq run` was given it (may be relative)
  std::string absolute_calibration_text;  // model.identity's (empty in older files)
  int64_t calibration_docs = 0;  // first N documents calibrated the run (0: all)
  int64_t ctx = 0;
  eval::EvalMode mode = eval::EvalMode::kDocument;
  RunModel model;
  std::vector<RunBudget> budgets;  // in file order

  // "average bits 2.5, 3" for messages.
  std::string BudgetList() const;
  // True for the binary game of widths {2, 4}: one step per player, from 4 to 2 bits.
  bool binary() const { return widths == std::vector<int>{2, 4}; }
};

// True for the object a run file holds (it has "budgets"); plain assignment files do not.
bool IsRunJson(const nlohmann::json& j);

// Reads a parsed run file. InvalidArgument naming `path`, the field (as a JSON path, e.g.
// budgets[1].allocations[0].bits[7]) and what is there when a field this reader uses is
// missing, of the wrong type or out of range, a bit list's length differs from the number of
// players, a bit is neither one of `widths` nor 16/32, or width_bytes / steps disagree with
// the widths and players.
absl::StatusOr<RunFile> ParseRunJson(const nlohmann::json& j, const std::string& path);
// Reads and parses `path`: NotFound (or the errno's code) for a missing or unreadable file,
// InvalidArgument for text that is not JSON or not a run file, else as ParseRunJson.
absl::StatusOr<RunFile> ReadRunFile(const std::string& path);

// The flags a command picks an allocation with; they name the offending flag in errors.
struct PickFlags {
  std::string budget = "--budget";
  std::string method = "--method";
};

struct PickedAllocation {
  const RunBudget* budget = nullptr;
  const RunAllocation* allocation = nullptr;
  std::string Describe() const;  // "impq_window at b_avg 2.5"
};

// The allocation of `run` at average bits `budget` (within 1e-9; optional when the file holds
// one budget) made by `method` (empty or "chosen": the budget's chosen one). InvalidArgument
// naming the flag, the value and what the file has: a budget or method not in the file, no
// budget given for a file with several, no chosen allocation recorded. The result points into
// `run`.
absl::StatusOr<PickedAllocation> PickAllocation(const RunFile& run, std::optional<double> budget,
                                                const std::string& method,
                                                const PickFlags& flags = {});

// "2.5", "3" (%g), as budgets are named in messages.
std::string FormatAverageBits(double b);

}  // namespace impq::cli

#endif  // IMPQ_CLI_RUN_FILE_H_
