#include "worker/quant/quantized_model.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"
#include "common/status.h"

namespace impq::quant {

using model::LinearKind;
using model::kNumLinear;

const char* PlayerGranularityName(PlayerGranularity g) {
  return g == PlayerGranularity::kBlock ? "block" : "module";
}

absl::StatusOr<PlayerGranularity> ParsePlayerGranularity(const std::string& name) {
  if (name == "block") return PlayerGranularity::kBlock;
  if (name == "module") return PlayerGranularity::kModule;
  return absl::InvalidArgumentError(
      absl::StrCat("--players: unknown granularity '", name, "' (expected block or module)"));
}

std::vector<Player> MakePlayers(const model::ModelConfig& config, PlayerGranularity g) {
  std::vector<Player> players;
  for (int l = 0; l < config.n_layers; ++l) {
    if (g == PlayerGranularity::kBlock) {
      Player p{absl::StrCat("block", l), {}};
      for (int k = 0; k < kNumLinear; ++k) p.linears.push_back({l, static_cast<LinearKind>(k)});
      players.push_back(std::move(p));
    } else {
      for (int k = 0; k < kNumLinear; ++k) {
        const auto kind = static_cast<LinearKind>(k);
        players.push_back({absl::StrCat("layers.", l, ".", model::LinearKindName(kind)), {{l, kind}}});
      }
    }
  }
  return players;
}

namespace {

// Index of the distinct input a module reads: q/k/v -> 0, o -> 1, gate/up -> 2, down -> 3.
int InputSlot(LinearKind kind) {
  switch (kind) {
    case LinearKind::kQ:
    case LinearKind::kK:
    case LinearKind::kV: return 0;
    case LinearKind::kO: return 1;
    case LinearKind::kGate:
    case LinearKind::kUp: return 2;
    case LinearKind::kDown: return 3;
  }
  return 0;
}

class CalibrationObserver : public forward::LinearInputObserver {
 public:
  explicit CalibrationObserver(
      std::vector<std::array<std::shared_ptr<CalibrationStats>, 4>>* stats)
      : stats_(stats) {}
  void OnLinearInput(int layer, LinearKind kind, const float* x, int64_t rows,
                     int64_t cols) override {
    if (!status_.ok()) return;
    status_ = (*stats_)[layer][InputSlot(kind)]->Accumulate(x, rows, cols);
    if (!status_.ok()) {
      status_ = absl::InvalidArgumentError(absl::StrCat("calibration input of layers.", layer,
                                                        ".", model::LinearKindName(kind), ": ",
                                                        status_.message()));
    }
  }
  const absl::Status& status() const { return status_; }

 private:
  std::vector<std::array<std::shared_ptr<CalibrationStats>, 4>>* stats_;
  absl::Status status_;
};

}  // namespace

const CalibrationStats* CalibrationSet::Get(int layer, LinearKind kind) const {
  if (layer < 0 || layer >= static_cast<int>(stats_.size())) return nullptr;
  return stats_[layer][InputSlot(kind)].get();
}

absl::StatusOr<CalibrationSet> CollectCalibration(const forward::LlamaForward& fwd,
                                                  const eval::EvalSet& set, int threads) {
  if (threads < 1) {
    return absl::InvalidArgumentError(absl::StrCat("CollectCalibration: threads = ", threads,
                                                   " (expected >= 1)"));
  }
  const auto& c = fwd.config();
  RETURN_IF_ERROR(eval::ValidateEvalSet(c, set, "calibration set"));
  CalibrationSet out;
  out.stats_.resize(c.n_layers);
  for (auto& layer : out.stats_) {
    layer[0] = std::make_shared<CalibrationStats>(c.dim);
    layer[1] = std::make_shared<CalibrationStats>(c.q_dim());
    layer[2] = std::make_shared<CalibrationStats>(c.dim);
    layer[3] = std::make_shared<CalibrationStats>(c.hidden_dim);
  }
  // Sequences run one after another (threads work inside each), so the statistics are
  // accumulated in a fixed order: identical at any thread count.
  ThreadPool pool(threads);
  forward::Workspace ws;
  const auto weights = forward::WeightSet::FromModel(fwd.model());
  CalibrationObserver observer(&out.stats_);
  for (const auto& seq : set.sequences) {
    fwd.RunBlocks(seq.tokens, weights, ws, threads > 1 ? &pool : nullptr, &observer);
    RETURN_IF_ERROR(observer.status());
    out.tokens_ += static_cast<int64_t>(seq.tokens.size());
  }
  return out;
}

absl::StatusOr<std::unique_ptr<QuantizedModel>> QuantizedModel::Build(
    const model::Model& model, const Quantizer& quantizer, const QuantConfig& config,
    PlayerGranularity granularity, const CalibrationSet* calib, ThreadPool* pool,
    std::span<const int> widths) {
  if (config.group_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("group_size = ", config.group_size,
                                                   " (expected > 0)"));
  }
  // Checked here, before any work, so the message is the documented one rather than the
  // first tensor's.
  if (widths.empty()) return absl::InvalidArgumentError("no quantization widths given");
  std::vector<int> sorted(widths.begin(), widths.end());
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (!impq_bits_supported(sorted[i])) {
      return absl::InvalidArgumentError(absl::StrCat("width ", sorted[i],
                                                     " is not supported (expected 2, 3, 4 or 8)"));
    }
    if (i > 0 && sorted[i] == sorted[i - 1]) {
      return absl::InvalidArgumentError(absl::StrCat("width ", sorted[i], " is given twice"));
    }
  }
  if (quantizer.name() == "gptq" && calib == nullptr) {
    return absl::InvalidArgumentError("GPTQ needs calibration activations (--calib)");
  }
  auto qm = std::unique_ptr<QuantizedModel>(new QuantizedModel(model));
  qm->widths_ = std::move(sorted);
  qm->players_ = MakePlayers(model.config, granularity);
  qm->granularity_ = granularity;
  qm->backend_ = std::string(quantizer.name());
  qm->group_size_ = config.group_size;
  const auto start = std::chrono::steady_clock::now();
  const int L = model.config.n_layers;
  qm->modules_.resize(static_cast<size_t>(L) * kNumLinear);
  for (int l = 0; l < L; ++l) {
    for (int k = 0; k < kNumLinear; ++k) {
      const auto kind = static_cast<LinearKind>(k);
      const model::Tensor& w = model.layers[l][kind];
      const CalibrationStats* stats = calib != nullptr ? calib->Get(l, kind) : nullptr;
      Module& m = qm->modules_[static_cast<size_t>(l) * kNumLinear + k];
      m.packed.resize(qm->widths_.size());
      m.dequantized.resize(qm->widths_.size());
      for (size_t b = 0; b < qm->widths_.size(); ++b) {
        QuantConfig cfg = config;
        cfg.bits = qm->widths_[b];
        cfg.pool = pool;
        auto packed = quantizer.Quantize(w.data(), w.dim(0), w.dim(1), cfg, stats);
        if (!packed.ok()) {
          return absl::Status(packed.status().code(),
                              absl::StrCat(w.name(), " at ", cfg.bits, " bits (", quantizer.name(),
                                           "): ", packed.status().message()));
        }
        m.packed[b] = std::move(*packed);
        m.dequantized[b] = Dequantize(m.packed[b]);
      }
    }
  }
  qm->quantize_seconds_ =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return qm;
}

absl::Status QuantizedModel::CheckAssignment(std::span<const int> bits) const {
  if (static_cast<int>(bits.size()) != num_players()) {
    return absl::InvalidArgumentError(absl::StrCat("assignment has ", bits.size(),
                                                   " entries, the model has ", num_players(),
                                                   " players (", PlayerGranularityName(granularity_),
                                                   " granularity)"));
  }
  for (int p = 0; p < num_players(); ++p) {
    const int b = bits[p];
    if (!HasWidth(b) && b != 16 && b != 32) {
      return absl::InvalidArgumentError(absl::StrCat(
          "player ", p, " (", players_[p].name, ") has width ", b, "; expected one of ",
          absl::StrJoin(widths_, ", "), " (the widths the model was quantized at) or 16/32 for "
          "full precision"));
    }
  }
  return absl::OkStatus();
}

bool QuantizedModel::HasWidth(int bits) const {
  return std::find(widths_.begin(), widths_.end(), bits) != widths_.end();
}

size_t QuantizedModel::WidthIndex(int bits) const {
  const auto it = std::find(widths_.begin(), widths_.end(), bits);
  IMPQ_CHECK(it != widths_.end()) << "bits = " << bits << " is not a width of this model";
  return static_cast<size_t>(it - widths_.begin());
}

absl::StatusOr<forward::WeightSet> QuantizedModel::Apply(std::span<const int> bits) const {
  RETURN_IF_ERROR(CheckAssignment(bits));
  forward::WeightSet w = forward::WeightSet::FromModel(model_);
  for (int p = 0; p < num_players(); ++p) {
    const int b = bits[p];
    if (b == 16 || b == 32) continue;  // full precision: the model's own weights
    const size_t wi = WidthIndex(b);
    for (const LinearRef& r : players_[p].linears) {
      w.linear[r.layer][static_cast<int>(r.kind)] = Get(r.layer, r.kind).dequantized[wi].data();
    }
  }
  return w;
}

forward::WeightSet QuantizedModel::Uniform(int bits) const {
  std::vector<int> all(players_.size(), bits);
  auto w = Apply(all);
  IMPQ_CHECK(w.ok()) << w.status().message();
  return *std::move(w);
}

int64_t QuantizedModel::PlayerBytes(int player, int bits) const {
  if (bits == 16 || bits == 32) return PlayerFloatBytes(player);
  const size_t wi = WidthIndex(bits);
  int64_t total = 0;
  for (const LinearRef& r : players_.at(player).linears) {
    total += Get(r.layer, r.kind).packed[wi].ByteSize();
  }
  return total;
}

int64_t QuantizedModel::PlayerFloatBytes(int player) const {
  return PlayerWeights(player) * static_cast<int64_t>(sizeof(float));
}

int64_t QuantizedModel::PlayerWeights(int player) const {
  int64_t total = 0;
  for (const LinearRef& r : players_.at(player).linears) {
    total += model_.layers[r.layer][r.kind].numel();
  }
  return total;
}

absl::StatusOr<int64_t> QuantizedModel::AssignmentBytes(std::span<const int> bits) const {
  RETURN_IF_ERROR(CheckAssignment(bits));
  int64_t total = 0;
  for (int p = 0; p < num_players(); ++p) total += PlayerBytes(p, bits[p]);
  return total;
}

const PackedTensor& QuantizedModel::Packed(int layer, LinearKind kind, int bits) const {
  return Get(layer, kind).packed[WidthIndex(bits)];
}

const std::vector<float>& QuantizedModel::Dequantized(int layer, LinearKind kind, int bits) const {
  return Get(layer, kind).dequantized[WidthIndex(bits)];
}

}  // namespace impq::quant
