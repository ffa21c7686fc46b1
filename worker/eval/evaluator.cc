#include "worker/eval/evaluator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/forward/kernels.h"

namespace impq::eval {

using forward::LlamaForward;
using forward::Workspace;

Evaluator::Evaluator(const LlamaForward& forward, int threads)
    : forward_(forward), pool_(threads) {}

Evaluator::~Evaluator() = default;

void Evaluator::ForEachSequence(const EvalSet& set, int per_seq,
                                const std::function<void(size_t, Workspace**, ThreadPool*)>& fn,
                                const ProgressFn& progress) {
  const size_t n = set.sequences.size();
  const int threads = pool_.num_threads();
  const bool across = threads > 1 && n >= static_cast<size_t>(threads);
  const size_t slots = (across ? static_cast<size_t>(threads) : 1) * per_seq;
  while (workspaces_.size() < slots) workspaces_.push_back(std::make_unique<Workspace>());
  std::atomic<int64_t> done{0};
  std::mutex mu;
  std::vector<int> free_slots;
  for (size_t s = 0; s < slots / per_seq; ++s) free_slots.push_back(static_cast<int>(s));
  auto run = [&](size_t i, ThreadPool* inner) {
    int slot;
    {
      std::lock_guard<std::mutex> lock(mu);
      slot = free_slots.back();
      free_slots.pop_back();
    }
    std::vector<Workspace*> ws;
    for (int k = 0; k < per_seq; ++k) ws.push_back(workspaces_[static_cast<size_t>(slot) * per_seq + k].get());
    fn(i, ws.data(), inner);
    {
      std::lock_guard<std::mutex> lock(mu);
      free_slots.push_back(slot);
      const int64_t d = ++done;
      if (progress) progress(d, static_cast<int64_t>(n));
    }
  };
  if (across) {
    pool_.ParallelFor(n, [&](size_t i) { run(i, nullptr); });
  } else {
    for (size_t i = 0; i < n; ++i) run(i, threads > 1 ? &pool_ : nullptr);
  }
}

absl::StatusOr<NllResult> Evaluator::Nll(const forward::WeightSet& weights, const EvalSet& set,
                                         const ProgressFn& progress) {
  RETURN_IF_ERROR(ValidateEvalSet(forward_.config(), set, "evaluation set"));
  const auto start = std::chrono::steady_clock::now();
  const int64_t V = forward_.config().vocab_size;
  NllResult r;
  r.sequence_nll_sums.assign(set.sequences.size(), 0.0);
  ForEachSequence(
      set, 1,
      [&](size_t i, Workspace** wsp, ThreadPool* inner) {
        Workspace* ws = wsp[0];
        const EvalSequence& seq = set.sequences[i];
        forward_.RunBlocks(seq.tokens, weights, *ws, inner);
        const int64_t end = static_cast<int64_t>(seq.tokens.size()) - 1;
        double sum = 0.0;
        for (int64_t r0 = seq.score_begin; r0 < end; r0 += LlamaForward::kLogitRows) {
          const int64_t rows = std::min(LlamaForward::kLogitRows, end - r0);
          forward_.Logits(r0, rows, *ws, inner);
          for (int64_t k = 0; k < rows; ++k) {
            const float* row = ws->logits.data() + k * V;
            const int target = seq.tokens[static_cast<size_t>(r0 + k + 1)];
            sum += forward::LogSumExp(row, V) - static_cast<double>(row[target]);
          }
        }
        r.sequence_nll_sums[i] = sum;
      },
      progress);
  double total = 0.0;
  for (double s : r.sequence_nll_sums) total += s;
  r.tokens = set.scored_tokens;
  r.processed_tokens = set.processed_tokens;
  r.nll = total / static_cast<double>(r.tokens);
  r.ppl = std::exp(r.nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.tokens_per_s = r.seconds > 0 ? static_cast<double>(r.processed_tokens) / r.seconds : 0;
  return r;
}

absl::StatusOr<KlResult> Evaluator::Kl(const forward::WeightSet& ref,
                                       const forward::WeightSet& test, const EvalSet& set,
                                       const ProgressFn& progress) {
  RETURN_IF_ERROR(ValidateEvalSet(forward_.config(), set, "evaluation set"));
  const auto start = std::chrono::steady_clock::now();
  const int64_t V = forward_.config().vocab_size;
  struct Acc {
    double kl = 0, kl_max = 0, nll_ref = 0, nll_test = 0;
    int64_t agree = 0;
  };
  std::vector<Acc> acc(set.sequences.size());
  // Two workspaces per sequence: the reference's and the test's hidden states.
  ForEachSequence(
      set, 2,
      [&](size_t i, Workspace** ws, ThreadPool* inner) {
        Workspace& wr = *ws[0];
        Workspace& wt = *ws[1];
        const EvalSequence& seq = set.sequences[i];
        forward_.RunBlocks(seq.tokens, ref, wr, inner);
        forward_.RunBlocks(seq.tokens, test, wt, inner);
        const int64_t end = static_cast<int64_t>(seq.tokens.size()) - 1;
        Acc a;
        for (int64_t r0 = seq.score_begin; r0 < end; r0 += LlamaForward::kLogitRows) {
          const int64_t rows = std::min(LlamaForward::kLogitRows, end - r0);
          forward_.Logits(r0, rows, wr, inner);
          forward_.Logits(r0, rows, wt, inner);
          for (int64_t k = 0; k < rows; ++k) {
            const float* lr = wr.logits.data() + k * V;
            const float* lt = wt.logits.data() + k * V;
            const double lse_r = forward::LogSumExp(lr, V);
            const double lse_t = forward::LogSumExp(lt, V);
            double kl = 0.0;
            int64_t arg_r = 0, arg_t = 0;
            for (int64_t j = 0; j < V; ++j) {
              const double lp_r = lr[j] - lse_r;
              const double lp_t = lt[j] - lse_t;
              kl += std::exp(lp_r) * (lp_r - lp_t);
              if (lr[j] > lr[arg_r]) arg_r = j;
              if (lt[j] > lt[arg_t]) arg_t = j;
            }
            kl = std::max(kl, 0.0);  // rounding can leave a tiny negative for equal inputs
            a.kl += kl;
            a.kl_max = std::max(a.kl_max, kl);
            a.agree += arg_r == arg_t;
            const int target = seq.tokens[static_cast<size_t>(r0 + k + 1)];
            a.nll_ref += lse_r - lr[target];
            a.nll_test += lse_t - lt[target];
          }
        }
        acc[i] = a;
      },
      progress);
  KlResult r;
  r.tokens = set.scored_tokens;
  int64_t agree = 0;
  for (const Acc& a : acc) {
    r.kl += a.kl;
    r.kl_max = std::max(r.kl_max, a.kl_max);
    r.nll_ref += a.nll_ref;
    r.nll_test += a.nll_test;
    agree += a.agree;
  }
  const auto n = static_cast<double>(r.tokens);
  r.kl /= n;
  r.nll_ref /= n;
  r.nll_test /= n;
  r.top1_agree = static_cast<double>(agree) / n;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace impq::eval
