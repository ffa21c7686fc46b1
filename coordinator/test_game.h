// A synthetic game for coordinator tests: job::Game with no model — a small quadratic loss
// over the game's steps (calibration), per-sequence sums that differ by sequence (the choice),
// and a held-out loss of each assignment — so the whole job pipeline runs through the
// coordinator in milliseconds. SyntheticExecutor serves work units on it (ExecuteOnGame), as
// the engine's executor does on a LocalGame; a spec whose model path contains "poison" fails
// every unit, and one whose model path contains "nan" reports a non-finite loss.
#ifndef IMPQ_COORDINATOR_TEST_GAME_H_
#define IMPQ_COORDINATOR_TEST_GAME_H_

#include <atomic>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "job/game.h"
#include "worker/service/game_executor.h"
#include "worker/service/unit_executor.h"

namespace impq::coordinator {

class SyntheticGame : public job::Game {
 public:
  // `n` players at `widths` (ascending, the job's).
  SyntheticGame(int n, std::vector<int> widths) : n_(n), widths_(std::move(widths)) {}

  absl::StatusOr<job::GameFacts> Prepare() override {
    job::GameFacts f;
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
  job::GameCounters Counters() const override { return {}; }

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

// Serves units of any job on a SyntheticGame of `n` players at the job's widths.
class SyntheticExecutor : public worker_service::UnitExecutor {
 public:
  explicit SyntheticExecutor(int n) : n_(n) {}
  absl::StatusOr<v1::WorkResult> Execute(const v1::WorkUnit& unit) override {
    ++executed;
    const std::string& model = unit.spec().model_path();
    if (model.find("poison") != std::string::npos) {
      return absl::NotFoundError(absl::StrCat("model file ", model, ": no such file"));
    }
    std::vector<int> widths(unit.spec().widths().begin(), unit.spec().widths().end());
    if (widths.empty()) widths = {2, 4};
    if (game_ == nullptr || widths != widths_) {
      game_ = std::make_unique<SyntheticGame>(n_, widths);
      widths_ = widths;
    }
    absl::StatusOr<v1::WorkResult> r = worker_service::ExecuteOnGame(*game_, unit);
    if (r.ok() && model.find("nan") != std::string::npos && r->losses_size() > 0) {
      r->set_losses(0, std::nan(""));
    }
    return r;
  }
  std::atomic<int> executed{0};

 private:
  const int n_;
  std::vector<int> widths_;
  std::unique_ptr<SyntheticGame> game_;
};

// The result document without what depends on where and how fast units ran ("timings"):
// the rest is a function of the spec only.
inline std::string WithoutTimings(const std::string& document) {
  nlohmann::json j = nlohmann::json::parse(document, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return "unparseable: " + document;
  j.erase("timings");
  return j.dump(1);
}

}  // namespace impq::coordinator

#endif  // IMPQ_COORDINATOR_TEST_GAME_H_
