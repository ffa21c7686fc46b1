// Rotary-embedding frequencies of a model: theta^(-2i/head_dim) for i < head_dim/2, adjusted
// by Llama-3's "llama3" rule (ModelConfig::rope_scaling) and by GGUF's per-frequency divisors
// (ModelConfig::rope_freq_factors).
#ifndef IMPQ_WORKER_FORWARD_ROPE_H_
#define IMPQ_WORKER_FORWARD_ROPE_H_

#include <vector>

#include "worker/model/model.h"

namespace impq::forward {

// head_dim/2 inverse frequencies (radians per position), in double.
// REQUIRES: c.Validate().ok().
std::vector<double> RopeInvFrequencies(const model::ModelConfig& c);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_ROPE_H_
