// The job's settings on the wire (v1::JobSpec) and in the pipeline (JobOptions): one mapping,
// used by the coordinator (to run the pipeline), the worker (to prepare the game of a unit)
// and the CLIs (to submit what `impq run` would run). Every JobOptions setting has a JobSpec
// field; an unset or zero field means the JobOptions default (messages.proto says which).
#ifndef IMPQ_JOB_SPEC_OPTIONS_H_
#define IMPQ_JOB_SPEC_OPTIONS_H_

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"
#include "job/job.h"

namespace impq::job {

// The options of a job spec (paths as given; threads and cache left at their defaults: they
// are the executing process's). InvalidArgument naming the spec field for a value the options
// cannot hold (players, eval_mode); ValidateJobOptions checks the rest.
absl::StatusOr<JobOptions> JobOptionsFromSpec(const v1::JobSpec& spec);

// Every setting of `options` as a spec (widths {2, 4} leave the field empty).
v1::JobSpec SpecFromJobOptions(const JobOptions& options);

// The game's identity: the settings a worker's prepared game depends on (model, tokenizer,
// texts and documents, context, mode, backend, group size, players, widths). Two specs with
// the same key have the same GameFacts and losses.
std::string GameKey(const v1::JobSpec& spec);

}  // namespace impq::job

#endif  // IMPQ_JOB_SPEC_OPTIONS_H_
