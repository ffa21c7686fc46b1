// A plain scalar reference of the Llama-family forward pass: loops only, double precision
// everywhere, one position at a time (as run.c does), written independently of the fast path
// from the published model definitions (Meta's Llama 3.1 reference for the llama3 rope rule,
// HF modeling_qwen3 for the q/k norms, HF modeling_gemma2 for Gemma-2's quirks).
// Tests compare LlamaForward against it. Slow: for small models only.
#ifndef IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_
#define IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_

#include <vector>

#include "worker/model/model.h"

namespace impq::forward {

// Logits [tokens.size(), vocab] of `m` on `tokens` (positions 0..T-1), using the model's
// own linear weights, or `linear` ([layer][kind] row-major [out, in]) when given.
std::vector<double> LlamaForwardRef(const model::Model& m, const std::vector<int>& tokens,
                                    const std::vector<std::vector<const float*>>* linear = nullptr);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_
