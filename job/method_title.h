// The display name of an allocation method of the job (MeasuredAllocation::method), as the
// Markdown report and `impq report` print it. Header-only: the report reads run files without
// linking the engine.
#ifndef IMPQ_JOB_METHOD_TITLE_H_
#define IMPQ_JOB_METHOD_TITLE_H_

#include <string>

namespace impq::job {

// `estimator`: the objective "impq" allocated from (JobResult::allocation_estimator);
// `random_draws`: the random baseline's draws (JobOptions::random_draws). An unknown method is
// returned as it is.
inline std::string MethodTitle(const std::string& method, const std::string& estimator,
                               int random_draws) {
  if (method == "impq") return "IMPQ (" + estimator + ")";
  if (method == "random") return "random (mean of " + std::to_string(random_draws) + ")";
  static const struct {
    const char* method;
    const char* title;
  } kTitles[] = {{"isolated", "isolated Δ"},
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
  for (const auto& t : kTitles) {
    if (method == t.method) return t.title;
  }
  return method;
}

}  // namespace impq::job

#endif  // IMPQ_JOB_METHOD_TITLE_H_
