#include "worker/engine/local_evaluator.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "worker/forward/kernels.h"

namespace impq::engine {

using forward::LlamaForward;
using forward::WeightSet;
using forward::Workspace;

// The prefix cache of one sequence (see the header).
struct LocalEvaluator::SequenceCache {
  bool enabled = false;  // admitted under max_cache_bytes
  bool valid = false;    // holds the states of a previous evaluation
  // Weight pointers of every layer the cached states were computed with.
  std::vector<std::array<const float*, model::kNumLinear>> weights;
  std::vector<std::vector<float>> states;  // [layer] input of that block, T·dim floats
  double last_sum = 0;                     // NLL sum of the previous evaluation
};

absl::StatusOr<std::unique_ptr<LocalEvaluator>> LocalEvaluator::Create(
    const quant::QuantizedModel& qmodel, const LlamaForward& forward, const eval::EvalSet& set,
    const LocalEvaluatorOptions& options) {
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalEvaluatorOptions.threads = ", options.threads, "; expected >= 1"));
  }
  RETURN_IF_ERROR(eval::ValidateEvalSet(forward.config(), set, "LocalEvaluator"));
  return std::unique_ptr<LocalEvaluator>(new LocalEvaluator(qmodel, forward, set, options));
}

LocalEvaluator::LocalEvaluator(const quant::QuantizedModel& qmodel, const LlamaForward& forward,
                               const eval::EvalSet& set, const LocalEvaluatorOptions& options)
    : qmodel_(qmodel), forward_(forward), set_(set), options_(options), pool_(options.threads) {
  const auto& c = forward_.config();
  int64_t used = 0;
  for (const auto& seq : set_.sequences) {
    auto cache = std::make_unique<SequenceCache>();
    const int64_t bytes = static_cast<int64_t>(sizeof(float)) * c.n_layers * c.dim *
                          static_cast<int64_t>(seq.tokens.size());
    // Admission in sequence order while the total fits: deterministic, independent of threads.
    if (options_.max_cache_bytes > 0 && used + bytes <= options_.max_cache_bytes) {
      cache->enabled = true;
      cache->weights.resize(c.n_layers);
      cache->states.resize(c.n_layers);
      for (auto& st : cache->states) st.resize(seq.tokens.size() * static_cast<size_t>(c.dim));
      used += bytes;
      ++stats_.cached_sequences;
    }
    caches_.push_back(std::move(cache));
  }
  stats_.cache_bytes = used;
  for (int t = 0; t < options_.threads; ++t) workspaces_.push_back(std::make_unique<Workspace>());
}

LocalEvaluator::~LocalEvaluator() = default;

double LocalEvaluator::RunSequence(size_t s, const WeightSet& w, Workspace& ws, ThreadPool* inner,
                                   int64_t* blocks_run) {
  const auto& c = forward_.config();
  const int L = c.n_layers;
  const eval::EvalSequence& seq = set_.sequences[s];
  const auto T = static_cast<int64_t>(seq.tokens.size());
  const size_t row_floats = static_cast<size_t>(T) * c.dim;
  SequenceCache& cache = *caches_[s];

  int first = 0;  // first block whose weights differ from the cached states'
  if (cache.enabled && cache.valid) {
    first = L;
    for (int l = 0; l < L; ++l) {
      if (w.linear[l] != cache.weights[l]) {
        first = l;
        break;
      }
    }
    if (first == L) return cache.last_sum;  // same weights everywhere: same loss
  }
  ws.Reserve(c, T);
  if (first == 0) {
    forward_.Embed(seq.tokens, ws);
  } else {
    std::memcpy(ws.x.data(), cache.states[first].data(), row_floats * sizeof(float));
  }
  for (int l = first; l < L; ++l) {
    if (cache.enabled && (l > first || first == 0)) {
      std::memcpy(cache.states[l].data(), ws.x.data(), row_floats * sizeof(float));
    }
    forward_.RunBlock(l, w, T, ws, inner);
    ++*blocks_run;
  }
  // The output head, with exactly Evaluator::Nll's arithmetic (same row blocks, same order).
  const int64_t V = c.vocab_size;
  const int64_t end = T - 1;
  double sum = 0.0;
  for (int64_t r0 = seq.score_begin; r0 < end; r0 += LlamaForward::kLogitRows) {
    const int64_t rows = std::min(LlamaForward::kLogitRows, end - r0);
    forward_.Logits(r0, rows, ws, inner);
    for (int64_t k = 0; k < rows; ++k) {
      const float* row = ws.logits.data() + k * V;
      const int target = seq.tokens[static_cast<size_t>(r0 + k + 1)];
      sum += forward::LogSumExp(row, V) - static_cast<double>(row[target]);
    }
  }
  if (cache.enabled) {
    for (int l = 0; l < L; ++l) cache.weights[l] = w.linear[l];
    cache.valid = true;
    cache.last_sum = sum;
  }
  return sum;
}

std::vector<double> LocalEvaluator::Run(std::span<const WeightSet> weights) {
  const auto start = std::chrono::steady_clock::now();
  const size_t S = set_.sequences.size();
  const size_t C = weights.size();
  const int L = forward_.config().n_layers;
  std::vector<double> sums(C * S, 0.0);          // [coalition][sequence]
  std::vector<int64_t> blocks(S, 0);             // blocks run, per sequence
  const int threads = pool_.num_threads();
  if (threads > 1 && S >= static_cast<size_t>(threads)) {
    std::mutex mu;
    std::vector<int> free_slots;
    for (int t = 0; t < threads; ++t) free_slots.push_back(t);
    pool_.ParallelFor(S, [&](size_t s) {
      int slot;
      {
        std::lock_guard<std::mutex> lock(mu);
        slot = free_slots.back();
        free_slots.pop_back();
      }
      for (size_t k = 0; k < C; ++k) {
        sums[k * S + s] = RunSequence(s, weights[k], *workspaces_[slot], nullptr, &blocks[s]);
      }
      std::lock_guard<std::mutex> lock(mu);
      free_slots.push_back(slot);
    });
  } else {
    ThreadPool* inner = threads > 1 ? &pool_ : nullptr;
    for (size_t s = 0; s < S; ++s) {
      for (size_t k = 0; k < C; ++k) {
        sums[k * S + s] = RunSequence(s, weights[k], *workspaces_[0], inner, &blocks[s]);
      }
    }
  }
  std::vector<double> losses(C);
  for (size_t k = 0; k < C; ++k) {
    double total = 0.0;
    for (size_t s = 0; s < S; ++s) total += sums[k * S + s];  // sequence order: as Evaluator
    losses[k] = total / static_cast<double>(set_.scored_tokens);
  }
  for (int64_t b : blocks) stats_.block_evals_done += b;
  stats_.block_evals_full += static_cast<int64_t>(C) * static_cast<int64_t>(S) * L;
  stats_.coalitions += static_cast<int64_t>(C);
  stats_.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return losses;
}

absl::StatusOr<std::vector<double>> LocalEvaluator::Evaluate(
    std::span<const solver::Coalition> coalitions) {
  const int n = num_players();
  std::vector<WeightSet> weights;
  weights.reserve(coalitions.size());
  std::vector<int> bits(static_cast<size_t>(n));
  for (const solver::Coalition& q : coalitions) {
    RETURN_IF_ERROR(solver::ValidateCoalition(q, n));
    for (int i = 0; i < n; ++i) bits[i] = q[i] != 0 ? 2 : 4;
    ASSIGN_OR_RETURN(WeightSet w, qmodel_.Apply(bits));
    weights.push_back(std::move(w));
  }
  if (weights.empty()) return std::vector<double>{};
  return Run(weights);
}

double LocalEvaluator::NllOf(const WeightSet& weights) {
  return Run(std::span<const WeightSet>(&weights, 1))[0];
}

}  // namespace impq::engine
