// The per-layer linear weights a forward pass reads.
//
// A WeightSet is a table of pointers [layer][LinearKind] to row-major float matrices
// [out, in]. The model's own weights form the default set; a quantized view (worker/quant)
// points some entries at dequantized 2- or 4-bit copies instead, so applying a new bit
// assignment is a pointer swap. The pointed-to memory must outlive every forward using it.
#ifndef IMPQ_WORKER_FORWARD_WEIGHT_SET_H_
#define IMPQ_WORKER_FORWARD_WEIGHT_SET_H_

#include <array>
#include <vector>

#include "worker/model/model.h"

namespace impq::forward {

struct WeightSet {
  std::vector<std::array<const float*, model::kNumLinear>> linear;  // [layer][kind]

  const float* Get(int layer, model::LinearKind kind) const {
    return linear[layer][static_cast<int>(kind)];
  }
  // The model's own (full-precision) weights.
  static WeightSet FromModel(const model::Model& m);
};

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_WEIGHT_SET_H_
