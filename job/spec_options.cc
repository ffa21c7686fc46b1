// JobSpec ↔ JobOptions (spec_options.h).
#include "job/spec_options.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace impq::job {

absl::StatusOr<JobOptions> JobOptionsFromSpec(const v1::JobSpec& s) {
  JobOptions o;
  o.model_path = s.model_path();
  o.tokenizer_path = s.tokenizer_path();
  o.calib_text_path = s.calibration_text_path();
  o.heldout_text_path = s.evaluation_text_path();
  if (s.calibration_docs() != 0) o.calib_docs = s.calibration_docs();
  if (s.evaluation_docs() != 0) o.heldout_docs = s.evaluation_docs();
  if (s.context() != 0) o.ctx = s.context();
  if (!s.backend().empty()) o.backend = s.backend();
  if (s.group_size() != 0) o.group_size = s.group_size();
  if (!s.players().empty()) {
    absl::StatusOr<quant::PlayerGranularity> g = quant::ParsePlayerGranularity(s.players());
    if (!g.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.players: ", g.status().message()));
    }
    o.players = *g;
  }
  if (s.permutations() != 0) o.permutations = s.permutations();
  if (s.has_antithetic()) o.antithetic = s.antithetic();
  o.seed = s.seed();
  if (s.average_bits_size() > 0) o.average_bits.assign(s.average_bits().begin(), s.average_bits().end());
  o.se_threshold = s.se_threshold();
  o.min_permutations = s.min_permutations();
  if (s.use_alpha()) o.alpha = s.alpha();
  if (s.widths_size() > 0) o.widths.assign(s.widths().begin(), s.widths().end());
  if (s.has_select_docs()) o.select_docs = s.select_docs();
  if (s.has_eval_mode()) {
    absl::StatusOr<eval::EvalMode> m = eval::ParseEvalMode(s.eval_mode());
    if (!m.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.eval_mode: ", m.status().message()));
    }
    o.mode = *m;
  }
  if (s.has_estimator()) o.estimator = s.estimator();
  if (s.has_ridge()) o.ridge = s.ridge();
  if (s.has_local_bandwidth()) o.local_bandwidth = s.local_bandwidth();
  if (s.has_local_ridge()) o.local_ridge = s.local_ridge();
  if (s.has_random_draws()) o.random_draws = s.random_draws();
  if (s.has_extra_evaluation_fraction()) o.extra_evaluation_fraction = s.extra_evaluation_fraction();
  if (s.has_search_batch()) o.search_batch = s.search_batch();
  if (s.has_search_max_changed()) o.search_max_changed = s.search_max_changed();
  if (s.has_search_model()) o.search_model = s.search_model();
  if (s.has_choice_z()) o.choice_z = s.choice_z();
  if (s.has_stable_batches()) o.stable_batches = s.stable_batches();
  return o;
}

v1::JobSpec SpecFromJobOptions(const JobOptions& o) {
  v1::JobSpec s;
  s.set_model_path(o.model_path);
  s.set_tokenizer_path(o.tokenizer_path);
  s.set_calibration_text_path(o.calib_text_path);
  s.set_evaluation_text_path(o.heldout_text_path);
  s.set_calibration_docs(o.calib_docs);
  s.set_evaluation_docs(o.heldout_docs);
  s.set_context(o.ctx);
  s.set_backend(o.backend);
  s.set_group_size(o.group_size);
  s.set_players(quant::PlayerGranularityName(o.players));
  s.set_permutations(o.permutations);
  s.set_antithetic(o.antithetic);
  s.set_seed(o.seed);
  for (double b : o.average_bits) s.add_average_bits(b);
  s.set_se_threshold(o.se_threshold);
  s.set_min_permutations(o.min_permutations);
  s.set_alpha(o.alpha);
  s.set_use_alpha(true);
  if (o.widths != std::vector<int>{2, 4}) {
    for (int w : o.widths) s.add_widths(w);
  }
  s.set_select_docs(o.select_docs);
  s.set_eval_mode(eval::EvalModeName(o.mode));
  s.set_estimator(o.estimator);
  s.set_ridge(o.ridge);
  s.set_local_bandwidth(o.local_bandwidth);
  s.set_local_ridge(o.local_ridge);
  s.set_random_draws(o.random_draws);
  s.set_extra_evaluation_fraction(o.extra_evaluation_fraction);
  s.set_search_batch(o.search_batch);
  s.set_search_max_changed(o.search_max_changed);
  s.set_search_model(o.search_model);
  s.set_choice_z(o.choice_z);
  s.set_stable_batches(o.stable_batches);
  return s;
}

std::string GameKey(const v1::JobSpec& s) {
  return absl::StrCat(s.model_path(), "\n", s.tokenizer_path(), "\n", s.calibration_text_path(),
                      "\n", s.calibration_docs(), "\n", s.select_docs(), "\n",
                      s.evaluation_text_path(), "\n", s.evaluation_docs(), "\n", s.context(),
                      "\n", s.eval_mode(), "\n", s.backend(), "\n", s.group_size(), "\n",
                      s.players(), "\n", absl::StrJoin(s.widths(), ","));
}

}  // namespace impq::job
