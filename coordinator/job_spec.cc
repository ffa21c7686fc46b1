#include "coordinator/job_spec.h"

#include "job/spec_options.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "common/terminal_text.h"
#include "common/status.h"
#include "worker/model/loader.h"

namespace impq::coordinator {
namespace {

absl::Status Bad(const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("spec.", field, ": ", what));
}

// A job's path as the workers will open it. With data roots: common/file_util.h's
// ResolveInDataRoots (realpath, confined, must exist here: the coordinator and the workers
// mount the same data volume at the same place, so a file the coordinator cannot see is one
// the workers cannot open either — refused at submit rather than failing on every worker).
// Without (--insecure, the embedded `impq run`): any absolute path, lexically normalised.
absl::StatusOr<std::string> ConfinePath(const std::string& field, const std::string& path,
                                        const SpecLimits& limits, bool required) {
  if (path.empty()) {
    if (required) return Bad(field, "is required");
    return std::string();
  }
  if (path.size() > 4096 || path.find('\0') != std::string::npos) {
    return Bad(field, "is not a valid path");
  }
  if (!limits.data_roots.empty()) {
    // The model with the files its readers open next to it (worker/model/loader.h).
    if (field == "model_path") {
      return model::ResolveModelInDataRoots("spec.model_path", path, limits.data_roots);
    }
    return ResolveInDataRoots(absl::StrCat("spec.", field), path, limits.data_roots);
  }
  if (std::filesystem::path(path).is_relative()) {
    return Bad(field, absl::StrCat("'", absl::CHexEscape(path),
                                   "' must be absolute (no data root configured)"));
  }
  return std::filesystem::path(path).lexically_normal().string();
}

}  // namespace

absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& in, const SpecLimits& limits) {
  v1::JobSpec s = in;
  s.DiscardUnknownFields();  // a client cannot make the store hold what no one reads
  if (s.name().size() > 200) return Bad("name", absl::StrCat("is ", s.name().size(), " bytes; expected <= 200"));
  // Names are printed by impqctl and shown on dashboards: no terminal control sequences.
  if (std::optional<size_t> at = FindControlChar(s.name())) {
    return Bad("name", absl::StrFormat("has control character 0x%02x at byte %d; expected "
                                       "printable UTF-8 text",
                                       static_cast<unsigned char>(s.name()[*at]), *at));
  }
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
  if (!(st = path("evaluation_text_path", s.mutable_evaluation_text_path(), true)).ok()) return st;
  // Bounds the client could make the coordinator hold or compute. The settings' own rules
  // are ValidateJobOptions' (below), so a bad value gets the message `impq run` gives.
  if (s.permutations() > limits.max_permutations) {
    return Bad("permutations", absl::StrCat(s.permutations(), "; expected <= ",
                                            limits.max_permutations, " on this coordinator"));
  }
  if (s.average_bits_size() > limits.max_budgets) {
    return Bad("average_bits", absl::StrCat(s.average_bits_size(), " budgets; expected 1..",
                                            limits.max_budgets, " (none = the default)"));
  }
  if (s.request_id().size() > 64) {
    return Bad("request_id", absl::StrCat("is ", s.request_id().size(), " bytes; expected <= 64"));
  }
  for (auto [field, v] : {std::pair{"calibration_docs", s.calibration_docs()},
                          std::pair{"evaluation_docs", s.evaluation_docs()},
                          std::pair{"select_docs", s.select_docs()},
                          std::pair{"context", s.context()}}) {
    if (v > (int64_t{1} << 24)) return Bad(field, absl::StrCat(v, "; expected <= 2^24"));
  }
  // What a caller could otherwise make one job compute without end.
  if (s.random_draws() > 100) {
    return Bad("random_draws", absl::StrCat(s.random_draws(), "; expected <= 100"));
  }
  if (s.search_batch() > 1024) {
    return Bad("search_batch", absl::StrCat(s.search_batch(), "; expected <= 1024"));
  }
  if (s.search_max_changed() > 64) {
    return Bad("search_max_changed", absl::StrCat(s.search_max_changed(), "; expected <= 64"));
  }
  if (s.extra_evaluation_fraction() > 10) {
    return Bad("extra_evaluation_fraction",
               absl::StrCat(s.extra_evaluation_fraction(), "; expected <= 10"));
  }
  // One set of defaults: every unset field takes JobOptions' default (what `impq run` runs),
  // and the normalized spec states every setting explicitly.
  ASSIGN_OR_RETURN(job::JobOptions o, job::JobOptionsFromSpec(s));
  if (absl::Status v = job::ValidateJobOptions(o); !v.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("spec: ", v.message()));
  }
  v1::JobSpec out = job::SpecFromJobOptions(o);
  out.set_name(s.name());
  out.set_request_id(s.request_id());
  return out;
}

}  // namespace impq::coordinator
