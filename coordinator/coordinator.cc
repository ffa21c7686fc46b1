#include "coordinator/coordinator.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"
#include "solver/allocation_problem.h"
#include "solver/allocation_solver.h"
#include "solver/interactions.h"
#include "solver/multi_choice.h"
#include "solver/permutation_sampler.h"
#include "solver/shapley_estimate.h"
#include "solver/spqe.h"
#include "solver/width_ladder.h"

namespace impq::coordinator {

struct Coordinator::Unit {
  // kCommitting: a validated result under the unit's lease is being written to the store
  // (group commit); the unit is neither re-issued nor accepted again meanwhile.
  enum class State { kPending, kLeased, kCommitting, kDone, kCancelled };
  State state = State::kPending;
  std::string lease_id;
  int attempt = 0;
  std::vector<double> losses;
  std::vector<double> marginals;  // walks: indexed by player
};

struct Coordinator::Job {
  StoredJob rec;
  bool has_model = false;
  v1::ModelInfo model;
  std::vector<Unit> units;           // M walks, then the measurement unit once MEASURING
  std::set<int64_t> pending;         // unit indexes waiting for a lease, ascending
  std::vector<std::string> measure_coalitions;
  int64_t prefix_done = 0;           // walks [0, prefix_done) are done
  int64_t checked_m = 0;             // stopping rule evaluated for every m <= checked_m
  int64_t walks_used = 0;            // m, once estimation ended
  int64_t evaluations_done = 0;
  int64_t evaluations_at_stop = 0;
  int64_t units_done = 0;
  int64_t version = 1;
  bool solving = false;              // SolvePending is working on it outside the mutex
  bool has_stored_measure = false;   // restored measurement result, applied after re-solving
  v1::WorkResult stored_measure;

  int64_t walks() const { return rec.spec.permutations(); }
  bool measures() const { return !rec.spec.evaluation_text_path().empty(); }
  bool terminal() const {
    return rec.state == v1::JOB_STATE_DONE || rec.state == v1::JOB_STATE_FAILED ||
           rec.state == v1::JOB_STATE_CANCELLED;
  }
  bool runnable() const {
    return rec.state == v1::JOB_STATE_QUEUED || rec.state == v1::JOB_STATE_ESTIMATING ||
           rec.state == v1::JOB_STATE_MEASURING;
  }
};

struct Coordinator::LeaseRec {
  std::string id, worker_id, job_id;
  std::vector<int64_t> units;
  absl::Time deadline;
};

// A report waiting in (or going through) a group commit. Lives on the reporting thread's
// stack, which waits until `done`.
struct Coordinator::PendingCommit {
  Job* job = nullptr;
  int64_t unit = 0;
  std::string lease_id;
  const v1::WorkResult* result = nullptr;
  bool done = false;
  absl::Status status;                                   // the store's error, if any
  v1::ReportOutcome outcome = v1::REPORT_OUTCOME_UNSPECIFIED;
};

namespace {

std::string Repeat(char c, int n) { return std::string(static_cast<size_t>(n), c); }

// The measurement unit's coalitions: all-4 (all-widest), all-2 (all-narrowest), then every
// allocation's; with a width set, closed step coalitions of the ladder.
absl::StatusOr<std::vector<std::string>> MeasureCoalitions(const v1::JobSpec& spec,
                                                           const v1::JobResult& result) {
  const int n = result.model().num_players();
  const int players = JobGamePlayers(spec, n);
  std::vector<std::string> out = {Repeat('0', players), Repeat('1', players)};
  if (BinaryWidths(spec)) {
    for (const v1::Allocation& a : result.allocations()) {
      std::string q;
      for (int b : a.bits()) q += b == 2 ? '1' : '0';
      out.push_back(q);
    }
    return out;
  }
  ASSIGN_OR_RETURN(solver::WidthLadder ladder, JobLadder(spec, n));
  for (const v1::Allocation& a : result.allocations()) {
    const std::vector<int> bits(a.bits().begin(), a.bits().end());
    ASSIGN_OR_RETURN(solver::Coalition q, ladder.CoalitionOfBits(bits));
    std::string s;
    for (uint8_t x : q) s += x != 0 ? '1' : '0';
    out.push_back(std::move(s));
  }
  return out;
}

// A walk result's ModelInfo.width_bytes for a width set: n·m valid entries (WidthLadder::
// ValidateWidthBytes) that agree with bytes2/bytes4 where the set has 2 or 4 bits.
absl::Status ValidateWidthBytes(const v1::JobSpec& spec, const v1::ModelInfo& m) {
  const int n = m.num_players();
  ASSIGN_OR_RETURN(solver::WidthLadder ladder, JobLadder(spec, n));
  const int w = ladder.num_widths();
  if (m.width_bytes_size() != n * w) {
    return absl::InvalidArgumentError(
        absl::StrCat("result.model.width_bytes has ", m.width_bytes_size(), " entries; ", n,
                     " players at widths [", absl::StrJoin(ladder.widths(), ","), "] need ",
                     n * w));
  }
  const std::vector<int64_t> bytes(m.width_bytes().begin(), m.width_bytes().end());
  if (absl::Status st = ladder.ValidateWidthBytes(bytes); !st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("result.model.width_bytes: ", st.message()));
  }
  for (int i = 0; i < n; ++i) {
    for (int v = 0; v < w; ++v) {
      const int bits = ladder.widths()[static_cast<size_t>(v)];
      if (bits != 2 && bits != 4) continue;
      const int64_t want = bits == 2 ? m.bytes2(i) : m.bytes4(i);
      if (bytes[static_cast<size_t>(i * w + v)] != want) {
        return absl::InvalidArgumentError(absl::StrCat(
            "result.model.width_bytes[", i * w + v, "] = ", bytes[static_cast<size_t>(i * w + v)],
            " (player ", i, " at ", bits, " bits) disagrees with bytes", bits, " = ", want));
      }
    }
  }
  return absl::OkStatus();
}

struct SolveInput {
  v1::JobSpec spec;
  v1::ModelInfo model;
  std::vector<std::vector<double>> marginals;
  double loss_all4 = 0, loss_all2 = 0;
  std::string stop_reason;
};

// The allocations of a width set (issue 14): per budget, the step objective as the
// multiple-choice program of the ladder (WidthLadder::ToMultiChoice), solved exactly. Budgets
// in bytes as for the binary game (BudgetForAverageBits on the 2/4-bit footprints).
absl::Status SolveLadder(const SolveInput& in, const solver::QuadraticObjective& objective,
                         const solver::PlayerBytes& bytes, v1::JobResult& r) {
  ASSIGN_OR_RETURN(solver::WidthLadder ladder, JobLadder(in.spec, in.model.num_players()));
  const std::vector<int64_t> width_bytes(in.model.width_bytes().begin(),
                                         in.model.width_bytes().end());
  for (double average_bits : in.spec.average_bits()) {
    ASSIGN_OR_RETURN(int64_t budget, solver::BudgetForAverageBits(bytes, average_bits));
    ASSIGN_OR_RETURN(solver::MultiChoiceProblem problem,
                     ladder.ToMultiChoice(objective, width_bytes, budget));
    absl::StatusOr<solver::MultiChoiceResult> sol = solver::SolveMultiChoiceExact(problem);
    if (!sol.ok()) {
      return absl::Status(sol.status().code(),
                          absl::StrCat("average_bits ", average_bits, " (", budget,
                                       " bytes) over widths [", absl::StrJoin(ladder.widths(), ","),
                                       "]: ", sol.status().message()));
    }
    v1::Allocation* a = r.add_allocations();
    a->set_average_bits(average_bits);
    a->set_budget_bytes(budget);
    for (int b : sol->bits) a->add_bits(b);
    a->set_memory_bytes(sol->memory_bytes);
    a->set_objective(sol->objective);
    a->set_proven_optimal(sol->proven_optimal);
  }
  return absl::OkStatus();
}

// Estimation → objective → allocations (IMPQ §3.2–3.3). Pure function of its input. With a
// width set the game's players are the ladder's steps: φ, SE and the objective are over them.
absl::StatusOr<v1::JobResult> Solve(const SolveInput& in) {
  const int players = JobGamePlayers(in.spec, in.model.num_players());
  ASSIGN_OR_RETURN(solver::ShapleyEstimate est,
                   solver::AggregateMarginals(in.marginals, in.spec.antithetic()));
  solver::InteractionInput ii;
  ii.num_players = players;
  ii.marginals = in.marginals;
  ASSIGN_OR_RETURN(solver::QuadraticObjective objective,
                   solver::CovarianceInteractionEstimator(Alpha(in.spec)).Estimate(ii));
  solver::PlayerBytes bytes;
  bytes.bytes2.assign(in.model.bytes2().begin(), in.model.bytes2().end());
  bytes.bytes4.assign(in.model.bytes4().begin(), in.model.bytes4().end());
  v1::JobResult r;
  *r.mutable_model() = in.model;
  for (int i = 0; i < players; ++i) {
    r.add_phi(est.phi[i]);
    r.add_standard_error(est.standard_error[i]);
  }
  r.set_permutations_used(static_cast<int64_t>(in.marginals.size()));
  r.set_stop_reason(in.stop_reason);
  r.set_loss_all4(in.loss_all4);
  r.set_loss_all2(in.loss_all2);
  if (!BinaryWidths(in.spec)) {
    RETURN_IF_ERROR(SolveLadder(in, objective, bytes, r));
    return r;
  }
  const std::vector<double> budgets(in.spec.average_bits().begin(), in.spec.average_bits().end());
  auto exact = solver::NewExactSolver();
  ASSIGN_OR_RETURN(std::vector<solver::AllocationResult> allocs,
                   solver::SweepAverageBits(*exact, objective, bytes, budgets));
  for (size_t b = 0; b < allocs.size(); ++b) {
    v1::Allocation* a = r.add_allocations();
    a->set_average_bits(budgets[b]);
    ASSIGN_OR_RETURN(int64_t budget, solver::BudgetForAverageBits(bytes, budgets[b]));
    a->set_budget_bytes(budget);
    for (uint8_t q : allocs[b].assignment) a->add_bits(q != 0 ? 2 : 4);
    a->set_memory_bytes(allocs[b].memory_bytes);
    a->set_objective(allocs[b].objective);
    a->set_proven_optimal(allocs[b].proven_optimal);
  }
  return r;
}

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::Default()) {}

Coordinator::~Coordinator() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(const CoordinatorOptions& options) {
  if (options.store_path.empty()) return absl::InvalidArgumentError("coordinator: store_path is required");
  if (options.lease_duration <= absl::ZeroDuration() || options.max_units_per_lease < 1) {
    return absl::InvalidArgumentError("coordinator: lease_duration and max_units_per_lease must be positive");
  }
  std::unique_ptr<Coordinator> c(new Coordinator(options));
  ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(options.store_path));
  ASSIGN_OR_RETURN(StoreContents contents, store->Load());
  c->incarnation_ = store->incarnation();
  absl::MutexLock lock(&c->mu_);
  c->store_ = std::move(store);
  RETURN_IF_ERROR(c->Restore(std::move(contents)));
  c->UpdateGauges();
  return c;
}

int64_t Coordinator::NowMs() const { return absl::ToUnixMillis(clock_->Now()); }

Coordinator::Job* Coordinator::FindJob(const std::string& id) {
  auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second.get();
}

void Coordinator::Touch(Job& job) {
  ++job.version;
  changed_.SignalAll();
}

absl::Status Coordinator::Persist(Job& job) { return store_->PutJob(job.rec); }

void Coordinator::BuildUnits(Job& job) {
  job.units.assign(static_cast<size_t>(job.walks()), Unit{});
  job.pending.clear();
  for (int64_t k = 0; k < job.walks(); ++k) job.pending.insert(job.pending.end(), k);
}

v1::JobStatus Coordinator::StatusOf(const Job& job) const {
  v1::JobStatus s;
  s.set_job_id(job.rec.id);
  s.set_state(job.rec.state);
  s.set_name(job.rec.spec.name());
  const int64_t n = job.has_model ? JobGamePlayers(job.rec.spec, job.model.num_players()) : 0;
  const int64_t extra = job.measures() ? job.rec.spec.average_bits_size() + 2 : 0;
  int64_t total = 0;
  if (n > 0) {
    total = (job.walks_used > 0 ? job.evaluations_at_stop : job.walks() * (n + 1)) + extra;
  }
  s.set_evaluations_done(job.evaluations_done);
  s.set_evaluations_total(std::max(total, job.evaluations_done));
  s.set_units_done(job.units_done);
  s.set_units_total((job.walks_used > 0 ? job.walks_used : job.walks()) + (job.measures() ? 1 : 0));
  s.set_submitted_ms(job.rec.submitted_ms);
  s.set_started_ms(job.rec.started_ms);
  s.set_finished_ms(job.rec.finished_ms);
  s.set_error(job.rec.error);
  s.set_version(job.version);
  return s;
}

absl::StatusOr<v1::JobStatus> Coordinator::SubmitJob(const v1::JobSpec& spec) {
  ASSIGN_OR_RETURN(v1::JobSpec normalized, NormalizeJobSpec(spec, options_.limits));
  auto job = std::make_unique<Job>();
  {
    absl::MutexLock lock(&mu_);
    if (!accepting_) return absl::UnavailableError("coordinator is shutting down");
    job->rec.seq = next_seq_++;  // a failed write below leaves a gap, nothing else
  }
  job->rec.id = absl::StrFormat("job-%06d", job->rec.seq);
  job->rec.spec = std::move(normalized);
  job->rec.state = v1::JOB_STATE_QUEUED;
  job->rec.submitted_ms = NowMs();
  // Accepted only once durable. Written outside the mutex (the store serializes itself), so
  // workers' leases and reports do not wait for a submission's fsync.
  RETURN_IF_ERROR(store_->PutJob(job->rec));
  absl::MutexLock lock(&mu_);
  BuildUnits(*job);
  Job* raw = job.get();
  jobs_[raw->rec.id] = std::move(job);
  // Submission order is seq order, whatever order concurrent submissions finish writing in.
  order_.insert(std::upper_bound(order_.begin(), order_.end(), raw,
                                 [](const Job* a, const Job* b) { return a->rec.seq < b->rec.seq; }),
                raw);
  if (options_.metrics != nullptr) options_.metrics->jobs_submitted.Increment();
  UpdateGauges();
  changed_.SignalAll();
  return StatusOf(*raw);
}

absl::StatusOr<JobView> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("job_id '", job_id, "' is unknown"));
  JobView v;
  v.status = StatusOf(*job);
  v.spec = job->rec.spec;
  v.has_result = job->rec.has_result;
  if (v.has_result) v.result = job->rec.result;
  return v;
}

absl::StatusOr<v1::JobStatus> Coordinator::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("job_id '", job_id, "' is unknown"));
  if (!job->terminal()) Finish(*job, v1::JOB_STATE_CANCELLED, "");
  UpdateGauges();
  return StatusOf(*job);
}

std::vector<v1::JobStatus> Coordinator::ListJobs() {
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobStatus> out;
  for (const Job* j : order_) out.push_back(StatusOf(*j));
  return out;
}

absl::StatusOr<v1::JobStatus> Coordinator::WaitForChange(const std::string& job_id,
                                                         int64_t known_version,
                                                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("job_id '", job_id, "' is unknown"));
  const absl::Time deadline = absl::Now() + timeout;
  while (job->version == known_version && accepting_ && absl::Now() < deadline) {
    changed_.WaitWithDeadline(&mu_, deadline);
  }
  return StatusOf(*job);
}

bool Coordinator::shutting_down() {
  absl::MutexLock lock(&mu_);
  return !accepting_;
}

void Coordinator::SeeWorker(const std::string& worker_id) {
  if (!worker_id.empty()) workers_seen_[worker_id] = clock_->Now();
}

absl::StatusOr<LeaseGrant> Coordinator::AcquireLease(const std::string& worker_id, int capacity) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id is required");
  if (worker_id.size() > 256) return absl::InvalidArgumentError("worker_id is longer than 256 bytes");
  if (capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat("capacity = ", capacity, "; expected >= 1"));
  }
  absl::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError("coordinator is shutting down");
  ExpireLeasesLocked();
  SeeWorker(worker_id);
  capacity = std::min(capacity, options_.max_units_per_lease);
  LeaseGrant grant;
  for (Job* job : order_) {
    if (!job->runnable() || job->pending.empty()) continue;
    auto lease = std::make_unique<LeaseRec>();
    lease->id = absl::StrCat("L", incarnation_, "-", next_lease_++);
    lease->worker_id = worker_id;
    lease->job_id = job->rec.id;
    lease->deadline = clock_->Now() + options_.lease_duration;
    const int n = job->has_model ? job->model.num_players() : 0;
    while (!job->pending.empty() && static_cast<int>(lease->units.size()) < capacity) {
      const int64_t k = *job->pending.begin();
      job->pending.erase(job->pending.begin());
      Unit& u = job->units[static_cast<size_t>(k)];
      u.state = Unit::State::kLeased;
      u.lease_id = lease->id;
      ++u.attempt;
      lease->units.push_back(k);
      v1::WorkUnit w;
      w.set_job_id(job->rec.id);
      w.set_unit_index(k);
      *w.mutable_spec() = job->rec.spec;
      w.set_attempt(u.attempt);
      if (k < job->walks()) {
        w.set_kind(v1::UNIT_KIND_WALK);
        w.set_dataset(v1::DATASET_CALIBRATION);
        w.set_permutation_index(k);
        if (n > 0) {
          absl::StatusOr<solver::Permutation> perm = JobWalkPermutation(job->rec.spec, n, k);
          IMPQ_CHECK(perm.ok()) << perm.status().message();  // spec and n validated
          for (int p : *perm) w.add_permutation(p);
        }
      } else {
        w.set_kind(v1::UNIT_KIND_BATCH);
        w.set_dataset(v1::DATASET_EVALUATION);
        for (const auto& c : job->measure_coalitions) w.add_coalitions(c);
      }
      grant.units.push_back(std::move(w));
    }
    if (job->rec.state == v1::JOB_STATE_QUEUED) {
      job->rec.state = v1::JOB_STATE_ESTIMATING;
      job->rec.started_ms = NowMs();
      // Not fatal: the state is re-derived on restart; only started_ms would be lost.
      if (absl::Status st = Persist(*job); !st.ok()) IMPQ_LOG(WARNING) << st.message();
    }
    Touch(*job);
    grant.has_lease = true;
    grant.lease_id = lease->id;
    grant.deadline = lease->deadline;
    leases_[lease->id] = std::move(lease);
    if (options_.metrics != nullptr) options_.metrics->leases_granted.Increment();
    break;
  }
  UpdateGauges();
  return grant;
}

absl::StatusOr<HeartbeatReply> Coordinator::Heartbeat(const std::string& lease_id,
                                                      const std::string& worker_id) {
  if (lease_id.empty()) return absl::InvalidArgumentError("lease_id is required");
  absl::MutexLock lock(&mu_);
  ExpireLeasesLocked();
  SeeWorker(worker_id);
  HeartbeatReply reply;
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    reply.state = expired_leases_.count(lease_id) != 0 ? v1::LEASE_STATE_EXPIRED
                                                       : v1::LEASE_STATE_UNKNOWN;
    return reply;
  }
  LeaseRec& lease = *it->second;
  Job* job = FindJob(lease.job_id);
  bool needed = false;
  if (job != nullptr && !job->terminal()) {
    for (int64_t k : lease.units) {
      const Unit& u = job->units[static_cast<size_t>(k)];
      needed |= (u.state == Unit::State::kLeased || u.state == Unit::State::kCommitting) &&
                u.lease_id == lease_id;
    }
  }
  if (!needed) {
    leases_.erase(it);
    reply.state = v1::LEASE_STATE_CANCELLED;
    return reply;
  }
  lease.deadline = clock_->Now() + options_.lease_duration;
  reply.state = v1::LEASE_STATE_ACTIVE;
  reply.deadline = lease.deadline;
  return reply;
}

absl::Status Coordinator::ValidateResult(const Job& job, const v1::WorkResult& r) const {
  const int64_t k = r.unit_index();
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  if (k < job.walks()) {
    const v1::ModelInfo& m = r.model();
    const int n = m.num_players();
    if (n < 1 || n > 4096) return bad(absl::StrCat("result.model.num_players = ", n, "; expected in [1, 4096]"));
    if (m.bytes2_size() != n || m.bytes4_size() != n) {
      return bad(absl::StrCat("result.model: ", m.bytes2_size(), "/", m.bytes4_size(),
                              " byte counts for ", n, " players"));
    }
    for (int i = 0; i < n; ++i) {
      if (m.bytes2(i) < 0 || m.bytes2(i) > m.bytes4(i)) {
        return bad(absl::StrCat("result.model.bytes2[", i, "] = ", m.bytes2(i),
                                "; expected in [0, bytes4 = ", m.bytes4(i), "]"));
      }
    }
    const bool binary = BinaryWidths(job.rec.spec);
    if (!binary) RETURN_IF_ERROR(ValidateWidthBytes(job.rec.spec, m));
    if (job.has_model &&
        (n != job.model.num_players() || m.bytes2().size() != job.model.bytes2().size() ||
         !std::equal(m.bytes2().begin(), m.bytes2().end(), job.model.bytes2().begin()) ||
         !std::equal(m.bytes4().begin(), m.bytes4().end(), job.model.bytes4().begin()) ||
         (!binary && !std::equal(m.width_bytes().begin(), m.width_bytes().end(),
                                 job.model.width_bytes().begin(),
                                 job.model.width_bytes().end())))) {
      return bad("result.model disagrees with the model info of earlier results of this job");
    }
    const int players = JobGamePlayers(job.rec.spec, n);
    if (r.losses_size() != players + 1) {
      return bad(absl::StrCat("result.losses has ", r.losses_size(), " entries; a walk over ",
                              players, binary ? " players" : " ladder steps", " has ",
                              players + 1));
    }
    absl::StatusOr<solver::Permutation> expected = JobWalkPermutation(job.rec.spec, n, k);
    if (!expected.ok()) return expected.status();
    if (!std::equal(expected->begin(), expected->end(), r.permutation().begin(),
                    r.permutation().end())) {
      return bad(absl::StrCat("result.permutation is not permutation ", k, " of seed ",
                              job.rec.spec.seed()));
    }
  } else if (k == job.walks() && static_cast<int64_t>(job.units.size()) > k) {
    if (r.losses_size() != static_cast<int>(job.measure_coalitions.size())) {
      return bad(absl::StrCat("result.losses has ", r.losses_size(), " entries; expected ",
                              job.measure_coalitions.size()));
    }
  } else {
    return bad(absl::StrCat("result.unit_index = ", k, "; job ", job.rec.id, " has ",
                            job.units.size(), " units"));
  }
  for (int i = 0; i < r.losses_size(); ++i) {
    if (!std::isfinite(r.losses(i))) return bad(absl::StrCat("result.losses[", i, "] is not finite"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ReportOutcome> Coordinator::ReportResult(const std::string& lease_id,
                                                            const v1::WorkResult& r) {
  if (lease_id.empty()) return absl::InvalidArgumentError("lease_id is required");
  if (r.job_id().empty()) return absl::InvalidArgumentError("result.job_id is required");
  absl::MutexLock lock(&mu_);
  ExpireLeasesLocked();
  SeeWorker(r.worker_id());
  Job* job = FindJob(r.job_id());  // jobs are never removed: the pointer stays valid
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("result.job_id '", r.job_id(), "' is unknown"));
  const int64_t k = r.unit_index();
  if (k < 0 || k >= static_cast<int64_t>(job->units.size())) {
    return absl::InvalidArgumentError(absl::StrCat("result.unit_index = ", k, "; job ",
                                                   job->rec.id, " has ", job->units.size(),
                                                   " units"));
  }
  // Another result for this unit is being committed: its outcome decides this one's. (Units
  // are re-indexed after the wait: the vector may grow meanwhile.)
  while (job->units[static_cast<size_t>(k)].state == Unit::State::kCommitting) {
    committed_.Wait(&mu_);
  }
  const Unit& u = job->units[static_cast<size_t>(k)];
  if (u.state == Unit::State::kDone) {
    CountReport(v1::REPORT_OUTCOME_DUPLICATE);
    return v1::REPORT_OUTCOME_DUPLICATE;
  }
  if (job->terminal() || u.state != Unit::State::kLeased || u.lease_id != lease_id) {
    CountReport(v1::REPORT_OUTCOME_STALE);
    return v1::REPORT_OUTCOME_STALE;
  }
  RETURN_IF_ERROR(ValidateResult(*job, r));
  // Durable first: queue the result for the next group commit and wait until it is settled,
  // leading the commit when none is running.
  job->units[static_cast<size_t>(k)].state = Unit::State::kCommitting;
  PendingCommit c;
  c.job = job;
  c.unit = k;
  c.lease_id = lease_id;
  c.result = &r;
  commit_queue_.push_back(&c);
  while (!c.done) {
    if (!committing_) {
      CommitQueued();
    } else {
      committed_.Wait(&mu_);
    }
  }
  if (!c.status.ok()) return c.status;
  return c.outcome;
}

void Coordinator::CommitQueued() {
  committing_ = true;
  std::vector<PendingCommit*> batch;
  batch.swap(commit_queue_);
  std::vector<ResultRecord> records(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    records[i].job_id = batch[i]->job->rec.id;
    records[i].unit_index = batch[i]->unit;
  }
  mu_.Unlock();
  // Outside the mutex: leases, heartbeats and other reports proceed during the fsync. The
  // results are not touched by anyone else (their reporters are waiting).
  for (size_t i = 0; i < batch.size(); ++i) records[i].payload = batch[i]->result->SerializeAsString();
  const absl::Status stored = store_->PutResults(records);
  if (stored.ok() && options_.metrics != nullptr) options_.metrics->store_commits.Increment();
  mu_.Lock();
  for (PendingCommit* c : batch) FinishCommit(*c, stored);
  UpdateGauges();
  committing_ = false;
  committed_.SignalAll();
}

void Coordinator::FinishCommit(PendingCommit& c, const absl::Status& stored) {
  Job& job = *c.job;
  Unit& u = job.units[static_cast<size_t>(c.unit)];
  c.done = true;
  if (!stored.ok()) {
    c.status = stored;
    // Not durable, so not done: back under its lease (the worker may retry), or pending when
    // the lease expired meanwhile.
    if (u.state == Unit::State::kCommitting) {
      if (leases_.contains(c.lease_id)) {
        u.state = Unit::State::kLeased;
      } else {
        u.state = Unit::State::kPending;
        u.lease_id.clear();
        job.pending.insert(c.unit);
        Touch(job);
      }
    }
    return;
  }
  if (auto it = leases_.find(c.lease_id); it != leases_.end()) {
    auto& units = it->second->units;
    units.erase(std::remove(units.begin(), units.end(), c.unit), units.end());
    if (units.empty()) leases_.erase(it);
  }
  // The result is durable, so it counts (a restart would count it too), also when the
  // stopping rule or a cancellation dropped the unit while it was being committed.
  if (job.terminal()) {
    u.state = Unit::State::kDone;
    u.lease_id.clear();
    job.evaluations_done += c.result->losses_size();
    ++job.units_done;
    Touch(job);
  } else {
    ApplyResult(job, *c.result);
  }
  c.outcome = v1::REPORT_OUTCOME_ACCEPTED;
  CountReport(v1::REPORT_OUTCOME_ACCEPTED);
  if (options_.metrics != nullptr) {
    options_.metrics->evaluations.Increment(c.result->losses_size());
    options_.metrics->evaluation_seconds.Observe(c.result->evaluation_seconds());
  }
}

void Coordinator::CountReport(v1::ReportOutcome outcome) {
  CoordinatorMetrics* m = options_.metrics;
  if (m == nullptr) return;
  switch (outcome) {
    case v1::REPORT_OUTCOME_ACCEPTED: m->reports_accepted.Increment(); break;
    case v1::REPORT_OUTCOME_DUPLICATE: m->reports_duplicate.Increment(); break;
    default: m->reports_stale.Increment(); break;
  }
}

void Coordinator::ApplyResult(Job& job, const v1::WorkResult& r) {
  const int64_t k = r.unit_index();
  Unit& u = job.units[static_cast<size_t>(k)];
  u.state = Unit::State::kDone;
  u.lease_id.clear();
  job.pending.erase(k);
  u.losses.assign(r.losses().begin(), r.losses().end());
  job.evaluations_done += r.losses_size();
  ++job.units_done;
  if (k < job.walks()) {
    if (!job.has_model) {
      job.has_model = true;
      job.model = r.model();
    }
    const solver::Permutation perm(r.permutation().begin(), r.permutation().end());
    absl::StatusOr<std::vector<double>> m = solver::MarginalsFromWalk(perm, u.losses);
    IMPQ_CHECK(m.ok()) << m.status().message();  // validated above
    u.marginals = *std::move(m);
    AdvanceEstimation(job);
  } else {
    v1::JobResult& res = job.rec.result;
    res.set_evaluation_loss_all4(u.losses[0]);
    res.set_evaluation_loss_all2(u.losses[1]);
    for (int b = 0; b < res.allocations_size(); ++b) {
      res.mutable_allocations(b)->set_measured_loss(u.losses[static_cast<size_t>(2 + b)]);
      res.mutable_allocations(b)->set_measured(true);
    }
    Finish(job, v1::JOB_STATE_DONE, "");
  }
  Touch(job);
}

void Coordinator::AdvanceEstimation(Job& job) {
  if (job.rec.state != v1::JOB_STATE_ESTIMATING && job.rec.state != v1::JOB_STATE_QUEUED) return;
  const int64_t M = job.walks();
  while (job.prefix_done < M &&
         job.units[static_cast<size_t>(job.prefix_done)].state == Unit::State::kDone) {
    ++job.prefix_done;
  }
  int64_t stop_at = 0;
  std::string reason;
  const v1::JobSpec& spec = job.rec.spec;
  if (spec.se_threshold() > 0) {
    // Check every admissible m of the done prefix, in order: the smallest m meeting the
    // threshold wins whatever order the walks arrived in.
    std::vector<std::vector<double>> prefix;
    for (int64_t m = job.checked_m + 1; m <= job.prefix_done && stop_at == 0; ++m) {
      if (m < MinPermutations(spec) || (spec.antithetic() && m % 2 != 0)) continue;
      prefix.clear();
      for (int64_t k = 0; k < m; ++k) prefix.push_back(job.units[static_cast<size_t>(k)].marginals);
      absl::StatusOr<solver::ShapleyEstimate> est =
          solver::AggregateMarginals(prefix, spec.antithetic());
      if (est.ok() && est->MaxStandardError() < spec.se_threshold()) {
        stop_at = m;
        reason = "standard_error";
      }
    }
  }
  job.checked_m = std::max(job.checked_m, job.prefix_done);
  if (stop_at == 0 && job.prefix_done == M) {
    stop_at = M;
    reason = "max_permutations";
  }
  if (stop_at == 0) return;
  job.walks_used = stop_at;
  job.evaluations_at_stop = job.evaluations_done;
  job.rec.result.set_stop_reason(reason);
  for (int64_t k = stop_at; k < M; ++k) {
    Unit& u = job.units[static_cast<size_t>(k)];
    if (u.state != Unit::State::kDone) u.state = Unit::State::kCancelled;
    job.pending.erase(k);
  }
  job.rec.state = v1::JOB_STATE_SOLVING;
  if (absl::Status st = Persist(job); !st.ok()) IMPQ_LOG(WARNING) << st.message();
  Touch(job);
}

void Coordinator::DropUnitsOf(Job& job) {
  job.pending.clear();
  for (Unit& u : job.units) {
    if (u.state != Unit::State::kDone) u.state = Unit::State::kCancelled;
  }
}

void Coordinator::Finish(Job& job, v1::JobState state, const std::string& error) {
  job.rec.state = state;
  job.rec.error = error;
  job.rec.finished_ms = NowMs();
  job.rec.has_result = state == v1::JOB_STATE_DONE;
  if (job.rec.has_result) job.rec.result.set_job_id(job.rec.id);
  DropUnitsOf(job);
  if (absl::Status st = Persist(job); !st.ok()) IMPQ_LOG(ERROR) << st.message();
  Touch(job);
}

int Coordinator::SolvePending() {
  std::vector<std::pair<std::string, SolveInput>> work;
  {
    absl::MutexLock lock(&mu_);
    for (Job* job : order_) {
      if (job->rec.state != v1::JOB_STATE_SOLVING || job->solving) continue;
      job->solving = true;
      SolveInput in;
      in.spec = job->rec.spec;
      in.model = job->model;
      for (int64_t k = 0; k < job->walks_used; ++k) {
        in.marginals.push_back(job->units[static_cast<size_t>(k)].marginals);
      }
      const auto& l0 = job->units[0].losses;
      in.loss_all4 = l0.front();
      in.loss_all2 = l0.back();
      in.stop_reason = job->rec.result.stop_reason();
      work.emplace_back(job->rec.id, std::move(in));
    }
  }
  for (auto& [id, in] : work) {
    absl::StatusOr<v1::JobResult> result = Solve(in);  // outside the mutex
    absl::MutexLock lock(&mu_);
    Job* job = FindJob(id);
    job->solving = false;
    if (job->rec.state != v1::JOB_STATE_SOLVING) continue;  // cancelled meanwhile
    if (!result.ok()) {
      Finish(*job, v1::JOB_STATE_FAILED, absl::StrCat("solver: ", result.status().message()));
      UpdateGauges();
      continue;
    }
    job->rec.result = *std::move(result);
    if (!job->measures()) {
      Finish(*job, v1::JOB_STATE_DONE, "");
      UpdateGauges();
      continue;
    }
    absl::StatusOr<std::vector<std::string>> coalitions =
        MeasureCoalitions(job->rec.spec, job->rec.result);
    if (!coalitions.ok()) {
      Finish(*job, v1::JOB_STATE_FAILED, absl::StrCat("solver: ", coalitions.status().message()));
      UpdateGauges();
      continue;
    }
    job->measure_coalitions = *std::move(coalitions);
    job->units.emplace_back();
    job->pending.insert(job->walks());
    job->rec.state = v1::JOB_STATE_MEASURING;
    if (absl::Status st = Persist(*job); !st.ok()) IMPQ_LOG(WARNING) << st.message();
    Touch(*job);
    if (job->has_stored_measure) {
      job->has_stored_measure = false;
      if (ValidateResult(*job, job->stored_measure).ok()) ApplyResult(*job, job->stored_measure);
    }
    UpdateGauges();
  }
  return static_cast<int>(work.size());
}

int Coordinator::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  const int n = ExpireLeasesLocked();
  if (n > 0) UpdateGauges();
  return n;
}

int Coordinator::ExpireLeasesLocked() {
  const absl::Time now = clock_->Now();
  int expired = 0;
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second->deadline >= now) {
      ++it;
      continue;
    }
    if (Job* job = FindJob(it->second->job_id); job != nullptr && !job->terminal()) {
      for (int64_t k : it->second->units) {
        Unit& u = job->units[static_cast<size_t>(k)];
        if (u.state == Unit::State::kLeased && u.lease_id == it->first) {
          u.state = Unit::State::kPending;
          u.lease_id.clear();
          job->pending.insert(k);
        }
      }
      Touch(*job);
    }
    expired_leases_.insert(it->first);
    it = leases_.erase(it);
    ++expired;
    if (options_.metrics != nullptr) options_.metrics->leases_expired.Increment();
  }
  return expired;
}

int64_t Coordinator::QueueDepth() {
  absl::MutexLock lock(&mu_);
  int64_t depth = 0;
  for (const Job* j : order_) depth += static_cast<int64_t>(j->pending.size());
  return depth;
}

void Coordinator::UpdateGauges() {
  CoordinatorMetrics* m = options_.metrics;
  if (m == nullptr) return;
  std::map<int, int64_t> by_state;
  int64_t depth = 0;
  for (const Job* j : order_) {
    ++by_state[j->rec.state];
    depth += static_cast<int64_t>(j->pending.size());
  }
  for (int s = v1::JOB_STATE_QUEUED; s <= v1::JOB_STATE_CANCELLED; ++s) {
    m->jobs_in_state[static_cast<size_t>(s)]->Set(static_cast<double>(by_state[s]));
  }
  m->queue_depth.Set(static_cast<double>(depth));
  const absl::Time cutoff = clock_->Now() - 2 * options_.lease_duration;
  int64_t workers = 0;
  for (const auto& [id, seen] : workers_seen_) workers += seen >= cutoff ? 1 : 0;
  m->workers_connected.Set(static_cast<double>(workers));
}

absl::Status Coordinator::Restore(StoreContents contents) {
  std::map<std::string, std::vector<v1::WorkResult>> results;
  for (auto& r : contents.results) results[r.job_id].push_back(std::move(r.result));
  for (StoredJob& rec : contents.jobs) {
    auto job = std::make_unique<Job>();
    job->rec = std::move(rec);
    next_seq_ = std::max(next_seq_, job->rec.seq + 1);
    BuildUnits(*job);
    if (job->terminal()) {
      job->pending.clear();
      for (const auto& r : results[job->rec.id]) job->evaluations_done += r.losses_size();
    } else {
      // Re-derive the state from the spec and the accepted results (see coordinator.h).
      if (job->rec.state != v1::JOB_STATE_QUEUED) job->rec.state = v1::JOB_STATE_ESTIMATING;
      for (const v1::WorkResult& r : results[job->rec.id]) {
        if (r.unit_index() == job->walks()) {
          job->has_stored_measure = true;
          job->stored_measure = r;
          continue;
        }
        if (r.unit_index() < 0 || r.unit_index() > job->walks() ||
            job->units[static_cast<size_t>(r.unit_index())].state == Unit::State::kDone) {
          continue;
        }
        if (absl::Status st = ValidateResult(*job, r); !st.ok()) {
          IMPQ_LOG(WARNING) << "store: job " << job->rec.id << " unit " << r.unit_index()
                            << ": dropping a stored result: " << st.message();
          continue;
        }
        ApplyResult(*job, r);
      }
    }
    Job* raw = job.get();
    jobs_[raw->rec.id] = std::move(job);
    order_.push_back(raw);
  }
  return absl::OkStatus();
}

void Coordinator::StartBackground(absl::Duration period) {
  background_ = std::thread([this, period] {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&stop_background_), period);
        if (stop_background_) return;
      }
      ExpireLeases();
      SolvePending();
    }
  });
}

void Coordinator::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    stop_background_ = true;
    changed_.SignalAll();  // wakes WaitForChange (watch streams end)
  }
  if (background_.joinable()) background_.join();
}

}  // namespace impq::coordinator
