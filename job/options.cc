// ValidateJobOptions (job.h).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "job/job.h"

namespace impq::job {

absl::Status ValidateJobOptions(const JobOptions& o) {
  if (o.stable_batches < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("stable_batches = ", o.stable_batches, "; expected >= 0"));
  }
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (o.model_path.empty() || o.calib_text_path.empty() ||
      o.heldout_text_path.empty()) {
    return bad("job: model_path, calib_text_path and heldout_text_path are required "
               "(tokenizer_path may be empty: the model's own tokenizer)");
  }
  if (o.select_docs < 0) {
    return bad(absl::StrCat("job: select_docs = ", o.select_docs, "; expected >= 0"));
  }
  if (o.calib_docs < 0 || o.heldout_docs < 0) {
    return bad(absl::StrCat("job: calib_docs = ", o.calib_docs, ", heldout_docs = ",
                            o.heldout_docs, "; expected >= 0 (0 = all)"));
  }
  if (o.ctx < 1) return bad(absl::StrCat("job: ctx = ", o.ctx, "; expected >= 1"));
  if (o.backend != "rtn" && o.backend != "hqq" && o.backend != "gptq") {
    return bad(absl::StrCat("job: backend '", o.backend, "'; expected rtn, hqq or gptq"));
  }
  if (o.group_size < 1) return bad(absl::StrCat("job: group_size = ", o.group_size, "; expected >= 1"));
  if (o.permutations < 2 || (o.antithetic && o.permutations % 2 != 0)) {
    return bad(absl::StrCat("job: permutations = ", o.permutations,
                            "; expected >= 2 (the covariance estimator needs two walks)",
                            o.antithetic ? " and even (antithetic pairs)" : ""));
  }
  if (o.min_permutations < 0 || o.min_permutations == 1 || o.min_permutations > o.permutations ||
      (o.antithetic && o.min_permutations % 2 != 0)) {
    return bad(absl::StrCat("job: min_permutations = ", o.min_permutations,
                            "; expected 0 (the default) or in [2, permutations = ",
                            o.permutations, "]", o.antithetic ? " and even" : ""));
  }
  if (!(o.se_threshold >= 0) || !std::isfinite(o.se_threshold)) {
    return bad(absl::StrCat("job: se_threshold = ", o.se_threshold, "; expected finite and >= 0"));
  }
  if (o.estimator != "covariance" && o.estimator != "surrogate") {
    return bad(absl::StrCat("job: estimator '", o.estimator, "'; expected covariance or surrogate"));
  }
  if (!(o.alpha >= 0 && o.alpha <= 1)) return bad(absl::StrCat("job: alpha = ", o.alpha, "; expected [0, 1]"));
  if (!(o.ridge > 0) || !std::isfinite(o.ridge)) {
    return bad(absl::StrCat("job: ridge = ", o.ridge, "; expected finite and > 0"));
  }
  if (!(o.local_bandwidth >= 0) || !std::isfinite(o.local_bandwidth)) {
    return bad(absl::StrCat("job: local_bandwidth = ", o.local_bandwidth,
                            "; expected finite and >= 0 (0 = auto)"));
  }
  if (!(o.local_ridge > 0) || !std::isfinite(o.local_ridge)) {
    return bad(absl::StrCat("job: local_ridge = ", o.local_ridge, "; expected finite and > 0"));
  }
  if (o.widths.size() < 2 || !std::is_sorted(o.widths.begin(), o.widths.end()) ||
      std::adjacent_find(o.widths.begin(), o.widths.end()) != o.widths.end() ||
      std::any_of(o.widths.begin(), o.widths.end(),
                  [](int b) { return b != 2 && b != 3 && b != 4 && b != 8; })) {
    return bad(absl::StrCat("job: widths ", absl::StrJoin(o.widths, ","),
                            "; expected at least two of 2, 3, 4, 8, ascending, each once"));
  }
  if (o.widths.size() > 2 && o.estimator != "covariance") {
    return bad(absl::StrCat(
        "job: estimator '", o.estimator, "' with widths ", absl::StrJoin(o.widths, ","),
        ": a quadratic fit over the ladder's n·(m−1) steps has ~(n·(m−1))²/2 coefficients, "
        "more than the walks' coalitions determine; use covariance"));
  }
  if (o.widths.size() > 2 && o.search_model != "first_order") {
    return bad(absl::StrCat("job: search_model '", o.search_model, "' with widths ",
                            absl::StrJoin(o.widths, ","),
                            " (a quadratic fit over the ladder's steps); use first_order"));
  }
  if (o.average_bits.empty()) return bad("job: no target average bit-width");
  for (double b : o.average_bits) {
    if (!(b >= 2.0 && b <= 4.0)) {
      return bad(absl::StrCat("job: average_bits ", b,
                              " is outside [2, 4]: budgets are average bit-widths on the scale "
                              "of the 2- and 4-bit footprints"));
    }
  }
  if (o.random_draws < 1) return bad(absl::StrCat("job: random_draws = ", o.random_draws, "; expected >= 1"));
  if (!(o.extra_evaluation_fraction >= 0) || !std::isfinite(o.extra_evaluation_fraction)) {
    return bad(absl::StrCat("job: extra_evaluation_fraction = ", o.extra_evaluation_fraction,
                            "; expected finite and >= 0"));
  }
  if (o.search_max_changed < 1) {
    return bad(absl::StrCat("job: search_max_changed = ", o.search_max_changed, "; expected >= 1"));
  }
  if (o.search_model != "first_order" && o.search_model != "local") {
    return bad(absl::StrCat("job: search_model '", o.search_model,
                            "'; expected first_order or local"));
  }
  if (o.search_batch < 1) return bad(absl::StrCat("job: search_batch = ", o.search_batch, "; expected >= 1"));
  if (!(o.choice_z >= 0) || !std::isfinite(o.choice_z)) {
    return bad(absl::StrCat("job: choice_z = ", o.choice_z, "; expected finite and >= 0"));
  }
  if (o.threads < 1) return bad(absl::StrCat("job: threads = ", o.threads, "; expected >= 1"));
  if (o.max_cache_bytes < 0) return bad("job: max_cache_bytes < 0");
  return absl::OkStatus();
}

}  // namespace impq::job
