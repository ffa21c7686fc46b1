#include "cli/run_file.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status.h"
#include "worker/model/fingerprint.h"
#include "worker/model/model_reader.h"

namespace impq::cli {
namespace {

using nlohmann::json;

// Field access with errors that name the file, the JSON path and what is there.
class Fields {
 public:
  explicit Fields(const std::string& path) : path_(path) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", field, " ", what));
  }
  static std::string Shown(const json& v) {
    std::string s = v.dump();
    return s.size() > 60 ? s.substr(0, 57) + "..." : s;
  }
  absl::StatusOr<const json*> Get(const json& obj, const std::string& parent,
                                  const std::string& key) const {
    const std::string field = parent.empty() ? key : absl::StrCat(parent, ".", key);
    if (!obj.is_object() || !obj.contains(key)) return Error(field, "is missing");
    return &obj[key];
  }
  absl::StatusOr<std::string> String(const json& obj, const std::string& parent,
                                     const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Get(obj, parent, key));
    if (!v->is_string()) {
      return Error(Join(parent, key), absl::StrCat("is ", Shown(*v), " (expected a string)"));
    }
    return v->get<std::string>();
  }
  absl::StatusOr<int64_t> Int(const json& obj, const std::string& parent,
                              const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Get(obj, parent, key));
    if (!v->is_number_integer()) {
      return Error(Join(parent, key), absl::StrCat("is ", Shown(*v), " (expected an integer)"));
    }
    return v->get<int64_t>();
  }
  absl::StatusOr<double> Number(const json& obj, const std::string& parent,
                                const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Get(obj, parent, key));
    if (!v->is_number()) {
      return Error(Join(parent, key), absl::StrCat("is ", Shown(*v), " (expected a number)"));
    }
    return v->get<double>();
  }
  absl::StatusOr<const json*> Array(const json& obj, const std::string& parent,
                                    const std::string& key) const {
    ASSIGN_OR_RETURN(const json* v, Get(obj, parent, key));
    if (!v->is_array()) {
      return Error(Join(parent, key), absl::StrCat("is ", Shown(*v), " (expected an array)"));
    }
    return v;
  }
  static std::string Join(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : absl::StrCat(parent, ".", key);
  }

 private:
  const std::string& path_;
};

bool FullPrecision(int64_t b) { return b == 16 || b == 32; }

// "widths", "width_bytes" and "steps" (issue 14), after model.players has given the number of
// players `n`. Absent widths are [2, 4]; absent width_bytes come from bytes2/bytes4 when the
// widths are [2, 4]; steps are always the ladder's order, checked against the file's.
absl::Status ReadWidths(const json& j, const Fields& f, size_t n, RunFile* run) {
  if (j.contains("widths")) {
    ASSIGN_OR_RETURN(const json* widths, f.Array(j, "", "widths"));
    run->widths.clear();
    for (size_t k = 0; k < widths->size(); ++k) {
      const json& v = (*widths)[k];
      if (!v.is_number_integer() || !impq_bits_supported(static_cast<int>(v.get<int64_t>()))) {
        return f.Error(absl::StrCat("widths[", k, "]"),
                       absl::StrCat("is ", Fields::Shown(v), " (expected 2, 3, 4 or 8)"));
      }
      const int w = static_cast<int>(v.get<int64_t>());
      if (!run->widths.empty() && w <= run->widths.back()) {
        return f.Error(absl::StrCat("widths[", k, "]"),
                       absl::StrCat("is ", w, " after ", run->widths.back(),
                                    " (expected ascending widths, each once)"));
      }
      run->widths.push_back(w);
    }
    if (run->widths.size() < 2) {
      return f.Error("widths", absl::StrCat("is ", Fields::Shown(*widths),
                                            " (expected at least two widths)"));
    }
  }
  const size_t m = run->widths.size();
  const std::string widths_text = absl::StrCat("[", absl::StrJoin(run->widths, ", "), "]");

  if (j.contains("width_bytes")) {
    ASSIGN_OR_RETURN(const json* rows, f.Array(j, "", "width_bytes"));
    if (rows->size() != n) {
      return f.Error("width_bytes",
                     absl::StrCat("has ", rows->size(), " entries for ", n, " players"));
    }
    for (size_t i = 0; i < n; ++i) {
      const json& row = (*rows)[i];
      const std::string rp = absl::StrCat("width_bytes[", i, "]");
      if (!row.is_array() || row.size() != m) {
        return f.Error(rp, absl::StrCat("is ", Fields::Shown(row), " (expected ", m,
                                        " byte counts, one per width of ", widths_text, ")"));
      }
      std::vector<int64_t> bytes;
      for (size_t w = 0; w < m; ++w) {
        if (!row[w].is_number_integer() || row[w].get<int64_t>() < 0) {
          return f.Error(absl::StrCat(rp, "[", w, "]"),
                         absl::StrCat("is ", Fields::Shown(row[w]), " (expected bytes >= 0)"));
        }
        bytes.push_back(row[w].get<int64_t>());
      }
      run->width_bytes.push_back(std::move(bytes));
    }
  } else if (run->binary()) {
    const json& players = j["model"]["players"];  // read before: an array of n objects
    std::vector<std::vector<int64_t>> bytes;
    for (size_t i = 0; i < n; ++i) {
      const json& p = players[i];
      if (!p.contains("bytes2") || !p["bytes2"].is_number_integer() || !p.contains("bytes4") ||
          !p["bytes4"].is_number_integer()) {
        break;
      }
      bytes.push_back({p["bytes2"].get<int64_t>(), p["bytes4"].get<int64_t>()});
    }
    if (bytes.size() == n) run->width_bytes = std::move(bytes);
  }

  // Step s = i·(m−1) + r moves player i from widths[m−1−r] to widths[m−2−r].
  for (size_t i = 0; i < n; ++i) {
    for (size_t r = 0; r + 1 < m; ++r) {
      run->steps.push_back(
          {static_cast<int>(i), run->widths[m - 1 - r], run->widths[m - 2 - r]});
    }
  }
  if (j.contains("steps")) {
    ASSIGN_OR_RETURN(const json* steps, f.Array(j, "", "steps"));
    if (steps->size() != run->steps.size()) {
      return f.Error("steps", absl::StrCat("has ", steps->size(), " entries (expected ",
                                           run->steps.size(), ": ", n, " players × ", m - 1,
                                           " steps down ", widths_text, ")"));
    }
    for (size_t k = 0; k < steps->size(); ++k) {
      const std::string sp = absl::StrCat("steps[", k, "]");
      const RunStep& want = run->steps[k];
      ASSIGN_OR_RETURN(int64_t player, f.Int((*steps)[k], sp, "player"));
      ASSIGN_OR_RETURN(int64_t from, f.Int((*steps)[k], sp, "from_bits"));
      ASSIGN_OR_RETURN(int64_t to, f.Int((*steps)[k], sp, "to_bits"));
      if (player != want.player || from != want.from_bits || to != want.to_bits) {
        return f.Error(sp, absl::StrCat("is player ", player, " from ", from, " to ", to,
                                        " bits (expected player ", want.player, " from ",
                                        want.from_bits, " to ", want.to_bits,
                                        ": step i·(m−1) + r takes player i from widths[m−1−r] "
                                        "to widths[m−2−r])"));
      }
    }
  }
  return absl::OkStatus();
}

// "llama dim=64 hidden=172 layers=5 heads=8 kv_heads=4 head_dim=8 ..." -> arch and sizes.
absl::Status ParseConfigString(const std::string& config, const Fields& f, RunModel* m) {
  std::vector<std::string> words = absl::StrSplit(config, ' ', absl::SkipEmpty());
  if (words.empty()) return f.Error("model.config", "is empty");
  m->arch = words[0];
  int heads = 0, head_dim = 0;
  for (const std::string& w : words) {
    const size_t eq = w.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = w.substr(0, eq);
    int* out = key == "layers" ? &m->n_layers
               : key == "dim"  ? &m->dim
               : key == "hidden" ? &m->hidden_dim
               : key == "heads"  ? &heads
               : key == "head_dim" ? &head_dim
                                   : nullptr;
    if (out != nullptr && (!absl::SimpleAtoi(w.substr(eq + 1), out) || *out <= 0)) {
      return f.Error("model.config", absl::StrCat("is \"", config, "\" (bad ", w, ")"));
    }
  }
  m->q_dim = heads * head_dim;
  if (m->n_layers <= 0 || m->dim <= 0 || m->hidden_dim <= 0 || m->q_dim <= 0) {
    return f.Error("model.config",
                   absl::StrCat("is \"", config, "\" (expected layers=, dim=, hidden=, heads=, "
                                "head_dim=)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string FormatAverageBits(double b) { return absl::StrFormat("%g", b); }

std::string RunFile::BudgetList() const {
  std::vector<std::string> have;
  for (const RunBudget& b : budgets) have.push_back(FormatAverageBits(b.average_bits));
  return absl::StrCat("average bits ", absl::StrJoin(have, ", "));
}

std::string PickedAllocation::Describe() const {
  return absl::StrCat(allocation->method, " at b_avg ", FormatAverageBits(budget->average_bits));
}

bool IsRunJson(const json& j) { return j.is_object() && j.contains("budgets"); }

absl::StatusOr<RunFile> ParseRunJson(const json& j, const std::string& path) {
  const Fields f(path);
  if (!IsRunJson(j)) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not an `impq run --json` file (no \"budgets\"; is it a plain assignment?)"));
  }
  RunFile run;
  run.path = path;
  ASSIGN_OR_RETURN(const json* settings, f.Get(j, "", "settings"));
  ASSIGN_OR_RETURN(std::string players, f.String(*settings, "settings", "players"));
  absl::StatusOr<quant::PlayerGranularity> g = quant::ParsePlayerGranularity(players);
  if (!g.ok()) {
    return f.Error("settings.players", absl::StrCat("is \"", players, "\" (expected block or module)"));
  }
  run.players = *g;
  ASSIGN_OR_RETURN(run.backend, f.String(*settings, "settings", "backend"));
  ASSIGN_OR_RETURN(int64_t group_size, f.Int(*settings, "settings", "group_size"));
  if (group_size <= 0) {
    return f.Error("settings.group_size", absl::StrCat("is ", group_size, " (expected > 0)"));
  }
  run.group_size = static_cast<int>(group_size);
  ASSIGN_OR_RETURN(run.model.path, f.String(*settings, "settings", "model"));
  ASSIGN_OR_RETURN(run.model.tokenizer, f.String(*settings, "settings", "tokenizer"));
  ASSIGN_OR_RETURN(run.calibration_text, f.String(*settings, "settings", "calibration_text"));
  ASSIGN_OR_RETURN(run.calibration_docs, f.Int(*settings, "settings", "calibration_docs"));
  ASSIGN_OR_RETURN(run.ctx, f.Int(*settings, "settings", "ctx"));
  ASSIGN_OR_RETURN(std::string mode, f.String(*settings, "settings", "eval_mode"));
  absl::StatusOr<eval::EvalMode> m = eval::ParseEvalMode(mode);
  if (!m.ok()) return f.Error("settings.eval_mode", absl::StrCat("is \"", mode, "\""));
  run.mode = *m;

  ASSIGN_OR_RETURN(const json* model, f.Get(j, "", "model"));
  ASSIGN_OR_RETURN(run.model.config, f.String(*model, "model", "config"));
  RETURN_IF_ERROR(ParseConfigString(run.model.config, f, &run.model));
  ASSIGN_OR_RETURN(const json* names, f.Array(*model, "model", "players"));
  for (size_t i = 0; i < names->size(); ++i) {
    ASSIGN_OR_RETURN(std::string name,
                     f.String((*names)[i], absl::StrCat("model.players[", i, "]"), "name"));
    run.model.player_names.push_back(std::move(name));
  }
  const size_t num_players = run.model.player_names.size();
  const size_t expected = static_cast<size_t>(run.model.n_layers) *
                          (run.players == quant::PlayerGranularity::kBlock ? 1 : model::kNumLinear);
  if (num_players != expected) {
    return f.Error("model.players",
                   absl::StrCat("has ", num_players, " entries, but ", run.model.n_layers,
                                " layers at ", players, " granularity make ", expected));
  }
  RETURN_IF_ERROR(ReadWidths(j, f, num_players, &run));
  const std::string width_list = absl::StrJoin(run.widths, ", ");
  if (model->contains("identity")) {
    const json& id = (*model)["identity"];
    ASSIGN_OR_RETURN(run.model.absolute_path, f.String(id, "model.identity", "absolute_path"));
    ASSIGN_OR_RETURN(run.model.fingerprint, f.String(id, "model.identity", "fingerprint"));
    ASSIGN_OR_RETURN(run.model.absolute_tokenizer,
                     f.String(id, "model.identity", "absolute_tokenizer"));
    if (id.contains("absolute_calibration_text")) {
      ASSIGN_OR_RETURN(run.absolute_calibration_text,
                       f.String(id, "model.identity", "absolute_calibration_text"));
    }
  }

  ASSIGN_OR_RETURN(const json* budgets, f.Array(j, "", "budgets"));
  if (budgets->empty()) return f.Error("budgets", "is empty");
  for (size_t bi = 0; bi < budgets->size(); ++bi) {
    const json& b = (*budgets)[bi];
    const std::string bp = absl::StrCat("budgets[", bi, "]");
    RunBudget budget;
    ASSIGN_OR_RETURN(budget.average_bits, f.Number(b, bp, "average_bits"));
    if (b.contains("budget_bytes")) {
      ASSIGN_OR_RETURN(budget.budget_bytes, f.Int(b, bp, "budget_bytes"));
    }
    if (b.contains("chosen")) {
      ASSIGN_OR_RETURN(budget.chosen, f.String(b["chosen"], bp + ".chosen", "method"));
    }
    ASSIGN_OR_RETURN(const json* allocs, f.Array(b, bp, "allocations"));
    for (size_t ai = 0; ai < allocs->size(); ++ai) {
      const json& a = (*allocs)[ai];
      const std::string ap = absl::StrCat(bp, ".allocations[", ai, "]");
      RunAllocation alloc;
      ASSIGN_OR_RETURN(alloc.method, f.String(a, ap, "method"));
      ASSIGN_OR_RETURN(const json* bits, f.Array(a, ap, "bits"));
      if (bits->size() != num_players) {
        return f.Error(ap + ".bits", absl::StrCat("has ", bits->size(), " widths for ",
                                                  num_players, " players"));
      }
      for (size_t k = 0; k < bits->size(); ++k) {
        const json& v = (*bits)[k];
        if (!v.is_number_integer() ||
            (!FullPrecision(v.get<int64_t>()) &&
             std::find(run.widths.begin(), run.widths.end(), v.get<int64_t>()) ==
                 run.widths.end())) {
          return f.Error(absl::StrCat(ap, ".bits[", k, "]"),
                         absl::StrCat("is ", Fields::Shown(v), " (expected a width in ",
                                      width_list, " (the run's widths), or 16/32 for full "
                                      "precision)"));
        }
        alloc.bits.push_back(static_cast<int>(v.get<int64_t>()));
      }
      if (a.contains("heldout_ppl") && a["heldout_ppl"].is_number()) {
        alloc.heldout_ppl = a["heldout_ppl"].get<double>();
      }
      budget.allocations.push_back(std::move(alloc));
    }
    run.budgets.push_back(std::move(budget));
  }
  return run;
}

absl::StatusOr<RunFile> ReadRunFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  return ParseRunJson(j, path);
}

absl::StatusOr<PickedAllocation> PickAllocation(const RunFile& run, std::optional<double> budget,
                                                const std::string& method,
                                                const PickFlags& flags) {
  PickedAllocation out;
  if (!budget) {
    if (run.budgets.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(run.path, " holds ", run.budgets.size(), " budgets (", run.BudgetList(),
                       "); pick one with ", flags.budget));
    }
    out.budget = &run.budgets[0];
  } else {
    for (const RunBudget& b : run.budgets) {
      if (std::abs(b.average_bits - *budget) < 1e-9) {
        out.budget = &b;
        break;
      }
    }
    if (out.budget == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(flags.budget, " ", FormatAverageBits(*budget),
                                                     ": not in ", run.path, " (its budgets: ",
                                                     run.BudgetList(), ")"));
    }
  }
  const std::string avg = FormatAverageBits(out.budget->average_bits);
  std::string want = method;
  if (want.empty() || want == "chosen") {
    if (out.budget->chosen.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          run.path, ": budget ", avg,
          " records no chosen allocation (an older `impq run`); name one with ", flags.method));
    }
    want = out.budget->chosen;
  }
  std::vector<std::string> methods;
  for (const RunAllocation& a : out.budget->allocations) {
    methods.push_back(a.method);
    if (a.method == want && out.allocation == nullptr) out.allocation = &a;
  }
  if (out.allocation == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.method, " ", want, ": no such allocation at average bits ", avg, " in ", run.path,
        " (it has: ", absl::StrJoin(methods, ", "), ")"));
  }
  return out;
}

}  // namespace impq::cli
