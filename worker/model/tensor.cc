#include "worker/model/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

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

namespace {

// Index of the first value of p[0, n) that is NaN or ±Inf (exponent bits all ones), or n.
// Blocks of a fixed size keep the inner loop a branch-free max over the bits, which the
// compiler vectorizes at -O2; only a block holding a non-finite value is searched again.
size_t FirstNonFinite(const float* p, size_t n) {
  constexpr size_t kBlock = 1024;
  constexpr uint32_t kExponent = 0x7f800000u;
  auto block_max = [p](size_t begin, size_t count) {
    uint32_t worst = 0;
    for (size_t i = 0; i < count; ++i) {
      uint32_t bits;
      std::memcpy(&bits, p + begin + i, sizeof bits);
      worst = std::max(worst, bits & 0x7fffffffu);
    }
    return worst;
  };
  size_t b = 0;
  for (; b < n; b += kBlock) {
    const size_t count = std::min(kBlock, n - b);
    const uint32_t worst = count == kBlock ? block_max(b, kBlock) : block_max(b, count);
    if (worst >= kExponent) {
      for (size_t i = b; i < b + count; ++i) {
        if (!std::isfinite(p[i])) return i;
      }
    }
  }
  return n;
}

}  // namespace

absl::Status CheckFinite(const Tensor& t, absl::string_view label) {
  const size_t n = static_cast<size_t>(t.numel());
  const size_t first = FirstNonFinite(t.data(), n);
  if (first == n) return absl::OkStatus();
  const size_t bad = static_cast<size_t>(
      std::count_if(t.data() + first, t.data() + n, [](float v) { return !std::isfinite(v); }));
  // The flat index as a multi-dimensional one, outermost first.
  std::vector<int64_t> index(t.shape().size());
  int64_t rest = static_cast<int64_t>(first);
  for (size_t d = index.size(); d-- > 0;) {
    const int64_t extent = std::max<int64_t>(t.shape()[d], 1);
    index[d] = rest % extent;
    rest /= extent;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tensor ", label, " holds ", bad, " non-finite value", bad == 1 ? "" : "s", " (the first, ",
      std::isnan(t.data()[first]) ? "nan" : t.data()[first] > 0 ? "inf" : "-inf", ", at [",
      absl::StrJoin(index, ", "), "]); weights must be finite"));
}

}  // namespace impq::model
