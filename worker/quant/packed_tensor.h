// PackedTensor: a 2-, 3-, 4- or 8-bit group-quantized weight matrix in the byte layout of
// block_format.h (read that header first: code packing, ragged tail group, f32 scale/zero).
//
//   ASSIGN_OR_RETURN(PackedTensor p, Pack(codes, rows, cols, bits, G, scales, zeros));
//   std::vector<float> w_hat = Dequantize(p);      // [rows][cols], (q - zero) * scale
//   std::vector<uint8_t> q = Unpack(p);            // one code per byte, [rows][cols]
//
// A PackedTensor is a plain value type (thread-compatible). Every PackedTensor produced by
// Pack or by a Quantizer satisfies the invariants checked by ValidatePacked.
#ifndef IMPQ_WORKER_QUANT_PACKED_TENSOR_H_
#define IMPQ_WORKER_QUANT_PACKED_TENSOR_H_

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/quant/block_format.h"

namespace impq::quant {

struct PackedTensor {
  int64_t rows = 0;        // output features
  int64_t cols = 0;        // input features
  int bits = 0;            // 2, 3, 4 or 8
  int64_t group_size = 0;  // G (columns per group; the last group may be shorter)
  std::vector<uint8_t> codes;  // rows * row_code_bytes(), layout in block_format.h
  std::vector<float> scales;   // rows * groups_per_row(), [row][group]
  std::vector<float> zeros;    // rows * groups_per_row(), [row][group]

  int64_t groups_per_row() const { return impq_groups_per_row(cols, group_size); }
  int64_t row_code_bytes() const { return impq_code_bytes(bits, cols); }
  // Bytes actually held: codes + 4 * (scales + zeros). Equals StorageBytes(...) when valid.
  int64_t ByteSize() const {
    return static_cast<int64_t>(codes.size() + sizeof(float) * (scales.size() + zeros.size()));
  }
  // Code of element (r, c). REQUIRES: valid tensor, 0 <= r < rows, 0 <= c < cols.
  int Code(int64_t r, int64_t c) const {
    return impq_get_code(codes.data() + r * row_code_bytes(), bits, c);
  }
  float Scale(int64_t r, int64_t c) const { return scales[r * groups_per_row() + c / group_size]; }
  float Zero(int64_t r, int64_t c) const { return zeros[r * groups_per_row() + c / group_size]; }
};

// InvalidArgument unless bits is in {2, 3, 4, 8} (the message names the value), group_size > 0,
// rows > 0 and cols > 0. `what` prefixes the message (e.g. the tensor name).
absl::Status ValidateQuantShape(int64_t rows, int64_t cols, int bits, int64_t group_size,
                                const char* what = "tensor");

// Exact bytes of a packed [rows][cols] tensor including scales and zeros (formula in
// block_format.h). InvalidArgument for the same inputs ValidateQuantShape rejects.
absl::StatusOr<int64_t> StorageBytes(int64_t rows, int64_t cols, int bits, int64_t group_size);

// Packs unpacked codes (one per byte, row-major [rows][cols], each < 2^bits) and the
// per-group scales/zeros ([rows][groups_per_row]). InvalidArgument on a bad shape, a span of
// the wrong length, a code out of range (names row/column), or a non-finite or non-positive
// scale / non-finite zero (names row/group).
absl::StatusOr<PackedTensor> Pack(std::span<const uint8_t> codes, int64_t rows, int64_t cols,
                                  int bits, int64_t group_size, std::span<const float> scales,
                                  std::span<const float> zeros);

// OK when `p` is consistent: valid shape, buffer sizes as documented, zero padding bits,
// finite positive scales, finite zeros. Otherwise InvalidArgument naming the problem.
absl::Status ValidatePacked(const PackedTensor& p);

// An all-zero tensor of the given shape with correctly sized buffers (zero codes, scale 1,
// zero 0). Backends fill it with PackRow and by writing scales/zeros.
// REQUIRES: ValidateQuantShape(rows, cols, bits, group_size).ok().
PackedTensor AllocatePacked(int64_t rows, int64_t cols, int bits, int64_t group_size);

// Packs `codes` (one per byte, each < 2^bits) into a packed row `dst` of
// impq_code_bytes(bits, codes.size()) bytes, overwriting it (padding bits become zero).
void PackRow(std::span<const uint8_t> codes, int bits, uint8_t* dst);

// Unpacked codes, one per byte, [rows][cols]. REQUIRES: ValidatePacked(p).ok().
std::vector<uint8_t> Unpack(const PackedTensor& p);

// Dequantized weights w_hat = (q - zero) * scale into `out` ([rows][cols] floats).
// REQUIRES: ValidatePacked(p).ok(), out.size() == rows * cols.
void Dequantize(const PackedTensor& p, std::span<float> out);
std::vector<float> Dequantize(const PackedTensor& p);

}  // namespace impq::quant

#endif  // IMPQ_WORKER_QUANT_PACKED_TENSOR_H_
