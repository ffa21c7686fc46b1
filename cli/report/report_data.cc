#include "cli/report/report_data.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/status.h"

namespace impq::cli::report {
namespace {

using nlohmann::json;

std::string Join(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : absl::StrCat(parent, ".", key);
}

std::string At(const std::string& parent, size_t i) { return absl::StrCat(parent, "[", i, "]"); }

absl::Status Bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("field `", path, "`: ", what));
}

std::string TypeOf(const json& v) { return v.type_name(); }

// A required member of an object. `parent_path` names `parent` for the message.
absl::StatusOr<const json*> Member(const json& parent, const std::string& parent_path,
                                   const std::string& key) {
  if (!parent.is_object()) {
    return Bad(parent_path.empty() ? "(top level)" : parent_path,
               absl::StrCat("expected an object, got ", TypeOf(parent)));
  }
  auto it = parent.find(key);
  if (it == parent.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing required field `", Join(parent_path, key), "`"));
  }
  return &*it;
}

// An optional member: nullptr when absent (or when `parent` is not an object, in which case
// the required reads above report it).
const json* OptionalMember(const json& parent, const std::string& key) {
  if (!parent.is_object()) return nullptr;
  auto it = parent.find(key);
  return it == parent.end() ? nullptr : &*it;
}

absl::StatusOr<double> Number(const json& v, const std::string& path) {
  // JobResultToJson writes a non-finite double as null; that is not a number to draw.
  if (!v.is_number()) return Bad(path, absl::StrCat("expected a number, got ", TypeOf(v)));
  const double d = v.get<double>();
  if (!std::isfinite(d)) return Bad(path, "expected a finite number");
  return d;
}

absl::StatusOr<int64_t> Integer(const json& v, const std::string& path) {
  if (!v.is_number_integer()) return Bad(path, absl::StrCat("expected an integer, got ", TypeOf(v)));
  return v.get<int64_t>();
}

absl::StatusOr<std::string> String(const json& v, const std::string& path) {
  if (!v.is_string()) return Bad(path, absl::StrCat("expected a string, got ", TypeOf(v)));
  return v.get<std::string>();
}

absl::StatusOr<const json*> Array(const json& v, const std::string& path,
                                  std::optional<size_t> size = std::nullopt) {
  if (!v.is_array()) return Bad(path, absl::StrCat("expected an array, got ", TypeOf(v)));
  if (size.has_value() && v.size() != *size) {
    return Bad(path, absl::StrFormat("expected %d entries (one per player), got %d", *size,
                                     v.size()));
  }
  return &v;
}

absl::StatusOr<std::vector<double>> Numbers(const json& parent, const std::string& parent_path,
                                            const std::string& key, size_t size) {
  const std::string path = Join(parent_path, key);
  ASSIGN_OR_RETURN(const json* m, Member(parent, parent_path, key));
  ASSIGN_OR_RETURN(const json* a, Array(*m, path, size));
  std::vector<double> out;
  for (size_t i = 0; i < a->size(); ++i) {
    ASSIGN_OR_RETURN(double d, Number((*a)[i], At(path, i)));
    out.push_back(d);
  }
  return out;
}

// Optional scalars: absent is fine, present with the wrong type is an error.
template <typename T, typename Read>
absl::Status Optional(const json& parent, const std::string& parent_path, const std::string& key,
                      Read read, std::optional<T>* out) {
  const json* m = OptionalMember(parent, key);
  if (m == nullptr) return absl::OkStatus();
  ASSIGN_OR_RETURN(T v, read(*m, Join(parent_path, key)));
  *out = std::move(v);
  return absl::OkStatus();
}

absl::Status OptionalNumber(const json& p, const std::string& pp, const std::string& key,
                            std::optional<double>* out) {
  return Optional<double>(p, pp, key, Number, out);
}
absl::Status OptionalInteger(const json& p, const std::string& pp, const std::string& key,
                             std::optional<int64_t>* out) {
  return Optional<int64_t>(p, pp, key, Integer, out);
}
absl::Status OptionalString(const json& p, const std::string& pp, const std::string& key,
                            std::optional<std::string>* out) {
  return Optional<std::string>(p, pp, key, String, out);
}
absl::Status OptionalBool(const json& p, const std::string& pp, const std::string& key,
                          std::optional<bool>* out) {
  auto read = [](const json& v, const std::string& path) -> absl::StatusOr<bool> {
    if (!v.is_boolean()) return Bad(path, absl::StrCat("expected true or false, got ", TypeOf(v)));
    return v.get<bool>();
  };
  return Optional<bool>(p, pp, key, read, out);
}

// An optional sub-object ("timings", "cost", ...): an empty object when absent.
const json& OptionalObject(const json& parent, const std::string& key) {
  static const json* const kEmpty = new json(json::object());
  const json* m = OptionalMember(parent, key);
  return m != nullptr ? *m : *kEmpty;
}

// Layer and module of a player from its name ("layers.3.ffn_down", "block3"), else from its
// index (README "Assignments"). Sets label, layer and module.
void Place(ReportPlayer& p, int index, bool module_players) {
  if (module_players) {
    std::vector<std::string> parts = absl::StrSplit(p.name, '.');
    int layer = -1;
    if (parts.size() == 3 && parts[0] == "layers" && absl::SimpleAtoi(parts[1], &layer) &&
        layer >= 0) {
      for (int m = 0; m < 7; ++m) {
        if (parts[2] == kModuleNames[m]) {
          p.layer = layer;
          p.module = m;
          p.label = absl::StrCat("L", layer, ".", parts[2]);
          return;
        }
      }
    }
    p.layer = index / 7;
    p.module = index % 7;
    p.label = p.name;
    return;
  }
  absl::string_view rest = p.name;
  int layer = -1;
  if (absl::ConsumePrefix(&rest, "block") && absl::SimpleAtoi(rest, &layer) && layer >= 0) {
    p.layer = layer;
  } else {
    p.layer = index;
  }
  p.module = -1;
  p.label = p.name == absl::StrCat("block", p.layer) ? absl::StrCat("L", p.layer) : p.name;
}

absl::Status ReadHeader(const json& run, RunReport& r) {
  ReportHeader& h = r.header;
  const json& settings = OptionalObject(run, "settings");
  RETURN_IF_ERROR(OptionalString(settings, "settings", "model", &h.model_path));
  RETURN_IF_ERROR(OptionalString(settings, "settings", "backend", &h.backend));
  RETURN_IF_ERROR(OptionalString(settings, "settings", "estimator", &h.estimator));
  RETURN_IF_ERROR(OptionalInteger(settings, "settings", "group_size", &h.group_size));
  RETURN_IF_ERROR(OptionalInteger(settings, "settings", "seed", &h.seed));
  RETURN_IF_ERROR(OptionalInteger(settings, "settings", "permutations", &h.permutations_requested));
  RETURN_IF_ERROR(OptionalBool(settings, "settings", "antithetic", &h.antithetic));
  RETURN_IF_ERROR(OptionalInteger(settings, "settings", "random_draws", &h.random_draws));
  RETURN_IF_ERROR(OptionalString(OptionalObject(run, "model"), "model", "config", &h.model_config));
  const json& spqe = OptionalObject(run, "spqe");
  RETURN_IF_ERROR(OptionalInteger(spqe, "spqe", "permutations", &h.permutations_done));
  RETURN_IF_ERROR(OptionalString(spqe, "spqe", "stop_reason", &h.stop_reason));
  const json& data = OptionalObject(run, "data");
  const json& calib = OptionalObject(data, "calibration");
  RETURN_IF_ERROR(OptionalInteger(calib, "data.calibration", "sequences", &h.calib_sequences));
  RETURN_IF_ERROR(OptionalInteger(calib, "data.calibration", "scored_tokens", &h.calib_tokens));
  const json& heldout = OptionalObject(data, "heldout");
  RETURN_IF_ERROR(OptionalInteger(heldout, "data.heldout", "sequences", &h.heldout_sequences));
  RETURN_IF_ERROR(OptionalInteger(heldout, "data.heldout", "scored_tokens", &h.heldout_tokens));
  const json& cost = OptionalObject(run, "cost");
  RETURN_IF_ERROR(OptionalInteger(cost, "cost", "calibration_evaluations", &h.calib_evaluations));
  RETURN_IF_ERROR(OptionalInteger(cost, "cost", "heldout_evaluations", &h.heldout_evaluations));
  RETURN_IF_ERROR(
      OptionalInteger(cost, "cost", "selection_evaluations", &h.selection_evaluations));
  const json& timings = OptionalObject(run, "timings");
  RETURN_IF_ERROR(OptionalNumber(timings, "timings", "total_s", &h.total_seconds));
  RETURN_IF_ERROR(OptionalInteger(timings, "timings", "threads", &h.threads));
  const json& refs = OptionalObject(run, "references");
  RETURN_IF_ERROR(OptionalNumber(refs, "references", "heldout_ppl_fp32", &r.ppl_fp32));
  RETURN_IF_ERROR(OptionalNumber(refs, "references", "heldout_ppl_all4", &r.ppl_all4));
  RETURN_IF_ERROR(OptionalNumber(refs, "references", "heldout_ppl_all2", &r.ppl_all2));
  for (const auto* ppl : {&r.ppl_fp32, &r.ppl_all4, &r.ppl_all2}) {
    if (ppl->has_value() && !(**ppl > 0)) {
      return Bad("references", absl::StrCat("a perplexity must be > 0, got ", **ppl));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReportAllocation> ReadAllocation(const json& a, const std::string& path,
                                                size_t num_players) {
  ReportAllocation out;
  ASSIGN_OR_RETURN(const json* method, Member(a, path, "method"));
  ASSIGN_OR_RETURN(out.method, String(*method, Join(path, "method")));
  ASSIGN_OR_RETURN(const json* bits_json, Member(a, path, "bits"));
  const std::string bits_path = Join(path, "bits");
  ASSIGN_OR_RETURN(const json* bits, Array(*bits_json, bits_path, num_players));
  for (size_t i = 0; i < bits->size(); ++i) {
    ASSIGN_OR_RETURN(int64_t b, Integer((*bits)[i], At(bits_path, i)));
    if (b < 1 || b > 32) {
      return Bad(At(bits_path, i), absl::StrCat("expected a bit-width in [1, 32], got ", b));
    }
    out.bits.push_back(static_cast<int>(b));
  }
  ASSIGN_OR_RETURN(const json* avg, Member(a, path, "average_bits"));
  ASSIGN_OR_RETURN(out.average_bits, Number(*avg, Join(path, "average_bits")));
  ASSIGN_OR_RETURN(const json* ppl, Member(a, path, "heldout_ppl"));
  ASSIGN_OR_RETURN(out.heldout_ppl, Number(*ppl, Join(path, "heldout_ppl")));
  if (!(out.heldout_ppl > 0)) {
    return Bad(Join(path, "heldout_ppl"), absl::StrCat("a perplexity must be > 0, got ",
                                                       out.heldout_ppl));
  }
  RETURN_IF_ERROR(OptionalNumber(a, path, "calibration_ppl", &out.calibration_ppl));
  RETURN_IF_ERROR(OptionalInteger(a, path, "memory_bytes", &out.memory_bytes));
  return out;
}

absl::StatusOr<ReportBudget> ReadBudget(const json& b, const std::string& path,
                                        size_t num_players) {
  ReportBudget out;
  ASSIGN_OR_RETURN(const json* avg, Member(b, path, "average_bits"));
  ASSIGN_OR_RETURN(out.average_bits, Number(*avg, Join(path, "average_bits")));
  RETURN_IF_ERROR(OptionalInteger(b, path, "budget_bytes", &out.budget_bytes));
  ASSIGN_OR_RETURN(const json* allocs_json, Member(b, path, "allocations"));
  const std::string allocs_path = Join(path, "allocations");
  ASSIGN_OR_RETURN(const json* allocs, Array(*allocs_json, allocs_path));
  if (allocs->empty()) return Bad(allocs_path, "expected at least one allocation");
  for (size_t k = 0; k < allocs->size(); ++k) {
    ASSIGN_OR_RETURN(ReportAllocation a, ReadAllocation((*allocs)[k], At(allocs_path, k), num_players));
    for (const ReportAllocation& seen : out.allocations) {
      if (seen.method == a.method) {
        return Bad(Join(At(allocs_path, k), "method"),
                   absl::StrCat("method '", a.method, "' appears twice in this budget"));
      }
    }
    out.allocations.push_back(std::move(a));
  }
  ASSIGN_OR_RETURN(const json* chosen, Member(b, path, "chosen"));
  const std::string chosen_path = Join(path, "chosen");
  ASSIGN_OR_RETURN(const json* method, Member(*chosen, chosen_path, "method"));
  ASSIGN_OR_RETURN(out.chosen, String(*method, Join(chosen_path, "method")));
  bool found = false;
  for (const ReportAllocation& a : out.allocations) found = found || a.method == out.chosen;
  if (!found) {
    return Bad(Join(chosen_path, "method"),
               absl::StrCat("'", out.chosen, "' is not one of the budget's allocations"));
  }
  return out;
}

}  // namespace

const ReportAllocation& ReportBudget::Chosen() const {
  for (const ReportAllocation& a : allocations) {
    if (a.method == chosen) return a;
  }
  return allocations.front();  // unreachable for a budget ReadRunReport returned
}

absl::StatusOr<RunReport> ReadRunReport(const json& run) {
  RunReport r;
  if (!run.is_object()) return Bad("(top level)", absl::StrCat("expected an object, got ", TypeOf(run)));

  ASSIGN_OR_RETURN(const json* settings, Member(run, "", "settings"));
  ASSIGN_OR_RETURN(const json* granularity, Member(*settings, "settings", "players"));
  ASSIGN_OR_RETURN(r.granularity, String(*granularity, "settings.players"));
  if (r.granularity != "module" && r.granularity != "block") {
    return Bad("settings.players",
               absl::StrCat("expected \"module\" or \"block\", got \"", r.granularity, "\""));
  }

  ASSIGN_OR_RETURN(const json* model, Member(run, "", "model"));
  ASSIGN_OR_RETURN(const json* players_json, Member(*model, "model", "players"));
  ASSIGN_OR_RETURN(const json* players, Array(*players_json, "model.players"));
  if (players->empty()) return Bad("model.players", "expected at least one player");
  const size_t n = players->size();
  for (size_t i = 0; i < n; ++i) {
    const std::string path = At("model.players", i);
    ReportPlayer p;
    ASSIGN_OR_RETURN(const json* name, Member((*players)[i], path, "name"));
    ASSIGN_OR_RETURN(p.name, String(*name, Join(path, "name")));
    RETURN_IF_ERROR(OptionalInteger((*players)[i], path, "bytes2", &p.bytes2));
    RETURN_IF_ERROR(OptionalInteger((*players)[i], path, "bytes4", &p.bytes4));
    Place(p, static_cast<int>(i), r.granularity == "module");
    r.num_layers = std::max(r.num_layers, p.layer + 1);
    r.players.push_back(std::move(p));
  }
  // Two players in one grid cell would hide one of them.
  std::map<std::pair<int, int>, std::string> cells;
  for (const ReportPlayer& p : r.players) {
    auto [it, inserted] = cells.emplace(std::make_pair(p.layer, p.module), p.name);
    if (!inserted) {
      return Bad("model.players", absl::StrCat("players '", it->second, "' and '", p.name,
                                               "' are the same layer and module"));
    }
  }

  ASSIGN_OR_RETURN(const json* spqe, Member(run, "", "spqe"));
  ASSIGN_OR_RETURN(std::vector<double> phi, Numbers(*spqe, "spqe", "phi", n));
  ASSIGN_OR_RETURN(std::vector<double> se, Numbers(*spqe, "spqe", "standard_error", n));
  ASSIGN_OR_RETURN(const json* scores, Member(run, "", "baseline_scores"));
  ASSIGN_OR_RETURN(std::vector<double> iso,
                   Numbers(*scores, "baseline_scores", "isolated_delta", n));
  for (size_t i = 0; i < n; ++i) {
    if (se[i] < 0) {
      return Bad(At("spqe.standard_error", i), absl::StrCat("expected >= 0, got ", se[i]));
    }
    r.players[i].phi = phi[i];
    r.players[i].phi_se = se[i];
    r.players[i].isolated_delta = iso[i];
  }

  ASSIGN_OR_RETURN(const json* inter, Member(run, "", "interactions"));
  ASSIGN_OR_RETURN(const json* est, Member(*inter, "interactions", "allocation_estimator"));
  ASSIGN_OR_RETURN(r.interaction_estimator, String(*est, "interactions.allocation_estimator"));
  const std::string est_path = Join("interactions", r.interaction_estimator);
  ASSIGN_OR_RETURN(const json* est_obj, Member(*inter, "interactions", r.interaction_estimator));
  ASSIGN_OR_RETURN(const json* k_json, Member(*est_obj, est_path, "K"));
  const std::string k_path = Join(est_path, "K");
  ASSIGN_OR_RETURN(const json* k_rows, Array(*k_json, k_path, n));
  for (size_t i = 0; i < n; ++i) {
    const std::string row_path = At(k_path, i);
    ASSIGN_OR_RETURN(const json* row, Array((*k_rows)[i], row_path, n));
    std::vector<double> values;
    for (size_t k = 0; k < n; ++k) {
      ASSIGN_OR_RETURN(double v, Number((*row)[k], At(row_path, k)));
      values.push_back(v);
    }
    r.interaction.push_back(std::move(values));
  }

  ASSIGN_OR_RETURN(const json* budgets_json, Member(run, "", "budgets"));
  ASSIGN_OR_RETURN(const json* budgets, Array(*budgets_json, "budgets"));
  if (budgets->empty()) return Bad("budgets", "expected at least one budget");
  for (size_t b = 0; b < budgets->size(); ++b) {
    ASSIGN_OR_RETURN(ReportBudget budget, ReadBudget((*budgets)[b], At("budgets", b), n));
    r.budgets.push_back(std::move(budget));
  }

  RETURN_IF_ERROR(ReadHeader(run, r));
  return r;
}

std::string MethodTitle(const RunReport& report, const std::string& method) {
  static const auto* const kTitles = new std::map<std::string, std::string>{
      {"isolated", "isolated Δ"},
      {"lim", "LIM"},
      {"zscore", "Z-score"},
      {"actnorm", "act. norm"},
      {"uniform", "uniform"},
      {"impq_covariance", "IMPQ (covariance)"},
      {"impq_surrogate", "IMPQ (surrogate)"},
      {"impq_window", "IMPQ (window)"},
      {"impq_window_top", "IMPQ (top window)"},
      {"impq_local", "IMPQ (local surrogate)"},
      {"impq_search", "IMPQ (measured search)"}};
  if (method == "impq") return absl::StrCat("IMPQ (", report.interaction_estimator, ")");
  if (method == "random") {
    return report.header.random_draws.has_value()
               ? absl::StrCat("random (mean of ", *report.header.random_draws, ")")
               : "random (mean)";
  }
  auto it = kTitles->find(method);
  return it != kTitles->end() ? it->second : method;
}

}  // namespace impq::cli::report
