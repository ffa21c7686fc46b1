// A plain scalar reference of the Llama-family forward pass: loops only, double precision
// everywhere, one position at a time (as run.c does), written independently of the fast path
// from the published model definitions (Meta's Llama 3.1 reference for the llama3 rope rule,
// HF modeling_qwen3 for the q/k norms, HF modeling_gemma2 for Gemma-2's quirks).
// Tests compare LlamaForward against it. Slow: for small models only.
#ifndef IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_
#define IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_

#include <cstdint>
#include <vector>

#include "worker/model/model.h"

namespace impq::forward {

// Logits [tokens.size(), vocab] of `m` on `tokens` (positions 0..T-1), using the model's
// own linear weights, or `linear` ([layer][kind] row-major [out, in]) when given.
std::vector<double> LlamaForwardRef(const model::Model& m, const std::vector<int>& tokens,
                                    const std::vector<std::vector<const float*>>* linear = nullptr);

// Worst-case |float32 logit − reference logit| for a forward pass over T tokens, derived from
// float32's unit roundoff u = 2^-24: a K-long float32 reduction errs by at most K·u·Σ|a_i b_i|
// (Higham's γ_K), errors of consecutive operations add with a gain of about one through the
// residual stream, and Σ|ab| is bounded by the largest reference logit. `sequential_ops` is
// the number of K-long reductions on the longest path (per block times layers, plus the head);
// K is the largest of dim, hidden_dim, q_dim and T.
double LogitErrorBound(const model::ModelConfig& c, int64_t T, const std::vector<double>& ref,
                       double sequential_ops);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_LLAMA_FORWARD_REF_H_
