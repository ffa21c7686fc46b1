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

constexpr size_t kBlock = 1024;

// Nonzero exactly when p[0, kBlock) holds a NaN or an Inf (exponent bits all ones). A fixed
// trip count and no branch, so the compiler vectorizes it at -O2 (plain SSE2: and, compare,
// or; three times faster than a max over the magnitudes, which SSE2 lacks an instruction for).
uint32_t BlockHasNonFinite(const float* p) {
  constexpr uint32_t kExponent = 0x7f800000u;
  uint32_t any = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    any |= (bits & kExponent) == kExponent ? ~0u : 0u;
  }
  return any;
}

// Index of the first value of p[0, n) that is NaN or ±Inf, or n. Only a block found to hold
// one is searched value by value.
size_t FirstNonFinite(const float* p, size_t n) {
  size_t b = 0;
  for (; b + kBlock <= n; b += kBlock) {
    if (BlockHasNonFinite(p + b) != 0) break;
  }
  for (size_t i = b; i < n; ++i) {
    if (!std::isfinite(p[i])) return i;
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
