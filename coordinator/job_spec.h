// Validation and normalization of client-supplied job specs (the trust boundary of the
// client API: every field of a hostile request is checked here before anything is stored).
#ifndef IMPQ_COORDINATOR_JOB_SPEC_H_
#define IMPQ_COORDINATOR_JOB_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"

namespace impq::coordinator {

struct SpecLimits {
  // Model and text paths must exist and resolve (realpath: symlinks, "..") inside one of these
  // directories; relative paths are taken relative to the first root (ResolveInDataRoots,
  // common/file_util.h). Empty (--insecure, embedded): any absolute path, not checked.
  std::vector<std::string> data_roots;
  int64_t max_permutations = 100000;
  int max_budgets = 64;
};

// Returns the spec with every setting stated (unset fields take job::JobOptions' defaults,
// the ones `impq run` uses; job/spec_options.h), unknown fields dropped and paths made
// absolute, or InvalidArgument naming the field, its value and what is expected — the
// pipeline's own checks (job::ValidateJobOptions) included, so the service refuses what
// the CLI refuses with the same words. For paths, ResolveInDataRoots' errors
// (PermissionDenied outside the roots, NotFound, InvalidArgument for a FIFO...), which name the
// field and the path as given, never the roots.
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& spec, const SpecLimits& limits);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_JOB_SPEC_H_
