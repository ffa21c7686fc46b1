#include "worker/quant/quantizer.h"

#include <atomic>
#include <cmath>
#include <memory>

#include "absl/strings/str_cat.h"
#include "worker/quant/gptq.h"
#include "worker/quant/hqq.h"
#include "worker/quant/rtn.h"

namespace impq::quant {
namespace {

std::atomic<int64_t> g_quantize_calls{0};

}  // namespace

int64_t QuantizeCallCount() { return g_quantize_calls.load(std::memory_order_relaxed); }

absl::Status ValidateQuantizeInput(const float* w, int64_t rows, int64_t cols,
                                   const QuantConfig& cfg) {
  absl::Status s = ValidateQuantShape(rows, cols, cfg.bits, cfg.group_size, "Quantize");
  if (!s.ok()) return s;
  if (w == nullptr) return absl::InvalidArgumentError("Quantize: weight pointer is null");
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c])) {
        return absl::InvalidArgumentError(absl::StrCat("Quantize: weight at row ", r,
                                                       " column ", c, " is ", row[c],
                                                       " (expected a finite value)"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedTensor> Quantizer::Quantize(const float* w, int64_t rows, int64_t cols,
                                                 const QuantConfig& cfg,
                                                 const CalibrationStats* calib) const {
  g_quantize_calls.fetch_add(1, std::memory_order_relaxed);
  absl::Status s = ValidateQuantizeInput(w, rows, cols, cfg);
  if (!s.ok()) return s;
  return QuantizeValidated(w, rows, cols, cfg, calib);
}

absl::StatusOr<std::unique_ptr<Quantizer>> MakeQuantizer(absl::string_view name) {
  if (name == "rtn") return std::unique_ptr<Quantizer>(std::make_unique<RtnQuantizer>());
  if (name == "hqq") return std::unique_ptr<Quantizer>(std::make_unique<HqqQuantizer>());
  if (name == "gptq") return std::unique_ptr<Quantizer>(std::make_unique<GptqQuantizer>());
  return absl::InvalidArgumentError(
      absl::StrCat("unknown quantizer \"", name, "\" (expected one of: rtn, hqq, gptq)"));
}

}  // namespace impq::quant
