#include "coordinator/coordinator.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "common/logging.h"
#include "common/status.h"
#include "coordinator/unit_game.h"
#include "job/facts_proto.h"
#include "job/spec_options.h"

namespace impq::coordinator {

struct Coordinator::Unit {
  // kCommitting: a validated result under the unit's lease is being written to the store
  // (group commit); the unit is neither re-issued nor accepted again meanwhile.
  enum class State { kPending, kLeased, kCommitting, kDone, kCancelled };
  State state = State::kPending;
  std::string lease_id;
  int attempt = 0;
  int failures = 0;
  UnitRequest request;
  std::string digest;
  v1::WorkResult result;  // kDone
};

struct Coordinator::Job {
  StoredJob rec;
  std::vector<Unit> units;           // in the order the pipeline asked for them
  std::set<int64_t> pending;         // unit indexes waiting for a lease, ascending
  std::map<int64_t, v1::WorkResult> stored;  // restored results, answered on replay
  bool has_facts = false;            // the PREPARE unit's answer, for checking later ones
  std::string facts_digest;          // job::FactsDigest of `facts` (every answer must match)
  v1::GameFacts facts;
  int64_t evaluations_done = 0;
  int64_t units_done = 0;
  int64_t version = 1;
  std::string phase;
  int64_t phase_done = 0, phase_total = 0;
  job::JobProgress progress;      // the driver's latest
  bool driving = false;              // a driver thread runs its pipeline
  // Wakes the job's driver (RunUnits) when a unit is done or the job ends: one per job, so a
  // report does not wake every running job's driver.
  absl::CondVar driver_wake;
  std::shared_ptr<const job::JobResult> pipeline_result;
  // Calls holding this Job* across a release of the mutex (a report waiting for its commit):
  // PruneFinishedJobs neither releases nor removes a pinned job.
  int pins = 0;
  // Finished and its units dropped from memory (PruneFinishedJobs); units_released of them.
  bool released = false;
  int64_t units_released = 0;
  // A cancelled or failed job whose unit results are deleted from the store (or had none).
  bool results_purged = false;

  bool terminal() const {
    return rec.state == v1::JOB_STATE_DONE || rec.state == v1::JOB_STATE_FAILED ||
           rec.state == v1::JOB_STATE_CANCELLED;
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
  v1::WorkResult result;  // with unit_digest set
  bool done = false;
  absl::Status status;    // the store's error, if any
  v1::ReportOutcome outcome = v1::REPORT_OUTCOME_UNSPECIFIED;
};

namespace {

// What a unit asks, as a string: equal digests ⇔ equal units (a replay reuses a stored result
// only for the very unit it answered).
std::string Digest(const UnitRequest& u) {
  return absl::StrCat(static_cast<int>(u.kind), ":", static_cast<int>(u.dataset), ":",
                      u.sequence_begin, "-", u.sequence_end, ":", absl::StrJoin(u.coalitions, ","),
                      ":", absl::StrJoin(u.assignments, ","));
}

// Unguessable lease ids: 128 bits from the OS's random source.
std::string NewLeaseId() {
  std::random_device rd;
  uint64_t a = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  uint64_t b = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return absl::StrFormat("L%016x%016x", a, b);
}

// Coalitions (or assignments) a unit evaluates; a coalition split over several SEQUENCES units
// counts once, on the unit with the set's first sequence.
int64_t Evaluations(const UnitRequest& u) {
  if (u.kind == v1::UNIT_KIND_SEQUENCES && u.sequence_begin != 0) return 0;
  return static_cast<int64_t>(u.coalitions.size() + u.assignments.size());
}

bool AllFinite(const google::protobuf::RepeatedField<double>& v) {
  for (double x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// The phase's job state (coordinator.h).
v1::JobState StateOfPhase(const std::string& phase) {
  if (phase == "solve") return v1::JOB_STATE_SOLVING;
  if (phase == "select" || phase == "measure") return v1::JOB_STATE_MEASURING;
  return v1::JOB_STATE_ESTIMATING;
}

constexpr size_t kMaxExpiredLeases = 4096;  // remembered to answer EXPIRED, oldest evicted
constexpr size_t kMaxWorkersSeen = 4096;
// Items (coalition and assignment strings) in one lease beyond its first unit (each unit is at
// most kMaxUnitItemBytes): with the spec, a lease stays well under gRPC's 4 MiB.
constexpr int64_t kMaxLeaseBytes = 2 * kMaxUnitItemBytes;

}  // namespace

Coordinator::Coordinator(const CoordinatorOptions& options)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : RealClock::Default()) {}

Coordinator::~Coordinator() { Shutdown(); }

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Open(const CoordinatorOptions& options) {
  if (options.store_path.empty()) return absl::InvalidArgumentError("coordinator: store_path is required");
  if (options.lease_duration <= absl::ZeroDuration() || options.max_units_per_lease < 1 ||
      options.max_running_jobs < 1 || options.max_unit_failures < 1 || options.batch_split < 1) {
    return absl::InvalidArgumentError(
        "coordinator: lease_duration, max_units_per_lease, max_running_jobs, "
        "max_unit_failures and batch_split must be positive");
  }
  std::unique_ptr<Coordinator> c(new Coordinator(options));
  ASSIGN_OR_RETURN(std::unique_ptr<Store> store, Store::Open(options.store_path, {.allow_new = options.new_store}));
  ASSIGN_OR_RETURN(StoreContents contents, store->Load());
  c->store_ = std::move(store);
  c->incarnation_ = contents.incarnation;
  {
    absl::MutexLock lock(&c->mu_);
    RETURN_IF_ERROR(c->Restore(std::move(contents)));
    c->PruneFinishedJobsLocked();
    c->StartDriversLocked();
  }
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
  if (auto it = observers_.find(job.rec.id); it != observers_.end()) {
    const v1::JobStatus status = StatusOf(job);  // once for all of the job's observers
    for (const auto& [handle, observer] : it->second) observer->OnJobChanged(status);
  }
}

absl::Status Coordinator::UnknownJob(const std::string& id) const {
  // Ids are "job-<seq>" and seqs are never reused: a seq below next_seq_ that is not held
  // was handed out and removed, which only the retention of finished jobs does. (A failed
  // or duplicate submission also takes a seq, but its id never reached a client.)
  int64_t seq = 0;
  if (absl::StartsWith(id, "job-") && absl::SimpleAtoi(id.substr(4), &seq) && seq > 0 &&
      seq < next_seq_) {
    return absl::NotFoundError(absl::StrCat(
        "job_id '", id, "' was removed by the retention of finished jobs (the coordinator keeps ",
        "the newest --retain_finished_jobs finished jobs, for --retain_finished_hours)"));
  }
  return absl::NotFoundError(absl::StrCat("job_id '", id, "' is unknown"));
}

absl::Status Coordinator::Persist(Job& job) {
  job.rec.evaluations = job.evaluations_done;
  return store_->PutJob(job.rec);
}

v1::JobStatus Coordinator::StatusOf(const Job& job) const {
  v1::JobStatus s;
  s.set_job_id(job.rec.id);
  s.set_state(job.rec.state);
  s.set_name(job.rec.spec.name());
  s.set_evaluations_done(job.evaluations_done);
  int64_t pending_evals = 0;
  for (const Unit& u : job.units) {
    if (u.state != Unit::State::kDone && u.state != Unit::State::kCancelled) {
      pending_evals += Evaluations(u.request);
    }
  }
  s.set_evaluations_total(job.evaluations_done + pending_evals);
  s.set_units_done(job.units_done);
  s.set_units_total(static_cast<int64_t>(job.units.size()) + job.units_released);
  s.set_submitted_ms(job.rec.submitted_ms);
  s.set_started_ms(job.rec.started_ms);
  s.set_finished_ms(job.rec.finished_ms);
  s.set_error(job.rec.error);
  s.set_version(job.version);
  s.set_phase(job.phase);
  s.set_phase_done(job.phase_done);
  s.set_phase_total(job.phase_total);
  s.set_phase_seconds(job.progress.phase_seconds);
  s.set_phase_eta_seconds(job.progress.eta_seconds);
  s.set_elapsed_seconds(job.progress.elapsed_seconds);
  s.set_job_eta_seconds(job.progress.job_eta_seconds);
  return s;
}

absl::StatusOr<v1::JobStatus> Coordinator::SubmitJob(const v1::JobSpec& spec) {
  ASSIGN_OR_RETURN(v1::JobSpec normalized, NormalizeJobSpec(spec, options_.limits));
  auto job = std::make_unique<Job>();
  {
    absl::MutexLock lock(&mu_);
    if (!accepting_) return absl::UnavailableError("coordinator is shutting down");
    // Idempotent submission: a retried request (same request_id) gets the first job.
    if (!normalized.request_id().empty()) {
      if (auto it = request_ids_.find(normalized.request_id()); it != request_ids_.end()) {
        return StatusOf(*FindJob(it->second));
      }
      // The job it named is gone (retention): running it again is not what a retry means.
      if (auto r = removed_requests_.find(normalized.request_id()); r != removed_requests_.end()) {
        return absl::AlreadyExistsError(absl::StrCat(
            "spec.request_id '", absl::CHexEscape(normalized.request_id()), "' was ",
            r->second.job_id, ", removed by retention at ",
            absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMillis(r->second.removed_ms),
                             absl::UTCTimeZone()),
            "; its result is gone: submit with a new request_id to run the job again"));
      }
    }
    if (static_cast<int64_t>(jobs_.size()) >= options_.max_jobs) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "coordinator holds ", jobs_.size(), " jobs (max_jobs); retry once jobs are removed"));
    }
    job->rec.seq = next_seq_++;  // a failed write below leaves a gap, nothing else
  }
  job->rec.id = absl::StrFormat("job-%06d", job->rec.seq);
  job->rec.spec = std::move(normalized);
  job->rec.state = v1::JOB_STATE_QUEUED;
  job->rec.submitted_ms = NowMs();
  // Accepted only once durable. Written outside the mutex (the store serializes itself).
  RETURN_IF_ERROR(store_->PutJob(job->rec));
  absl::MutexLock lock(&mu_);
  Job* raw = job.get();
  if (!raw->rec.spec.request_id().empty()) {
    auto [it, fresh] = request_ids_.emplace(raw->rec.spec.request_id(), raw->rec.id);
    if (!fresh) {
      // A concurrent retry of the same request won the race: answer with its job (this
      // record stays in the store as a cancelled duplicate).
      raw->rec.state = v1::JOB_STATE_CANCELLED;
      raw->rec.error = absl::StrCat("duplicate of ", it->second, " (same request_id)");
      (void)store_->PutJob(raw->rec);
      return StatusOf(*FindJob(it->second));
    }
  }
  jobs_[raw->rec.id] = std::move(job);
  order_.insert(std::upper_bound(order_.begin(), order_.end(), raw,
                                 [](const Job* a, const Job* b) { return a->rec.seq < b->rec.seq; }),
                raw);
  if (options_.metrics != nullptr) options_.metrics->jobs_submitted.Increment();
  StartDriversLocked();
  UpdateGauges();
  changed_.SignalAll();
  return StatusOf(*raw);
}

absl::StatusOr<JobView> Coordinator::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return UnknownJob(job_id);
  JobView v;
  v.status = StatusOf(*job);
  v.spec = job->rec.spec;
  v.has_result = job->rec.has_result;
  if (v.has_result) v.result = job->rec.result;
  return v;
}

std::shared_ptr<const job::JobResult> Coordinator::PipelineResult(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  return job == nullptr ? nullptr : job->pipeline_result;
}

absl::StatusOr<v1::JobStatus> Coordinator::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return UnknownJob(job_id);
  if (!job->terminal()) Finish(*job, v1::JOB_STATE_CANCELLED, "");
  UpdateGauges();
  return StatusOf(*job);
}

absl::StatusOr<JobListPage> Coordinator::ListJobs(const JobListQuery& query) {
  if (query.page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size = ", query.page_size, "; expected >= 0 (0 = ", kDefaultPageSize,
                     ", at most ", kMaxPageSize, ")"));
  }
  const int state = static_cast<int>(query.state);
  if (!v1::JobState_IsValid(state)) {
    return absl::InvalidArgumentError(absl::StrCat("state = ", state, "; not a JobState"));
  }
  PageCursor cursor;
  cursor.state = state;
  if (!query.page_token.empty()) {
    ASSIGN_OR_RETURN(cursor, DecodePageToken(query.page_token, state));
  }
  const size_t page_size = static_cast<size_t>(
      query.page_size == 0 ? kDefaultPageSize : std::min(query.page_size, kMaxPageSize));
  absl::MutexLock lock(&mu_);
  JobListPage page;
  size_t bytes = 0;
  // order_ is sorted by seq: the page starts after the cursor's seq, wherever jobs were added
  // or removed since.
  auto it = std::upper_bound(order_.begin(), order_.end(), cursor.after_seq,
                             [](int64_t seq, const Job* j) { return seq < j->rec.seq; });
  for (; it != order_.end(); ++it) {
    const Job& job = **it;
    if (state != v1::JOB_STATE_UNSPECIFIED && job.rec.state != state) continue;
    if (page.jobs.size() == page_size) break;
    v1::JobStatus status = StatusOf(job);
    bytes += status.ByteSizeLong() + 8;  // + the repeated field's tag and length
    if (bytes > kMaxPageBytes && !page.jobs.empty()) break;
    page.jobs.push_back(std::move(status));
  }
  if (it != order_.end()) {
    // The loop stopped at a job it did not list, after listing at least one: every job before
    // `it` was listed or filtered out.
    cursor.after_seq = (*std::prev(it))->rec.seq;
    page.next_page_token = EncodePageToken(cursor);
  }
  return page;
}

absl::StatusOr<int64_t> Coordinator::AddJobObserver(const std::string& job_id,
                                                    JobObserver* observer) {
  absl::MutexLock lock(&mu_);
  if (!accepting_) return absl::UnavailableError("coordinator is shutting down");
  Job* job = FindJob(job_id);
  if (job == nullptr) return UnknownJob(job_id);
  const int64_t handle = next_observer_++;
  observers_[job_id][handle] = observer;
  observer_jobs_[handle] = job_id;
  observer->OnJobChanged(StatusOf(*job));
  return handle;
}

void Coordinator::RemoveJobObserver(int64_t handle) {
  absl::MutexLock lock(&mu_);
  auto it = observer_jobs_.find(handle);
  if (it == observer_jobs_.end()) return;
  if (auto job = observers_.find(it->second); job != observers_.end()) {
    job->second.erase(handle);
    if (job->second.empty()) observers_.erase(job);
  }
  observer_jobs_.erase(it);
}

absl::StatusOr<v1::JobStatus> Coordinator::WaitForChange(const std::string& job_id,
                                                         int64_t known_version,
                                                         absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    // Looked up again after every wait: retention may have removed the job meanwhile.
    Job* job = FindJob(job_id);
    if (job == nullptr) return UnknownJob(job_id);
    if (job->version != known_version || !accepting_ || absl::Now() >= deadline) {
      return StatusOf(*job);
    }
    changed_.WaitWithDeadline(&mu_, deadline);
  }
}

bool Coordinator::shutting_down() {
  absl::MutexLock lock(&mu_);
  return !accepting_;
}

void Coordinator::SeeWorker(const std::string& worker_id) {
  if (worker_id.empty()) return;
  workers_seen_[worker_id] = clock_->Now();
  if (workers_seen_.size() > kMaxWorkersSeen) {
    // Bounded: forget the worker seen longest ago.
    auto oldest = workers_seen_.begin();
    for (auto it = workers_seen_.begin(); it != workers_seen_.end(); ++it) {
      if (it->second < oldest->second) oldest = it;
    }
    workers_seen_.erase(oldest);
  }
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
  // Round robin over the jobs with pending units, so that one job never starves another.
  const size_t jobs = order_.size();
  for (size_t step = 0; step < jobs; ++step) {
    Job* job = order_[(next_job_rr_ + step) % jobs];
    if (job->terminal() || job->pending.empty()) continue;
    next_job_rr_ = (next_job_rr_ + step + 1) % jobs;
    auto lease = std::make_unique<LeaseRec>();
    lease->id = NewLeaseId();
    lease->worker_id = worker_id;
    lease->job_id = job->rec.id;
    lease->deadline = clock_->Now() + options_.lease_duration;
    // Units up to `capacity`, and up to kMaxLeaseBytes of items (at least one unit): a lease
    // always fits in one gRPC message.
    int64_t lease_bytes = 0;
    while (!job->pending.empty() && static_cast<int>(lease->units.size()) < capacity) {
      const int64_t k = *job->pending.begin();
      Unit& u = job->units[static_cast<size_t>(k)];
      int64_t unit_bytes = 0;
      for (const std::string& c : u.request.coalitions) unit_bytes += static_cast<int64_t>(c.size());
      for (const std::string& a : u.request.assignments) unit_bytes += static_cast<int64_t>(a.size());
      if (!lease->units.empty() && lease_bytes + unit_bytes > kMaxLeaseBytes) break;
      lease_bytes += unit_bytes;
      job->pending.erase(job->pending.begin());
      u.state = Unit::State::kLeased;
      u.lease_id = lease->id;
      ++u.attempt;
      lease->units.push_back(k);
      v1::WorkUnit w;
      w.set_job_id(job->rec.id);
      w.set_unit_index(k);
      *w.mutable_spec() = job->rec.spec;
      w.set_attempt(u.attempt);
      w.set_kind(u.request.kind);
      w.set_dataset(u.request.dataset);
      for (const std::string& c : u.request.coalitions) w.add_coalitions(c);
      for (const std::string& a : u.request.assignments) w.add_assignments(a);
      w.set_sequence_begin(u.request.sequence_begin);
      w.set_sequence_end(u.request.sequence_end);
      grant.units.push_back(std::move(w));
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
  HeartbeatReply reply;
  auto it = leases_.find(lease_id);
  if (it == leases_.end()) {
    reply.state = expired_leases_.count(lease_id) != 0 ? v1::LEASE_STATE_EXPIRED
                                                       : v1::LEASE_STATE_UNKNOWN;
    return reply;
  }
  LeaseRec& lease = *it->second;
  // A lease is its holder's: another worker's heartbeat does not keep it alive.
  if (lease.worker_id != worker_id) {
    return absl::PermissionDeniedError("lease_id is held by another worker");
  }
  SeeWorker(worker_id);
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
  auto bad = [](const std::string& m) { return absl::InvalidArgumentError(m); };
  const Unit& u = job.units[static_cast<size_t>(r.unit_index())];
  const UnitRequest& q = u.request;
  const v1::GameFacts& f = r.facts();
  // Every answer is about the game the accepted PREPARE described (facts_proto.h).
  if (q.kind == v1::UNIT_KIND_PREPARE) {
    const std::string digest = job::FactsDigest(job::FactsFromProto(f));
    if (r.facts_digest() != digest) {
      return bad(absl::StrCat("result.facts_digest '", r.facts_digest().substr(0, 64),
                              "' is not the digest of result.facts (", digest, ")"));
    }
  } else if (job.has_facts && r.facts_digest() != job.facts_digest) {
    return bad(absl::StrCat("result.facts_digest '", r.facts_digest().substr(0, 64),
                            "' differs from the job's prepared game (", job.facts_digest, ", ",
                            job.facts.player_names_size(), " players): this worker evaluated other files than the PREPARE unit's "
                            "worker (another model or text under the same path?)"));
  }
  switch (q.kind) {
    case v1::UNIT_KIND_PREPARE: {
      const int n = f.player_names_size();
      const int m = std::max(2, job.rec.spec.widths_size());
      // Bounded by the job: at most 8 players per layer of at most 4096 layers.
      if (n < 1 || n > 8 * 4096) {
        return bad(absl::StrCat("result.facts.player_names has ", n, " entries; expected 1..",
                                8 * 4096));
      }
      if (f.bytes2_size() != n || f.bytes4_size() != n || f.width_bytes_size() != n * m ||
          f.lim_size() != n || f.zscore_size() != n || f.actnorm_size() != n) {
        return bad(absl::StrCat("result.facts: per-player fields disagree with ", n, " players"));
      }
      for (int i = 0; i < n; ++i) {
        if (f.bytes2(i) < 0 || f.bytes2(i) > f.bytes4(i)) {
          return bad(absl::StrCat("result.facts.bytes2[", i, "] = ", f.bytes2(i),
                                  "; expected in [0, bytes4 = ", f.bytes4(i), "]"));
        }
      }
      if (f.select_sequence_tokens_size() != f.select_sequences() || f.select_sequences() < 1 ||
          f.calib_sequences() < 1 || f.heldout_sequences() < 1) {
        return bad("result.facts: set sizes are inconsistent");
      }
      if (!AllFinite(f.lim()) || !AllFinite(f.zscore()) || !AllFinite(f.actnorm()) ||
          !std::isfinite(f.heldout_nll_fp32())) {
        return bad("result.facts: a score or the fp32 held-out loss is not finite");
      }
      return absl::OkStatus();
    }
    case v1::UNIT_KIND_BATCH:
    case v1::UNIT_KIND_ASSIGNMENTS: {
      const size_t want = q.coalitions.size() + q.assignments.size();
      if (static_cast<size_t>(r.losses_size()) != want) {
        return bad(absl::StrCat("result.losses has ", r.losses_size(), " entries; expected ", want));
      }
      for (int i = 0; i < r.losses_size(); ++i) {
        if (!std::isfinite(r.losses(i))) return bad(absl::StrCat("result.losses[", i, "] is not finite"));
      }
      return absl::OkStatus();
    }
    case v1::UNIT_KIND_SEQUENCES: {
      if (static_cast<size_t>(r.sequence_sums_size()) != q.coalitions.size()) {
        return bad(absl::StrCat("result.sequence_sums has ", r.sequence_sums_size(),
                                " entries; expected ", q.coalitions.size()));
      }
      for (int i = 0; i < r.sequence_sums_size(); ++i) {
        const auto& sums = r.sequence_sums(i).sums();
        if (sums.size() != q.sequence_end - q.sequence_begin) {
          return bad(absl::StrCat("result.sequence_sums[", i, "] has ", sums.size(),
                                  " sums; the unit covers sequences [", q.sequence_begin, ", ",
                                  q.sequence_end, ")"));
        }
        if (!AllFinite(sums)) return bad(absl::StrCat("result.sequence_sums[", i, "] is not finite"));
      }
      return absl::OkStatus();
    }
    default:
      return bad("result for a unit of unknown kind");
  }
}

absl::StatusOr<v1::ReportOutcome> Coordinator::ReportResult(const std::string& lease_id,
                                                            const v1::WorkResult& r) {
  if (lease_id.empty()) return absl::InvalidArgumentError("lease_id is required");
  if (r.job_id().empty()) return absl::InvalidArgumentError("result.job_id is required");
  absl::MutexLock lock(&mu_);
  ExpireLeasesLocked();
  Job* job = FindJob(r.job_id());
  if (job == nullptr) return absl::NotFoundError("result.job_id is unknown");
  if (job->released) {  // finished, its units gone: nothing to report to
    CountReport(v1::REPORT_OUTCOME_STALE);
    return v1::REPORT_OUTCOME_STALE;
  }
  // The waits below release mu_: the job stays (neither released nor removed) until we return.
  ++job->pins;
  absl::Cleanup unpin = [job] { --job->pins; };
  const int64_t k = r.unit_index();
  if (k < 0 || k >= static_cast<int64_t>(job->units.size())) {
    return absl::InvalidArgumentError(absl::StrCat("result.unit_index = ", k, "; job ",
                                                   job->rec.id, " has ", job->units.size(),
                                                   " units"));
  }
  // Only the lease's holder may report under it.
  if (auto it = leases_.find(lease_id); it != leases_.end() && it->second->worker_id != r.worker_id()) {
    return absl::PermissionDeniedError("lease_id is held by another worker");
  }
  SeeWorker(r.worker_id());
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
  if (!r.error().empty()) {
    ApplyFailure(*job, r);
    return v1::REPORT_OUTCOME_ACCEPTED;
  }
  if (absl::Status invalid = ValidateResult(*job, r); !invalid.ok()) {
    // A wrong answer counts as a failure of the unit: a worker that keeps answering wrongly
    // (or a job whose workers disagree) fails the job instead of re-issuing it forever.
    v1::WorkResult failed;
    failed.set_unit_index(k);
    failed.set_worker_id(r.worker_id());
    failed.set_error(absl::StrCat("invalid result: ", invalid.message()));
    ApplyFailure(*job, failed);
    return invalid;
  }
  // Durable first: queue the result for the next group commit and wait until it is settled,
  // leading the commit when none is running.
  job->units[static_cast<size_t>(k)].state = Unit::State::kCommitting;
  PendingCommit c;
  c.job = job;
  c.unit = k;
  c.lease_id = lease_id;
  c.result = r;
  c.result.set_unit_digest(job->units[static_cast<size_t>(k)].digest);
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

void Coordinator::ApplyFailure(Job& job, const v1::WorkResult& r) {
  const int64_t k = r.unit_index();
  Unit& u = job.units[static_cast<size_t>(k)];
  if (auto it = leases_.find(u.lease_id); it != leases_.end()) {
    auto& units = it->second->units;
    units.erase(std::remove(units.begin(), units.end(), k), units.end());
    if (units.empty()) leases_.erase(it);
  }
  u.lease_id.clear();
  ++u.failures;
  // The worker's message, bounded (it reaches clients).
  const std::string error = r.error().substr(0, 2000);
  IMPQ_LOG(WARNING) << "job " << job.rec.id << " unit " << k << " failed on worker "
                    << r.worker_id() << " (" << u.failures << "/" << options_.max_unit_failures
                    << "): " << error;
  if (u.failures >= options_.max_unit_failures) {
    Finish(job, v1::JOB_STATE_FAILED,
           absl::StrCat("unit ", k, " (", v1::UnitKind_Name(u.request.kind), ") failed on ",
                        u.failures, " attempts: ", error));
    UpdateGauges();
    return;
  }
  u.state = Unit::State::kPending;
  job.pending.insert(k);
  Touch(job);
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
  for (size_t i = 0; i < batch.size(); ++i) records[i].payload = batch[i]->result.SerializeAsString();
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
  ApplyResult(job, c.result);
  c.outcome = v1::REPORT_OUTCOME_ACCEPTED;
  CountReport(v1::REPORT_OUTCOME_ACCEPTED);
  if (options_.metrics != nullptr) {
    options_.metrics->evaluations.Increment(
        static_cast<double>(Evaluations(job.units[static_cast<size_t>(c.unit)].request)));
    options_.metrics->evaluation_seconds.Observe(c.result.evaluation_seconds());
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
  u.result = r;
  if (u.request.kind == v1::UNIT_KIND_PREPARE && !job.has_facts) {
    job.has_facts = true;
    job.facts = r.facts();
    job.facts_digest = r.facts_digest();
  }
  job.evaluations_done += Evaluations(u.request);
  ++job.units_done;
  job.driver_wake.Signal();
  Touch(job);
}

absl::StatusOr<std::vector<v1::WorkResult>> Coordinator::RunUnits(
    const std::string& job_id, std::vector<UnitRequest> requests) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("job_id '", job_id, "' is unknown"));
  const size_t base = job->units.size();
  for (UnitRequest& q : requests) {
    const int64_t k = static_cast<int64_t>(job->units.size());
    Unit u;
    u.digest = Digest(q);
    u.request = std::move(q);
    job->units.push_back(std::move(u));
    // A replay: the unit answered before the restart is answered from the store.
    if (auto it = job->stored.find(k); it != job->stored.end()) {
      Unit& unit = job->units.back();
      const bool same = it->second.unit_digest() == unit.digest;
      if (same && ValidateResult(*job, it->second).ok()) {
        ApplyResult(*job, it->second);
        job->stored.erase(it);
        continue;
      }
      IMPQ_LOG(WARNING) << "job " << job_id << " unit " << k
                        << ": the stored result answers another unit; evaluating it again";
      job->stored.clear();  // the replay diverged: nothing later can match either
    }
    job->pending.insert(k);
  }
  Touch(*job);
  UpdateGauges();
  auto settled = [&] {
    if (!accepting_ || job->terminal()) return true;
    for (size_t k = base; k < job->units.size() && k < base + requests.size(); ++k) {
      if (job->units[k].state != Unit::State::kDone) return false;
    }
    return true;
  };
  while (!settled()) job->driver_wake.Wait(&mu_);
  if (job->terminal()) {
    return absl::CancelledError(absl::StrCat("job ", job_id, " ended ",
                                             v1::JobState_Name(job->rec.state)));
  }
  bool done = true;
  for (size_t k = base; k < base + requests.size(); ++k) {
    done &= job->units[k].state == Unit::State::kDone;
  }
  if (!done) return absl::UnavailableError("coordinator is shutting down");
  std::vector<v1::WorkResult> out;
  out.reserve(requests.size());
  for (size_t k = base; k < base + requests.size(); ++k) out.push_back(job->units[k].result);
  return out;
}

void Coordinator::SetPhase(const std::string& job_id, const job::JobProgress& p) {
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  if (job == nullptr || job->terminal()) return;
  job->phase = p.phase;
  job->phase_done = p.done;
  job->phase_total = p.total;
  job->progress = p;
  const v1::JobState state = StateOfPhase(p.phase);
  if (state != job->rec.state) {
    job->rec.state = state;
    // Not fatal: the state is re-derived by the replay after a restart.
    if (absl::Status st = Persist(*job); !st.ok()) IMPQ_LOG(WARNING) << st.message();
    UpdateGauges();
  }
  Touch(*job);
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
  job.stored.clear();
  if (absl::Status st = Persist(job); !st.ok()) IMPQ_LOG(ERROR) << st.message();
  job.driver_wake.SignalAll();
  Touch(job);
}

int Coordinator::StartDrivers() {
  absl::MutexLock lock(&mu_);
  return StartDriversLocked();
}

int Coordinator::StartDriversLocked() {
  // Drivers that finished their job: join them (at once: they are returning), all but the
  // calling thread's own.
  std::vector<std::thread> keep;
  for (std::thread& t : finished_drivers_) {
    if (t.get_id() == std::this_thread::get_id()) {
      keep.push_back(std::move(t));
    } else if (t.joinable()) {
      t.join();
    }
  }
  finished_drivers_ = std::move(keep);
  if (!accepting_) return 0;
  int running = 0;
  for (const Job* j : order_) running += j->driving ? 1 : 0;
  int started = 0;
  for (Job* job : order_) {
    if (running >= options_.max_running_jobs) break;
    if (job->terminal() || job->driving) continue;
    job->driving = true;
    ++running;
    ++started;
    if (job->rec.started_ms == 0) job->rec.started_ms = NowMs();
    if (job->rec.state == v1::JOB_STATE_QUEUED) {
      job->rec.state = v1::JOB_STATE_ESTIMATING;
      if (absl::Status st = Persist(*job); !st.ok()) IMPQ_LOG(WARNING) << st.message();
    }
    Touch(*job);
    drivers_[job->rec.id] = std::thread([this, id = job->rec.id] { Drive(id); });
  }
  if (started > 0) UpdateGauges();
  return started;
}

void Coordinator::Drive(std::string job_id) {
  v1::JobSpec spec;
  {
    absl::MutexLock lock(&mu_);
    spec = FindJob(job_id)->rec.spec;
  }
  absl::StatusOr<job::JobResult> result = absl::InternalError("not run");
  absl::StatusOr<job::JobOptions> options = job::JobOptionsFromSpec(spec);
  if (!options.ok()) {
    result = options.status();
  } else {
    options->progress = [this, &job_id](const job::JobProgress& p) {
      SetPhase(job_id, p);
      if (options_.on_progress) options_.on_progress(job_id, p);
    };
    UnitGame game(this, job_id, options->widths, options_.batch_split);
    result = job::RunPipeline(*options, game);
  }
  absl::MutexLock lock(&mu_);
  Job* job = FindJob(job_id);
  job->driving = false;
  if (auto it = drivers_.find(job_id); it != drivers_.end()) {
    finished_drivers_.push_back(std::move(it->second));
    drivers_.erase(it);
  }
  if (job->terminal()) return;  // cancelled (or failed by a unit) meanwhile
  if (!result.ok()) {
    if (!accepting_) return;  // shutting down: resumed (replayed) on the next start
    Finish(*job, v1::JOB_STATE_FAILED, std::string(result.status().message()));
  } else {
    v1::JobResult& res = job->rec.result;
    res = v1::JobResult();
    res.set_document(job::JobResultToJson(*result));
    v1::ModelInfo& m = *res.mutable_model();
    m.set_num_players(static_cast<int>(result->player_names.size()));
    for (const std::string& name : result->player_names) m.add_player_names(name);
    for (int64_t b : result->bytes2) m.add_bytes2(b);
    for (int64_t b : result->bytes4) m.add_bytes4(b);
    for (int64_t b : result->width_bytes) m.add_width_bytes(b);
    m.set_model_config(result->model_config);
    for (double x : result->phi) res.add_phi(x);
    for (double x : result->phi_se) res.add_standard_error(x);
    res.set_permutations_used(result->permutations_done);
    res.set_stop_reason(result->stop_reason);
    res.set_loss_all4(result->calib_loss_all4);
    res.set_loss_all2(result->calib_loss_all2);
    res.set_evaluation_loss_all4(std::log(result->heldout_ppl_all4));
    res.set_evaluation_loss_all2(std::log(result->heldout_ppl_all2));
    for (const job::BudgetResult& b : result->budgets) {
      const job::MeasuredAllocation& c = b.Chosen();
      v1::Allocation* a = res.add_allocations();
      a->set_average_bits(b.average_bits);
      a->set_budget_bytes(b.budget_bytes);
      for (int bits : c.bits) a->add_bits(bits);
      a->set_memory_bytes(c.memory_bytes);
      a->set_objective(c.objective);
      a->set_proven_optimal(c.proven_optimal);
      a->set_measured_loss(c.heldout_nll);
      a->set_measured(true);
    }
    job->pipeline_result = std::make_shared<const job::JobResult>(*std::move(result));
    job->phase = "done";
    Finish(*job, v1::JOB_STATE_DONE, "");
  }
  StartDriversLocked();
  UpdateGauges();
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
    expired_order_.push_back(it->first);
    if (expired_order_.size() > kMaxExpiredLeases) {
      expired_leases_.erase(expired_order_.front());
      expired_order_.erase(expired_order_.begin());
    }
    it = leases_.erase(it);
    ++expired;
    if (options_.metrics != nullptr) options_.metrics->leases_expired.Increment();
  }
  return expired;
}

int Coordinator::PruneFinishedJobs() {
  absl::MutexLock lock(&mu_);
  return PruneFinishedJobsLocked();
}

int Coordinator::PruneFinishedJobsLocked() {
  // A job whose driver is still returning, or that a report holds, is left for the next call.
  auto removable = [](const Job& j) { return j.terminal() && !j.driving && j.pins == 0; };
  // What a finished job no longer needs: its units (and their results) in memory, and, when it
  // cannot be resumed (cancelled or failed), its unit results in the store.
  std::vector<std::string> purge;
  for (Job* j : order_) {
    if (!removable(*j)) continue;
    if (!j->released) {
      j->units_released = static_cast<int64_t>(j->units.size());
      std::vector<Unit>().swap(j->units);
      j->pending.clear();
      j->stored.clear();
      j->released = true;
    }
    if (j->rec.state != v1::JOB_STATE_DONE && !j->results_purged) purge.push_back(j->rec.id);
  }
  if (absl::Status st = store_->DeleteResults(purge); !st.ok()) {
    IMPQ_LOG(WARNING) << "retention: " << st.message() << " (retried later)";
  } else {
    for (const std::string& id : purge) FindJob(id)->results_purged = true;
  }
  // Retention: the finished jobs beyond the policy leave memory and the store.
  std::vector<FinishedJobRef> finished;
  std::map<int64_t, Job*> by_seq;
  for (Job* j : order_) {
    if (!j->terminal()) continue;
    finished.push_back({j->rec.seq, j->rec.finished_ms});
    by_seq[j->rec.seq] = j;
  }
  std::vector<std::string> drop;
  std::set<const Job*> dropped;
  std::vector<RemovedRequest> removed;
  int64_t max_seq = 0;
  const int64_t now_ms = NowMs();
  for (int64_t seq : JobsBeyondRetention(std::move(finished), options_.retention, now_ms)) {
    Job* j = by_seq[seq];
    if (!removable(*j)) continue;
    drop.push_back(j->rec.id);
    dropped.insert(j);
    max_seq = std::max(max_seq, seq);
    // (A duplicate's record shares its request_id with the job the id maps to.)
    if (auto r = request_ids_.find(j->rec.spec.request_id());
        r != request_ids_.end() && r->second == j->rec.id) {
      removed.push_back({r->first, j->rec.id, now_ms});
    }
  }
  if (drop.empty()) return 0;
  if (absl::Status st = store_->DeleteJobs(drop, max_seq, removed,
                                           options_.retention.max_removed_requests);
      !st.ok()) {
    IMPQ_LOG(WARNING) << "retention: " << st.message() << " (retried later)";
    return 0;
  }
  order_.erase(std::remove_if(order_.begin(), order_.end(),
                              [&](const Job* j) { return dropped.contains(j); }),
               order_.end());
  for (RemovedRequest& r : removed) {
    request_ids_.erase(r.request_id);
    RememberRemovedLocked(std::move(r));
  }
  for (const std::string& id : drop) jobs_.erase(id);
  if (!order_.empty()) next_job_rr_ %= order_.size();
  UpdateGauges();
  return static_cast<int>(drop.size());
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

void Coordinator::RememberRemovedLocked(RemovedRequest r) {
  const std::string key = r.request_id;
  if (removed_requests_.insert_or_assign(key, std::move(r)).second) removed_order_.push_back(key);
  while (static_cast<int64_t>(removed_order_.size()) >
         std::max<int64_t>(0, options_.retention.max_removed_requests)) {
    removed_requests_.erase(removed_order_.front());
    removed_order_.pop_front();
  }
}

absl::Status Coordinator::Restore(StoreContents contents) {
  for (RemovedRequest& r : contents.removed_requests) RememberRemovedLocked(std::move(r));
  std::map<std::string, std::vector<v1::WorkResult>> results;
  for (auto& r : contents.results) results[r.job_id].push_back(std::move(r.result));
  next_seq_ = std::max(next_seq_, contents.max_deleted_seq + 1);
  for (StoredJob& rec : contents.jobs) {
    auto job = std::make_unique<Job>();
    job->rec = std::move(rec);
    next_seq_ = std::max(next_seq_, job->rec.seq + 1);
    if (!job->rec.spec.request_id().empty()) {
      request_ids_.emplace(job->rec.spec.request_id(), job->rec.id);
    }
    // A finished job's units are not rebuilt: its count is the one stored with it.
    if (job->terminal()) job->evaluations_done = job->rec.evaluations;
    for (v1::WorkResult& r : results[job->rec.id]) {
      if (!job->terminal()) job->stored.emplace(r.unit_index(), std::move(r));
    }
    if (!job->terminal() && job->rec.state != v1::JOB_STATE_QUEUED) {
      job->rec.state = v1::JOB_STATE_QUEUED;  // the driver replays it from the start
    }
    // Nothing to delete from the store unless a cancelled or failed job still has results.
    job->results_purged = results[job->rec.id].empty();
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
      StartDrivers();
      PruneFinishedJobs();
    }
  });
}

void Coordinator::Shutdown() {
  std::vector<std::thread> drivers;
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
    stop_background_ = true;
    changed_.SignalAll();  // wakes WaitForChange
    for (auto& [job_id, observers] : observers_) {  // ends the watch streams
      for (auto& [handle, observer] : observers) observer->OnShutdown();
    }
    for (auto& [id, job] : jobs_) job->driver_wake.SignalAll();  // and the drivers
    for (auto& [id, t] : drivers_) drivers.push_back(std::move(t));
    drivers_.clear();
    for (std::thread& t : finished_drivers_) drivers.push_back(std::move(t));
    finished_drivers_.clear();
  }
  if (background_.joinable()) background_.join();
  for (std::thread& t : drivers) {
    if (t.joinable()) t.join();
  }
}

}  // namespace impq::coordinator
