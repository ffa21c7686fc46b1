// Quantizer: the seam between impq and its weight-only quantization backends.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, MakeQuantizer("hqq"));
//   QuantConfig cfg;
//   cfg.bits = 2;
//   ASSIGN_OR_RETURN(PackedTensor p, q->Quantize(w, rows, cols, cfg, /*calib=*/nullptr));
//
// Backends (one file each): "rtn" (rtn.h, optimum-quanto style min/max round-to-nearest),
// "hqq" (hqq.h, half-quadratic zero-point optimisation, calibration-free), "gptq" (gptq.h,
// Hessian-based error compensation, needs CalibrationStats). All produce the group-wise
// asymmetric format of block_format.h: q = clamp(round(w/scale + zero), 0, 2^b - 1),
// w_hat = (q - zero) * scale, groups of G consecutive input columns, ragged last group.
//
// Thread-safety: Quantizer objects are immutable after construction and thread-safe;
// Quantize may run concurrently on different inputs. Results never depend on the number of
// threads in cfg.pool.
#ifndef IMPQ_WORKER_QUANT_QUANTIZER_H_
#define IMPQ_WORKER_QUANT_QUANTIZER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/thread_pool.h"
#include "worker/quant/calibration.h"
#include "worker/quant/packed_tensor.h"

namespace impq::quant {

// HQQ options (hqq.h). Defaults are mobiusml/hqq's optimize_weights_proximal defaults.
struct HqqOptions {
  double lp_norm = 0.7;  // p of the lp "norm" (0 < p <= 1)
  double beta = 10.0;    // initial penalty; the shrink threshold is 1/beta
  double kappa = 1.01;   // beta *= kappa after every iteration (>= 1)
  int iterations = 20;   // maximum iterations (>= 1); stops early when the error rises
};

// GPTQ options (gptq.h). Defaults are the reference implementation's.
struct GptqOptions {
  double damp_percent = 0.01;  // lambda = damp_percent * mean(diag(H)) added to diag(H)
  int block_size = 128;        // lazy-batch block width B (> 0); does not change the result
  bool act_order = false;      // visit columns by descending diag(H) ("static groups")
};

struct QuantConfig {
  int bits = 0;          // 2, 3, 4 or 8; no default on purpose: the caller chooses
  int group_size = 64;   // G > 0, columns per group along the input dimension
  HqqOptions hqq;
  GptqOptions gptq;
  ThreadPool* pool = nullptr;  // optional, not owned: row-parallel work
};

class Quantizer {
 public:
  virtual ~Quantizer() = default;

  // Backend name as accepted by MakeQuantizer ("rtn", "hqq", "gptq").
  virtual absl::string_view name() const = 0;

  // Quantizes the row-major float matrix w[rows][cols] (rows = out features, cols = in
  // features). Counts the call (QuantizeCallCount), validates (ValidateQuantizeInput), then
  // runs the backend. `calib` may be null for backends that need no calibration.
  // Returns InvalidArgument for bad input (message names the problem and the value),
  // and a valid PackedTensor (ValidatePacked OK) otherwise. The result is owned by the caller.
  // REQUIRES: w points to rows * cols floats.
  absl::StatusOr<PackedTensor> Quantize(const float* w, int64_t rows, int64_t cols,
                                        const QuantConfig& cfg,
                                        const CalibrationStats* calib) const;

 protected:
  // The backend. Called only with validated input (shape, bits, group size, finite weights).
  virtual absl::StatusOr<PackedTensor> QuantizeValidated(const float* w, int64_t rows,
                                                         int64_t cols, const QuantConfig& cfg,
                                                         const CalibrationStats* calib) const = 0;
};

// Checks what every backend requires: bits in {2, 3, 4, 8}, group_size > 0, rows > 0, cols > 0,
// w != nullptr, every weight finite (the message names the first bad row and column).
absl::Status ValidateQuantizeInput(const float* w, int64_t rows, int64_t cols,
                                   const QuantConfig& cfg);

// "rtn" | "hqq" | "gptq" (exact, lower case). InvalidArgument naming the unknown name and
// listing the known ones otherwise.
absl::StatusOr<std::unique_ptr<Quantizer>> MakeQuantizer(absl::string_view name);

// Number of Quantizer::Quantize calls made in this process so far (every call, including
// ones that fail validation). Thread-safe; monotone. Lets a test prove that a layer was not
// re-quantized: read before and after.
int64_t QuantizeCallCount();

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_QUANTIZER_H_
