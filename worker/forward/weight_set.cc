#include "worker/forward/weight_set.h"

namespace impq::forward {

WeightSet WeightSet::FromModel(const model::Model& m) {
  WeightSet w;
  w.linear.resize(m.layers.size());
  for (size_t l = 0; l < m.layers.size(); ++l) {
    for (int k = 0; k < model::kNumLinear; ++k) w.linear[l][k] = m.layers[l].linear[k].data();
  }
  return w;
}

}  // namespace impq::forward
