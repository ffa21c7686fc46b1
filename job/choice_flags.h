// The command-line flags of the per-budget choice (JobOptions: choice_z,
// extra_evaluation_fraction, the measured local search, select_docs): the one place they are
// spelled and documented, registered by cli/job_flags.h (`impq run`, `impqctl submit`) and by
// bench/impq_bench. Header-only (no link dependency on the engine).
#ifndef IMPQ_JOB_CHOICE_FLAGS_H_
#define IMPQ_JOB_CHOICE_FLAGS_H_

#include <cstdint>
#include <string>

#include "common/flags.h"
#include "job/job.h"

namespace impq::job {

class ChoiceFlags {
 public:
  ChoiceFlags() {
    const JobOptions d;
    choice_z_ = d.choice_z;
    extra_fraction_ = d.extra_evaluation_fraction;
    search_batch_ = d.search_batch;
    search_max_changed_ = d.search_max_changed;
    search_model_ = d.search_model;
    select_docs_ = d.select_docs;
  }

  void Register(FlagSet& flags) {
    flags.Double("choice-z", &choice_z_,
                 "paired standard errors a more elaborate candidate tier must win by");
    flags.Double("extra-fraction", &extra_fraction_,
                 "calibration evaluations of the per-budget choice, as a fraction of SPQE's");
    flags.Int("search-batch", &search_batch_, "local search: evaluations per model refit");
    flags.Int("search-max-changed", &search_max_changed_,
              "local search: players changed per move");
    flags.String("search-model", &search_model_, "local search's ranking: first_order | local");
    flags.Int("select-docs", &select_docs_,
              "measure the choice on the next N documents of the calibration text (0: on the "
              "calibration set)");
  }

  double choice_z() const { return choice_z_; }
  double extra_fraction() const { return extra_fraction_; }
  int64_t search_batch() const { return search_batch_; }
  int64_t search_max_changed() const { return search_max_changed_; }
  const std::string& search_model() const { return search_model_; }
  int64_t select_docs() const { return select_docs_; }

  // Copies the parsed values; job::ValidateJobOptions checks them.
  void ApplyTo(JobOptions& o) const {
    o.choice_z = choice_z_;
    o.extra_evaluation_fraction = extra_fraction_;
    o.search_batch = search_batch_;
    o.search_max_changed = static_cast<int>(search_max_changed_);
    o.search_model = search_model_;
    o.select_docs = select_docs_;
  }

 private:
  double choice_z_, extra_fraction_;
  int64_t search_batch_, search_max_changed_, select_docs_;
  std::string search_model_;
};

}  // namespace impq::job

#endif  // IMPQ_JOB_CHOICE_FLAGS_H_
