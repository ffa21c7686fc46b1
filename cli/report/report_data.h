// What `impq report` draws, read from the file `impq run --json FILE` writes
// (job::JobResultToJson, job/job.h).
//
// The run's settings, players and every budget's allocations (method, bits, held-out PPL,
// the chosen one) come through cli/run_file.h's ParseRunJson, the reader every command shares;
// this file adds what only the report draws and checks that it is all there, naming the first
// problem by its JSON path (e.g. `budgets[1].allocations[3].average_bits`), so a truncated or
// hand-edited file is rejected before anything is drawn.
//
// Required beyond ParseRunJson's fields: spqe.phi and spqe.standard_error (>= 0);
// baseline_scores.isolated_delta (each one number per step of the SPQE game: per player for
// widths {2, 4}, n·(m−1) for m widths, cli/run_file.h);
// interactions.allocation_estimator and that estimator's K (steps × steps);
// budgets[].chosen.method (one of the budget's allocations); allocations[].average_bits and
// heldout_ppl (> 0: the figure has a log axis).
// Optional (drawn or listed when present): settings.seed/permutations/antithetic/estimator/
// random_draws, widths/width_bytes/steps (ParseRunJson's), model.players[].bytes2/bytes4,
// spqe.permutations/stop_reason, references.*,
// data.*, cost.*, timings.total_s/threads, allocations[].calibration_ppl/memory_bytes; when
// present they must have the right type.
#ifndef IMPQ_CLI_REPORT_REPORT_DATA_H_
#define IMPQ_CLI_REPORT_REPORT_DATA_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/run_file.h"
#include "nlohmann/json.hpp"
#include "worker/model/model.h"

namespace impq::cli::report {

// The linear modules of a decoder layer, in module-player order (README "Assignments": module
// player p is layer p / kNumModules, module p % kNumModules): "attn_q", ..., "ffn_down".
inline constexpr int kNumModules = model::kNumLinear;
inline const char* ModuleName(int module) {
  return model::LinearKindName(static_cast<model::LinearKind>(module));
}

struct ReportPlayer {
  std::string name;           // as in the file: "layers.3.ffn_down" or "block3"
  std::string label;          // for people: "L3.ffn_down" or "L3" (the name when unrecognised)
  int layer = 0;              // decoder layer
  int module = -1;            // ModuleName's index; -1: every module (block players)
  std::optional<int64_t> bytes2, bytes4;
  std::vector<int64_t> width_bytes;  // bytes at each of RunReport::widths; empty: unknown
};

// One player of the SPQE game: a player going one width down (for widths {2, 4}: the player
// itself, from 4 to 2 bits).
struct ReportStep {
  int player = 0;             // index into RunReport::players
  int from_bits = 4, to_bits = 2;
  std::string label;          // the player's label; with more widths plus " 8→4"
  double phi = 0;             // Shapley value (ΔNLL, nats/token)
  double phi_se = 0;          // its standard error
  double isolated_delta = 0;  // ΔNLL of this step alone (the player alone at 2 bits on {2, 4})
};

struct ReportAllocation {
  std::string method;       // "impq", "isolated", ... (MethodTitle gives the display name)
  std::vector<int> bits;    // one width per player
  double average_bits = 0;  // of this allocation (<= the budget's)
  double heldout_ppl = 0;   // > 0
  std::optional<double> calibration_ppl;  // candidates of the per-budget choice
  std::optional<int64_t> memory_bytes;
};

struct ReportBudget {
  double average_bits = 0;  // the target
  std::optional<int64_t> budget_bytes;
  std::string chosen;  // method of the chosen allocation
  std::vector<ReportAllocation> allocations;
  // The chosen entry of allocations (the reader checks that it exists).
  const ReportAllocation& Chosen() const;
};

// The header's facts; each is absent when the file lacks it.
struct ReportHeader {
  std::optional<std::string> model_path, model_config, backend, estimator, stop_reason;
  std::optional<int64_t> group_size, seed, permutations_requested, permutations_done;
  std::optional<bool> antithetic;
  std::optional<int64_t> calib_sequences, calib_tokens, heldout_sequences, heldout_tokens;
  std::optional<int64_t> calib_evaluations, heldout_evaluations, selection_evaluations;
  std::optional<double> total_seconds;
  std::optional<int64_t> threads, random_draws;
};

struct RunReport {
  ReportHeader header;
  std::string granularity;  // "module" | "block"
  std::vector<int> widths = {2, 4};  // the run's quantized widths, ascending
  std::vector<ReportPlayer> players;
  std::vector<ReportStep> steps;  // the SPQE game's players, in step order (file order)
  int num_layers = 0;                                  // 1 + the largest player layer
  std::string interaction_estimator;                   // "covariance" | "surrogate" | ...
  std::vector<std::vector<double>> interaction;        // K, steps × steps
  std::optional<double> ppl_fp32, ppl_all4, ppl_all2;  // held-out references
  std::vector<ReportBudget> budgets;

  // True for widths {2, 4}: one step per player, and the report of issue 13 unchanged.
  bool binary() const { return widths == std::vector<int>{2, 4}; }
};

// Reads the report's part of an `impq run --json` document; `source` names it in errors.
// Errors: InvalidArgument "<source>: <field> is missing" or "<source>: <field> is <value>
// (expected ...)", naming the JSON path of the first missing, mistyped or inconsistent field
// (ParseRunJson's errors for the fields it reads).
absl::StatusOr<RunReport> ReadRunReport(const nlohmann::json& run, const std::string& source);

// The display name of a method, as impq run's Markdown table writes it ("impq" is titled with
// the estimator it used, e.g. "IMPQ (covariance)"); an unknown method is returned as is.
std::string MethodTitle(const RunReport& report, const std::string& method);

}  // namespace impq::cli::report

#endif  // IMPQ_CLI_REPORT_REPORT_DATA_H_
