#include "worker/engine/baselines.h"

#include <cmath>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "solver/coalition.h"

namespace impq::engine {
namespace {

using model::LinearKind;

// Per-sequence accumulator of the linear inputs' Σ x².
class SquareSumObserver : public forward::LinearInputObserver {
 public:
  explicit SquareSumObserver(int layers) : sq_(static_cast<size_t>(layers)) {
    for (auto& a : sq_) a.fill(0.0);
  }
  void OnLinearInput(int layer, LinearKind kind, const float* x, int64_t rows,
                     int64_t cols) override {
    double s = 0.0;
    for (int64_t i = 0; i < rows * cols; ++i) s += static_cast<double>(x[i]) * x[i];
    sq_[layer][static_cast<int>(kind)] += s;
  }
  const std::vector<std::array<double, model::kNumLinear>>& sq() const { return sq_; }

 private:
  std::vector<std::array<double, model::kNumLinear>> sq_;
};

// The observer sees one call per distinct input: kQ for q/k/v, kO, kGate for gate/up, kDown.
LinearKind InputKind(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ:
    case LinearKind::kK:
    case LinearKind::kV: return LinearKind::kQ;
    case LinearKind::kO: return LinearKind::kO;
    case LinearKind::kGate:
    case LinearKind::kUp: return LinearKind::kGate;
    case LinearKind::kDown: return LinearKind::kDown;
  }
  return kind;
}

struct SequenceStats {
  std::vector<double> cos_sum;  // [layer]
  std::vector<std::array<double, model::kNumLinear>> sq;
};

}  // namespace

absl::StatusOr<ActivationStatistics> CollectActivationStatistics(
    const forward::LlamaForward& forward, const forward::WeightSet& weights,
    const eval::EvalSet& set, int threads) {
  if (set.sequences.empty()) {
    return absl::InvalidArgumentError("activation statistics: the set has no sequence");
  }
  const auto& c = forward.config();
  const int L = c.n_layers;
  const int64_t D = c.dim;
  const size_t S = set.sequences.size();
  std::vector<SequenceStats> per_seq(S);
  ThreadPool pool(threads);
  std::mutex mu;
  std::vector<std::unique_ptr<forward::Workspace>> workspaces;
  std::vector<int> free_slots;
  for (int t = 0; t < threads; ++t) {
    workspaces.push_back(std::make_unique<forward::Workspace>());
    free_slots.push_back(t);
  }
  pool.ParallelFor(S, [&](size_t s) {
    int slot;
    {
      std::lock_guard<std::mutex> lock(mu);
      slot = free_slots.back();
      free_slots.pop_back();
    }
    forward::Workspace& ws = *workspaces[slot];
    const auto& tokens = set.sequences[s].tokens;
    const auto T = static_cast<int64_t>(tokens.size());
    SquareSumObserver observer(L);
    SequenceStats& out = per_seq[s];
    out.cos_sum.assign(L, 0.0);
    std::vector<float> before(static_cast<size_t>(T * D));
    forward.Embed(tokens, ws);
    for (int l = 0; l < L; ++l) {
      std::copy(ws.x.begin(), ws.x.begin() + T * D, before.begin());
      forward.RunBlock(l, weights, T, ws, nullptr, &observer);
      for (int64_t t = 0; t < T; ++t) {
        double dot = 0, na = 0, nb = 0;
        for (int64_t j = 0; j < D; ++j) {
          const double a = before[t * D + j], b = ws.x[t * D + j];
          dot += a * b;
          na += a * a;
          nb += b * b;
        }
        out.cos_sum[l] += na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0.0;
      }
    }
    out.sq = observer.sq();
    std::lock_guard<std::mutex> lock(mu);
    free_slots.push_back(slot);
  });
  ActivationStatistics stats;
  stats.block_cos.assign(L, 0.0);
  stats.input_sq.resize(L);
  for (auto& a : stats.input_sq) a.fill(0.0);
  for (size_t s = 0; s < S; ++s) {  // sequence order: thread-count invariant
    stats.tokens += static_cast<int64_t>(set.sequences[s].tokens.size());
    for (int l = 0; l < L; ++l) {
      stats.block_cos[l] += per_seq[s].cos_sum[l];
      for (int k = 0; k < model::kNumLinear; ++k) stats.input_sq[l][k] += per_seq[s].sq[l][k];
    }
  }
  for (int l = 0; l < L; ++l) stats.block_cos[l] /= static_cast<double>(stats.tokens);
  for (int l = 0; l < L; ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) {
      stats.input_sq[l][k] = stats.input_sq[l][static_cast<int>(InputKind(static_cast<LinearKind>(k)))];
    }
  }
  return stats;
}

std::vector<double> LimScores(const ActivationStatistics& stats,
                              const std::vector<quant::Player>& players) {
  std::vector<double> scores;
  for (const auto& p : players) {
    // Every linear of a player lies in one block (block or module granularity).
    scores.push_back(1.0 - stats.block_cos[p.linears.front().layer]);
  }
  return scores;
}

std::vector<double> ActivationNormScores(const ActivationStatistics& stats,
                                         const std::vector<quant::Player>& players) {
  std::vector<double> scores;
  for (const auto& p : players) {
    double sq = 0;
    for (const auto& r : p.linears) sq += stats.input_sq[r.layer][static_cast<int>(r.kind)];
    scores.push_back(std::sqrt(sq));
  }
  return scores;
}

std::vector<double> ZScoreScores(const model::Model& model,
                                 const std::vector<quant::Player>& players) {
  std::vector<double> scores;
  for (const auto& p : players) {
    int64_t outliers = 0, total = 0;
    for (const auto& r : p.linears) {
      const auto w = model.layers[r.layer][r.kind].values();
      double mean = 0;
      for (float x : w) mean += x;
      mean /= static_cast<double>(w.size());
      double var = 0;
      for (float x : w) var += (x - mean) * (x - mean);
      const double sd = std::sqrt(var / static_cast<double>(w.size()));
      for (float x : w) outliers += std::abs(x - mean) > 3.0 * sd;
      total += static_cast<int64_t>(w.size());
    }
    scores.push_back(total > 0 ? static_cast<double>(outliers) / static_cast<double>(total) : 0.0);
  }
  return scores;
}

}  // namespace impq::engine
