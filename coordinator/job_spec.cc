#include "coordinator/job_spec.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"

namespace impq::coordinator {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

// Lexically normalizes `path` and checks it against the roots.
absl::StatusOr<std::string> ConfinePath(const std::string& field, const std::string& path,
                                        const SpecLimits& limits, bool required) {
  if (path.empty()) {
    if (required) return Bad(field, "is required");
    return std::string();
  }
  if (path.size() > 4096 || path.find('\0') != std::string::npos) {
    return Bad(field, "is not a valid path");
  }
  std::filesystem::path p(path);
  if (p.is_relative()) {
    if (limits.data_roots.empty()) {
      return Bad(field, absl::StrCat("'", path, "' must be absolute (no data root configured)"));
    }
    p = std::filesystem::path(limits.data_roots.front()) / p;
  }
  const std::string norm = p.lexically_normal().string();
  if (limits.data_roots.empty()) return norm;
  for (const auto& root : limits.data_roots) {
    std::string r = std::filesystem::path(root).lexically_normal().string();
    if (!r.empty() && r.back() != '/') r += '/';
    if (norm.rfind(r, 0) == 0) return norm;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("spec.", field, ": '", path, "' is outside the data roots [",
                   absl::StrJoin(limits.data_roots, ", "), "]"));
}

// spec.widths: empty, or >= 2 distinct ascending entries of {2, 3, 4, 8}.
absl::Status ValidateWidths(const v1::JobSpec& s) {
  const auto& w = s.widths();
  if (w.empty()) return absl::OkStatus();
  if (w.size() < 2) {
    return Bad("widths", absl::StrCat("[", absl::StrJoin(w, ","),
                                      "]: 1 width; expected >= 2 (empty = 2,4)"));
  }
  for (int i = 0; i < w.size(); ++i) {
    if (w[i] != 2 && w[i] != 3 && w[i] != 4 && w[i] != 8) {
      return Bad(absl::StrCat("widths[", i, "]"),
                 absl::StrCat(w[i], "; expected one of 2, 3, 4, 8"));
    }
    if (i > 0 && w[i] <= w[i - 1]) {
      return Bad(absl::StrCat("widths[", i, "]"),
                 absl::StrCat(w[i], " after ", w[i - 1], "; expected ascending and distinct"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

int64_t MinPermutations(const v1::JobSpec& spec) {
  if (spec.min_permutations() > 0) return spec.min_permutations();
  return spec.antithetic() ? 4 : 2;
}

double Alpha(const v1::JobSpec& spec) { return spec.use_alpha() ? spec.alpha() : 0.5; }

absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& in, const SpecLimits& limits) {
  v1::JobSpec s = in;
  if (s.name().size() > 200) return Bad("name", absl::StrCat("is ", s.name().size(), " bytes; expected <= 200"));
  auto path = [&](const char* field, std::string* p, bool required) -> absl::Status {
    absl::StatusOr<std::string> r = ConfinePath(field, *p, limits, required);
    if (!r.ok()) return r.status();
    *p = *r;
    return absl::OkStatus();
  };
  absl::Status st;
  if (!(st = path("model_path", s.mutable_model_path(), true)).ok()) return st;
  if (!(st = path("tokenizer_path", s.mutable_tokenizer_path(), false)).ok()) return st;
  if (!(st = path("calibration_text_path", s.mutable_calibration_text_path(), true)).ok()) return st;
  if (!(st = path("evaluation_text_path", s.mutable_evaluation_text_path(), false)).ok()) return st;
  if (s.calibration_docs() < 0) return Bad("calibration_docs", absl::StrCat(s.calibration_docs(), "; expected >= 0"));
  if (s.evaluation_docs() < 0) return Bad("evaluation_docs", absl::StrCat(s.evaluation_docs(), "; expected >= 0"));
  if (s.context() < 0) return Bad("context", absl::StrCat(s.context(), "; expected >= 0"));
  if (s.context() == 0) s.set_context(512);
  if (s.backend().empty()) s.set_backend("rtn");
  if (s.backend() != "rtn" && s.backend() != "hqq" && s.backend() != "gptq") {
    return Bad("backend", absl::StrCat("'", s.backend(), "'; expected rtn, hqq or gptq"));
  }
  if (s.group_size() < 0) return Bad("group_size", absl::StrCat(s.group_size(), "; expected >= 0"));
  if (s.group_size() == 0) s.set_group_size(64);
  if (s.players().empty()) s.set_players("block");
  if (s.players() != "block" && s.players() != "module") {
    return Bad("players", absl::StrCat("'", s.players(), "'; expected block or module"));
  }
  if (s.permutations() < 2 || s.permutations() > limits.max_permutations ||
      (s.antithetic() && s.permutations() % 2 != 0)) {
    return Bad("permutations", absl::StrCat(s.permutations(), "; expected in [2, ",
                                            limits.max_permutations, "]",
                                            s.antithetic() ? " and even (antithetic)" : ""));
  }
  if (s.average_bits_size() == 0 || s.average_bits_size() > limits.max_budgets) {
    return Bad("average_bits", absl::StrCat(s.average_bits_size(), " budgets; expected 1..",
                                            limits.max_budgets));
  }
  for (int i = 0; i < s.average_bits_size(); ++i) {
    const double b = s.average_bits(i);
    if (!(b >= 2.0 && b <= 4.0)) {
      return Bad(absl::StrCat("average_bits[", i, "]"), absl::StrCat(b, "; expected in [2, 4]"));
    }
  }
  if (!(s.se_threshold() >= 0) || !std::isfinite(s.se_threshold())) {
    return Bad("se_threshold", absl::StrCat(s.se_threshold(), "; expected finite >= 0"));
  }
  if (s.min_permutations() < 0 || s.min_permutations() == 1 ||
      s.min_permutations() > s.permutations() ||
      (s.antithetic() && s.min_permutations() % 2 != 0)) {
    return Bad("min_permutations", absl::StrCat(s.min_permutations(),
                                                "; expected 0 (default) or in [2, permutations]",
                                                s.antithetic() ? " and even" : ""));
  }
  if (s.use_alpha() && !(s.alpha() >= 0 && s.alpha() <= 1)) {
    return Bad("alpha", absl::StrCat(s.alpha(), "; expected in [0, 1]"));
  }
  RETURN_IF_ERROR(ValidateWidths(s));
  return s;
}

std::vector<int> JobWidths(const v1::JobSpec& spec) {
  if (spec.widths().empty()) return {2, 4};
  return std::vector<int>(spec.widths().begin(), spec.widths().end());
}

bool BinaryWidths(const v1::JobSpec& spec) {
  return spec.widths().empty() ||
         (spec.widths_size() == 2 && spec.widths(0) == 2 && spec.widths(1) == 4);
}

absl::StatusOr<solver::WidthLadder> JobLadder(const v1::JobSpec& spec, int num_players) {
  RETURN_IF_ERROR(ValidateWidths(spec));
  if (num_players < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("width ladder over ", num_players, " players; expected >= 1"));
  }
  return solver::WidthLadder::Create(num_players, JobWidths(spec));
}

int JobGamePlayers(const v1::JobSpec& spec, int num_players) {
  if (BinaryWidths(spec)) return num_players;
  return num_players * (spec.widths_size() - 1);
}

absl::StatusOr<solver::Permutation> JobWalkPermutation(const v1::JobSpec& spec, int num_players,
                                                       int64_t k) {
  if (BinaryWidths(spec)) {
    if (num_players < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("walk over ", num_players, " players; expected >= 1"));
    }
    return solver::SeededPermutationSampler(num_players, spec.seed(), spec.antithetic())
        .Get(static_cast<uint64_t>(k));
  }
  ASSIGN_OR_RETURN(solver::WidthLadder ladder, JobLadder(spec, num_players));
  return solver::LadderPermutationSampler(ladder, spec.seed(), spec.antithetic())
      .Get(static_cast<uint64_t>(k));
}

}  // namespace impq::coordinator
