// SPQE (IMPQ §3.2) through the cluster's coordinator code, in this process: the drop-in for
// solver::RunSpqe that lets `impq run` estimate through the same coordinator core (job state
// machine, deterministic walk units, leases, idempotent reports, stopping rule, aggregation)
// and the same worker loop as impq-coordinator + impq-worker, with the caller's evaluator as
// the worker's engine.
//
// How: the walks become a coordinator job (RunEmbedded: in-process coordinator, one worker
// loop over the in-process WorkerClient, capacity 1, no measurement unit). The worker's unit
// executor evaluates walk k's coalitions on `evaluator`, skipping those already evaluated (the
// cache RunSpqe keeps), so the evaluator sees the very sequence of coalitions RunSpqe sends it
// (in one call per walk instead of one per batch of walks; engine::LocalEvaluator's losses and
// counters do not depend on that grouping). The coordinator decides when estimation ends and
// aggregates φ and SE(φ); the result is assembled from its JobResult and the walks it used.
//
// Equal to RunSpqe on the same evaluator and options (embedded_spqe_test checks every field,
// bit for bit: permutations, marginals, observations in the same order, counters, estimate,
// stop reason) when se_threshold is 0, and with a threshold when RunSpqe checks the rule at
// the m the coordinator does — every admissible m, i.e. permutations_per_batch <= 2 with
// antithetic sampling (engine::RunJob's setting), 1 without — and the rule does not first
// hold at m = M (RunSpqe then says max_permutations, the coordinator standard_error).
// Otherwise the coordinator's rule applies (it may stop at an m RunSpqe does not check).
//
// Width sets (issue 14): with spec.widths other than {2, 4} the game is the ladder of
// solver/width_ladder.h — options.num_players is its number of steps n·(m−1) (n =
// model.num_players), the evaluator takes closed step coalitions, the coordinator walks
// LadderPermutationSampler's permutations, and RunSpqe agrees when given that sampler
// (options.sampler = &LadderPermutationSampler(ladder, seed, antithetic)); the guarantee
// above holds as for the binary game (embedded_spqe_test checks it).
//
// options.sampler may be null (the coordinator's walks) or a sampler whose permutations are
// the coordinator's walks: SeededPermutationSampler(n, seed, antithetic) for the default
// widths, the ladder's sampler otherwise (permutations 0 and 1 are checked before the run,
// every walk used after it).
//
// Not supported (InvalidArgument naming the option): a sampler whose walks differ from the
// coordinator's, a stop_callback (the coordinator's stopping rule is the SE threshold only),
// options that disagree with `spec`.
// progress_callback is called after every walk, from the worker's compute thread (the thread
// that calls the evaluator), with estimate and marginals set to nullptr.
#ifndef IMPQ_COORDINATOR_EMBEDDED_SPQE_H_
#define IMPQ_COORDINATOR_EMBEDDED_SPQE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/embedded.h"
#include "impq/v1/messages.pb.h"
#include "solver/coalition_evaluator.h"
#include "solver/spqe.h"

namespace impq::coordinator {

struct EmbeddedSpqeInput {
  // Not owned; called from one thread at a time (the worker's compute thread).
  solver::CoalitionEvaluator* evaluator = nullptr;
  solver::SpqeOptions options;  // as for solver::RunSpqe
  // The job as the coordinator sees it (e.g. SpecFromJobOptions): its paths name what the
  // evaluator computes (the coordinator validates them; nothing is loaded from them here).
  // permutations, antithetic, seed, se_threshold and min_permutations must agree with
  // `options`; the evaluation text is ignored (no measurement unit). spec.widths: the game's
  // width set (empty = {2, 4}; see the file comment).
  v1::JobSpec spec;
  // What the worker reports about the model: num_players (= options.num_players with the
  // default widths; the ladder's players otherwise), the player names and their bytes at 2
  // and 4 bits, and with a width set width_bytes (n·m, [i·m + w]) (the coordinator solves its
  // allocations with them).
  v1::ModelInfo model;
};

struct EmbeddedSpqeResult {
  solver::SpqeResult spqe;
  v1::JobResult job;  // the coordinator's result (φ, SE, its covariance allocations)
};

// Errors: InvalidArgument for unsupported or inconsistent options (naming the field); the
// evaluator's first error, unchanged; Internal if the coordinator's estimate disagrees with
// the walks it was given (a broken invariant).
absl::StatusOr<EmbeddedSpqeResult> RunSpqeThroughCoordinator(const EmbeddedSpqeInput& input);

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_EMBEDDED_SPQE_H_
