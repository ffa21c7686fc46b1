#include "worker/model/tensor.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace impq::model {

Tensor::Tensor(std::string name, std::vector<int64_t> shape, const float* data,
               std::shared_ptr<const void> owner)
    : name_(std::move(name)), shape_(std::move(shape)), data_(data), owner_(std::move(owner)) {}

Tensor Tensor::Owned(std::string name, std::vector<int64_t> shape, std::vector<float> values) {
  auto buf = std::make_shared<std::vector<float>>(std::move(values));
  Tensor t(std::move(name), std::move(shape), buf->data(), buf);
  IMPQ_CHECK(static_cast<size_t>(t.numel()) == buf->size())
      << t.name() << ": " << buf->size() << " values for shape " << t.ShapeString();
  return t;
}

int64_t Tensor::numel() const {
  if (data_ == nullptr) return 0;
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

Tensor Tensor::WithName(std::string name) const {
  Tensor t = *this;
  t.name_ = std::move(name);
  return t;
}

std::string Tensor::ShapeString() const { return absl::StrCat("[", absl::StrJoin(shape_, ", "), "]"); }

}  // namespace impq::model
