// UnitGame (unit_game.h).
#include "coordinator/unit_game.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "coordinator/coordinator.h"
#include "job/facts_proto.h"

namespace impq::coordinator {
namespace {

std::string CoalitionString(const solver::Coalition& q) {
  std::string s;
  s.reserve(q.size());
  for (uint8_t x : q) s += x != 0 ? '1' : '0';
  return s;
}

// [begin, end) cut into min(end − begin, k) near-equal consecutive parts.
std::vector<std::pair<int64_t, int64_t>> Parts(int64_t begin, int64_t end, int64_t k) {
  std::vector<std::pair<int64_t, int64_t>> out;
  const int64_t parts = std::min(end - begin, k);
  for (int64_t p = 0, b = begin; p < parts; ++p) {
    const int64_t e = b + (end - b) / (parts - p);
    out.emplace_back(b, e);
    b = e;
  }
  return out;
}

}  // namespace

UnitGame::UnitGame(Coordinator* coordinator, std::string job_id, std::vector<int> widths,
                   int batch_split)
    : coordinator_(coordinator),
      job_id_(std::move(job_id)),
      widths_(std::move(widths)),
      batch_split_(batch_split) {}

absl::StatusOr<std::vector<v1::WorkResult>> UnitGame::Run(int kind, int dataset,
                                                          std::vector<std::string> items) {
  std::vector<UnitRequest> units;
  int64_t bytes = 0;
  for (const std::string& item : items) bytes += static_cast<int64_t>(item.size());
  const int64_t parts = std::max<int64_t>(batch_split_, (bytes + kMaxUnitItemBytes - 1) / kMaxUnitItemBytes);
  for (auto [begin, end] : Parts(0, static_cast<int64_t>(items.size()), parts)) {
    UnitRequest u;
    u.kind = static_cast<v1::UnitKind>(kind);
    u.dataset = static_cast<v1::Dataset>(dataset);
    for (int64_t k = begin; k < end; ++k) {
      (kind == v1::UNIT_KIND_ASSIGNMENTS ? u.assignments : u.coalitions)
          .push_back(std::move(items[static_cast<size_t>(k)]));
    }
    units.push_back(std::move(u));
  }
  ASSIGN_OR_RETURN(std::vector<v1::WorkResult> results, coordinator_->RunUnits(job_id_, std::move(units)));
  for (const v1::WorkResult& r : results) {
    counters_.block_evals_done += r.block_evals_done();
    counters_.block_evals_full += r.block_evals_full();
  }
  return results;
}

absl::StatusOr<job::GameFacts> UnitGame::Prepare() {
  std::vector<UnitRequest> units(1);
  units[0].kind = v1::UNIT_KIND_PREPARE;
  units[0].dataset = v1::DATASET_CALIBRATION;
  ASSIGN_OR_RETURN(std::vector<v1::WorkResult> r, coordinator_->RunUnits(job_id_, std::move(units)));
  return job::FactsFromProto(r[0].facts());
}

absl::StatusOr<std::vector<double>> UnitGame::CalibrationLosses(
    std::span<const solver::Coalition> coalitions) {
  std::vector<std::string> items;
  for (const solver::Coalition& q : coalitions) items.push_back(CoalitionString(q));
  ASSIGN_OR_RETURN(std::vector<v1::WorkResult> results,
                   Run(v1::UNIT_KIND_BATCH, v1::DATASET_CALIBRATION, std::move(items)));
  std::vector<double> out;
  for (const v1::WorkResult& r : results) out.insert(out.end(), r.losses().begin(), r.losses().end());
  return out;
}

absl::StatusOr<std::vector<std::vector<double>>> UnitGame::SelectionSums(
    std::span<const solver::Coalition> coalitions, int64_t begin, int64_t end) {
  std::vector<std::string> items;
  for (const solver::Coalition& q : coalitions) items.push_back(CoalitionString(q));
  // Near-equal consecutive parts of the sequences, each one unit with every coalition.
  std::vector<UnitRequest> units;
  for (auto [b, e] : Parts(begin, end, batch_split_)) {
    UnitRequest u;
    u.kind = v1::UNIT_KIND_SEQUENCES;
    u.dataset = v1::DATASET_SELECTION;
    u.coalitions = items;
    u.sequence_begin = b;
    u.sequence_end = e;
    units.push_back(std::move(u));
  }
  ASSIGN_OR_RETURN(std::vector<v1::WorkResult> results,
                   coordinator_->RunUnits(job_id_, std::move(units)));
  std::vector<std::vector<double>> out(coalitions.size());
  for (const v1::WorkResult& r : results) {
    counters_.block_evals_done += r.block_evals_done();
    counters_.block_evals_full += r.block_evals_full();
    for (size_t c = 0; c < out.size(); ++c) {
      const auto& sums = r.sequence_sums(static_cast<int>(c)).sums();
      out[c].insert(out[c].end(), sums.begin(), sums.end());
    }
  }
  return out;
}

absl::StatusOr<std::vector<double>> UnitGame::HeldoutNll(
    std::span<const std::vector<int>> assignments) {
  std::vector<std::string> items;
  for (const std::vector<int>& bits : assignments) {
    std::string s;
    for (int b : bits) s += static_cast<char>('0' + b);
    items.push_back(std::move(s));
  }
  ASSIGN_OR_RETURN(std::vector<v1::WorkResult> results,
                   Run(v1::UNIT_KIND_ASSIGNMENTS, v1::DATASET_EVALUATION, std::move(items)));
  std::vector<double> out;
  for (const v1::WorkResult& r : results) out.insert(out.end(), r.losses().begin(), r.losses().end());
  return out;
}

}  // namespace impq::coordinator
