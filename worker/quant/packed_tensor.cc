#include "worker/quant/packed_tensor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace impq::quant {

absl::Status ValidateQuantShape(int64_t rows, int64_t cols, int bits, int64_t group_size,
                                const char* what) {
  if (!impq_bits_supported(bits)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": bits = ", bits, " is not supported (expected 2, 3, 4 or 8)"));
  }
  if (group_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": group_size = ", group_size, " must be > 0"));
  }
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": shape [", rows, ", ", cols,
                                                   "] must have rows > 0 and cols > 0"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> StorageBytes(int64_t rows, int64_t cols, int bits, int64_t group_size) {
  absl::Status s = ValidateQuantShape(rows, cols, bits, group_size, "StorageBytes");
  if (!s.ok()) return s;
  return impq_storage_bytes(impq_block_format(bits), rows, cols, group_size);
}

namespace {

absl::Status CheckParams(std::span<const float> scales, std::span<const float> zeros,
                         int64_t groups) {
  for (size_t i = 0; i < scales.size(); ++i) {
    const int64_t r = static_cast<int64_t>(i) / groups, g = static_cast<int64_t>(i) % groups;
    if (!std::isfinite(scales[i]) || !(scales[i] > 0.0f)) {
      return absl::InvalidArgumentError(absl::StrCat("scale at row ", r, " group ", g, " is ",
                                                     scales[i], " (expected finite and > 0)"));
    }
    if (!std::isfinite(zeros[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("zero at row ", r, " group ", g, " is ", zeros[i], " (expected finite)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PackedTensor> Pack(std::span<const uint8_t> codes, int64_t rows, int64_t cols,
                                  int bits, int64_t group_size, std::span<const float> scales,
                                  std::span<const float> zeros) {
  absl::Status s = ValidateQuantShape(rows, cols, bits, group_size, "Pack");
  if (!s.ok()) return s;
  const int64_t groups = impq_groups_per_row(cols, group_size);
  if (static_cast<int64_t>(codes.size()) != rows * cols) {
    return absl::InvalidArgumentError(absl::StrCat("Pack: codes has ", codes.size(),
                                                   " entries, expected rows*cols = ", rows * cols));
  }
  if (static_cast<int64_t>(scales.size()) != rows * groups ||
      static_cast<int64_t>(zeros.size()) != rows * groups) {
    return absl::InvalidArgumentError(absl::StrCat(
        "Pack: scales/zeros have ", scales.size(), "/", zeros.size(),
        " entries, expected rows*groups_per_row = ", rows * groups));
  }
  s = CheckParams(scales, zeros, groups);
  if (!s.ok()) return s;
  const int max_code = impq_block_format(bits).max_code;
  for (int64_t i = 0; i < rows * cols; ++i) {
    if (codes[i] > max_code) {
      return absl::InvalidArgumentError(absl::StrCat("Pack: code ", codes[i], " at row ",
                                                     i / cols, " column ", i % cols,
                                                     " exceeds ", max_code));
    }
  }
  PackedTensor p = AllocatePacked(rows, cols, bits, group_size);
  const int64_t rb = p.row_code_bytes();
  for (int64_t r = 0; r < rows; ++r) {
    PackRow(codes.subspan(r * cols, cols), bits, p.codes.data() + r * rb);
  }
  p.scales.assign(scales.begin(), scales.end());
  p.zeros.assign(zeros.begin(), zeros.end());
  return p;
}

absl::Status ValidatePacked(const PackedTensor& p) {
  absl::Status s = ValidateQuantShape(p.rows, p.cols, p.bits, p.group_size, "PackedTensor");
  if (!s.ok()) return s;
  const int64_t groups = p.groups_per_row(), rb = p.row_code_bytes();
  if (static_cast<int64_t>(p.codes.size()) != p.rows * rb) {
    return absl::InvalidArgumentError(absl::StrCat("PackedTensor: codes has ", p.codes.size(),
                                                   " bytes, expected ", p.rows * rb));
  }
  if (static_cast<int64_t>(p.scales.size()) != p.rows * groups ||
      static_cast<int64_t>(p.zeros.size()) != p.rows * groups) {
    return absl::InvalidArgumentError(
        absl::StrCat("PackedTensor: scales/zeros have ", p.scales.size(), "/", p.zeros.size(),
                     " entries, expected ", p.rows * groups));
  }
  const int64_t used_bits = p.cols * p.bits;
  if (used_bits % 8 != 0) {
    const uint8_t pad_mask = static_cast<uint8_t>(0xFF << (used_bits % 8));
    for (int64_t r = 0; r < p.rows; ++r) {
      if (p.codes[r * rb + rb - 1] & pad_mask) {
        return absl::InvalidArgumentError(
            absl::StrCat("PackedTensor: nonzero padding bits at the end of row ", r));
      }
    }
  }
  return CheckParams(p.scales, p.zeros, groups);
}

PackedTensor AllocatePacked(int64_t rows, int64_t cols, int bits, int64_t group_size) {
  PackedTensor p;
  p.rows = rows;
  p.cols = cols;
  p.bits = bits;
  p.group_size = group_size;
  p.codes.assign(static_cast<size_t>(rows * p.row_code_bytes()), 0);
  p.scales.assign(static_cast<size_t>(rows * p.groups_per_row()), 1.0f);
  p.zeros.assign(static_cast<size_t>(rows * p.groups_per_row()), 0.0f);
  return p;
}

void PackRow(std::span<const uint8_t> codes, int bits, uint8_t* dst) {
  const int64_t n = static_cast<int64_t>(codes.size());
  std::memset(dst, 0, static_cast<size_t>(impq_code_bytes(bits, n)));
  for (int64_t c = 0; c < n; ++c) impq_set_code(dst, bits, c, codes[c]);
}

std::vector<uint8_t> Unpack(const PackedTensor& p) {
  std::vector<uint8_t> out(static_cast<size_t>(p.rows * p.cols));
  const int64_t rb = p.row_code_bytes();
  for (int64_t r = 0; r < p.rows; ++r) {
    const uint8_t* row = p.codes.data() + r * rb;
    uint8_t* dst = out.data() + r * p.cols;
    for (int64_t c = 0; c < p.cols; ++c) {
      dst[c] = static_cast<uint8_t>(impq_get_code(row, p.bits, c));
    }
  }
  return out;
}

void Dequantize(const PackedTensor& p, std::span<float> out) {
  const int64_t rb = p.row_code_bytes(), groups = p.groups_per_row();
  for (int64_t r = 0; r < p.rows; ++r) {
    const uint8_t* row = p.codes.data() + r * rb;
    float* dst = out.data() + r * p.cols;
    for (int64_t g = 0; g < groups; ++g) {
      const float scale = p.scales[r * groups + g], zero = p.zeros[r * groups + g];
      const int64_t c1 = std::min(p.cols, (g + 1) * p.group_size);
      for (int64_t c = g * p.group_size; c < c1; ++c) {
        dst[c] = impq_dequantize_value(impq_get_code(row, p.bits, c), scale, zero);
      }
    }
  }
}

std::vector<float> Dequantize(const PackedTensor& p) {
  std::vector<float> out(static_cast<size_t>(p.rows * p.cols));
  Dequantize(p, out);
  return out;
}

}  // namespace impq::quant
