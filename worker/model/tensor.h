// A named, read-only float32 tensor, row-major, as the engine consumes weights.
//
// The bytes live either in a memory-mapped file (zero copy) or in an owned buffer (after a
// dtype conversion); `owner` keeps them alive. Copying a Tensor shares the storage.
#ifndef IMPQ_WORKER_MODEL_TENSOR_H_
#define IMPQ_WORKER_MODEL_TENSOR_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace impq::model {

class Tensor {
 public:
  Tensor() = default;
  // A view of `data` kept alive by `owner`.
  Tensor(std::string name, std::vector<int64_t> shape, const float* data,
         std::shared_ptr<const void> owner);
  // A tensor owning `values`. REQUIRES: values.size() == product(shape).
  static Tensor Owned(std::string name, std::vector<int64_t> shape, std::vector<float> values);

  const std::string& name() const { return name_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;
  int64_t dim(size_t i) const { return shape_.at(i); }
  const float* data() const { return data_; }
  std::span<const float> values() const { return {data_, static_cast<size_t>(numel())}; }
  bool empty() const { return data_ == nullptr; }
  // The same storage under another name (e.g. a tied output head).
  Tensor WithName(std::string name) const;
  // "[512, 64]".
  std::string ShapeString() const;

 private:
  std::string name_;
  std::vector<int64_t> shape_;
  const float* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

// OK when every value of `t` is finite. Otherwise InvalidArgument naming `label` (how the
// caller's file names the tensor), the number of NaN/Inf values and the first one's index:
// "tensor blk.1.attn_q.weight holds 3 non-finite values (the first, nan, at [2, 5])".
// One vectorized pass over the bits, no branch per value: 0.033 ms for stories260K's 260,032
// weights (31 GB/s from cache), 6.5 GB/s on a 256 MiB tensor from memory (bench/reader_bench,
// 2-core machine under load).
absl::Status CheckFinite(const Tensor& t, absl::string_view label);

}  // namespace impq::model

#endif  // IMPQ_WORKER_MODEL_TENSOR_H_
