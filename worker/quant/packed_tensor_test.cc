#include "worker/quant/packed_tensor.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common/rng.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/quant/block_format.h"
#include "worker/quant/reference.h"

namespace impq::quant {
namespace {

using ::testing::HasSubstr;

TEST(BlockFormatTest, TableRows) {
  constexpr ImpqBlockFormat f2 = impq_block_format(2);
  constexpr ImpqBlockFormat f4 = impq_block_format(4);
  static_assert(f2.bits == 2 && f2.codes_per_byte == 4 && f2.max_code == 3);
  static_assert(f4.bits == 4 && f4.codes_per_byte == 2 && f4.max_code == 15);
  constexpr ImpqBlockFormat f3 = impq_block_format(3);
  constexpr ImpqBlockFormat f8 = impq_block_format(8);
  static_assert(f3.bits == 3 && f3.codes_per_byte == 0 && f3.max_code == 7 && f3.code_mask == 7);
  static_assert(f8.bits == 8 && f8.codes_per_byte == 1 && f8.max_code == 255);
  static_assert(impq_block_format(5).bits == 0 && !impq_bits_supported(1) &&
                !impq_bits_supported(16));
  EXPECT_EQ(f2.scale_bytes + f2.zero_bytes, 8);
  // 64 two-bit codes = 16 bytes + f32 scale + f32 zero.
  EXPECT_EQ(impq_group_bytes(f2, 64), 24);
  EXPECT_EQ(impq_group_bytes(f3, 64), 32);  // 64 * 3 bits = 24 bytes
  EXPECT_EQ(impq_group_bytes(f4, 64), 40);
  EXPECT_EQ(impq_group_bytes(f8, 64), 72);
  // 3 bits, 10 columns: 30 bits -> 4 bytes (2 padding bits), G = 4 -> 3 groups.
  static_assert(impq_storage_bytes(impq_block_format(3), 2, 10, 4) == 2 * (4 + 3 * 8));
  static_assert(impq_storage_bytes(impq_block_format(2), 4, 64, 64) == 4 * (16 + 8));
  // Ragged: 10 columns, G = 4 -> 3 groups; 10 * 2 bits = 20 bits -> 3 bytes per row.
  static_assert(impq_storage_bytes(impq_block_format(2), 3, 10, 4) == 3 * (3 + 3 * 8));
}

TEST(BlockFormatTest, CodeFormulaMatchesLibmRounding) {
  // The fast formula (clamp, then the 1.5*2^23 rounding trick) must equal the reference
  // (libm nearbyintf, then clamp) for every input, including exact .5 ties.
  Rng rng(7);
  for (int bits : {2, 3, 4, 8}) {
    const int max_code = (1 << bits) - 1;
    for (int i = 0; i < 100000; ++i) {
      const float scale = static_cast<float>(std::ldexp(1.0 + rng.Uniform(), -8 + static_cast<int>(rng.Below(8))));
      const float zero = static_cast<float>(rng.Below(max_code + 1)) +
                         (i % 2 ? static_cast<float>(rng.Uniform() - 0.5) : 0.0f);
      float w = static_cast<float>((rng.Uniform() * (max_code + 4) - 2 - zero)) * scale;
      if (i % 3 == 0) w = (std::round(w / scale) + 0.5f) * scale;  // ties
      ASSERT_EQ(impq_quantize_value(w, scale, zero, max_code),
                QuantizeValueRef(w, scale, zero, max_code))
          << "w=" << w << " scale=" << scale << " zero=" << zero;
    }
  }
  EXPECT_EQ(impq_quantize_value(0.5f, 1.0f, 0.0f, 3), 0);  // half to even
  EXPECT_EQ(impq_quantize_value(1.5f, 1.0f, 0.0f, 3), 2);
  EXPECT_EQ(impq_quantize_value(2.5f, 1.0f, 0.0f, 3), 2);
  EXPECT_EQ(impq_quantize_value(1e30f, 1.0f, 0.0f, 15), 15);
  EXPECT_EQ(impq_quantize_value(-1e30f, 1.0f, 0.0f, 15), 0);
}

TEST(PackedTensorTest, ByteLayoutIsLittleEndianWithinByte) {
  const std::vector<uint8_t> c2 = {1, 2, 3, 0, 3};
  const std::vector<float> one = {1.0f, 1.0f}, zero = {0.0f, 0.0f};
  auto p2 = Pack(c2, 1, 5, 2, 4, one, zero);
  ASSERT_TRUE(p2.ok()) << p2.status();
  ASSERT_EQ(p2->codes.size(), 2u);
  EXPECT_EQ(p2->codes[0], 0x39);  // 1 | 2<<2 | 3<<4 | 0<<6
  EXPECT_EQ(p2->codes[1], 0x03);  // padding bits zero
  const std::vector<uint8_t> c4 = {0xA, 0x5, 0x7};
  auto p4 = Pack(c4, 1, 3, 4, 64, std::vector<float>{1.0f}, std::vector<float>{0.0f});
  ASSERT_TRUE(p4.ok()) << p4.status();
  ASSERT_EQ(p4->codes.size(), 2u);
  EXPECT_EQ(p4->codes[0], 0x5A);
  EXPECT_EQ(p4->codes[1], 0x07);
}

TEST(PackedTensorTest, ThreeBitCodesFormOneLittleEndianBitStream) {
  // block_format.h: 8 codes fill 3 bytes, c2 and c5 straddle a byte boundary.
  const std::vector<uint8_t> c3 = {1, 2, 3, 4, 5, 6, 7, 0, 5};
  auto p3 = Pack(c3, 1, 9, 3, 64, std::vector<float>{1.0f}, std::vector<float>{0.0f});
  ASSERT_TRUE(p3.ok()) << p3.status();
  ASSERT_EQ(p3->codes.size(), 4u);  // 27 bits
  EXPECT_EQ(p3->codes[0], 0xD1);    // c0 | c1 << 3 | (c2 & 3) << 6 = 1 | 16 | 192
  EXPECT_EQ(p3->codes[1], 0x58);    // c2 >> 2 | c3 << 1 | c4 << 4 | (c5 & 1) << 7 = 0 | 8 | 80 | 0
  EXPECT_EQ(p3->codes[2], 0x1F);    // c5 >> 1 | c6 << 2 | c7 << 5 = 3 | 28 | 0
  EXPECT_EQ(p3->codes[3], 0x05);    // c8, padding bits zero
  EXPECT_EQ(Unpack(*p3), c3);
  const std::vector<uint8_t> c8 = {0, 255, 17};
  auto p8 = Pack(c8, 1, 3, 8, 2, std::vector<float>{1.0f, 1.0f}, std::vector<float>{0.0f, 0.0f});
  ASSERT_TRUE(p8.ok()) << p8.status();
  EXPECT_EQ(p8->codes, c8);  // one code per byte
}

TEST(PackedTensorTest, SetCodeChangesOnlyItsOwnBits) {
  // impq_set_code against a from-scratch PackRow, for every width and position, starting
  // from a row whose other codes are all ones (so a clobbered neighbour shows).
  Rng rng(5);
  for (int bits : {2, 3, 4, 8}) {
    const int64_t cols = 29;
    std::vector<uint8_t> codes(cols, static_cast<uint8_t>((1 << bits) - 1));
    std::vector<uint8_t> row(static_cast<size_t>(impq_code_bytes(bits, cols)));
    PackRow(codes, bits, row.data());
    for (int64_t c = 0; c < cols; ++c) {
      const int q = static_cast<int>(rng.Below(1u << bits));
      codes[c] = static_cast<uint8_t>(q);
      impq_set_code(row.data(), bits, c, q);
      std::vector<uint8_t> expect(row.size());
      PackRow(codes, bits, expect.data());
      ASSERT_EQ(row, expect) << bits << " bits, column " << c;
      for (int64_t k = 0; k < cols; ++k) ASSERT_EQ(impq_get_code(row.data(), bits, k), codes[k]);
    }
    // impq_code_byte_bits over the codes that touch each byte assembles the same bytes.
    for (int64_t b = 0; b < static_cast<int64_t>(row.size()); ++b) {
      unsigned byte = 0;
      for (int64_t c = impq_first_code_of_byte(bits, b);
           c <= impq_last_code_of_byte(bits, b) && c < cols; ++c) {
        byte |= impq_code_byte_bits(codes[c], bits, c, b);
      }
      ASSERT_EQ(byte, row[b]) << bits << " bits, byte " << b;
    }
  }
}

TEST(PackedTensorTest, PackUnpackRoundTripWithRaggedTails) {
  Rng rng(11);
  for (int bits : {2, 3, 4, 8}) {
    for (int64_t cols : {1, 2, 3, 5, 7, 8, 13, 64, 65, 100, 131}) {
      for (int64_t g : {1, 3, 4, 32, 64, 200}) {
        const int64_t rows = 3;
        const int64_t groups = (cols + g - 1) / g;
        std::vector<uint8_t> codes(rows * cols);
        for (auto& c : codes) c = static_cast<uint8_t>(rng.Below(1u << bits));
        std::vector<float> scales(rows * groups), zeros(rows * groups);
        for (auto& s : scales) s = static_cast<float>(0.01 + rng.Uniform());
        for (auto& z : zeros) z = static_cast<float>(rng.Uniform() * 4.0 - 0.5);
        auto p = Pack(codes, rows, cols, bits, g, scales, zeros);
        ASSERT_TRUE(p.ok()) << p.status();
        ASSERT_TRUE(ValidatePacked(*p).ok());
        EXPECT_EQ(Unpack(*p), codes) << "bits=" << bits << " cols=" << cols << " G=" << g;
        auto bytes = StorageBytes(rows, cols, bits, g);
        ASSERT_TRUE(bytes.ok());
        EXPECT_EQ(*bytes, p->ByteSize());
        // Dequantize matches the reference formula on the unpacked form.
        RefQuantized ref{rows, cols, bits, g, codes, scales, zeros};
        EXPECT_EQ(Dequantize(*p), DequantizeRef(ref));
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(p->Code(r, c), codes[r * cols + c]);
        }
      }
    }
  }
}

TEST(PackedTensorTest, StorageBytesExactValues) {
  // 2 bits, [4096][4096], G = 64: 1024 code bytes + 64 groups * 8 bytes per row.
  EXPECT_EQ(*StorageBytes(4096, 4096, 2, 64), 4096 * (1024 + 64 * 8));
  EXPECT_EQ(*StorageBytes(4096, 4096, 4, 64), 4096 * (2048 + 64 * 8));
  EXPECT_EQ(*StorageBytes(2, 5, 4, 4), 2 * (3 + 2 * 8));  // ragged tail group of 1 column
  EXPECT_EQ(*StorageBytes(4096, 4096, 3, 64), 4096 * (1536 + 64 * 8));
  EXPECT_EQ(*StorageBytes(4096, 4096, 8, 64), 4096 * (4096 + 64 * 8));
  EXPECT_EQ(*StorageBytes(3, 7, 3, 64), 3 * (3 + 8));  // 21 bits -> 3 bytes per row
  EXPECT_EQ(*StorageBytes(1, 11, 3, 4), 1 * (5 + 3 * 8));  // 33 bits -> 5 bytes
}

TEST(PackedTensorTest, BadInputsAreInvalidArgument) {
  auto sb = StorageBytes(4, 4, 5, 64);
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sb.status().message(), HasSubstr("bits = 5"));
  EXPECT_THAT(sb.status().message(), HasSubstr("expected 2, 3, 4 or 8"));
  EXPECT_THAT(StorageBytes(4, 4, 2, 0).status().message(), HasSubstr("group_size = 0"));
  EXPECT_THAT(StorageBytes(0, 4, 2, 64).status().message(), HasSubstr("rows > 0"));

  const std::vector<float> one = {1.0f}, zero = {0.0f};
  auto bad_code = Pack(std::vector<uint8_t>{0, 4}, 1, 2, 2, 64, one, zero);
  EXPECT_EQ(bad_code.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_code.status().message(), HasSubstr("column 1"));
  auto bad_len = Pack(std::vector<uint8_t>{0}, 1, 2, 2, 64, one, zero);
  EXPECT_THAT(bad_len.status().message(), HasSubstr("expected rows*cols = 2"));
  auto bad_scale = Pack(std::vector<uint8_t>{0, 1}, 1, 2, 2, 64, std::vector<float>{0.0f}, zero);
  EXPECT_THAT(bad_scale.status().message(), HasSubstr("scale at row 0 group 0"));
  auto bad_zero = Pack(std::vector<uint8_t>{0, 1}, 1, 2, 2, 64, one,
                       std::vector<float>{std::nanf("")});
  EXPECT_THAT(bad_zero.status().message(), HasSubstr("zero at row 0 group 0"));

  auto p = Pack(std::vector<uint8_t>{1, 2, 3}, 1, 3, 2, 64, one, zero);
  ASSERT_TRUE(p.ok());
  p->codes[0] |= 0xC0;  // set the padding bits of the row's last byte
  EXPECT_THAT(ValidatePacked(*p).message(), HasSubstr("padding"));
  auto p3 = Pack(std::vector<uint8_t>{7, 7, 7}, 1, 3, 3, 64, one, zero);  // 9 bits, 2 bytes
  ASSERT_TRUE(p3.ok());
  ASSERT_TRUE(ValidatePacked(*p3).ok());
  p3->codes[1] |= 0x02;  // first padding bit
  EXPECT_THAT(ValidatePacked(*p3).message(), HasSubstr("padding"));
}

}  // namespace
}  // namespace impq::quant
