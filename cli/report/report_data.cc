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
#include "job/method_title.h"

namespace impq::cli::report {
namespace {

using nlohmann::json;

std::string Join(const std::string& parent, const std::string& key) {
  return parent.empty() ? key : absl::StrCat(parent, ".", key);
}

std::string At(const std::string& parent, size_t i) { return absl::StrCat(parent, "[", i, "]"); }

// Field access whose errors read like ParseRunJson's: "<source>: <field> is missing",
// "<source>: <field> is "80" (expected a number)".
class Fields {
 public:
  explicit Fields(const std::string& source) : source_(source) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, " ", what));
  }
  absl::Status Wrong(const std::string& field, const json& v, const std::string& expected) const {
    std::string shown = v.dump();
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    return Error(field, absl::StrCat("is ", shown, " (expected ", expected, ")"));
  }

  // A required member of an object.
  absl::StatusOr<const json*> Member(const json& parent, const std::string& parent_path,
                                     const std::string& key) const {
    if (!parent.is_object()) {
      return Wrong(parent_path.empty() ? "the top level" : parent_path, parent, "an object");
    }
    auto it = parent.find(key);
    if (it == parent.end()) return Error(Join(parent_path, key), "is missing");
    return &*it;
  }

  absl::StatusOr<double> Number(const json& v, const std::string& path) const {
    // JobResultToJson writes a non-finite double as null; that is not a number to draw.
    if (!v.is_number() || !std::isfinite(v.get<double>())) return Wrong(path, v, "a number");
    return v.get<double>();
  }
  absl::StatusOr<int64_t> Integer(const json& v, const std::string& path) const {
    if (!v.is_number_integer()) return Wrong(path, v, "an integer");
    return v.get<int64_t>();
  }
  absl::StatusOr<std::string> String(const json& v, const std::string& path) const {
    if (!v.is_string()) return Wrong(path, v, "a string");
    return v.get<std::string>();
  }
  absl::StatusOr<bool> Bool(const json& v, const std::string& path) const {
    if (!v.is_boolean()) return Wrong(path, v, "true or false");
    return v.get<bool>();
  }

  // A required array of one number per `unit` ("player", "step").
  absl::StatusOr<std::vector<double>> Numbers(const json& parent, const std::string& parent_path,
                                              const std::string& key, size_t size,
                                              const std::string& unit) const {
    ASSIGN_OR_RETURN(const json* a, Member(parent, parent_path, key));
    return NumberArray(a, Join(parent_path, key), size, unit);
  }
  absl::StatusOr<std::vector<double>> NumberArray(const json* a, const std::string& path,
                                                  size_t size, const std::string& unit) const {
    if (!a->is_array()) return Wrong(path, *a, "an array");
    if (a->size() != size) {
      return Error(path, absl::StrFormat("has %d entries (expected %d, one per %s)", a->size(),
                                         size, unit));
    }
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
                        Read read, std::optional<T>* out) const {
    if (!parent.is_object()) return absl::OkStatus();
    auto it = parent.find(key);
    if (it == parent.end()) return absl::OkStatus();
    ASSIGN_OR_RETURN(T v, (this->*read)(*it, Join(parent_path, key)));
    *out = std::move(v);
    return absl::OkStatus();
  }
  absl::Status OptionalNumber(const json& p, const std::string& pp, const std::string& key,
                              std::optional<double>* out) const {
    return Optional<double>(p, pp, key, &Fields::Number, out);
  }
  absl::Status OptionalInteger(const json& p, const std::string& pp, const std::string& key,
                               std::optional<int64_t>* out) const {
    return Optional<int64_t>(p, pp, key, &Fields::Integer, out);
  }
  absl::Status OptionalString(const json& p, const std::string& pp, const std::string& key,
                              std::optional<std::string>* out) const {
    return Optional<std::string>(p, pp, key, &Fields::String, out);
  }
  absl::Status OptionalBool(const json& p, const std::string& pp, const std::string& key,
                            std::optional<bool>* out) const {
    return Optional<bool>(p, pp, key, &Fields::Bool, out);
  }

 private:
  const std::string& source_;
};

// An optional sub-object ("timings", "cost", ...): an empty object when absent.
const json& OptionalObject(const json& parent, const std::string& key) {
  static const json* const kEmpty = new json(json::object());
  if (!parent.is_object()) return *kEmpty;
  auto it = parent.find(key);
  return it != parent.end() ? *it : *kEmpty;
}

// Layer and module of a player from its name ("layers.3.ffn_down", "block3"), else from its
// index (README "Assignments"). Sets label, layer and module.
void Place(ReportPlayer& p, int index, bool module_players) {
  if (module_players) {
    std::vector<std::string> parts = absl::StrSplit(p.name, '.');
    int layer = -1;
    if (parts.size() == 3 && parts[0] == "layers" && absl::SimpleAtoi(parts[1], &layer) &&
        layer >= 0) {
      for (int m = 0; m < kNumModules; ++m) {
        if (parts[2] == ModuleName(m)) {
          p.layer = layer;
          p.module = m;
          p.label = absl::StrCat("L", layer, ".", parts[2]);
          return;
        }
      }
    }
    p.layer = index / kNumModules;
    p.module = index % kNumModules;
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

absl::Status ReadHeader(const json& run, const RunFile& file, const Fields& f, RunReport& r) {
  ReportHeader& h = r.header;
  h.model_path = file.model.path;
  h.model_config = file.model.config;
  h.backend = file.backend;
  h.group_size = file.group_size;
  const json& settings = OptionalObject(run, "settings");
  RETURN_IF_ERROR(f.OptionalString(settings, "settings", "estimator", &h.estimator));
  RETURN_IF_ERROR(f.OptionalInteger(settings, "settings", "seed", &h.seed));
  RETURN_IF_ERROR(
      f.OptionalInteger(settings, "settings", "permutations", &h.permutations_requested));
  RETURN_IF_ERROR(f.OptionalBool(settings, "settings", "antithetic", &h.antithetic));
  RETURN_IF_ERROR(f.OptionalInteger(settings, "settings", "random_draws", &h.random_draws));
  const json& spqe = OptionalObject(run, "spqe");
  RETURN_IF_ERROR(f.OptionalInteger(spqe, "spqe", "permutations", &h.permutations_done));
  RETURN_IF_ERROR(f.OptionalString(spqe, "spqe", "stop_reason", &h.stop_reason));
  const json& data = OptionalObject(run, "data");
  const json& calib = OptionalObject(data, "calibration");
  RETURN_IF_ERROR(f.OptionalInteger(calib, "data.calibration", "sequences", &h.calib_sequences));
  RETURN_IF_ERROR(f.OptionalInteger(calib, "data.calibration", "scored_tokens", &h.calib_tokens));
  const json& heldout = OptionalObject(data, "heldout");
  RETURN_IF_ERROR(f.OptionalInteger(heldout, "data.heldout", "sequences", &h.heldout_sequences));
  RETURN_IF_ERROR(f.OptionalInteger(heldout, "data.heldout", "scored_tokens", &h.heldout_tokens));
  const json& cost = OptionalObject(run, "cost");
  RETURN_IF_ERROR(f.OptionalInteger(cost, "cost", "calibration_evaluations", &h.calib_evaluations));
  RETURN_IF_ERROR(f.OptionalInteger(cost, "cost", "heldout_evaluations", &h.heldout_evaluations));
  RETURN_IF_ERROR(
      f.OptionalInteger(cost, "cost", "selection_evaluations", &h.selection_evaluations));
  const json& timings = OptionalObject(run, "timings");
  RETURN_IF_ERROR(f.OptionalNumber(timings, "timings", "total_s", &h.total_seconds));
  RETURN_IF_ERROR(f.OptionalInteger(timings, "timings", "threads", &h.threads));
  const json& refs = OptionalObject(run, "references");
  const std::pair<const char*, std::optional<double>*> references[] = {
      {"heldout_ppl_fp32", &r.ppl_fp32},
      {"heldout_ppl_all4", &r.ppl_all4},
      {"heldout_ppl_all2", &r.ppl_all2}};
  for (const auto& [key, out] : references) {
    RETURN_IF_ERROR(f.OptionalNumber(refs, "references", key, out));
    if (out->has_value() && !(**out > 0)) {
      return f.Wrong(Join("references", key), refs[key], "a perplexity > 0");
    }
  }
  return absl::OkStatus();
}

// The budgets: ParseRunJson's, plus each allocation's average bits (and calibration PPL) from
// the same entries of the file, which ParseRunJson has checked to be objects in arrays.
absl::Status ReadBudgets(const json& run, const RunFile& file, const Fields& f, RunReport& r) {
  const json& budgets = run["budgets"];
  for (size_t b = 0; b < file.budgets.size(); ++b) {
    const RunBudget& in = file.budgets[b];
    const std::string path = At("budgets", b);
    ReportBudget out;
    out.average_bits = in.average_bits;
    if (in.budget_bytes > 0) out.budget_bytes = in.budget_bytes;
    if (in.chosen.empty()) {
      // ParseRunJson accepts files older than the per-budget choice; the report draws it.
      return f.Error(Join(path, "chosen.method"),
                     "is missing (the report draws the chosen allocation)");
    }
    out.chosen = in.chosen;
    const json& allocations = budgets[b]["allocations"];
    for (size_t k = 0; k < in.allocations.size(); ++k) {
      const RunAllocation& a = in.allocations[k];
      const std::string apath = Join(path, At("allocations", k));
      ReportAllocation alloc;
      alloc.method = a.method;
      alloc.bits = a.bits;
      const json& raw = allocations[k];
      ASSIGN_OR_RETURN(const json* avg, f.Member(raw, apath, "average_bits"));
      ASSIGN_OR_RETURN(alloc.average_bits, f.Number(*avg, Join(apath, "average_bits")));
      // ParseRunJson leaves a missing held-out PPL at 0; a log axis cannot draw it.
      ASSIGN_OR_RETURN(const json* ppl, f.Member(raw, apath, "heldout_ppl"));
      if (!(a.heldout_ppl > 0)) {
        return f.Wrong(Join(apath, "heldout_ppl"), *ppl, "a perplexity > 0");
      }
      alloc.heldout_ppl = a.heldout_ppl;
      RETURN_IF_ERROR(f.OptionalNumber(raw, apath, "calibration_ppl", &alloc.calibration_ppl));
      RETURN_IF_ERROR(f.OptionalInteger(raw, apath, "memory_bytes", &alloc.memory_bytes));
      for (const ReportAllocation& seen : out.allocations) {
        if (seen.method == alloc.method) {
          return f.Error(
              Join(apath, "method"),
              absl::StrCat("is \"", alloc.method, "\", which appears twice in this budget"));
        }
      }
      out.allocations.push_back(std::move(alloc));
    }
    if (out.allocations.empty()) return f.Error(Join(path, "allocations"), "is empty");
    bool found = false;
    for (const ReportAllocation& a : out.allocations) found = found || a.method == out.chosen;
    if (!found) {
      return f.Error(Join(path, "chosen.method"),
                     absl::StrCat("is \"", out.chosen, "\", not one of the budget's allocations"));
    }
    r.budgets.push_back(std::move(out));
  }
  return absl::OkStatus();
}

}  // namespace

const ReportAllocation& ReportBudget::Chosen() const {
  for (const ReportAllocation& a : allocations) {
    if (a.method == chosen) return a;
  }
  return allocations.front();  // unreachable for a budget ReadRunReport returned
}

absl::StatusOr<RunReport> ReadRunReport(const json& run, const std::string& source) {
  ASSIGN_OR_RETURN(RunFile file, ParseRunJson(run, source));
  const Fields f(source);
  RunReport r;
  r.granularity = quant::PlayerGranularityName(file.players);
  const size_t n = file.model.player_names.size();
  if (n == 0) return f.Error("model.players", "is empty");
  const json& players = run["model"]["players"];  // ParseRunJson read a name from each
  for (size_t i = 0; i < n; ++i) {
    ReportPlayer p;
    p.name = file.model.player_names[i];
    RETURN_IF_ERROR(f.OptionalInteger(players[i], At("model.players", i), "bytes2", &p.bytes2));
    RETURN_IF_ERROR(f.OptionalInteger(players[i], At("model.players", i), "bytes4", &p.bytes4));
    if (!file.width_bytes.empty()) p.width_bytes = file.width_bytes[i];
    Place(p, static_cast<int>(i), file.players == quant::PlayerGranularity::kModule);
    r.num_layers = std::max(r.num_layers, p.layer + 1);
    r.players.push_back(std::move(p));
  }
  // Two players in one grid cell would hide one of them.
  std::map<std::pair<int, int>, std::string> cells;
  for (const ReportPlayer& p : r.players) {
    auto [it, inserted] = cells.emplace(std::make_pair(p.layer, p.module), p.name);
    if (!inserted) {
      return f.Error("model.players", absl::StrCat("has \"", it->second, "\" and \"", p.name,
                                                   "\" at the same layer and module"));
    }
  }

  // The SPQE game's players: the steps (one per player on {2, 4}).
  r.widths = file.widths;
  const size_t num_steps = file.steps.size();
  const std::string unit = r.binary() ? "player" : "step";
  ASSIGN_OR_RETURN(const json* spqe, f.Member(run, "", "spqe"));
  ASSIGN_OR_RETURN(std::vector<double> phi, f.Numbers(*spqe, "spqe", "phi", num_steps, unit));
  ASSIGN_OR_RETURN(std::vector<double> se,
                   f.Numbers(*spqe, "spqe", "standard_error", num_steps, unit));
  ASSIGN_OR_RETURN(const json* scores, f.Member(run, "", "baseline_scores"));
  ASSIGN_OR_RETURN(std::vector<double> iso,
                   f.Numbers(*scores, "baseline_scores", "isolated_delta", num_steps, unit));
  for (size_t s = 0; s < num_steps; ++s) {
    if (se[s] < 0) {
      return f.Wrong(At("spqe.standard_error", s), (*spqe)["standard_error"][s], "a number >= 0");
    }
    const RunStep& in = file.steps[s];
    ReportStep step;
    step.player = in.player;
    step.from_bits = in.from_bits;
    step.to_bits = in.to_bits;
    step.label = r.players[in.player].label;
    if (!r.binary()) absl::StrAppend(&step.label, " ", in.from_bits, "→", in.to_bits);
    step.phi = phi[s];
    step.phi_se = se[s];
    step.isolated_delta = iso[s];
    r.steps.push_back(std::move(step));
  }

  ASSIGN_OR_RETURN(const json* inter, f.Member(run, "", "interactions"));
  ASSIGN_OR_RETURN(const json* est, f.Member(*inter, "interactions", "allocation_estimator"));
  ASSIGN_OR_RETURN(r.interaction_estimator, f.String(*est, "interactions.allocation_estimator"));
  const std::string est_path = Join("interactions", r.interaction_estimator);
  ASSIGN_OR_RETURN(const json* est_obj, f.Member(*inter, "interactions", r.interaction_estimator));
  ASSIGN_OR_RETURN(const json* k_rows, f.Member(*est_obj, est_path, "K"));
  const std::string k_path = Join(est_path, "K");
  if (!k_rows->is_array()) return f.Wrong(k_path, *k_rows, "an array of rows");
  if (k_rows->size() != num_steps) {
    return f.Error(k_path, absl::StrFormat("has %d rows (expected %d, one per %s)",
                                           k_rows->size(), num_steps, unit));
  }
  for (size_t i = 0; i < num_steps; ++i) {
    ASSIGN_OR_RETURN(std::vector<double> row,
                     f.NumberArray(&(*k_rows)[i], At(k_path, i), num_steps, unit));
    r.interaction.push_back(std::move(row));
  }

  RETURN_IF_ERROR(ReadBudgets(run, file, f, r));
  RETURN_IF_ERROR(ReadHeader(run, file, f, r));
  return r;
}

std::string MethodTitle(const RunReport& report, const std::string& method) {
  if (method == "random" && !report.header.random_draws.has_value()) return "random (mean)";
  return job::MethodTitle(method, report.interaction_estimator,
                             report.header.random_draws.value_or(0));
}

}  // namespace impq::cli::report
