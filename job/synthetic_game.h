// A synthetic job::Game with no model, for tests and benches: a small quadratic loss over
// the game's steps (calibration), per-sequence sums that differ by sequence (the choice), and
// a held-out loss of each assignment — so the whole job pipeline runs in milliseconds.
#ifndef IMPQ_JOB_SYNTHETIC_GAME_H_
#define IMPQ_JOB_SYNTHETIC_GAME_H_

#include <atomic>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "job/game.h"

namespace impq::job {

class SyntheticGame : public Game {
 public:
  // `n` players at `widths` (ascending, the job's).
  SyntheticGame(int n, std::vector<int> widths) : n_(n), widths_(std::move(widths)) {}

  absl::StatusOr<GameFacts> Prepare() override {
    GameFacts f;
    f.model_config = absl::StrCat("synthetic n=", n_);
    f.fingerprint = "synthetic";
    for (int i = 0; i < n_; ++i) {
      f.player_names.push_back(absl::StrCat("p", i));
      f.bytes2.push_back(100 * (i + 1));
      f.bytes4.push_back(200 * (i + 1));
      for (int w : widths_) f.width_bytes.push_back(50 * w * (i + 1));
      f.lim.push_back(1.0 + 0.1 * ((i * 5) % 7));
      f.zscore.push_back(0.01 * ((i * 3) % 5 + 1));
      f.actnorm.push_back(10.0 + (i * 7) % 11);
    }
    f.calib_sequences = f.select_sequences = 3;
    f.calib_tokens = f.select_tokens = 60;
    f.select_sequence_tokens = {10, 20, 30};
    f.heldout_sequences = 2;
    f.heldout_tokens = 40;
    f.calib_processed_tokens = 63;
    f.heldout_processed_tokens = 42;
    f.heldout_nll_fp32 = 1.5;
    return f;
  }
  absl::StatusOr<std::vector<double>> CalibrationLosses(
      std::span<const solver::Coalition> coalitions) override {
    std::vector<double> out;
    for (const solver::Coalition& q : coalitions) out.push_back(Value(q, 0));
    calibration_evaluations += static_cast<int64_t>(coalitions.size());
    return out;
  }
  absl::StatusOr<std::vector<std::vector<double>>> SelectionSums(
      std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) override {
    if (begin < 0 || end > 3 || begin >= end) {
      return absl::InvalidArgumentError(absl::StrCat("sequences [", begin, ", ", end, ")"));
    }
    std::vector<std::vector<double>> out;
    for (const solver::Coalition& q : coalitions) {
      std::vector<double> sums;
      for (int64_t s = begin; s < end; ++s) {
        sums.push_back(10.0 * static_cast<double>(s + 1) * Value(q, static_cast<int>(s) + 1));
      }
      out.push_back(std::move(sums));
    }
    return out;
  }
  absl::StatusOr<std::vector<double>> HeldoutNll(
      std::span<const std::vector<int>> assignments) override {
    std::vector<double> out;
    for (const std::vector<int>& bits : assignments) {
      double v = 1.6;
      for (size_t i = 0; i < bits.size(); ++i) {
        v += 0.2 * static_cast<double>(i + 1) / static_cast<double>(bits[i] * bits[i]);
      }
      out.push_back(v);
    }
    return out;
  }
  GameCounters Counters() const override { return {}; }

  std::atomic<int64_t> calibration_evaluations{0};

 private:
  // A quadratic game over the steps, perturbed per sequence `s` (0: the calibration mean).
  double Value(const solver::Coalition& q, int s) const {
    double v = 2.0 + 0.001 * s;
    const size_t m = q.size();
    for (size_t i = 0; i < m; ++i) {
      if (q[i] == 0) continue;
      v += 0.1 * static_cast<double>(i % 7 + 1) + 0.003 * s * static_cast<double>(i % 3);
      for (size_t j = i + 1; j < m; ++j) {
        v += q[j] != 0 ? 0.01 * static_cast<double>((i * 7 + j * 3) % 5) - 0.02 : 0.0;
      }
    }
    return v;
  }

  const int n_;
  const std::vector<int> widths_;
};

}  // namespace impq::job

#endif  // IMPQ_JOB_SYNTHETIC_GAME_H_
