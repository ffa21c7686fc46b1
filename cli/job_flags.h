// The one flag table of a job's settings: `impq run` and `impqctl submit` both register it,
// so every setting has the same name, meaning and default in both. The flags fill a
// v1::JobSpec — only the settings given on the command line; every other field stays unset
// and takes job::JobOptions' default wherever the spec becomes options
// (job/spec_options.h: the one place defaults are applied). The defaults the help text shows
// are DefaultSpec()'s: JobOptions' own, through that mapping.
// Paths: `impq run` resolves bare file names in its --data directory; the coordinator resolves
// relative paths against its first --data_root.
#ifndef IMPQ_CLI_JOB_FLAGS_H_
#define IMPQ_CLI_JOB_FLAGS_H_

#include <string>

#include "absl/status/status.h"
#include "common/flags.h"
#include "impq/v1/messages.pb.h"
#include "job/choice_flags.h"

namespace impq::cli {

class JobFlags {
 public:
  JobFlags();
  void Register(FlagSet& flags);
  // The settings given on the command line (flags.WasSet) over `spec`, lists parsed;
  // InvalidArgument naming the flag for a malformed list (the coordinator and
  // job::ValidateJobOptions check the values). --model without --tokenizer clears the
  // tokenizer (the model's own).
  absl::Status ApplyTo(const FlagSet& flags, v1::JobSpec& spec) const;
  // Every setting at its default, the default model, tokenizer and texts as file names.
  static v1::JobSpec DefaultSpec();

 private:
  std::string model_, tokenizer_, calib_text_, heldout_text_, mode_, players_, backend_,
      estimator_, budgets_, widths_;
  int64_t calib_docs_, heldout_docs_, ctx_, group_size_, permutations_, seed_, stable_batches_,
      random_draws_;
  double se_threshold_;
  bool antithetic_;
  job::ChoiceFlags choice_;  // the per-budget choice's flags (one definition)
};

}  // namespace impq::cli

#endif  // IMPQ_CLI_JOB_FLAGS_H_
