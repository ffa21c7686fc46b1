// The synthetic game (job/synthetic_game.h) for coordinator tests: the whole job pipeline
// runs through the coordinator in milliseconds. SyntheticExecutor serves work units on it
// (ExecuteOnGame), as the engine's executor does on a LocalGame; a spec whose model path contains "poison" fails
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
#include "job/synthetic_game.h"
#include "worker/service/game_executor.h"
#include "worker/service/unit_executor.h"

namespace impq::coordinator {

using SyntheticGame = job::SyntheticGame;

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
