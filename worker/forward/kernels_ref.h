// Scalar references of kernels.h, written as plain double-precision loops.
#ifndef IMPQ_WORKER_FORWARD_KERNELS_REF_H_
#define IMPQ_WORKER_FORWARD_KERNELS_REF_H_

#include <cstddef>
#include <vector>

namespace impq::forward {

std::vector<double> RmsNormRef(const std::vector<float>& x, const std::vector<float>& w, double eps);
// Rotation of one head at position `pos` with base `theta`.
std::vector<double> RopeRef(const std::vector<float>& v, int pos, double theta, bool interleaved);
std::vector<double> SoftmaxPrefixRef(const std::vector<float>& row, size_t valid);
std::vector<double> SiluMulRef(const std::vector<float>& gate, const std::vector<float>& up);
double LogSumExpRef(const std::vector<float>& row);
// Causal attention of one query head (attention_kernel.h's CausalAttentionHead) in double:
// q [T][hd] row-major, k and v [T][hd] row-major (not transposed); returns [T][hd].
std::vector<double> AttentionHeadRef(const std::vector<float>& q, const std::vector<float>& k,
                                     const std::vector<float>& v, int T, int hd, double scale,
                                     double softcap, int window);

}  // namespace impq::forward

#endif  // IMPQ_WORKER_FORWARD_KERNELS_REF_H_
