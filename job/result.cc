// The job's result: BudgetResult::Chosen, and the one writer of the result document
// (JobResultToJson: `impq run --json`, `impqctl result --json`) and of its Markdown report.
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "job/job.h"
#include "job/method_title.h"
#include "nlohmann/json.hpp"

namespace impq::job {

const MeasuredAllocation& BudgetResult::Chosen() const {
  for (const MeasuredAllocation& m : allocations) {
    if (m.method == chosen) return m;
  }
  IMPQ_CHECK(false) << "chosen method '" << chosen << "' not among the allocations";
  return allocations.front();
}

namespace {

nlohmann::json Matrix(const std::vector<double>& m, int n) {
  nlohmann::json rows = nlohmann::json::array();
  for (int i = 0; i < n; ++i) {
    rows.push_back(std::vector<double>(m.begin() + static_cast<size_t>(i) * n,
                                       m.begin() + static_cast<size_t>(i + 1) * n));
  }
  return rows;
}

}  // namespace

std::string JobResultToJson(const JobResult& r, bool include_timings) {
  using nlohmann::json;
  const JobOptions& o = r.options;
  const int n = static_cast<int>(r.player_names.size());
  const std::vector<int>& widths = o.widths;
  const int m = static_cast<int>(widths.size());
  const int ns = n * (m - 1);  // the game's players: the ladder's steps (n with {2, 4})
  json j;
  j["settings"] = {
      {"model", AbsolutePath(o.model_path)},
      {"tokenizer", AbsolutePath(o.tokenizer_path)},
      {"calibration_text", AbsolutePath(o.calib_text_path)},
      {"heldout_text", AbsolutePath(o.heldout_text_path)},
      {"calibration_docs", o.calib_docs},
      {"select_docs", o.select_docs},
      {"heldout_docs", o.heldout_docs},
      {"eval_mode", eval::EvalModeName(o.mode)},
      {"ctx", o.ctx},
      {"players", quant::PlayerGranularityName(o.players)},
      {"backend", o.backend},
      {"group_size", o.group_size},
      {"permutations", o.permutations},
      {"antithetic", o.antithetic},
      {"seed", o.seed},
      {"se_threshold", o.se_threshold},
      {"estimator", o.estimator},
      {"alpha", o.alpha},
      {"ridge", o.ridge},
      {"local_bandwidth", o.local_bandwidth},
      {"local_ridge", o.local_ridge},
      {"average_bits", o.average_bits},
      {"random_draws", o.random_draws},
      {"extra_evaluation_fraction", o.extra_evaluation_fraction},
      {"search_batch", o.search_batch},
      {"choice_z", o.choice_z},
      {"widths", o.widths},
  };
  // The widths and the step game (solver/width_ladder.h): step s = i·(m−1) + r moves player i
  // from widths[m−1−r] to widths[m−2−r]; spqe, interactions and isolated_delta are per step.
  j["widths"] = widths;
  json width_bytes = json::array(), steps = json::array();
  for (int i = 0; i < n; ++i) {
    width_bytes.push_back(std::vector<int64_t>(
        r.width_bytes.begin() + static_cast<size_t>(i) * m,
        r.width_bytes.begin() + static_cast<size_t>(i + 1) * m));
    for (int step = 0; step < m - 1; ++step) {
      steps.push_back({{"player", i},
                       {"from_bits", widths[m - 1 - step]},
                       {"to_bits", widths[m - 2 - step]}});
    }
  }
  j["width_bytes"] = std::move(width_bytes);
  j["steps"] = std::move(steps);
  json players = json::array();
  for (int i = 0; i < n; ++i) {
    players.push_back({{"name", r.player_names[i]}, {"bytes2", r.bytes2[i]}, {"bytes4", r.bytes4[i]}});
  }
  // The model's identity (`impq export` refuses another model): absolute paths as the job
  // ran them, the weights' fingerprint.
  j["model"] = {{"config", r.model_config},
                {"players", players},
                {"all2_bytes", r.all2_bytes},
                {"all4_bytes", r.all4_bytes},
                {"identity",
                 {{"absolute_path", AbsolutePath(o.model_path)},
                  {"absolute_tokenizer", AbsolutePath(o.tokenizer_path)},
                  {"absolute_calibration_text", AbsolutePath(o.calib_text_path)},
                  {"config", r.model_config},
                  {"fingerprint", r.model_fingerprint},
                  {"linear_weights", r.model_linear_weights}}}};
  j["data"] = {{"calibration", {{"sequences", r.calib_sequences}, {"scored_tokens", r.calib_tokens}}},
               {"selection",
                {{"sequences", r.select_sequences},
                 {"scored_tokens", r.select_tokens},
                 {"same_as_calibration", r.select_on_calibration}}},
               {"heldout", {{"sequences", r.heldout_sequences}, {"scored_tokens", r.heldout_tokens}}}};
  j["spqe"] = {{"phi", r.phi},
               {"standard_error", r.phi_se},
               {"permutations", r.permutations_done},
               {"stop_reason", r.stop_reason},
               {"coalitions_requested", r.coalitions_requested},
               {"coalitions_evaluated", r.coalitions_evaluated},
               {"cache_hits", r.cache_hits},
               {"calibration_loss_all4", r.calib_loss_all4},
               {"calibration_loss_all2", r.calib_loss_all2}};
  j["interactions"] = {
      {"allocation_estimator", r.allocation_estimator},
      {"covariance", {{"alpha", o.alpha}, {"linear", r.cov_linear}, {"K", Matrix(r.cov_quadratic, ns)}}},
      {"window", {{"target_sizes", r.target_sizes}, {"linear_per_budget", r.window_linear}}},
      {"window_top", {{"linear_per_budget", r.window_top_linear}}}};
  if (!r.sur_linear.empty()) {  // fitted in the binary game only
    j["interactions"]["surrogate"] = {{"ridge", o.ridge},
                                      {"constant", r.sur_constant},
                                      {"linear", r.sur_linear},
                                      {"K", Matrix(r.sur_quadratic, ns)}};
  }
  j["baseline_scores"] = {{"isolated_delta", r.isolated_delta},
                          {"lim", r.lim},
                          {"zscore", r.zscore},
                          {"actnorm", r.actnorm}};
  j["references"] = {{"heldout_ppl_fp32", r.heldout_ppl_fp32},
                     {"heldout_ppl_all4", r.heldout_ppl_all4},
                     {"heldout_ppl_all2", r.heldout_ppl_all2}};
  json budgets = json::array();
  for (const BudgetResult& b : r.budgets) {
    json allocs = json::array();
    for (const MeasuredAllocation& m : b.allocations) {
      json a = {{"method", m.method},
                {"bits", m.bits},
                {"memory_bytes", m.memory_bytes},
                {"average_bits", m.average_bits},
                {"heldout_nll", m.heldout_nll},
                {"heldout_ppl", m.heldout_ppl}};
      if (m.candidate) {
        a["tier"] = m.tier;
        a["calibration_nll"] = m.calib_nll;
        a["calibration_ppl"] = m.calib_ppl;
      }
      if (m.method.rfind("impq", 0) == 0) {
        a["objective"] = m.objective;
        a["lower_bound"] = m.lower_bound;
        a["proven_optimal"] = m.proven_optimal;
        a["nodes"] = m.nodes;
      }
      if (!m.draw_bits.empty()) {
        a["draw_bits"] = m.draw_bits;
        a["draw_ppl"] = m.draw_ppl;
      }
      allocs.push_back(std::move(a));
    }
    const MeasuredAllocation& c = b.Chosen();
    budgets.push_back({{"average_bits", b.average_bits},
                       {"budget_bytes", b.budget_bytes},
                       {"target_size", b.target_size},
                       {"chosen",
                        {{"method", c.method},
                         {"bits", c.bits},
                         {"calibration_ppl", c.calib_ppl},
                         {"heldout_ppl", c.heldout_ppl},
                         {"runner_up", b.runner_up},
                         {"margin", b.chosen_margin},
                         {"simpler", b.simpler},
                         {"nll_vs_simpler", b.chosen_vs_simpler},
                         {"nll_vs_simpler_se", b.chosen_vs_simpler_se}}},
                       {"search", {{"evaluations", b.search_evaluations},
                                   {"moves", b.search_moves}}},
                       {"allocations", allocs}});
  }
  j["budgets"] = budgets;
  j["cost"] = {{"calibration_evaluations", r.calib_evaluations},
               {"isolated_evaluations", r.isolated_evaluations},
               {"heldout_evaluations", r.heldout_evaluations},
               {"selection_evaluations", r.selection_evaluations},
               {"selection_ratio", r.selection_ratio}};
  if (include_timings) {
    j["timings"] = {{"load_s", r.load_seconds},         {"quantize_s", r.quantize_seconds},
                    {"baselines_s", r.baselines_seconds}, {"spqe_s", r.spqe_seconds},
                    {"solve_s", r.solve_seconds},       {"select_s", r.select_seconds},
                    {"measure_s", r.measure_seconds},
                    {"total_s", r.total_seconds},       {"threads", o.threads},
                    // Prefix reuse: costs that depend on which worker evaluated what.
                    {"block_evals_done", r.block_evals_done},
                    {"block_evals_full", r.block_evals_full},
                    {"prefix_saved_fraction", r.prefix_saved_fraction},
                    {"prefix_cache_bytes", r.prefix_cache_bytes}};
  }
  return j.dump(2) + "\n";
}

std::string JobResultToMarkdown(const JobResult& r) {
  const JobOptions& o = r.options;
  std::string out;
  absl::StrAppendFormat(
      &out,
      "IMPQ on %s: %d %s players, %s backend, group size %d; SPQE %d permutations%s, seed %d; "
      "calibration %d sequences (%d scored tokens), per-budget choice on %s%d sequences (%d "
      "scored tokens), held-out %d sequences (%d scored tokens).\n\n",
      r.model_config, static_cast<int>(r.player_names.size()),
      quant::PlayerGranularityName(o.players), o.backend, o.group_size, r.permutations_done,
      o.antithetic ? " (antithetic)" : "", o.seed, r.calib_sequences, r.calib_tokens,
      r.select_on_calibration ? "the same " : "the calibration text's next ", r.select_sequences,
      r.select_tokens, r.heldout_sequences, r.heldout_tokens);
  const std::vector<int>& widths = o.widths;
  const int m = static_cast<int>(widths.size());
  if (m > 2) {
    absl::StrAppendFormat(&out,
                          "Widths %s bits: the SPQE game's players are the %d steps of the "
                          "ladder (each player one rung down), the allocations multiple-choice.\n\n",
                          absl::StrJoin(widths, ", "),
                          static_cast<int>(r.player_names.size()) * (m - 1));
  }
  absl::StrAppendFormat(&out,
                        "Held-out perplexity (lower is better; best per row in bold). References: "
                        "fp32 %.3f, all-4-bit %.3f, all-2-bit %.3f.\n\n",
                        r.heldout_ppl_fp32, r.heldout_ppl_all4, r.heldout_ppl_all2);
  if (r.budgets.empty()) return out;
  auto title_of = [&](const std::string& method) {
    return MethodTitle(method, r.allocation_estimator, o.random_draws);
  };
  out += "| b_avg | budget (bytes) | **chosen** |";
  for (const auto& m : r.budgets[0].allocations) out += " " + title_of(m.method) + " |";
  out += "\n|---:|---:|---:|";
  for (size_t k = 0; k < r.budgets[0].allocations.size(); ++k) out += "---:|";
  out += "\n";
  for (const BudgetResult& b : r.budgets) {
    double best = 1e300;
    for (const auto& m : b.allocations) best = std::min(best, m.heldout_ppl);
    absl::StrAppendFormat(&out, "| %.2f | %d | %.3f (%s) |", b.average_bits, b.budget_bytes,
                          b.Chosen().heldout_ppl, title_of(b.chosen));
    for (const auto& m : b.allocations) {
      const std::string v = absl::StrFormat("%.3f", m.heldout_ppl);
      out += m.heldout_ppl == best ? " **" + v + "** |" : " " + v + " |";
    }
    out += "\n";
  }
  absl::StrAppendFormat(
      &out,
      "\nThe per-budget choice: every candidate allocation's calibration PPL (on the choice's "
      "sequences) → held-out PPL "
      "(chosen marked *). Candidates come in tiers: isolated metrics and uniform, the %s "
      "estimators, the measured local search; a more elaborate tier replaces the best simpler "
      "candidate only when its calibration NLL is lower by more than %.2f paired standard "
      "errors. k* = %s the budget implies; margin = runner-up's calibration PPL "
      "/ chosen's − 1; vs simpler = chosen's calibration NLL − the best tier-0 candidate's ± SE. "
      "%d extra calibration evaluations (%s by the search) = %.1f%% of SPQE's %d.\n\n"
      "| b_avg | k* | chosen | margin | vs simpler |",
      m > 2 ? "three" : "five", o.choice_z, m > 2 ? "ladder steps taken" : "players at 2 bits",
      r.selection_evaluations,
      absl::StrJoin(r.search_evaluations, " + "), 100 * r.selection_ratio,
      r.coalitions_evaluated);
  for (const auto& m : r.budgets[0].allocations) {
    if (m.candidate) out += " " + title_of(m.method) + " |";
  }
  out += "\n|---:|---:|---|---:|---:|";
  for (const auto& m : r.budgets[0].allocations) {
    if (m.candidate) out += "---:|";
  }
  out += "\n";
  for (const BudgetResult& b : r.budgets) {
    absl::StrAppendFormat(&out, "| %.2f | %.1f | %s | %.2f%% vs %s | %+.4f ± %.4f (%s) |",
                          b.average_bits, b.target_size, title_of(b.chosen), 100 * b.chosen_margin,
                          b.runner_up.empty() ? "-" : title_of(b.runner_up), b.chosen_vs_simpler,
                          b.chosen_vs_simpler_se, title_of(b.simpler));
    for (const auto& m : b.allocations) {
      if (!m.candidate) continue;
      absl::StrAppendFormat(&out, " %s%.3f → %.3f |", m.method == b.chosen ? "*" : "",
                            m.calib_ppl, m.heldout_ppl);
    }
    out += "\n";
  }
  out += "\nChosen allocations (bits per player, in player order):\n\n";
  for (const BudgetResult& b : r.budgets) {
    const MeasuredAllocation& m = b.Chosen();
    std::string bits;
    for (int x : m.bits) bits += static_cast<char>('0' + x);
    absl::StrAppendFormat(&out, "- b_avg %.2f: `%s` (%.3f bits, %s)\n", b.average_bits, bits,
                          m.average_bits, title_of(m.method));
  }
  absl::StrAppendFormat(
      &out,
      "\nShapley values φ (ΔNLL on calibration, nats/token; all-%d-bit loss %.4f, all-%d-bit "
      "%.4f) with standard errors, next to the isolated Δ%s:\n\n"
      "| player | φ | SE | isolated Δ | bytes saved |\n|---|---:|---:|---:|---:|\n",
      widths.back(), r.calib_loss_all4, widths.front(), r.calib_loss_all2,
      m > 2 ? ", per step of the ladder" : "");
  for (size_t s = 0; s < r.phi.size(); ++s) {
    const size_t i = s / (m - 1), step = s % (m - 1);
    const int from = m - 1 - static_cast<int>(step);
    const std::string name =
        m > 2 ? absl::StrFormat("%s %d→%d", r.player_names[i], widths[from], widths[from - 1])
              : r.player_names[i];
    absl::StrAppendFormat(&out, "| %s | %.4f | %.4f | %.4f | %d |\n", name, r.phi[s],
                          r.phi_se[s], r.isolated_delta[s],
                          r.width_bytes[i * m + from] - r.width_bytes[i * m + from - 1]);
  }
  absl::StrAppendFormat(
      &out,
      "\nCost: %d calibration evaluations (%d for isolated Δ, %d for SPQE, %d SPQE cache hits); "
      "%d for the per-budget choice (%.1f%% of SPQE's); prefix reuse ran %d of %d block "
      "evaluations (saved %.1f%%, cache %.1f MB); %d held-out evaluations.\n",
      r.calib_evaluations, r.isolated_evaluations, r.coalitions_evaluated, r.cache_hits,
      r.selection_evaluations, 100 * r.selection_ratio,
      r.block_evals_done, r.block_evals_full, 100 * r.prefix_saved_fraction,
      r.prefix_cache_bytes / 1e6, r.heldout_evaluations);
  return out;
}

}  // namespace impq::job
