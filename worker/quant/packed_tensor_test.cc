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
  static_assert(impq_block_format(3).bits == 0 && !impq_bits_supported(8));
  EXPECT_EQ(f2.scale_bytes + f2.zero_bytes, 8);
  // 64 two-bit codes = 16 bytes + f32 scale + f32 zero.
  EXPECT_EQ(impq_group_bytes(f2, 64), 24);
  EXPECT_EQ(impq_group_bytes(f4, 64), 40);
  static_assert(impq_storage_bytes(impq_block_format(2), 4, 64, 64) == 4 * (16 + 8));
  // Ragged: 10 columns, G = 4 -> 3 groups; 10 * 2 bits = 20 bits -> 3 bytes per row.
  static_assert(impq_storage_bytes(impq_block_format(2), 3, 10, 4) == 3 * (3 + 3 * 8));
}

TEST(BlockFormatTest, CodeFormulaMatchesLibmRounding) {
  // The fast formula (clamp, then the 1.5*2^23 rounding trick) must equal the reference
  // (libm nearbyintf, then clamp) for every input, including exact .5 ties.
  Rng rng(7);
  for (int bits : {2, 4}) {
    const int max_code = (1 << bits) - 1;
    for (int i = 0; i < 200000; ++i) {
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

TEST(PackedTensorTest, PackUnpackRoundTripWithRaggedTails) {
  Rng rng(11);
  for (int bits : {2, 4}) {
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
}

TEST(PackedTensorTest, BadInputsAreInvalidArgument) {
  auto sb = StorageBytes(4, 4, 3, 64);
  EXPECT_EQ(sb.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sb.status().message(), HasSubstr("bits = 3"));
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
}

}  // namespace
}  // namespace impq::quant
