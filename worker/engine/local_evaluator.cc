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

// The prefix cache of one sequence (see the header): one or two slots, each the states of
// one earlier evaluation. Stage 2l is the input of block l's attention sublayer, stage 2l + 1
// the input of its feed-forward sublayer.
struct LocalEvaluator::SequenceCache {
  struct Slot {
    bool valid = false;  // holds the states of a previous evaluation
    // Weight pointers of every layer the states were computed with.
    std::vector<std::array<const float*, model::kNumLinear>> weights;
    std::vector<std::vector<float>> states;  // [stage] input of that sublayer, T·dim floats
    double last_sum = 0;                     // NLL sum of that evaluation
  };
  bool enabled = false;  // admitted under max_cache_bytes
  std::vector<Slot> slots;
};

namespace {

using LayerWeights = std::vector<std::array<const float*, model::kNumLinear>>;

// The first stage (2l: attention sublayer of block l, 2l + 1: its feed-forward sublayer)
// whose weights differ between `a` and `b`; 2L when none does.
int FirstChangedStage(const LayerWeights& a, const LayerWeights& b) {
  using model::LinearKind;
  const int L = static_cast<int>(b.size());
  for (int l = 0; l < L; ++l) {
    const auto& x = a[l];
    const auto& y = b[l];
    auto differs = [&](LinearKind k) { return x[static_cast<int>(k)] != y[static_cast<int>(k)]; };
    if (differs(LinearKind::kQ) || differs(LinearKind::kK) || differs(LinearKind::kV) ||
        differs(LinearKind::kO)) {
      return 2 * l;
    }
    if (differs(LinearKind::kGate) || differs(LinearKind::kUp) || differs(LinearKind::kDown)) {
      return 2 * l + 1;
    }
  }
  return 2 * L;
}

}  // namespace

LocalEvaluator::SublayerFlops LocalEvaluator::SublayerFlopsOf(const model::ModelConfig& c,
                                                              int64_t T) {
  const double t = static_cast<double>(T);
  const double D = c.dim, qd = c.q_dim(), kvd = c.kv_dim(), H = c.hidden_dim;
  SublayerFlops f;
  // q, k, v, o products, plus q·kᵀ and p·v over the causal half of the T x T scores.
  f.attention = 2.0 * t * (D * qd + 2.0 * D * kvd + qd * D) + 2.0 * t * (t + 1.0) * qd;
  f.ffn = 2.0 * t * 3.0 * D * H;  // gate, up, down
  return f;
}

double LocalEvaluatorStats::SublayerSavedFraction() const {
  return sublayer_evals_full > 0 ? 1.0 - static_cast<double>(sublayer_evals_done) /
                                             static_cast<double>(sublayer_evals_full)
                                 : 0.0;
}

double LocalEvaluatorStats::FlopSavedFraction() const {
  return decoder_flops_full > 0 ? 1.0 - decoder_flops_done / decoder_flops_full : 0.0;
}

absl::StatusOr<std::unique_ptr<LocalEvaluator>> LocalEvaluator::Create(
    const quant::QuantizedModel& qmodel, const LlamaForward& forward, const eval::EvalSet& set,
    const LocalEvaluatorOptions& options) {
  if (options.cache_slots != 1 && options.cache_slots != 2) {
    return absl::InvalidArgumentError(absl::StrCat("LocalEvaluatorOptions.cache_slots = ",
                                                   options.cache_slots, "; expected 1 or 2"));
  }
  if (options.threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalEvaluatorOptions.threads = ", options.threads, "; expected >= 1"));
  }
  RETURN_IF_ERROR(eval::ValidateEvalSet(forward.config(), set, "LocalEvaluator"));
  absl::StatusOr<solver::WidthLadder> ladder =
      solver::WidthLadder::Create(qmodel.num_players(), options.widths);
  if (!ladder.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LocalEvaluatorOptions.widths: ", ladder.status().message()));
  }
  for (int b : options.widths) {
    if (!qmodel.HasWidth(b)) {
      return absl::InvalidArgumentError(absl::StrCat("LocalEvaluatorOptions.widths: ", b,
                                                     " bits is not prepared by the model"));
    }
  }
  return std::unique_ptr<LocalEvaluator>(
      new LocalEvaluator(qmodel, forward, set, options, *std::move(ladder)));
}

LocalEvaluator::LocalEvaluator(const quant::QuantizedModel& qmodel, const LlamaForward& forward,
                               const eval::EvalSet& set, const LocalEvaluatorOptions& options,
                               solver::WidthLadder ladder)
    : qmodel_(qmodel),
      forward_(forward),
      set_(set),
      options_(options),
      ladder_(std::move(ladder)),
      pool_(options.threads) {
  const auto& c = forward_.config();
  int64_t used = 0;
  for (const auto& seq : set_.sequences) {
    auto cache = std::make_unique<SequenceCache>();
    const int64_t bytes = static_cast<int64_t>(sizeof(float)) * 2 * c.n_layers * c.dim *
                          static_cast<int64_t>(seq.tokens.size());
    // Admission in sequence order while the total fits: deterministic, independent of threads.
    const int64_t slot_bytes = bytes * options_.cache_slots;
    if (options_.max_cache_bytes > 0 && used + slot_bytes <= options_.max_cache_bytes) {
      cache->enabled = true;
      cache->slots.resize(static_cast<size_t>(options_.cache_slots));
      for (SequenceCache::Slot& slot : cache->slots) {
        slot.weights.resize(c.n_layers);
        slot.states.resize(2 * static_cast<size_t>(c.n_layers));
        for (auto& st : slot.states) st.resize(seq.tokens.size() * static_cast<size_t>(c.dim));
      }
      used += slot_bytes;
      ++stats_.cached_sequences;
    }
    caches_.push_back(std::move(cache));
  }
  stats_.cache_bytes = used;
  for (int t = 0; t < options_.threads; ++t) workspaces_.push_back(std::make_unique<Workspace>());
}

LocalEvaluator::~LocalEvaluator() = default;

double LocalEvaluator::RunSequence(size_t s, const WeightSet& w, Workspace& ws, ThreadPool* inner,
                                   Work* work) {
  const auto& c = forward_.config();
  const int L = c.n_layers;
  const eval::EvalSequence& seq = set_.sequences[s];
  const auto T = static_cast<int64_t>(seq.tokens.size());
  const size_t row_floats = static_cast<size_t>(T) * c.dim;
  SequenceCache& cache = *caches_[s];
  const LayerWeights& wanted = w.linear;

  // The base: the slot whose states run furthest along the wanted weights. The target (where
  // this evaluation's states go): with one slot the same one; with two the other one, which
  // first gets the base's states before the restart stage wherever it does not already hold
  // them (so a search's incumbent stays as a base while its neighbours come and go).
  int first = 0;  // first stage whose weights differ from the base's
  SequenceCache::Slot* base = nullptr;
  SequenceCache::Slot* target = nullptr;
  if (cache.enabled) {
    for (SequenceCache::Slot& slot : cache.slots) {
      if (!slot.valid) continue;
      const int f = FirstChangedStage(wanted, slot.weights);
      if (f == 2 * L) return slot.last_sum;  // same weights everywhere: same loss
      if (base == nullptr || f > first) {
        base = &slot;
        first = f;
      }
    }
    target = &cache.slots[0];
    if (cache.slots.size() > 1 && base == target) target = &cache.slots[1];
  }
  ws.Reserve(c, T);
  if (first == 0) {
    forward_.Embed(seq.tokens, ws);
  } else {
    if (target != base) {
      // Stage s's input depends on the weights of the stages before it only: the target's
      // states agree with the base's up to and including the first stage their weights differ.
      const int start =
          target->valid ? FirstChangedStage(base->weights, target->weights) + 1 : 0;
      for (int stage = start; stage <= first; ++stage) {
        std::memcpy(target->states[stage].data(), base->states[stage].data(),
                    row_floats * sizeof(float));
      }
    }
    std::memcpy(ws.x.data(), target->states[first].data(), row_floats * sizeof(float));
  }
  const SublayerFlops flops = SublayerFlopsOf(c, T);
  for (int stage = first; stage < 2 * L; ++stage) {
    if (target != nullptr && (stage > first || first == 0)) {
      std::memcpy(target->states[stage].data(), ws.x.data(), row_floats * sizeof(float));
    }
    const int l = stage / 2;
    if (stage % 2 == 0) {
      forward_.RunAttentionSublayer(l, w, T, ws, inner);
      work->flops += flops.attention;
      ++work->blocks;  // the block is entered at its attention sublayer...
    } else {
      forward_.RunFfnSublayer(l, w, T, ws, inner);
      work->flops += flops.ffn;
      if (stage == first) ++work->blocks;  // ...or, on a restart, at its feed-forward one
    }
    ++work->sublayers;
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
  if (target != nullptr) {
    target->weights = wanted;
    target->valid = true;
    target->last_sum = sum;
  }
  return sum;
}

std::vector<double> LocalEvaluator::Run(std::span<const WeightSet> weights) {
  const auto start = std::chrono::steady_clock::now();
  const size_t S = set_.sequences.size();
  const size_t C = weights.size();
  const int L = forward_.config().n_layers;
  std::vector<double> sums(C * S, 0.0);          // [coalition][sequence]
  std::vector<Work> work(S);                     // work done, per sequence
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
        sums[k * S + s] = RunSequence(s, weights[k], *workspaces_[slot], nullptr, &work[s]);
      }
      std::lock_guard<std::mutex> lock(mu);
      free_slots.push_back(slot);
    });
  } else {
    ThreadPool* inner = threads > 1 ? &pool_ : nullptr;
    for (size_t s = 0; s < S; ++s) {
      for (size_t k = 0; k < C; ++k) {
        sums[k * S + s] = RunSequence(s, weights[k], *workspaces_[0], inner, &work[s]);
      }
    }
  }
  std::vector<double> losses(C);
  for (size_t k = 0; k < C; ++k) {
    double total = 0.0;
    for (size_t s = 0; s < S; ++s) total += sums[k * S + s];  // sequence order: as Evaluator
    losses[k] = total / static_cast<double>(set_.scored_tokens);
  }
  const auto& cfg = forward_.config();
  for (size_t s = 0; s < S; ++s) {
    stats_.block_evals_done += work[s].blocks;
    stats_.sublayer_evals_done += work[s].sublayers;
    stats_.decoder_flops_done += work[s].flops;
    const SublayerFlops f =
        SublayerFlopsOf(cfg, static_cast<int64_t>(set_.sequences[s].tokens.size()));
    stats_.decoder_flops_full += static_cast<double>(C) * L * (f.attention + f.ffn);
  }
  stats_.block_evals_full += static_cast<int64_t>(C) * static_cast<int64_t>(S) * L;
  stats_.sublayer_evals_full += static_cast<int64_t>(C) * static_cast<int64_t>(S) * 2 * L;
  stats_.coalitions += static_cast<int64_t>(C);
  stats_.seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return losses;
}

absl::StatusOr<std::vector<double>> LocalEvaluator::Evaluate(
    std::span<const solver::Coalition> coalitions) {
  std::vector<WeightSet> weights;
  weights.reserve(coalitions.size());
  for (const solver::Coalition& q : coalitions) {
    ASSIGN_OR_RETURN(const std::vector<int> bits, BitsOf(q));
    ASSIGN_OR_RETURN(WeightSet w, qmodel_.Apply(bits));
    weights.push_back(std::move(w));
  }
  if (weights.empty()) return std::vector<double>{};
  return Run(weights);
}

absl::Status LocalEvaluator::ValidateCoalition(const solver::Coalition& q) const {
  if (ladder_.binary()) return solver::ValidateCoalition(q, num_players());
  return ladder_.ValidateClosed(q);
}

absl::StatusOr<std::vector<int>> LocalEvaluator::BitsOf(const solver::Coalition& q) const {
  RETURN_IF_ERROR(ValidateCoalition(q));
  std::vector<int> bits = ladder_.ChoiceOf(q);
  for (int& b : bits) b = ladder_.widths()[b];
  return bits;
}

double LocalEvaluator::NllOf(const WeightSet& weights) {
  return Run(std::span<const WeightSet>(&weights, 1))[0];
}

}  // namespace impq::engine
