// SequenceEvaluator (sequence_evaluator.h).
#include "worker/engine/sequence_evaluator.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace impq::engine {

SequenceEvaluator::SequenceEvaluator(int threads) : pool_(threads) {}
SequenceEvaluator::~SequenceEvaluator() = default;

absl::StatusOr<std::unique_ptr<SequenceEvaluator>> SequenceEvaluator::Create(
    const quant::QuantizedModel& qmodel, const forward::LlamaForward& forward,
    const eval::EvalSet& set, int threads, int64_t max_cache_bytes,
    const std::vector<int>& widths) {
  if (threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("sequence evaluator: threads = ", threads,
                                                   "; expected >= 1"));
  }
  if (set.sequences.empty()) {
    return absl::InvalidArgumentError("sequence evaluator: the evaluation set is empty");
  }
  std::unique_ptr<SequenceEvaluator> e(new SequenceEvaluator(threads));
  int64_t processed = 0;
  for (const eval::EvalSequence& s : set.sequences) processed += static_cast<int64_t>(s.tokens.size());
  for (const eval::EvalSequence& s : set.sequences) {
    auto one = std::make_unique<eval::EvalSet>();
    one->mode = set.mode;
    one->ctx = set.ctx;
    one->sequences.push_back(s);
    one->scored_tokens = s.scored();
    one->processed_tokens = static_cast<int64_t>(s.tokens.size());
    LocalEvaluatorOptions o;
    o.threads = 1;  // the parallelism is over sequences, here
    // Two evaluations' states per sequence: the per-budget choice's local search compares
    // many neighbours with one incumbent, which then stays as their base (local_evaluator.h).
    o.cache_slots = 2;
    o.widths = widths;
    // Each sequence's share of the cap, in proportion to its positions (the cache is
    // linear in them), so the caches together stay within max_cache_bytes.
    o.max_cache_bytes = processed > 0 ? static_cast<int64_t>(
                                            static_cast<double>(max_cache_bytes) *
                                            static_cast<double>(s.tokens.size()) /
                                            static_cast<double>(processed))
                                      : 0;
    ASSIGN_OR_RETURN(std::unique_ptr<LocalEvaluator> ev,
                     LocalEvaluator::Create(qmodel, forward, *one, o));
    e->tokens_.push_back(s.scored());
    e->total_tokens_ += s.scored();
    e->sets_.push_back(std::move(one));
    e->evaluators_.push_back(std::move(ev));
  }
  return e;
}

absl::StatusOr<std::vector<double>> SequenceEvaluator::Evaluate(
    std::span<const solver::Coalition> coalitions) {
  for (const solver::Coalition& q : coalitions) {
    RETURN_IF_ERROR(evaluators_.front()->ValidateCoalition(q));
  }
  // The coalitions not in memory, first occurrence only, in batch order.
  std::vector<solver::Coalition> fresh;
  for (const solver::Coalition& q : coalitions) {
    if (sums_.contains(q) || std::find(fresh.begin(), fresh.end(), q) != fresh.end()) continue;
    fresh.push_back(q);
  }
  if (!fresh.empty()) {
    const size_t S = evaluators_.size();
    std::vector<absl::StatusOr<std::vector<double>>> per_seq(S);
    pool_.ParallelFor(S, [&](size_t s) { per_seq[s] = evaluators_[s]->Evaluate(fresh); });
    for (size_t s = 0; s < S; ++s) RETURN_IF_ERROR(per_seq[s].status());
    for (size_t k = 0; k < fresh.size(); ++k) {
      std::vector<double> sums(S);
      for (size_t s = 0; s < S; ++s) sums[s] = (*per_seq[s])[k] * static_cast<double>(tokens_[s]);
      sums_.emplace(fresh[k], std::move(sums));
    }
  }
  std::vector<double> out;
  out.reserve(coalitions.size());
  for (const solver::Coalition& q : coalitions) {
    out.push_back(solver::MeanOfSums(sums_.at(q), total_tokens_));
  }
  return out;
}

absl::StatusOr<std::vector<std::vector<double>>> SequenceEvaluator::RangeSums(
    std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) {
  const int64_t S = static_cast<int64_t>(evaluators_.size());
  if (begin < 0 || end > S || begin >= end) {
    return absl::InvalidArgumentError(absl::StrCat("sequence evaluator: sequences [", begin, ", ",
                                                   end, ") of a set of ", S));
  }
  for (const solver::Coalition& q : coalitions) {
    RETURN_IF_ERROR(evaluators_.front()->ValidateCoalition(q));
  }
  const size_t n = static_cast<size_t>(end - begin);
  std::vector<absl::StatusOr<std::vector<double>>> per_seq(n);
  pool_.ParallelFor(n, [&](size_t k) {
    per_seq[k] = evaluators_[static_cast<size_t>(begin) + k]->Evaluate(coalitions);
  });
  for (size_t k = 0; k < n; ++k) RETURN_IF_ERROR(per_seq[k].status());
  std::vector<std::vector<double>> out(coalitions.size(), std::vector<double>(n));
  for (size_t c = 0; c < coalitions.size(); ++c) {
    for (size_t k = 0; k < n; ++k) {
      out[c][k] = (*per_seq[k])[c] * static_cast<double>(tokens_[static_cast<size_t>(begin) + k]);
    }
  }
  return out;
}

const std::vector<double>* SequenceEvaluator::SequenceSums(const solver::Coalition& q) const {
  auto it = sums_.find(q);
  return it == sums_.end() ? nullptr : &it->second;
}

absl::StatusOr<solver::PairedDifference> SequenceEvaluator::Compare(const solver::Coalition& a,
                                                            const solver::Coalition& b) const {
  const std::vector<double>* sa = SequenceSums(a);
  const std::vector<double>* sb = SequenceSums(b);
  for (const auto& [q, s] : {std::pair{&a, sa}, std::pair{&b, sb}}) {
    if (s == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "sequence evaluator: coalition ", solver::CoalitionToString(*q), " was not evaluated"));
    }
  }
  return solver::PairedCompare(*sa, *sb, tokens_, total_tokens_);
}

}  // namespace impq::engine
