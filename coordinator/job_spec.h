// Validation and normalization of client-supplied job specs (the trust boundary of the
// client API: every field of a hostile request is checked here before anything is stored).
#ifndef IMPQ_COORDINATOR_JOB_SPEC_H_
#define IMPQ_COORDINATOR_JOB_SPEC_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "impq/v1/messages.pb.h"
#include "solver/permutation_sampler.h"
#include "solver/width_ladder.h"

namespace impq::coordinator {

struct SpecLimits {
  // Model and text paths must lie inside one of these directories (lexically, after
  // normalization, which resolves ".." components). Relative paths are taken relative to the
  // first root. Empty: any absolute path is accepted.
  std::vector<std::string> data_roots;
  int64_t max_permutations = 100000;
  int max_budgets = 64;
};

// Returns the spec with defaults filled in (see messages.proto) and paths made absolute, or
// InvalidArgument naming the field, its value and what is expected (PermissionDenied for a
// path outside the roots).
absl::StatusOr<v1::JobSpec> NormalizeJobSpec(const v1::JobSpec& spec, const SpecLimits& limits);

// Effective values of the defaulted fields of a normalized spec.
int64_t MinPermutations(const v1::JobSpec& spec);
double Alpha(const v1::JobSpec& spec);

// Width sets (issue 14; messages.proto). The job's widths, ascending: spec.widths, or {2, 4}
// when empty.
std::vector<int> JobWidths(const v1::JobSpec& spec);
// True when the job plays the binary 2-vs-4-bit game: widths empty or exactly {2, 4}. Then
// players are steps, units and results are those of the binary game, bit for bit.
bool BinaryWidths(const v1::JobSpec& spec);
// The job's ladder over `num_players` players (binary widths: the m = 2 ladder {2, 4}).
// InvalidArgument naming spec.widths when the widths are not valid (see NormalizeJobSpec) or
// num_players < 1.
absl::StatusOr<solver::WidthLadder> JobLadder(const v1::JobSpec& spec, int num_players);
// Players of the job's game: num_players for binary widths, num_players·(m−1) steps
// otherwise. REQUIRES: valid widths.
int JobGamePlayers(const v1::JobSpec& spec, int num_players);
// Walk k of the job over `num_players` model players: SeededPermutationSampler(num_players,
// seed, antithetic).Get(k) for binary widths, else LadderPermutationSampler(JobLadder(...),
// seed, antithetic).Get(k) (a permutation of the steps). Errors as JobLadder.
absl::StatusOr<solver::Permutation> JobWalkPermutation(const v1::JobSpec& spec, int num_players,
                                                       int64_t k);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_JOB_SPEC_H_
