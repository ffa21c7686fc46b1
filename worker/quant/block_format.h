/* Packed storage formats of impq's 2-, 3-, 4- and 8-bit weights: ONE table shared by the CPU code
 * (g++) and, later, the CUDA plugin (nvcc). Plain C-compatible code: no std:: types, no
 * containers, only macros, a POD struct and inline functions (constexpr in C++,
 * __host__ __device__ under nvcc).
 *
 * Quantization is weight-only, asymmetric and group-wise along the input dimension of a
 * row-major weight W[rows = out][cols = in] (PyTorch nn.Linear layout).
 *
 * Group rule (ragged tail). A row is split into groups of G consecutive columns:
 *   groups_per_row = ceil(cols / G); group g covers columns [g*G, min((g+1)*G, cols)).
 *   When G does not divide cols, the LAST group of every row is shorter (cols - (n-1)*G
 *   columns) and has its own scale and zero computed over those remaining columns only.
 *
 * Code formula (the definition every backend and reference uses, see
 * impq_quantize_value/impq_dequantize_value below):
 *   q     = clamp(round_half_even(w / scale + zero), 0, 2^bits - 1)      (float arithmetic)
 *   w_hat = (q - zero) * scale                                           (float arithmetic)
 *   The zero point is a float, in code units. RTN and GPTQ store integer-valued zeros (the
 *   optimum-quanto / GPTQ convention zero = round(-min/scale)), HQQ stores a non-integer one.
 *
 * Byte layout of a PackedTensor (all little-endian, no headers):
 *   codes : rows * row_code_bytes bytes, row_code_bytes = ceil(cols * bits / 8).
 *           Row r starts at byte r * row_code_bytes (rows are byte-aligned). Inside a row the
 *           codes form ONE little-endian bit stream: code c (column c) occupies stream bits
 *           [c * bits, (c + 1) * bits), stream bit k being bit (k % 8) of byte k / 8, least
 *           significant bit of the code first. For widths that divide 8 this is the familiar
 *           "codes packed little-endian within a byte":
 *             2 bits: byte = c0 | c1 << 2 | c2 << 4 | c3 << 6
 *             4 bits: byte = c0 | c1 << 4
 *             8 bits: byte = c0
 *           3 bits do not divide 8, so a code may straddle two bytes; 8 codes fill exactly 3
 *           bytes and the pattern repeats every 3 bytes:
 *             byte0 = c0 | c1 << 3 | (c2 & 3) << 6
 *             byte1 = c2 >> 2 | c3 << 1 | c4 << 4 | (c5 & 1) << 7
 *             byte2 = c5 >> 1 | c6 << 2 | c7 << 5
 *           The bit stream (rather than, e.g., 8 codes in 3 bytes with a padded tail, or a
 *           3-bit code in 4 bits) keeps ONE formula for every width, costs exactly
 *           ceil(cols * bits / 8) bytes per row, and leaves the 2- and 4-bit layout unchanged.
 *           Groups are NOT padded individually: the codes of a row are contiguous, so a group
 *           starts on a byte boundary exactly when (g * G * bits) % 8 == 0 (true for every G
 *           that is a multiple of 8, e.g. the default 64, at every width). Padding bits at
 *           the end of a row (when cols * bits is not a multiple of 8) are zero.
 *   scales: rows * groups_per_row IEEE-754 binary32 values, row-major [row][group].
 *   zeros : rows * groups_per_row IEEE-754 binary32 values, row-major [row][group].
 *   Scale and zero are kept as f32 (not f16): HQQ's float zero and GPTQ's scales are then
 *   stored exactly as the algorithm produced them and dequantization is bit-reproducible.
 *   The cost is 8 bytes per group: at G = 64 that is 1 extra bit per weight
 *   (2-bit: 24 bytes per 64 weights = 3.0 bits/weight; 3-bit: 32 bytes = 4.0; 4-bit: 40 bytes
 *   = 5.0; 8-bit: 72 bytes = 9.0).
 *
 * Storage (exact): bytes = rows * (ceil(cols*bits/8) + groups_per_row * (scale_bytes + zero_bytes)).
 */
#ifndef IMPQ_WORKER_QUANT_BLOCK_FORMAT_H_
#define IMPQ_WORKER_QUANT_BLOCK_FORMAT_H_

#include <stdint.h>

#ifdef __CUDACC__
#define IMPQ_HD __host__ __device__
#else
#define IMPQ_HD
#endif

#ifdef __cplusplus
#define IMPQ_INLINE constexpr inline
#else
#define IMPQ_INLINE static inline
#endif

/* Storage type of a group's scale and zero. */
#define IMPQ_PARAM_F32 0

/* THE table. One row per supported bit width:
 *   X(bits, codes_per_byte, code_mask, max_code, param_type, scale_bytes, zero_bytes,
 *     default_group_size) */
#define IMPQ_BLOCK_FORMAT_TABLE(X)                  \
  X(2, 4, 0x3, 3, IMPQ_PARAM_F32, 4, 4, 64)         \
  X(3, 0, 0x7, 7, IMPQ_PARAM_F32, 4, 4, 64)         \
  X(4, 2, 0xF, 15, IMPQ_PARAM_F32, 4, 4, 64)        \
  X(8, 1, 0xFF, 255, IMPQ_PARAM_F32, 4, 4, 64)

typedef struct ImpqBlockFormat {
  int bits;               /* 0 marks "no such format" */
  int codes_per_byte;     /* 8 / bits when bits divides 8; 0 for 3 bits (codes straddle bytes) */
  int code_mask;          /* 2^bits - 1, mask of one code */
  int max_code;           /* 2^bits - 1, largest code */
  int param_type;         /* IMPQ_PARAM_F32 */
  int scale_bytes;        /* bytes of one group scale */
  int zero_bytes;         /* bytes of one group zero */
  int default_group_size; /* G used when the caller does not choose */
} ImpqBlockFormat;

/* The format for `bits`, or one with bits == 0 when the width is not supported. */
IMPQ_HD IMPQ_INLINE ImpqBlockFormat impq_block_format(int bits) {
#define IMPQ_BLOCK_FORMAT_CASE_(b, cpb, mask, maxc, pt, sb, zb, g) \
  if (bits == (b)) {                                              \
    ImpqBlockFormat f = {b, cpb, mask, maxc, pt, sb, zb, g};      \
    return f;                                                     \
  }
  IMPQ_BLOCK_FORMAT_TABLE(IMPQ_BLOCK_FORMAT_CASE_)
#undef IMPQ_BLOCK_FORMAT_CASE_
  {
    ImpqBlockFormat none = {0, 0, 0, 0, 0, 0, 0, 0};
    return none;
  }
}

/* 1 when `bits` has a row in the table. */
IMPQ_HD IMPQ_INLINE int impq_bits_supported(int bits) { return impq_block_format(bits).bits != 0; }

/* ceil(cols / group_size). REQUIRES: group_size > 0. */
IMPQ_HD IMPQ_INLINE int64_t impq_groups_per_row(int64_t cols, int64_t group_size) {
  return (cols + group_size - 1) / group_size;
}

/* Bytes holding `n` consecutive codes starting on a byte boundary: ceil(n * bits / 8). */
IMPQ_HD IMPQ_INLINE int64_t impq_code_bytes(int bits, int64_t n) { return (n * bits + 7) / 8; }

/* Bytes of one full group of G codes plus its scale and zero. Exact per group when
 * (G * bits) % 8 == 0; in general use impq_storage_bytes, which packs a row contiguously. */
IMPQ_HD IMPQ_INLINE int64_t impq_group_bytes(ImpqBlockFormat f, int64_t group_size) {
  return impq_code_bytes(f.bits, group_size) + f.scale_bytes + f.zero_bytes;
}

/* Exact bytes of a packed [rows][cols] tensor: codes + scales + zeros (layout above). */
IMPQ_HD IMPQ_INLINE int64_t impq_storage_bytes(ImpqBlockFormat f, int64_t rows, int64_t cols,
                                               int64_t group_size) {
  return rows * (impq_code_bytes(f.bits, cols) +
                 impq_groups_per_row(cols, group_size) * (f.scale_bytes + f.zero_bytes));
}

/* Code of column `c` from a packed row (the bit stream above). A code spans at most two
 * bytes (bits <= 8); the second is read only when the code reaches into it, so this never
 * reads past the row's last byte. REQUIRES: impq_bits_supported(bits), 0 <= c < cols. */
IMPQ_HD IMPQ_INLINE int impq_get_code(const uint8_t* row, int bits, int64_t c) {
  const int64_t bit = c * bits;
  const int shift = (int)(bit & 7);
  unsigned v = (unsigned)row[bit >> 3] >> shift;
  if (shift + bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << (8 - shift);
  return (int)(v & ((1u << bits) - 1u));
}

/* Writes code `q` of column `c` into a packed row, leaving every other code unchanged.
 * Not safe against concurrent writers of a neighbouring code (they may share a byte): kernels
 * that pack in parallel assemble whole bytes with impq_code_byte_bits instead.
 * REQUIRES: impq_bits_supported(bits), 0 <= q < 2^bits, 0 <= c < cols. */
IMPQ_HD IMPQ_INLINE void impq_set_code(uint8_t* row, int bits, int64_t c, int q) {
  const int64_t bit = c * bits;
  const int shift = (int)(bit & 7);
  const unsigned mask = (1u << bits) - 1u;
  uint8_t* p = row + (bit >> 3);
  p[0] = (uint8_t)((p[0] & ~(mask << shift)) | (((unsigned)q & mask) << shift));
  if (shift + bits > 8) {
    const int done = 8 - shift; /* low bits of q already written */
    p[1] = (uint8_t)((p[1] & ~(mask >> done)) | (((unsigned)q & mask) >> done));
  }
}

/* The columns whose codes touch byte `b` of a packed row: [first, last] (clip `last` to
 * cols - 1). One byte holds parts of at most 8 / bits + 1 codes. */
IMPQ_HD IMPQ_INLINE int64_t impq_first_code_of_byte(int bits, int64_t b) { return 8 * b / bits; }
IMPQ_HD IMPQ_INLINE int64_t impq_last_code_of_byte(int bits, int64_t b) {
  return (8 * b + 7) / bits;
}

/* The bits that code `q` of column `c` contributes to byte `b` of its row (0 when it does
 * not touch b): OR them over impq_first_code_of_byte..impq_last_code_of_byte to assemble a
 * byte without read-modify-write (one thread per byte). REQUIRES: 0 <= q < 2^bits. */
IMPQ_HD IMPQ_INLINE unsigned impq_code_byte_bits(int q, int bits, int64_t c, int64_t b) {
  const int64_t shift = c * bits - 8 * b; /* position of the code's bit 0 within byte b */
  if (shift >= 8 || shift <= -bits) return 0u;
  const unsigned v = shift >= 0 ? (unsigned)q << shift : (unsigned)q >> -shift;
  return v & 0xFFu;
}

/* Round-half-to-even of a float in [0, 2^22] without libm: adding and subtracting 1.5 * 2^23
 * leaves only the integer part, rounded by the FPU's default mode (nearest-even). Matches
 * torch.round / rintf; vectorises. REQUIRES: 0 <= t <= 2^22. */
IMPQ_HD IMPQ_INLINE float impq_round_half_even_small(float t) {
  return (t + 12582912.0f) - 12582912.0f;
}

/* The code of w: clamp(round(w / scale + zero), 0, max_code). Clamping before rounding is
 * equivalent (the bounds are integers) and keeps the rounding trick in range. */
IMPQ_HD IMPQ_INLINE int impq_quantize_value(float w, float scale, float zero, int max_code) {
  float t = w / scale + zero;
  t = t < 0.0f ? 0.0f : t;
  t = t > (float)max_code ? (float)max_code : t;
  return (int)impq_round_half_even_small(t);
}

/* w_hat = (q - zero) * scale. */
IMPQ_HD IMPQ_INLINE float impq_dequantize_value(int q, float scale, float zero) {
  return ((float)q - zero) * scale;
}

#endif /* IMPQ_WORKER_QUANT_BLOCK_FORMAT_H_ */
